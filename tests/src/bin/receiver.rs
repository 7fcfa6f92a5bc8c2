//! A standalone local receiver for trying the poller by hand: answers 200 to
//! everything on 127.0.0.1:<port> and prints how many requests arrived.
//!
//!     cargo run -p pg_webhooks_tests --bin receiver -- 8787

use pg_webhooks_tests::receiver::Receiver;
use std::process::ExitCode;
use std::time::Duration;

#[tokio::main]
async fn main() -> ExitCode {
    let port: u16 = match std::env::args().nth(1).map(|p| p.parse()) {
        Some(Ok(p)) => p,
        None => 0,
        Some(Err(_)) => {
            eprintln!("usage: receiver [PORT]");
            return ExitCode::from(2);
        }
    };
    let receiver = match Receiver::start_on(port).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("receiver: cannot listen on 127.0.0.1:{port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    receiver.keep_payload(false);
    println!("listening on {}", receiver.url("/"));
    let mut last = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let n = receiver.received().len();
        if n != last {
            println!("{n} requests ({}/s)", n - last);
            last = n;
        }
    }
}
