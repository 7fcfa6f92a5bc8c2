//! Connecting to PostgreSQL as libpq would: `sslmode` with libpq's meaning
//! (`disable`, `allow`, `prefer`, `require`, `verify-ca`, `verify-full`),
//! `sslrootcert`, and client certificates (`sslcert`/`sslkey`), from the
//! connection string or the `PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT`,
//! `PGSSLKEY` and `PGSSLCRL` environment variables (`sslcrl`, and
//! `~/.postgresql/root.crl`, for revoked certificates). TLS is rustls (as
//! for receivers). Not as libpq: a server certificate must name its host in
//! its subjectAltName (rustls reads no CN), `sslrootcert=system` is refused,
//! and a client certificate named but missing is an error.
//!
//! tokio-postgres knows only disable/prefer/require and no certificate
//! options, so those are taken out of the string here and turned into a
//! rustls configuration; the rest goes to tokio-postgres as it was.
//!
//! What the string leaves out comes from libpq's environment variables
//! (`PGHOST`, `PGHOSTADDR`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`,
//! `PGAPPNAME`, `PGOPTIONS`, `PGCONNECT_TIMEOUT`, `PGTARGETSESSIONATTRS`),
//! then the password file (`~/.pgpass` or `PGPASSFILE`), so a password need
//! never be on a command line. `PGSERVICE` (pg_service.conf) is refused
//! rather than ignored: ignoring it could connect somewhere else.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::config::{ChannelBinding, Host, LoadBalanceHosts, SslMode, SslNegotiation, TargetSessionAttrs};
use tokio_postgres::Config;
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's sslmode values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        Ok(match s {
            "disable" => Mode::Disable,
            "allow" => Mode::Allow,
            "prefer" => Mode::Prefer,
            "require" => Mode::Require,
            "verify-ca" => Mode::VerifyCa,
            "verify-full" => Mode::VerifyFull,
            other => {
                return Err(format!(
                    "invalid sslmode {other:?} (use disable, allow, prefer, require, verify-ca or verify-full)"
                ))
            }
        })
    }
}

/// The TLS options of a connection string, with what is left of it.
#[derive(Debug, Default, PartialEq, Eq)]
struct Split {
    rest: String,
    /// Every option the string gives (TLS ones too), by name.
    keys: Vec<String>,
    /// Where a URL's host list is in `rest` (libpq's `host1:port1,host2`).
    hosts: Option<std::ops::Range<usize>>,
    sslmode: Option<String>,
    sslrootcert: Option<String>,
    sslcert: Option<String>,
    sslkey: Option<String>,
    sslcrl: Option<String>,
}

const TLS_KEYS: [&str; 5] = ["sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl"];

fn take(split: &mut Split, key: &str, value: String) {
    match key {
        "sslmode" => split.sslmode = Some(value),
        "sslrootcert" => split.sslrootcert = Some(value),
        "sslcert" => split.sslcert = Some(value),
        "sslcrl" => split.sslcrl = Some(value),
        _ => split.sslkey = Some(value),
    }
}

/// Takes the TLS options out of a URL (`postgres://...?sslmode=...`) or a
/// `key=value` string. Multi-host URLs stay as they are (the host part is
/// not touched).
fn split(conn: &str) -> Result<Split, String> {
    let mut out = Split::default();
    let trimmed = conn.trim();
    let scheme = ["postgresql://", "postgres://"]
        .into_iter()
        .find(|p| trimmed.starts_with(p));
    if let Some(scheme) = scheme {
        // As libpq: user info ends at the first '@' before any '/', and may
        // hold a raw '?' (a password's); the options start after the hosts.
        let after = &trimmed[scheme.len()..];
        let hosts_at = match after.find(['@', '/']) {
            Some(i) if after.as_bytes()[i] == b'@' => scheme.len() + i + 1,
            _ => scheme.len(),
        };
        let hosts_end = trimmed[hosts_at..]
            .find(['/', '?'])
            .map_or(trimmed.len(), |i| hosts_at + i);
        out.hosts = Some(hosts_at..hosts_end);
        let Some(q) = trimmed[hosts_at..].find('?').map(|i| hosts_at + i) else {
            out.rest = trimmed.to_owned();
            return Ok(out);
        };
        let (base, query) = (&trimmed[..q], &trimmed[q + 1..]);
        // Percent-decoded, '+' kept (libpq does not read it as a space).
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|v| v.into_owned())
                .map_err(|_| "invalid database URL: an option is not valid UTF-8 once decoded".to_owned())
        };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let key = decode(k)?;
            out.keys.push(key.clone());
            if TLS_KEYS.contains(&key.as_str()) {
                take(&mut out, &key, decode(v)?);
            } else {
                kept.push(pair);
            }
        }
        out.rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return Ok(out);
    }
    // key = value pairs, values optionally single-quoted with \' and \\.
    let mut rest = Vec::new();
    let mut chars = trimmed.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| !c.is_whitespace() && *c != '=')).collect();
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            // Not the token itself: it may be part of a password.
            return Err(format!(
                "invalid connection string: option {} has no value (postgres://... or key=value pairs)",
                rest.len() + 1
            ));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        let mut raw = String::new();
        if chars.peek() == Some(&'\'') {
            raw.push(chars.next().unwrap_or('\''));
            loop {
                match chars.next() {
                    Some('\\') => {
                        raw.push('\\');
                        let c = chars.next().ok_or("invalid connection string: unterminated quote")?;
                        raw.push(c);
                        value.push(c);
                    }
                    Some('\'') => {
                        raw.push('\'');
                        break;
                    }
                    Some(c) => {
                        raw.push(c);
                        value.push(c);
                    }
                    None => return Err("invalid connection string: unterminated quote".to_owned()),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    let c = chars.next().ok_or("invalid connection string: trailing backslash")?;
                    raw.push('\\');
                    raw.push(c);
                    value.push(c);
                } else {
                    raw.push(c);
                    value.push(c);
                }
            }
        }
        out.keys.push(key.clone());
        if TLS_KEYS.contains(&key.as_str()) {
            take(&mut out, &key, value);
        } else {
            rest.push(format!("{key}={raw}"));
        }
    }
    out.rest = rest.join(" ");
    Ok(out)
}

/// The environment, as a function so that tests can give their own.
type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Where libpq looks for a file the string and the environment do not name.
fn default_file(env: Env<'_>, name: &str) -> Option<PathBuf> {
    let home = env("HOME")?;
    let path = Path::new(&home).join(".postgresql").join(name);
    path.exists().then_some(path)
}

/// Fills in, as libpq does, what the connection string leaves out: from the
/// environment, then defaults (the default socket directory, the operating
/// system's user name, a database named as the user), then the password file.
fn environment_defaults(config: &mut Config, keys: &[String], env: Env<'_>) -> Result<(), String> {
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
    if !given("channel_binding") {
        if let Some(value) = env("PGCHANNELBINDING") {
            config.channel_binding(match value.as_str() {
                "disable" => ChannelBinding::Disable,
                "prefer" => ChannelBinding::Prefer,
                "require" => ChannelBinding::Require,
                other => {
                    return Err(format!(
                        "invalid PGCHANNELBINDING {other:?} (use disable, prefer or require)"
                    ))
                }
            });
        }
    }
    if !given("load_balance_hosts") {
        if let Some(value) = env("PGLOADBALANCEHOSTS") {
            config.load_balance_hosts(match value.as_str() {
                "disable" => LoadBalanceHosts::Disable,
                "random" => LoadBalanceHosts::Random,
                other => return Err(format!("invalid PGLOADBALANCEHOSTS {other:?} (use disable or random)")),
            });
        }
    }
    if !given("sslnegotiation") {
        if let Some(value) = env("PGSSLNEGOTIATION") {
            config.ssl_negotiation(match value.as_str() {
                "postgres" => SslNegotiation::Postgres,
                "direct" => SslNegotiation::Direct,
                other => return Err(format!("invalid PGSSLNEGOTIATION {other:?} (use postgres or direct)")),
            });
        }
    }
    if !given("target_session_attrs") {
        if let Some(attrs) = env("PGTARGETSESSIONATTRS") {
            config.target_session_attrs(match attrs.as_str() {
                "any" => TargetSessionAttrs::Any,
                "read-write" => TargetSessionAttrs::ReadWrite,
                "read-only" => TargetSessionAttrs::ReadOnly,
                other => {
                    return Err(format!(
                        "PGTARGETSESSIONATTRS {other:?} is not supported (use any, read-write or read-only)"
                    ))
                }
            });
        }
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

/// A URL whose hosts name no port gets PGPORT's: tokio-postgres would give
/// each one 5432, libpq gives PGPORT.
fn with_env_ports(parts: &Split, env: Env<'_>) -> Result<String, String> {
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
        let password = crate::pgpass::lookup(file, &key);
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

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read {what} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{what} {} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// Accepts any server certificate (sslmode prefer/require without a root
/// certificate: encrypted, not authenticated, as libpq does), still checking
/// that the server holds the certificate's key.
#[derive(Debug)]
struct Unverified(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// verify-ca: the chain must lead to a trusted root; the name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// A connection string made ready to connect: tokio-postgres's config and
/// the TLS connector its sslmode calls for.
pub struct Target {
    pub config: Config,
    pub tls: MakeRustlsConnect,
    pub mode: Mode,
}

/// Reads a connection string (and the PG* environment) as libpq would;
/// certificate files are read now, so a bad one is one clear error at once.
pub fn target(conn: &str) -> Result<Target, String> {
    target_in(conn, &|name: &str| std::env::var(name).ok().filter(|v| !v.is_empty()))
}

fn target_in(conn: &str, env: Env<'_>) -> Result<Target, String> {
    let parts = split(conn)?;
    let rest = with_env_ports(&parts, env)?;
    let mode: Mode = parts
        .sslmode
        .or_else(|| env("PGSSLMODE"))
        .as_deref()
        .unwrap_or("prefer")
        .parse()?;
    let mut config = Config::from_str(&rest).map_err(|e| {
        // The cause names the option (key=value form) that is wrong, never
        // a value; a URL's is left out (its user info could be in it).
        match std::error::Error::source(&e) {
            Some(cause) if !parts.rest.contains("://") => format!("invalid database URL: {e}: {cause}"),
            _ => format!("invalid database URL: {e} (postgres://user@host:port/database?options)"),
        }
    })?;
    // Whatever sslmode the string holds was taken out above: one left means
    // it was not read as the user meant it, and guessing could downgrade.
    if config.get_ssl_mode() != SslMode::Prefer {
        return Err("invalid database URL: its sslmode could not be read".to_owned());
    }
    environment_defaults(&mut config, &parts.keys, env)?;
    // Seen in pg_stat_activity; a startup parameter, which a pooler keeps
    // per client (a SET would stay on the server connection).
    if config.get_application_name().is_none() {
        config.application_name("pg-webhooks-poller");
    }
    // libpq: hostaddr alone names the hosts (tokio-postgres needs a host).
    if config.get_hosts().is_empty() {
        for addr in config.get_hostaddrs().to_vec() {
            config.host(addr.to_string());
        }
    }
    let sockets_only = !config.get_hosts().is_empty() && config.get_hosts().iter().all(|h| !matches!(h, Host::Tcp(_)));
    config.ssl_mode(match mode {
        // libpq ignores sslmode on Unix sockets: there is nothing to encrypt.
        _ if sockets_only => SslMode::Disable,
        Mode::Disable => SslMode::Disable,
        // allow: plaintext first, TLS if the server insists; tokio-postgres
        // has no such order, and prefer connects to the same servers.
        Mode::Allow | Mode::Prefer => SslMode::Prefer,
        Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
    });
    let given = |v: Option<String>, var: &str| v.filter(|v| !v.is_empty()).or_else(|| env(var)).map(PathBuf::from);
    let rootcert = given(parts.sslrootcert, "PGSSLROOTCERT").or_else(|| default_file(env, "root.crt"));
    if rootcert.as_deref() == Some(Path::new("system")) {
        return Err("sslrootcert=system is not supported: name a PEM file of the CA certificates to trust".to_owned());
    }
    let crl = given(parts.sslcrl, "PGSSLCRL").or_else(|| default_file(env, "root.crl"));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?;
    // libpq: with a root certificate, require checks the chain as verify-ca.
    let verify = match (mode, &rootcert) {
        (Mode::VerifyCa | Mode::VerifyFull, None) => {
            return Err(format!(
                "sslmode={} needs a root certificate: set sslrootcert (or PGSSLROOTCERT), or put it in ~/.postgresql/root.crt",
                if mode == Mode::VerifyCa { "verify-ca" } else { "verify-full" }
            ))
        }
        (Mode::VerifyFull, Some(path)) => Some((path, true)),
        (Mode::VerifyCa | Mode::Require, Some(path)) => Some((path, false)),
        _ => None,
    };
    let builder = match verify {
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider.clone()))),
        Some((path, full)) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(path, "sslrootcert")? {
                roots
                    .add(cert)
                    .map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
            }
            let mut crls = Vec::new();
            if let Some(crl) = &crl {
                crls = CertificateRevocationListDer::pem_file_iter(crl)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| format!("cannot read sslcrl {}: {e}", crl.display()))?;
            }
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .with_crls(crls)
                .build()
                .map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
            if full {
                builder.with_webpki_verifier(webpki)
            } else {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki)))
            }
        }
    };
    let cert = given(parts.sslcert, "PGSSLCERT").or_else(|| default_file(env, "postgresql.crt"));
    let key = given(parts.sslkey, "PGSSLKEY").or_else(|| default_file(env, "postgresql.key"));
    let mut tls = match (cert, key) {
        (Some(cert), Some(key)) => {
            let chain = read_certs(&cert, "sslcert")?;
            let key =
                PrivateKeyDer::from_pem_file(&key).map_err(|e| format!("cannot read sslkey {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("sslcert and sslkey do not make a client certificate: {e}"))?
        }
        (Some(cert), None) => {
            return Err(format!("sslcert {} given without sslkey", cert.display()));
        }
        (None, Some(_)) | (None, None) => builder.with_no_client_auth(),
    };
    // As libpq 17 sends: needed by servers that take direct TLS
    // (sslnegotiation=direct), ignored by the others.
    tls.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(Target {
        config,
        tls: MakeRustlsConnect::new(tls),
        mode,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_options_are_taken_out_of_urls_and_key_value_strings() {
        let s = split("postgres://u:p@h1:5432,h2:5433/db?sslmode=verify-full&application_name=x&sslrootcert=%2Ftmp%2Fca%20b+c.pem").unwrap();
        assert_eq!(s.rest, "postgres://u:p@h1:5432,h2:5433/db?application_name=x");
        assert_eq!(s.sslmode.as_deref(), Some("verify-full"));
        assert_eq!(s.sslrootcert.as_deref(), Some("/tmp/ca b+c.pem"));
        // A raw '?' in the password is not the start of the options.
        let s = split("postgres://u:a?b@db/erp?sslmode=require").unwrap();
        assert_eq!(s.rest, "postgres://u:a?b@db/erp");
        assert_eq!(s.sslmode.as_deref(), Some("require"));
        assert!(split("host=127.0.0.1 sslmode").unwrap_err().contains("has no value"));
        assert!(split("host='127.0.0.1").unwrap_err().contains("unterminated quote"));
        let s = split(r"host=127.0.0.1 sslmode = require sslcert='/a b/c.crt' password='it\'s' user=x").unwrap();
        assert_eq!(s.rest, r"host=127.0.0.1 password='it\'s' user=x");
        assert_eq!(s.sslmode.as_deref(), Some("require"));
        assert_eq!(s.sslcert.as_deref(), Some("/a b/c.crt"));
        let s = split("postgres://h/db").unwrap();
        assert_eq!(s.rest, "postgres://h/db");
        assert_eq!(s.sslmode, None);
    }

    #[test]
    fn bad_tls_settings_are_one_clear_error() {
        assert!(target("postgres://h/db?sslmode=verify")
            .err()
            .unwrap()
            .contains("invalid sslmode \"verify\""));
        let e = target("postgres://h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem")
            .err()
            .unwrap();
        assert!(e.starts_with("cannot read sslrootcert /nonexistent/ca.pem"), "{e}");
        let e = target("postgres://h/db?sslmode=require&sslcert=/nonexistent/c.pem")
            .err()
            .unwrap();
        assert!(e.contains("without sslkey"), "{e}");
        assert!(target("postgres://h/db?sslmode=disable").is_ok());
        // Never the text of a password in an error.
        let e = target("Postgres://u:s3cr3t@h/db?sslmode=require").err().unwrap();
        assert!(!e.contains("s3cr3t"), "{e}");
        let e = target("host=h password=s3 cr3t").err().unwrap();
        assert!(!e.contains("cr3t"), "{e}");
        // Unix sockets: no TLS whatever sslmode says, as libpq.
        let t = target("host=/var/run/postgresql sslmode=require").unwrap();
        assert_eq!(t.config.get_ssl_mode(), SslMode::Disable);
    }

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
