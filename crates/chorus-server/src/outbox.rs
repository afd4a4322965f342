//! A connection's bounded outgoing queue.
//!
//! Ordered messages (joins, leaves, presence, replies) queue in order, up to a
//! capacity; a connection that lets it fill is a slow consumer and is closed
//! with a code telling it to reconnect and resync, so the server never buffers
//! without bound or blocks a room on one reader. Cursor updates do not queue:
//! each sender has one slot per room, and a newer update replaces one still
//! waiting, so a slow reader gets the latest cursors instead of a backlog.
//!
//! Messages are serialized once by whoever fans them out and shared between
//! all outboxes (the text is reference-counted).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::extract::ws::Utf8Bytes;
use chorus_protocol::{ErrorCode, ServerMessage};
use tokio::sync::Notify;
use tracing::info;

/// Identifies a cursor slot: (room, sending connection).
pub type CursorKey = (Arc<str>, Arc<str>);

/// How the connection is to be closed, once what is queued has gone out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closing {
    pub code: u16,
    pub reason: String,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Utf8Bytes>,
    cursors: HashMap<CursorKey, Utf8Bytes>,
    /// Slot keys in first-filled order, so cursors go out fairly.
    cursor_order: VecDeque<CursorKey>,
    closing: Option<Closing>,
}

/// What the writer takes out in one go.
pub struct Batch {
    pub messages: Vec<Utf8Bytes>,
    pub closing: Option<Closing>,
}

pub struct Outbox {
    state: Mutex<State>,
    notify: Notify,
    capacity: usize,
}

impl Outbox {
    pub fn new(capacity: usize) -> Self {
        Self { state: Mutex::new(State::default()), notify: Notify::new(), capacity }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues an ordered message. Returns false (and starts closing the
    /// connection as a slow consumer) when the queue is full.
    pub fn push(&self, msg: Utf8Bytes) -> bool {
        let mut s = self.lock();
        if s.closing.is_some() {
            return false;
        }
        if s.queue.len() >= self.capacity {
            s.closing = Some(Closing {
                code: chorus_protocol::close::SLOW_CONSUMER,
                reason: "outgoing queue full: reconnect and resync".into(),
            });
            drop(s);
            self.notify.notify_one();
            return false;
        }
        s.queue.push_back(msg);
        drop(s);
        self.notify.notify_one();
        true
    }

    /// Queues an ordered message and drops the sender's waiting cursor, which
    /// the message makes stale (the sender left).
    pub fn push_clearing_cursor(&self, msg: Utf8Bytes, key: &CursorKey) -> bool {
        let mut s = self.lock();
        if s.cursors.remove(key).is_some() {
            s.cursor_order.retain(|k| k != key);
        }
        drop(s);
        self.push(msg)
    }

    /// Puts a cursor update in its sender's slot, replacing any still waiting.
    pub fn push_cursor(&self, key: CursorKey, msg: Utf8Bytes) {
        let mut s = self.lock();
        if s.closing.is_some() {
            return;
        }
        if s.cursors.insert(key.clone(), msg).is_none() {
            s.cursor_order.push_back(key);
        }
        drop(s);
        self.notify.notify_one();
    }

    /// Closes the connection after what is already queued.
    pub fn close(&self, code: u16, reason: impl Into<String>) {
        let mut s = self.lock();
        if s.closing.is_none() {
            s.closing = Some(Closing { code, reason: reason.into() });
        }
        drop(s);
        self.notify.notify_one();
    }

    pub fn is_closing(&self) -> bool {
        self.lock().closing.is_some()
    }

    /// Number of ordered messages waiting.
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until there is something to send, then takes all of it: ordered
    /// messages first, then the cursor slots.
    pub async fn next_batch(&self) -> Batch {
        loop {
            let notified = self.notify.notified();
            {
                let mut s = self.lock();
                if !s.queue.is_empty() || !s.cursor_order.is_empty() || s.closing.is_some() {
                    let mut messages: Vec<Utf8Bytes> = s.queue.drain(..).collect();
                    let order: Vec<CursorKey> = s.cursor_order.drain(..).collect();
                    for key in order {
                        if let Some(m) = s.cursors.remove(&key) {
                            messages.push(m);
                        }
                    }
                    return Batch { messages, closing: s.closing.clone() };
                }
            }
            notified.await;
        }
    }
}

/// Tells a connection what was wrong with one of its requests, and logs it.
pub fn report_error(outbox: &Outbox, conn: &str, id: Option<u64>, room: Option<&str>, code: ErrorCode, message: String) {
    metrics::counter!("chorus_errors_total", "code" => code.as_str()).increment(1);
    info!(%conn, %code, room = room.unwrap_or("-"), "{message}");
    outbox.push(ServerMessage::error(id, room, code, message).to_json().into());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(room: &str, conn: &str) -> CursorKey {
        (Arc::from(room), Arc::from(conn))
    }

    #[tokio::test]
    async fn newer_cursors_replace_waiting_ones() {
        let o = Outbox::new(10);
        o.push_cursor(key("r", "a"), "a1".into());
        o.push_cursor(key("r", "b"), "b1".into());
        o.push_cursor(key("r", "a"), "a2".into());
        o.push("ordered".into());
        let b = o.next_batch().await;
        assert_eq!(b.messages, ["ordered", "a2", "b1"]);
        assert!(b.closing.is_none());
    }

    #[tokio::test]
    async fn a_full_queue_closes_as_slow_consumer() {
        let o = Outbox::new(2);
        assert!(o.push("1".into()));
        assert!(o.push("2".into()));
        assert!(!o.push("3".into()));
        let b = o.next_batch().await;
        assert_eq!(b.messages, ["1", "2"]);
        assert_eq!(b.closing.unwrap().code, chorus_protocol::close::SLOW_CONSUMER);
    }

    #[tokio::test]
    async fn leaving_clears_the_stale_cursor() {
        let o = Outbox::new(10);
        o.push_cursor(key("r", "a"), "cursor".into());
        o.push_clearing_cursor("a left".into(), &key("r", "a"));
        assert_eq!(o.next_batch().await.messages, ["a left"]);
    }
}
