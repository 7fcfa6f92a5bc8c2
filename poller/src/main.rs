use clap::Parser;
use pg_webhooks_poller::config::{Config, LogFormat};
use std::io::IsTerminal;
use std::process::ExitCode;
use tokio::signal::unix::{signal, SignalKind};

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PG_WEBHOOKS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).init(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    init_tracing(config.log_format);
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let (mut term, mut int) = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(t), Ok(i)) => (t, i),
        _ => {
            eprintln!("pg-webhooks-poller: error: cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("shutdown requested");
        let _ = stop.send(true);
    });
    match pg_webhooks_poller::run(config, shutdown).await {
        Ok(summary) => {
            tracing::info!(
                attempts = summary.attempts,
                succeeded = summary.succeeded,
                "poller stopped"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pg-webhooks-poller: error: {e}");
            ExitCode::FAILURE
        }
    }
}
