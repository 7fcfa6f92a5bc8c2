//! A throwaway PostgreSQL cluster (PG_BINDIR's version unless chosen): own data directory, own port and socket,
//! run as the `postgres` user when we are root (initdb refuses root). Stopped
//! and deleted on drop, so a failing test still cleans up.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tokio_postgres::{Client, NoTls};

pub fn bindir() -> PathBuf {
    std::env::var_os("PG_BINDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
}

fn is_root() -> bool {
    // /proc/self/status has "Uid: <real> <effective> ..."; no libc needed.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// Runs a program as the cluster's owner: `postgres` when we are root
/// (initdb, postgres and PgBouncer refuse root), else ourselves.
pub fn as_owner(program: impl AsRef<std::ffi::OsStr>) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// Runs a PostgreSQL program as the cluster's owner.
fn pg_command(bin: &Path, program: &str) -> Command {
    as_owner(bin.join(program))
}

fn run(mut cmd: Command, what: &str) -> Result<Output, String> {
    let out = cmd.output().map_err(|e| format!("{what}: cannot run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(out)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(54329)
}

pub struct Cluster {
    dir: PathBuf,
    /// The PostgreSQL binaries it runs with (bindir() unless chosen).
    bin: PathBuf,
    pub port: u16,
    options: Vec<String>,
    /// Extra environment of the server.
    env: Vec<(String, String)>,
}

impl Cluster {
    /// initdb + start with settings suited to tests: no fsync, which is still
    /// crash-safe for a Postgres crash (the OS keeps what was written), but
    /// commits are synchronous so `restart("immediate")` loses nothing.
    pub fn start() -> Result<Cluster, String> {
        Self::start_with(&["fsync=off", "full_page_writes=off"])
    }

    /// initdb + start with extra `-c name=value` settings.
    pub fn start_with(settings: &[&str]) -> Result<Cluster, String> {
        Self::start_with_env(settings, &[])
    }

    /// initdb + start with extra settings and environment variables of the
    /// server process (e.g. RUST_BACKTRACE).
    pub fn start_with_env(settings: &[&str], env: &[(&str, &str)]) -> Result<Cluster, String> {
        Self::start_new(&bindir(), settings, env)
    }

    /// initdb + start with the PostgreSQL binaries in `bin` (another
    /// version than PG_BINDIR's, for pg_upgrade).
    pub fn start_in(bin: &Path, settings: &[&str]) -> Result<Cluster, String> {
        Self::start_new(bin, settings, &[])
    }

    fn start_new(bin: &Path, settings: &[&str], env: &[(&str, &str)]) -> Result<Cluster, String> {
        let cluster = Cluster::new_dir("pg_webhooks-test", bin, settings, env)?;
        cluster.initdb(&[])?;
        cluster.start_on_a_free_port()
    }

    /// Stops this cluster and pg_upgrades it into a new one run by the
    /// binaries in `bin`, started with the same settings; this one's
    /// directory goes when it is dropped.
    pub fn upgrade_to(&self, bin: &Path) -> Result<Cluster, String> {
        self.stop("fast")?;
        let new = Cluster::new_dir("pg_webhooks-upgraded", bin, &self.options_str(), &[])?;
        // PostgreSQL 18 turns data checksums on by default; pg_upgrade
        // needs both clusters alike, and the older ones default to off.
        let mut ask = pg_command(bin, "initdb");
        ask.arg("--help");
        let help = run(ask, "initdb --help")?;
        let no_checksums = String::from_utf8_lossy(&help.stdout).contains("--no-data-checksums");
        new.initdb(if no_checksums { &["--no-data-checksums"] } else { &[] })?;
        let mut upgrade = pg_command(bin, "pg_upgrade");
        // pg_upgrade writes its logs into the current directory's cluster.
        upgrade
            .current_dir(&new.dir)
            .arg("-b")
            .arg(&self.bin)
            .arg("-B")
            .arg(bin)
            .arg("-d")
            .arg(self.data_dir())
            .arg("-D")
            .arg(new.data_dir())
            .args(["-p", &free_port().to_string(), "-P", &free_port().to_string()])
            .arg("-s")
            .arg(&new.dir)
            .arg("--no-sync");
        run(upgrade, "pg_upgrade").map_err(|e| format!("{e}{}", new.upgrade_logs()))?;
        new.start_on_a_free_port()
    }

    /// The last lines of pg_upgrade's logs (they go with the directory).
    fn upgrade_logs(&self) -> String {
        let mut out = String::new();
        let mut dirs = vec![self.data_dir().join("pg_upgrade_output.d")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if let Ok(text) = std::fs::read_to_string(&path) {
                    let lines: Vec<&str> = text.lines().collect();
                    let tail = lines[lines.len().saturating_sub(20)..].join("\n");
                    out.push_str(&format!("\n--- {} ---\n{tail}", path.display()));
                }
            }
        }
        out
    }

    fn options_str(&self) -> Vec<&str> {
        self.options.iter().map(String::as_str).collect()
    }

    fn initdb(&self, extra: &[&str]) -> Result<(), String> {
        let mut initdb = pg_command(&self.bin, "initdb");
        initdb.args(extra).arg("-D").arg(self.data_dir()).args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ]);
        run(initdb, "initdb").map(|_| ())
    }

    /// A port picked from the OS can be taken by someone else before the
    /// server binds it; tries a few.
    fn start_on_a_free_port(mut self) -> Result<Cluster, String> {
        let mut last = String::new();
        for _ in 0..5 {
            self.port = free_port();
            match self.pg_ctl_start() {
                Ok(()) => return Ok(self),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// A cluster directory made by the cluster's owner (mktemp as them, so
    /// the directory is theirs); not started.
    fn new_dir(prefix: &str, bin: &Path, settings: &[&str], env: &[(&str, &str)]) -> Result<Cluster, String> {
        let mut mk = as_owner("mktemp");
        mk.args(["-d", &format!("/tmp/{prefix}.XXXXXX")]);
        let out = run(mk, "mktemp")?;
        Ok(Cluster {
            dir: PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()),
            bin: bin.to_path_buf(),
            port: 0,
            options: settings.iter().map(|s| s.to_string()).collect(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        })
    }

    /// A streaming standby of `primary` (`pg_basebackup -R`), started on a
    /// port of its own with extra `settings`.
    pub fn standby_of(primary: &Cluster, settings: &[&str]) -> Result<Cluster, String> {
        let standby = Cluster::new_dir("pg_webhooks-standby", &primary.bin, settings, &[])?;
        let mut backup = pg_command(&primary.bin, "pg_basebackup");
        backup
            .arg("-D")
            .arg(standby.data_dir())
            .args(["-h", "127.0.0.1", "-p", &primary.port.to_string(), "-U", "postgres"])
            .args(["-R", "-X", "stream", "-c", "fast", "--no-sync"]);
        run(backup, "pg_basebackup")?;
        standby.start_on_a_free_port()
    }

    /// Promotes a standby and waits until it accepts writes.
    pub fn promote(&self) -> Result<(), String> {
        let mut ctl = pg_command(&self.bin, "pg_ctl");
        ctl.arg("-D").arg(self.data_dir()).args(["-w", "-t", "60", "promote"]);
        run(ctl, "pg_ctl promote").map(|_| ())
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    pub fn log_file(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let mut opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.display()
        );
        for s in &self.options {
            opts.push_str(" -c ");
            opts.push_str(s);
        }
        let mut ctl = pg_command(&self.bin, "pg_ctl");
        ctl.envs(self.env.iter().map(|(k, v)| (k, v)));
        ctl.arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_file())
            .args(["-w", "-t", "60", "-o", &opts, "start"]);
        run(ctl, "pg_ctl start").map(|_| ()).map_err(|e| {
            let log = std::fs::read_to_string(self.log_file()).unwrap_or_default();
            format!("{e}\n--- postgres.log ---\n{log}")
        })
    }

    /// Writes a file into the data directory as the cluster's owner with
    /// `mode` (PostgreSQL refuses a TLS key that others can read), e.g.
    /// pg_hba.conf or a server certificate; returns its path.
    pub fn write_file(&self, name: &str, contents: &[u8], mode: u32) -> Result<PathBuf, String> {
        use std::io::Write;
        let path = self.data_dir().join(name);
        let mut cmd = as_owner("sh");
        cmd.args(["-c", "umask 077 && cat > \"$1\" && chmod \"$2\" \"$1\"", "sh"])
            .arg(&path)
            .arg(format!("{mode:o}"))
            .stdin(std::process::Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| format!("write {name}: {e}"))?;
        child
            .stdin
            .take()
            .ok_or("write: no stdin")?
            .write_all(contents)
            .map_err(|e| format!("write {name}: {e}"))?;
        let status = child.wait().map_err(|e| format!("write {name}: {e}"))?;
        if !status.success() {
            return Err(format!("write {name}: {status}"));
        }
        Ok(path)
    }

    /// Stops the server (`mode`: smart, fast or immediate).
    pub fn stop(&self, mode: &str) -> Result<(), String> {
        let mut ctl = pg_command(&self.bin, "pg_ctl");
        ctl.arg("-D").arg(self.data_dir()).args(["-w", "-m", mode, "stop"]);
        run(ctl, "pg_ctl stop").map(|_| ())
    }

    /// Stops with `mode` and starts again on the same port.
    pub fn restart(&self, mode: &str) -> Result<(), String> {
        self.stop(mode)?;
        self.pg_ctl_start()
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    pub async fn connect(&self, database: &str) -> Result<Client, String> {
        connect_url(&self.url(database)).await
    }

    /// Logs in to `database` as `user` (trust authentication on the test
    /// cluster): the way the role tests and the attacks act as a role,
    /// never through SET ROLE, which the acting code could RESET.
    pub async fn login(&self, user: &str, database: &str) -> Client {
        connect_url(&format!("postgres://{user}@127.0.0.1:{}/{database}", self.port))
            .await
            .unwrap_or_else(|e| panic!("log in as {user}: {e}"))
    }

    /// Creates a database; with `extension`, also `CREATE EXTENSION pg_webhooks`.
    pub async fn create_database(&self, name: &str, extension: bool) -> Result<Client, String> {
        let admin = self.connect("postgres").await?;
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .map_err(|e| format!("CREATE DATABASE: {e}"))?;
        let client = self.connect(name).await?;
        if extension {
            client
                .batch_execute("CREATE EXTENSION pg_webhooks")
                .await
                .map_err(|e| format!("CREATE EXTENSION pg_webhooks: {}", db_message(&e)))?;
        }
        Ok(client)
    }

    /// Runs psql against a database (for printing tables the way a DBA sees them).
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, String> {
        self.psql_output(database, sql).map(|(stdout, _)| stdout)
    }

    /// Runs psql against a database: what it printed, and what the server
    /// said besides (notices and warnings, on stderr).
    pub fn psql_output(&self, database: &str, sql: &str) -> Result<(String, String), String> {
        let mut c = Command::new(self.bin.join("psql"));
        c.args([
            "-X",
            "-q",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-p",
            &self.port.to_string(),
            "-d",
            database,
        ])
        .args(["-v", "ON_ERROR_STOP=1", "-c", sql]);
        let out = run(c, "psql")?;
        Ok((
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.stop("immediate");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A client for a connection string; its connection runs on a task of its own.
pub async fn connect_url(url: &str) -> Result<Client, String> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// The server's message and SQLSTATE of a database error, for assertions and
/// readable failures.
pub fn db_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} [{}]", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

/// The SQLSTATE of a failed statement, if the server raised one.
pub fn sqlstate(e: &tokio_postgres::Error) -> Option<String> {
    e.code().map(|c| c.code().to_owned())
}

/// Runs `sql`, expecting the server to refuse it with SQLSTATE `code`;
/// returns the message (for assertions on its wording).
pub async fn refused(db: &Client, sql: &str, code: &str) -> String {
    let err = db.batch_execute(sql).await.expect_err(sql);
    assert_eq!(sqlstate(&err).as_deref(), Some(code), "{sql}: {}", db_message(&err));
    db_message(&err)
}

/// The single integer `sql` selects (a count, mostly), or a panic naming
/// the statement and the server's message.
pub async fn count(db: &Client, sql: &str) -> i64 {
    db.query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", db_message(&e)))
        .get(0)
}
