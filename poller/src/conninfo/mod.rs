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

mod environment;
mod verifiers;

use environment::{default_file, environment_defaults, with_env_ports, Env};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateRevocationListDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::Config;
use tokio_postgres_rustls::MakeRustlsConnect;
use verifiers::{read_certs, ChainOnly, Unverified};

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
pub(super) struct Split {
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
}
