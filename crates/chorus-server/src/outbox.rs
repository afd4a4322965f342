//! A connection's bounded outgoing queue.
//!
//! Ordered messages (joins, leaves, presence, replies) queue in order, up to a
//! number of messages and a number of bytes; a connection that lets it fill
//! is a slow consumer and is closed with a code telling it to reconnect and
//! resync, so the server never buffers without bound or blocks a room on one
//! reader. Bytes count from the moment a message is queued until the writer
//! has handed it (with the rest of its batch) to the socket, so what a writer blocked on a reader that
//! stopped reading still holds counts too. A large reply (a document's text,
//! a room's values) is checked against the budget before it is built
//! ([`Outbox::reserve`]): a reader that keeps asking for megabytes without
//! reading is closed before the server spends memory on the next answer. Cursor updates do not queue:
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
    /// Bytes queued, in cursor slots, or taken by the writer and not yet
    /// handed to the socket.
    bytes: usize,
}

impl State {
    fn slow_consumer(&mut self, why: &str) {
        if self.closing.is_none() {
            info!("slow consumer: {why}; closing");
            metrics::counter!("chorus_slow_consumers_total").increment(1);
            self.closing = Some(Closing {
                code: chorus_protocol::close::SLOW_CONSUMER,
                reason: "outgoing queue full: reconnect and resync".into(),
            });
        }
    }
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
    max_bytes: usize,
}

impl Outbox {
    /// An outbox holding at most `capacity` ordered messages and `max_bytes`
    /// bytes of messages.
    pub fn new(capacity: usize, max_bytes: usize) -> Self {
        Self { state: Mutex::new(State::default()), notify: Notify::new(), capacity, max_bytes }
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
        if s.queue.len() >= self.capacity || s.bytes + msg.len() > self.max_bytes {
            let why = format!("{} messages and {} bytes waiting, {} more bytes to queue", s.queue.len(), s.bytes, msg.len());
            s.slow_consumer(&why);
            drop(s);
            self.notify.notify_one();
            return false;
        }
        s.bytes += msg.len();
        s.queue.push_back(msg);
        drop(s);
        self.notify.notify_one();
        true
    }

    /// Queues an ordered message and drops the sender's waiting cursor, which
    /// the message makes stale (the sender left).
    pub fn push_clearing_cursor(&self, msg: Utf8Bytes, key: &CursorKey) -> bool {
        let mut s = self.lock();
        if let Some(old) = s.cursors.remove(key) {
            s.bytes -= old.len();
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
        let old = s.cursors.get(&key).map_or(0, |m| m.len());
        if s.bytes - old + msg.len() > self.max_bytes {
            s.slow_consumer("cursor updates over the byte budget");
            drop(s);
            self.notify.notify_one();
            return;
        }
        s.bytes = s.bytes - old + msg.len();
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

    /// Checks, before a reply of about `bytes` is built, that it would fit.
    /// When it would not, the connection is closed as a slow consumer and
    /// the reply is not to be built. Also false when already closing.
    pub fn reserve(&self, bytes: usize) -> bool {
        let mut s = self.lock();
        if s.closing.is_some() {
            return false;
        }
        if s.bytes.saturating_add(bytes) > self.max_bytes {
            let why = format!("{} bytes waiting, a reply of about {bytes} bytes asked for", s.bytes);
            s.slow_consumer(&why);
            drop(s);
            self.notify.notify_one();
            return false;
        }
        true
    }

    /// The writer has handed `bytes` of taken messages to the socket.
    pub fn sent(&self, bytes: usize) {
        let mut s = self.lock();
        s.bytes = s.bytes.saturating_sub(bytes);
    }

    /// Bytes queued or held by the writer.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Number of ordered messages waiting.
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until there is something to send, then takes all of it: ordered
    /// messages first, then the cursor slots. Their bytes count until the
    /// writer reports them [`sent`](Outbox::sent).
    pub async fn next_batch(&self) -> Batch {
        let mut messages = Vec::new();
        let closing = self.next_batch_into(&mut messages).await;
        Batch { messages, closing }
    }

    /// [`next_batch`](Outbox::next_batch) into the writer's own vector
    /// (empty when called), which keeps its capacity from batch to batch: a
    /// reader in a busy document takes a batch for nearly every op.
    pub async fn next_batch_into(&self, messages: &mut Vec<Utf8Bytes>) -> Option<Closing> {
        self.next_batch_after(0, messages).await
    }

    /// [`next_batch_into`](Outbox::next_batch_into) for a writer that has
    /// sent `sent` bytes of its batch before: taken off the count (as by
    /// [`sent`](Outbox::sent)) in the lock hold that looks for the next
    /// batch, so a writer takes the lock once per batch.
    pub async fn next_batch_after(&self, mut sent: usize, messages: &mut Vec<Utf8Bytes>) -> Option<Closing> {
        loop {
            let notified = self.notify.notified();
            {
                let mut s = self.lock();
                s.bytes = s.bytes.saturating_sub(std::mem::take(&mut sent));
                if !s.queue.is_empty() || !s.cursor_order.is_empty() || s.closing.is_some() {
                    messages.extend(s.queue.drain(..));
                    while let Some(key) = s.cursor_order.pop_front() {
                        if let Some(m) = s.cursors.remove(&key) {
                            messages.push(m);
                        }
                    }
                    return s.closing.clone();
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
        let o = Outbox::new(10, 1 << 20);
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
        let o = Outbox::new(2, 1 << 20);
        assert!(o.push("1".into()));
        assert!(o.push("2".into()));
        assert!(!o.push("3".into()));
        let b = o.next_batch().await;
        assert_eq!(b.messages, ["1", "2"]);
        assert_eq!(b.closing.unwrap().code, chorus_protocol::close::SLOW_CONSUMER);
    }

    #[tokio::test]
    async fn bytes_count_until_the_writer_has_sent_them() {
        let o = Outbox::new(100, 10);
        assert!(o.push("12345".into()));
        let b = o.next_batch().await;
        assert_eq!(b.messages, ["12345"]);
        // Taken by the writer but not written: still counted.
        assert_eq!(o.bytes(), 5);
        assert!(o.push("1234".into()));
        assert!(!o.reserve(2), "a reply that would not fit is not to be built");
        let b = o.next_batch().await;
        assert_eq!(b.closing.unwrap().code, chorus_protocol::close::SLOW_CONSUMER);
        assert_eq!(b.messages, ["1234"]);
    }

    #[tokio::test]
    async fn a_writer_hands_its_batch_back_when_it_takes_the_next() {
        let o = Outbox::new(100, 10);
        let mut messages = Vec::new();
        assert!(o.push("12345".into()));
        assert!(o.next_batch_after(0, &mut messages).await.is_none());
        // Being written: still counted.
        assert_eq!(o.bytes(), 5);
        messages.clear();
        assert!(o.push("1234".into()));
        assert!(o.next_batch_after(5, &mut messages).await.is_none());
        assert_eq!((messages.len(), o.bytes()), (1, 4));
    }

    #[tokio::test]
    async fn a_message_over_the_byte_budget_closes_as_slow_consumer() {
        let o = Outbox::new(100, 10);
        assert!(o.push("12345".into()));
        o.sent(5);
        assert!(o.reserve(10));
        assert!(o.push("1234567890".into()));
        assert!(!o.push("1".into()));
        assert!(o.is_closing());
        let o = Outbox::new(100, 10);
        o.push_cursor(key("r", "a"), "12345678".into());
        o.push_cursor(key("r", "a"), "123456789".into());
        assert!(!o.is_closing(), "a replaced cursor no longer counts");
        o.push_cursor(key("r", "b"), "12".into());
        assert!(o.is_closing());
    }

    #[tokio::test]
    async fn leaving_clears_the_stale_cursor() {
        let o = Outbox::new(10, 1 << 20);
        o.push_cursor(key("r", "a"), "cursor".into());
        o.push_clearing_cursor("a left".into(), &key("r", "a"));
        assert_eq!(o.next_batch().await.messages, ["a left"]);
    }
}
