//! What a connection string leaves out, as libpq fills it in: the PG*
//! environment variables, its defaults, then the password file.

use super::Split;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_postgres::config::{ChannelBinding, Host, LoadBalanceHosts, SslNegotiation, TargetSessionAttrs};
use tokio_postgres::Config;

/// The environment, as a function so that tests can give their own.
pub(super) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Where libpq looks for a file the string and the environment do not name.
pub(super) fn default_file(env: Env<'_>, name: &str) -> Option<PathBuf> {
    let home = env("HOME")?;
    let path = Path::new(&home).join(".postgresql").join(name);
    path.exists().then_some(path)
}

/// Fills in, as libpq does, what the connection string leaves out: from the
/// environment, then defaults (the default socket directory, the operating
/// system's user name, a database named as the user), then the password file.
pub(super) fn environment_defaults(config: &mut Config, keys: &[String], env: Env<'_>) -> Result<(), String> {
    let given = |key: &str| keys.iter().any(|k| k == key);
    // Settings that would weaken or change the connection if ignored.
    for (var, what) in [
        ("PGSERVICE", "service files (pg_service.conf)"),
        ("PGREQUIREAUTH", "require_auth"),
    ] {
        if env(var).is_some() {
            return Err(format!(
                "{var} is set, but {what} is not supported: unset it, and name the server in the URL or with PGHOST"
            ));
        }
    }
    if env("PGGSSENCMODE").as_deref() == Some("require") {
        return Err("PGGSSENCMODE=require: GSSAPI encryption is not supported (use sslmode)".to_owned());
    }
    if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
        if let Some(hosts) = env("PGHOST") {
            for host in hosts.split(',') {
                config.host(host.trim());
            }
        }
    }
    if config.get_hostaddrs().is_empty() {
        if let Some(addrs) = env("PGHOSTADDR") {
            for addr in addrs.split(',') {
                let addr = addr
                    .trim()
                    .parse()
                    .map_err(|_| format!("invalid PGHOSTADDR {addr:?}: not an IP address"))?;
                config.hostaddr(addr);
            }
        }
    }
    if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
        config.host(crate::pgpass::DEFAULT_SOCKET_DIR);
    }
    if config.get_ports().is_empty() {
        if let Some(ports) = env("PGPORT") {
            for port in ports.split(',') {
                let port = port
                    .trim()
                    .parse()
                    .map_err(|_| format!("invalid PGPORT {port:?}: not a port number"))?;
                config.port(port);
            }
        }
    }
    let user = match config.get_user() {
        Some(user) => user.to_owned(),
        None => match env("PGUSER") {
            Some(user) => user,
            None => whoami::username()
                .map_err(|e| format!("no user given (PGUSER) and the operating system's user name is unknown: {e}"))?,
        },
    };
    config.user(&user);
    if config.get_dbname().is_none() {
        config.dbname(env("PGDATABASE").unwrap_or_else(|| user.clone()));
    }
    if config.get_application_name().is_none() {
        if let Some(name) = env("PGAPPNAME") {
            config.application_name(name);
        }
    }
    if config.get_options().is_none() {
        if let Some(options) = env("PGOPTIONS") {
            config.options(options);
        }
    }
    if !given("connect_timeout") {
        if let Some(secs) = env("PGCONNECT_TIMEOUT") {
            let secs: u64 = secs
                .trim()
                .parse()
                .map_err(|_| format!("invalid PGCONNECT_TIMEOUT {secs:?}: not a number of seconds"))?;
            // libpq: 0 waits forever, and less than 2 seconds is 2.
            if secs > 0 {
                config.connect_timeout(Duration::from_secs(secs.max(2)));
            }
        }
    }
    if let Some(v) = choice(
        given("channel_binding"),
        env,
        "PGCHANNELBINDING",
        &[
            ("disable", ChannelBinding::Disable),
            ("prefer", ChannelBinding::Prefer),
            ("require", ChannelBinding::Require),
        ],
    )? {
        config.channel_binding(v);
    }
    if let Some(v) = choice(
        given("load_balance_hosts"),
        env,
        "PGLOADBALANCEHOSTS",
        &[
            ("disable", LoadBalanceHosts::Disable),
            ("random", LoadBalanceHosts::Random),
        ],
    )? {
        config.load_balance_hosts(v);
    }
    if let Some(v) = choice(
        given("sslnegotiation"),
        env,
        "PGSSLNEGOTIATION",
        &[
            ("postgres", SslNegotiation::Postgres),
            ("direct", SslNegotiation::Direct),
        ],
    )? {
        config.ssl_negotiation(v);
    }
    if let Some(v) = choice(
        given("target_session_attrs"),
        env,
        "PGTARGETSESSIONATTRS",
        &[
            ("any", TargetSessionAttrs::Any),
            ("read-write", TargetSessionAttrs::ReadWrite),
            ("read-only", TargetSessionAttrs::ReadOnly),
        ],
    )? {
        config.target_session_attrs(v);
    }
    if config.get_password().is_none() {
        if let Some(password) = env("PGPASSWORD") {
            config.password(password);
        } else if let Some(file) = crate::pgpass::default_path(env) {
            if let Some(password) = password_from_file(config, &file)? {
                config.password(password);
            }
        }
    }
    Ok(())
}

/// The setting `var` names, spelt as libpq spells it, unless the string
/// already gave it (`given`).
fn choice<T: Copy>(given: bool, env: Env<'_>, var: &str, choices: &[(&str, T)]) -> Result<Option<T>, String> {
    let Some(value) = env(var).filter(|_| !given) else {
        return Ok(None);
    };
    match choices.iter().find(|(name, _)| *name == value) {
        Some((_, v)) => Ok(Some(*v)),
        None => {
            let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
            Err(format!("{var} {value:?} is not supported (use {})", names.join(", ")))
        }
    }
}

/// A URL whose hosts name no port gets PGPORT's: tokio-postgres would give
/// each one 5432, libpq gives PGPORT.
pub(super) fn with_env_ports(parts: &Split, env: Env<'_>) -> Result<String, String> {
    let rest = parts.rest.clone();
    let (Some(range), Some(ports)) = (parts.hosts.clone(), env("PGPORT")) else {
        return Ok(rest);
    };
    let hosts: Vec<&str> = rest[range.clone()].split(',').collect();
    let has_port = |h: &str| match h.strip_prefix('[') {
        Some(v6) => v6.contains("]:"),
        None => h.contains(':'),
    };
    if rest[range.clone()].is_empty() || parts.keys.iter().any(|k| k == "port") || hosts.iter().any(|h| has_port(h)) {
        return Ok(rest);
    }
    let ports: Vec<&str> = ports.split(',').map(str::trim).collect();
    if let Some(bad) = ports.iter().find(|p| p.parse::<u16>().is_err()) {
        return Err(format!("invalid PGPORT {bad:?}: not a port number"));
    }
    if ports.len() != 1 && ports.len() != hosts.len() {
        return Err(format!("PGPORT lists {} ports for {} hosts", ports.len(), hosts.len()));
    }
    let with_ports: Vec<String> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| format!("{h}:{}", ports.get(i).unwrap_or(&ports[0])))
        .collect();
    Ok(format!(
        "{}{}{}",
        &rest[..range.start],
        with_ports.join(","),
        &rest[range.end..]
    ))
}

/// The password file's password for the hosts of `config`; one connection
/// has one password, so a multi-host string whose hosts have different ones
/// is an error rather than a guess.
fn password_from_file(config: &Config, file: &Path) -> Result<Option<String>, String> {
    // Read once, looked up for each host.
    let text = crate::pgpass::read(file);
    let hosts: Vec<String> = if config.get_hosts().is_empty() {
        config.get_hostaddrs().iter().map(|a| a.to_string()).collect()
    } else {
        config
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            })
            .collect()
    };
    let ports = config.get_ports();
    let (user, database) = (config.get_user().unwrap_or(""), config.get_dbname().unwrap_or(""));
    let mut found: Vec<Option<String>> = Vec::new();
    for (i, host) in hosts.iter().enumerate() {
        let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        let key = crate::pgpass::Key {
            host,
            port,
            database,
            user,
        };
        let password = text.as_deref().and_then(|t| crate::pgpass::find(t, &key));
        if !found.contains(&password) {
            found.push(password);
        }
    }
    // One password goes to whichever host answers: never one host's to
    // another that has none, nor a choice between two.
    match found.as_slice() {
        [] | [None] => Ok(None),
        [Some(password)] => Ok(Some(password.clone())),
        _ => Err(format!(
            "{} gives the hosts of the connection string different passwords (or some none); the poller sends one \
             password to whichever host answers: give it with PGPASSWORD or in the URL file",
            file.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::target_in;
    use super::*;

    fn env_of(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn what_the_string_leaves_out_comes_from_the_environment() {
        let env = env_of(&[
            ("PGHOST", "db1,db2"),
            ("PGPORT", "5433,5434"),
            ("PGUSER", "poller"),
            ("PGPASSWORD", "from-env"),
            ("PGDATABASE", "erp"),
            ("PGAPPNAME", "pw-east"),
            ("PGCONNECT_TIMEOUT", "1"),
            ("PGTARGETSESSIONATTRS", "read-write"),
        ]);
        let t = target_in("", &env).unwrap();
        let c = &t.config;
        assert_eq!(c.get_hosts(), [Host::Tcp("db1".into()), Host::Tcp("db2".into())]);
        assert_eq!(c.get_ports(), [5433, 5434]);
        assert_eq!(c.get_user(), Some("poller"));
        assert_eq!(c.get_password(), Some(&b"from-env"[..]));
        assert_eq!(c.get_dbname(), Some("erp"));
        assert_eq!(c.get_application_name(), Some("pw-east"));
        assert_eq!(c.get_connect_timeout(), Some(&Duration::from_secs(2)));
        assert_eq!(c.get_target_session_attrs(), TargetSessionAttrs::ReadWrite);
        // The string wins over the environment.
        let t = target_in(
            "postgres://u:p@h:6000/d?target_session_attrs=any&application_name=a",
            &env,
        )
        .unwrap();
        let c = &t.config;
        assert_eq!(c.get_hosts(), [Host::Tcp("h".into())]);
        assert_eq!(c.get_ports(), [6000]);
        assert_eq!((c.get_user(), c.get_password()), (Some("u"), Some(&b"p"[..])));
        assert_eq!(c.get_dbname(), Some("d"));
        assert_eq!(c.get_application_name(), Some("a"));
        assert_eq!(c.get_target_session_attrs(), TargetSessionAttrs::Any);
        // Nothing at all: the default socket, a database named as the user.
        let t = target_in("user=u", &env_of(&[])).unwrap();
        assert_eq!(
            t.config.get_hosts(),
            [Host::Unix(crate::pgpass::DEFAULT_SOCKET_DIR.into())]
        );
        assert_eq!(t.config.get_dbname(), Some("u"));
        assert!(target_in("", &env_of(&[("PGSERVICE", "erp")]))
            .err()
            .unwrap()
            .contains("PGSERVICE"));
        assert!(target_in("", &env_of(&[("PGPORT", "x")]))
            .err()
            .unwrap()
            .contains("invalid PGPORT"));
        assert!(target_in("", &env_of(&[("PGTARGETSESSIONATTRS", "primary")]))
            .err()
            .unwrap()
            .contains("not supported"));
    }

    #[test]
    fn the_password_file_gives_one_password_per_connection() {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("pg_webhooks-conninfo-pgpass-{}", std::process::id()));
        std::fs::write(
            &path,
            "a:5432:erp:poller:pw-a-9f3\nb:5432:erp:poller:pw-b-7c1\n*:*:*:poller:pw-any\n",
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let file = path.display().to_string();
        let leaked: &'static str = Box::leak(file.into_boxed_str());
        let vars: &'static [(&'static str, &'static str)] = Box::leak(Box::new([("PGPASSFILE", leaked)]));
        let env = env_of(vars);
        let one = target_in("postgres://poller@a/erp", &env).unwrap();
        assert_eq!(one.config.get_password(), Some(&b"pw-a-9f3"[..]));
        let other = target_in("postgres://poller@c:7000/x", &env).unwrap();
        assert_eq!(other.config.get_password(), Some(&b"pw-any"[..]));
        let e = target_in("postgres://poller@a,b/erp", &env).err().unwrap();
        assert!(e.contains("different passwords"), "{e}");
        assert!(!e.contains("pw-"), "{e}");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn pgport_fills_in_the_ports_a_url_leaves_out() {
        let env = env_of(&[("PGPORT", "6432")]);
        let ports = |url: &str, env: &dyn Fn(&str) -> Option<String>| {
            target_in(url, env).map(|t| t.config.get_ports().to_vec())
        };
        assert_eq!(ports("postgres://poller@db/erp", &env), Ok(vec![6432]));
        assert_eq!(ports("postgres://poller@db1,[::1]/erp", &env), Ok(vec![6432, 6432]));
        assert_eq!(ports("postgres://poller@db:5433/erp", &env), Ok(vec![5433]));
        assert_eq!(ports("postgres://poller@[::1]:5433/erp", &env), Ok(vec![5433]));
        assert_eq!(ports("host=db", &env), Ok(vec![6432]));
        let two = env_of(&[("PGPORT", "6432,6433")]);
        assert_eq!(
            ports("postgres://u:p@db1,db2/erp?sslmode=disable", &two),
            Ok(vec![6432, 6433])
        );
        assert!(ports("postgres://poller@a,b,c/erp", &two)
            .unwrap_err()
            .contains("2 ports for 3 hosts"));
        assert_eq!(ports("postgres://poller@db/erp", &env_of(&[])), Ok(vec![5432]));
        // A URL's own connect_timeout=0 (wait for ever) is not overridden.
        let t = target_in(
            "postgres://db/erp?connect_timeout=0",
            &env_of(&[("PGCONNECT_TIMEOUT", "9")]),
        )
        .unwrap();
        assert_eq!(t.config.get_connect_timeout(), None);
        assert!(target_in("", &env_of(&[("PGREQUIREAUTH", "scram-sha-256")]))
            .err()
            .unwrap()
            .contains("PGREQUIREAUTH"));
        let t = target_in("", &env_of(&[("PGCHANNELBINDING", "require")])).unwrap();
        assert_eq!(t.config.get_channel_binding(), ChannelBinding::Require);
    }

    #[test]
    fn no_host_gets_a_password_the_file_gives_another() {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("pg_webhooks-conninfo-pgpass-some-{}", std::process::id()));
        std::fs::write(&path, "a:5432:erp:poller:pw-a-9f3\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let leaked: &'static str = Box::leak(path.display().to_string().into_boxed_str());
        let vars: &'static [(&'static str, &'static str)] = Box::leak(Box::new([("PGPASSFILE", leaked)]));
        let env = env_of(vars);
        let e = target_in("postgres://poller@a,z/erp", &env).err().unwrap();
        assert!(e.contains("or some none"), "{e}");
        assert!(!e.contains("pw-"), "{e}");
        assert_eq!(
            target_in("postgres://poller@z/erp", &env)
                .unwrap()
                .config
                .get_password(),
            None
        );
        std::fs::remove_file(&path).unwrap();
    }
}
