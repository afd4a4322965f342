//! Tokens that expire on an open connection.
//!
//! The server closes a connection with 4001 when its token's `exp` passes,
//! unless the client has sent `auth` with a fresh token first. With a
//! [`TokenSource`] in [`ConnectOptions`](crate::ConnectOptions), the client
//! asks it for a token on every (re)connection and again before the current
//! one expires (halfway through its remaining life, at most a minute early),
//! and sends it as `auth`; the server's `authenticated` tells the next
//! expiry. [`Client::refresh_token`](crate::Client::refresh_token) does the
//! same by hand.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chorus_protocol::ClientMessage;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

type Minted = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;

/// Makes a fresh token (from the application's backend, typically).
#[derive(Clone)]
pub struct TokenSource(Arc<dyn Fn() -> Minted + Send + Sync>);

impl TokenSource {
    /// A source from an async closure.
    pub fn new<F, Fut>(f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, String>> + Send + 'static,
    {
        Self(Arc::new(move || Box::pin(f())))
    }

    /// A fresh token.
    pub async fn get(&self) -> Result<String, String> {
        (self.0)().await
    }
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSource(..)")
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// How long before `expires_at` to send a fresh token: half the time left,
/// at most a minute.
pub(crate) fn refresh_delay(expires_at: u64, now: u64) -> Duration {
    let left = expires_at.saturating_sub(now);
    Duration::from_millis(left - (left / 2).min(60_000))
}

/// Sends a fresh token from `source` before each expiry that `expiry`
/// reports, until the connection's sender is gone.
pub(crate) async fn keep_fresh(source: TokenSource, mut expiry: watch::Receiver<Option<u64>>, out: mpsc::UnboundedSender<Message>) {
    loop {
        let Some(at) = *expiry.borrow_and_update() else {
            if expiry.changed().await.is_err() {
                return;
            }
            continue;
        };
        tokio::time::sleep(refresh_delay(at, now_ms())).await;
        match source.get().await {
            Ok(token) => {
                let auth = serde_json::to_string(&ClientMessage::Auth { id: None, token }).expect("serializes");
                if out.send(Message::Text(auth.into())).is_err() {
                    return;
                }
            }
            Err(e) => tracing::warn!("could not get a fresh token: {e}"),
        }
        // The answer (`authenticated`) moves the expiry on; without one (a
        // refused token, a failed source), try again a little later.
        if tokio::time::timeout(Duration::from_secs(5), expiry.changed()).await.is_ok_and(|r| r.is_err()) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refreshes_halfway_and_at_most_a_minute_early() {
        assert_eq!(refresh_delay(10_000, 0), Duration::from_millis(5_000));
        assert_eq!(refresh_delay(3_600_000, 0), Duration::from_millis(3_540_000));
        assert_eq!(refresh_delay(5, 10), Duration::ZERO);
    }
}
