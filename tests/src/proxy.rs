//! A forward proxy on 127.0.0.1:0 for tests: CONNECT tunnels (https
//! receivers) and absolute-form requests (http ones), optionally asking for
//! Basic credentials (407 otherwise). It records what it was asked.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request the proxy was asked: method and target (`host:port` for
/// CONNECT, the absolute URL otherwise), and whether it let it through.
#[derive(Debug, Clone)]
pub struct Asked {
    pub method: String,
    pub target: String,
    pub allowed: bool,
}

pub struct Proxy {
    pub port: u16,
    asked: Arc<Mutex<Vec<Asked>>>,
    /// Where every target is sent, whatever its name (the proxy resolves
    /// names itself: here to the test's receiver); none: to the target.
    route: Arc<Mutex<Option<SocketAddr>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads a request head (up to 16 KiB).
async fn head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if buf.len() > 16 * 1024 || stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    Some(buf)
}

async fn connect(target: &str, route: Option<SocketAddr>) -> Option<TcpStream> {
    match route {
        Some(addr) => TcpStream::connect(addr).await.ok(),
        None => TcpStream::connect(target).await.ok(),
    }
}

async fn serve(
    mut client: TcpStream,
    credentials: Option<String>,
    asked: Arc<Mutex<Vec<Asked>>>,
    route: Option<SocketAddr>,
) -> Option<()> {
    let head = head(&mut client).await?;
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target) = (first.next()?.to_owned(), first.next()?.to_owned());
    let authorized = credentials.as_ref().is_none_or(|want| {
        lines.any(|l| {
            l.split_once(':').is_some_and(|(name, value)| {
                name.eq_ignore_ascii_case("proxy-authorization") && value.trim() == format!("Basic {want}")
            })
        })
    });
    asked.lock().unwrap().push(Asked {
        method: method.clone(),
        target: target.clone(),
        allowed: authorized,
    });
    if !authorized {
        let _ = client
            .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await;
        return None;
    }
    let mut upstream;
    if method == "CONNECT" {
        upstream = connect(&target, route).await?;
        client
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .await
            .ok()?;
    } else {
        // http://host:port/path -> connect to host:port, send /path.
        let rest = target.strip_prefix("http://")?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        upstream = connect(authority, route).await?;
        let path = if path.is_empty() { "/" } else { path };
        let rewritten = text.replacen(&target, path, 1);
        upstream.write_all(rewritten.as_bytes()).await.ok()?;
    }
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await.ok()?;
    Some(())
}

impl Proxy {
    /// `credentials`: base64 of `user:password` the proxy asks for, or none.
    pub async fn start(credentials: Option<String>) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let route = Arc::new(Mutex::new(None));
        let (shared, routes) = (asked.clone(), route.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let to = *routes.lock().unwrap();
                tokio::spawn(serve(stream, credentials.clone(), shared.clone(), to));
            }
        });
        Ok(Proxy {
            port,
            asked,
            route,
            task,
        })
    }

    /// Sends every target to `addr`.
    pub fn routing_to(self, addr: SocketAddr) -> Proxy {
        *self.route.lock().unwrap() = Some(addr);
        self
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn asked(&self) -> Vec<Asked> {
        self.asked.lock().unwrap().clone()
    }
}
