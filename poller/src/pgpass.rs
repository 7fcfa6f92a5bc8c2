//! libpq's password file (`~/.pgpass`, or the file `PGPASSFILE` names):
//! lines of `hostname:port:database:username:password`, a field of just
//! `*` matching anything, `\:` and `\\` escaping, `#` starting a comment;
//! the first line that matches wins. As libpq, a file readable by group or others is not
//! read (one warning says why), and a host that is the default socket
//! directory matches `localhost`.

use std::path::{Path, PathBuf};

/// Where the Debian build of libpq looks for Unix sockets by default.
pub const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";

/// What a connection is looked up by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key<'a> {
    pub host: &'a str,
    pub port: u16,
    pub database: &'a str,
    pub user: &'a str,
}

/// The file libpq would read: `PGPASSFILE`, else `~/.pgpass`.
pub fn default_path(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    env("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|home| Path::new(&home).join(".pgpass")))
}

/// The password for `key` in the file at `path`; none if the file is
/// missing, not private, or has no matching line.
pub fn lookup(path: &Path, key: &Key<'_>) -> Option<String> {
    find(&read(path)?, key)
}

/// The file's text; none if it is missing or not private.
pub fn read(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    if meta.permissions().mode() & 0o077 != 0 {
        // Once: the poller connects again and again.
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            tracing::warn!(
                file = %path.display(),
                "password file has group or world access and is not read; permissions should be u=rw (0600) or less"
            )
        });
        return None;
    }
    std::fs::read_to_string(path).ok()
}

/// The first matching line's password.
pub fn find(text: &str, key: &Key<'_>) -> Option<String> {
    let host = if key.host.is_empty() || key.host == DEFAULT_SOCKET_DIR {
        "localhost"
    } else {
        key.host
    };
    let port = key.port.to_string();
    let wanted = [host, port.as_str(), key.database, key.user];
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(fields)
        .find(|f| f[..4].iter().zip(wanted).all(|(have, want)| have.matches(want)))
        .map(|f| f[4].text.clone())
}

/// A field, unescaped; `any` for one that is just an unescaped `*`.
struct Field {
    text: String,
    any: bool,
}

impl Field {
    fn matches(&self, want: &str) -> bool {
        self.any || self.text == want
    }
}

/// The five fields of a line, unescaped; none for a line with fewer. As
/// libpq, the password ends at the next unescaped colon.
fn fields(line: &str) -> Option<Vec<Field>> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut out = Vec::with_capacity(5);
    let (mut text, mut raw) = (String::new(), String::new());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                raw.push('\\');
                if let Some(next) = chars.next() {
                    raw.push(next);
                    text.push(next);
                }
            }
            ':' => {
                out.push(Field {
                    any: raw == "*",
                    text: std::mem::take(&mut text),
                });
                raw.clear();
                if out.len() == 5 {
                    return Some(out);
                }
            }
            c => {
                raw.push(c);
                text.push(c);
            }
        }
    }
    out.push(Field { any: raw == "*", text });
    (out.len() == 5).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key<'a>(host: &'a str, port: u16, database: &'a str, user: &'a str) -> Key<'a> {
        Key {
            host,
            port,
            database,
            user,
        }
    }

    #[test]
    fn first_matching_line_wins_with_wildcards_and_escapes() {
        let text = "# comment\n\
                    db1:5432:erp:poller:first\n\
                    *:5432:*:poller:any\\:host\n\
                    db2:*:erp:poller:pa\\\\ss\\:with:colons\n\
                    \\*:5432:erp:literal:star\n\
                    short:line\n";
        assert_eq!(find(text, &key("db1", 5432, "erp", "poller")).as_deref(), Some("first"));
        assert_eq!(
            find(text, &key("db3", 5432, "x", "poller")).as_deref(),
            Some("any:host")
        );
        assert_eq!(
            find(text, &key("db2", 6432, "erp", "poller")).as_deref(),
            Some("pa\\ss:with")
        );
        // Only a bare * is a wildcard; an escaped one is the character.
        assert_eq!(find(text, &key("*", 5432, "erp", "literal")).as_deref(), Some("star"));
        assert_eq!(find(text, &key("db9", 5432, "erp", "literal")), None);
        assert_eq!(find(text, &key("db2", 6432, "erp", "other")), None);
        assert_eq!(
            find("localhost:5432:erp:u:s\n", &key(DEFAULT_SOCKET_DIR, 5432, "erp", "u")).as_deref(),
            Some("s")
        );
        assert_eq!(find("localhost:5432:erp:u:s\n", &key("/tmp", 5432, "erp", "u")), None);
    }

    #[test]
    fn a_file_others_can_read_is_not_read() {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("pg_webhooks-pgpass-{}", std::process::id()));
        std::fs::write(&path, "*:*:*:*:secret\n").unwrap();
        let k = key("h", 5432, "d", "u");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(lookup(&path, &k), None);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(lookup(&path, &k).as_deref(), Some("secret"));
        std::fs::remove_file(&path).unwrap();
    }
}
