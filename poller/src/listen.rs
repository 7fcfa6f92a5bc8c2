//! A dedicated connection that LISTENs on `webhooks` and turns notifications
//! into wake-ups. NOTIFY is only a latency optimisation: the poll loop also
//! wakes on a jittered timer, so a lost notification costs latency, not events.

use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio_postgres::AsyncMessage;

pub const CHANNEL: &str = "webhooks";

pub async fn listen(url: String, wake: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        if *shutdown.borrow() || shutdown.has_changed().is_err() {
            return;
        }
        let connected = match crate::conninfo::target(&url) {
            Ok(target) => target
                .config
                .connect(target.tls)
                .await
                .map_err(|e| crate::db::error_text(&e)),
            Err(e) => Err(e),
        };
        match connected {
            Ok((client, mut connection)) => {
                let notify = wake.clone();
                let mut driver = tokio::spawn(async move {
                    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(message) = messages.next().await {
                        match message {
                            Ok(AsyncMessage::Notification(_)) => notify.notify_one(),
                            Ok(_) => {}
                            Err(e) => return Err(e),
                        }
                    }
                    Ok(())
                });
                match client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                    Ok(()) => {
                        tracing::debug!("listening for notifications");
                        backoff = Duration::from_millis(100);
                        // Catch up on whatever was committed while nobody listened.
                        wake.notify_one();
                        tokio::select! {
                            result = &mut driver => {
                                let reason = match result {
                                    Ok(Err(e)) => e.to_string(),
                                    _ => "closed".to_owned(),
                                };
                                tracing::warn!(%reason, "LISTEN connection lost; falling back to polling until it is back");
                            }
                            _ = shutdown.changed() => return,
                        }
                    }
                    Err(e) => {
                        driver.abort();
                        tracing::warn!(error = %e, "LISTEN failed");
                    }
                }
                drop(client);
            }
            Err(e) => tracing::warn!(error = %e, "LISTEN connection failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
