//! A real PgBouncer (Debian's package) in front of a test cluster, in
//! transaction pooling with a pool of two server connections, so that
//! session state one client left behind would be seen by the next. Runs as
//! the cluster's owner (PgBouncer refuses root) on a private port; stopped
//! on drop.

use crate::cluster::{as_owner, free_port, Cluster};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PGBOUNCER: &str = "/usr/sbin/pgbouncer";

pub struct Bouncer {
    dir: PathBuf,
    pub port: u16,
    child: Child,
}

impl Bouncer {
    /// Starts PgBouncer for every database of `cluster`, `pool_mode`
    /// (`transaction`, `session`), and waits until it accepts connections.
    pub fn start(cluster: &Cluster, pool_mode: &str) -> Result<Bouncer, String> {
        let out = as_owner("mktemp")
            .args(["-d", "/tmp/pg_webhooks-pgbouncer.XXXXXX"])
            .output()
            .map_err(|e| format!("mktemp: {e}"))?;
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let port = free_port();
        let ini = format!(
            "[databases]\n* = host=127.0.0.1 port={pg}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
             unix_socket_dir =\nauth_type = trust\nauth_file = {dir}/users.txt\npool_mode = {pool_mode}\n\
             default_pool_size = 2\nmax_client_conn = 200\nlogfile = {dir}/pgbouncer.log\npidfile = {dir}/pgbouncer.pid\n",
            pg = cluster.port,
            dir = dir.display(),
        );
        // Root writes into the owner's directory; the files are world-readable.
        std::fs::write(dir.join("pgbouncer.ini"), ini).map_err(|e| format!("pgbouncer.ini: {e}"))?;
        std::fs::write(dir.join("users.txt"), "\"postgres\" \"\"\n").map_err(|e| format!("users.txt: {e}"))?;
        let child = as_owner(PGBOUNCER)
            .arg(dir.join("pgbouncer.ini"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {PGBOUNCER} (Debian package pgbouncer): {e}"))?;
        let bouncer = Bouncer { dir, port, child };
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(format!("PgBouncer did not listen on {port}:\n{}", bouncer.log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(bouncer)
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        // runuser waits for PgBouncer: stop PgBouncer itself, by its pid file.
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("pgbouncer.pid")) {
            let _ = Command::new("kill").args(["-TERM", pid.trim()]).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
