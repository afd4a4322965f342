//! Cursors: ephemeral, coalesced, bounded in rate, anchored to the text.
//!
//! Cursor updates are bounded at the sender: the first update after a quiet
//! spell goes out at once; updates faster than the configured rate wait and
//! are replaced by newer ones, and the latest always goes out at the end of
//! the interval. Readers get cursors through per-sender slots in their
//! outboxes (see [`crate::outbox`]), so a slow reader gets the latest ones
//! instead of a backlog. Text selections are moved forward through the ops
//! committed since the version they were made at. Cursors never enter the
//! store: a lost one is replaced by the next.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use chorus_protocol::{CursorState, ServerMessage};
use chorus_store::RoomEvent;
use serde_json::Value;
use tokio::time::Instant;
use tracing::warn;

use super::Room;
use crate::outbox::CursorKey;

#[derive(Default)]
struct Gate {
    last_sent: Option<Instant>,
    pending: Option<CursorState>,
}

pub(super) struct Cursors {
    /// Latest cursor of every connection in the room, on any node.
    latest: HashMap<Arc<str>, CursorState>,
    /// Rate bounds of this node's senders.
    gates: HashMap<Arc<str>, Gate>,
    interval: Duration,
}

impl Cursors {
    pub(super) fn new(interval: Duration) -> Self {
        Self { latest: HashMap::new(), gates: HashMap::new(), interval }
    }

    /// Every connection's latest cursor (in no order).
    pub(super) fn states(&self) -> impl Iterator<Item = &CursorState> {
        self.latest.values()
    }

    pub(super) fn next_flush(&self) -> Option<Instant> {
        self.gates.values().filter(|g| g.pending.is_some()).filter_map(|g| g.last_sent.map(|t| t + self.interval)).min()
    }

    /// A sender of this node went.
    pub(super) fn forget(&mut self, conn: &str) {
        self.gates.remove(conn);
    }

    /// A connection (on any node) went.
    pub(super) fn remove(&mut self, conn: &str) {
        self.latest.remove(conn);
    }
}

impl Room {
    pub(super) async fn cursor(&mut self, conn: Arc<str>, cursor: Value, doc: Option<String>, version: Option<u64>) {
        let Some(local) = self.local.get(&conn).filter(|l| l.visible) else { return };
        let state = CursorState { connection: conn.to_string(), user: local.user.clone(), cursor, doc, version };
        let interval = self.cursors.interval;
        let gate = self.cursors.gates.entry(conn).or_default();
        let now = Instant::now();
        if gate.last_sent.is_none_or(|t| now.duration_since(t) >= interval) {
            gate.last_sent = Some(now);
            gate.pending = None;
            self.publish_cursor(state).await;
        } else {
            crate::hot_metrics().cursors_coalesced.increment(u64::from(gate.pending.is_some()));
            gate.pending = Some(state);
        }
    }

    pub(super) async fn flush_cursors(&mut self) {
        let now = Instant::now();
        let interval = self.cursors.interval;
        let due: Vec<CursorState> = self
            .cursors
            .gates
            .values_mut()
            .filter(|g| g.pending.is_some() && g.last_sent.is_none_or(|t| now.duration_since(t) >= interval))
            .filter_map(|g| {
                g.last_sent = Some(now);
                g.pending.take()
            })
            .collect();
        for state in due {
            self.publish_cursor(state).await;
        }
    }

    async fn publish_cursor(&self, cursor: CursorState) {
        if let Err(e) = self.store().publish(&self.name, RoomEvent::Cursor { cursor }).await {
            warn!(room = %self.name, "could not publish a cursor: {e}");
        }
    }

    /// A cursor from the bus: remembered (for joiners) and sent to every
    /// connection here but its own.
    pub(super) fn cursor_event(&mut self, mut cursor: CursorState) {
        let started = Instant::now();
        self.anchor(&mut cursor);
        let conn: Arc<str> = Arc::from(cursor.connection.as_str());
        if cursor.cursor.is_null() {
            self.cursors.latest.remove(&conn);
        } else {
            self.cursors.latest.insert(conn.clone(), cursor.clone());
        }
        let msg: Utf8Bytes = ServerMessage::Cursor { room: self.name.to_string(), cursor }.to_json().into();
        let key: CursorKey = (self.name.clone(), conn.clone());
        let mut sent = 0;
        for (c, local) in &self.local {
            if *c != conn {
                local.outbox.push_cursor(key.clone(), msg.clone());
                sent += 1;
            }
        }
        crate::hot_metrics().messages_out.increment(sent);
        crate::hot_metrics().fanout_seconds.record(started.elapsed().as_secs_f64());
    }

    /// Everyone else's cursors, anchored to the present text.
    pub(super) fn cursors_for(&self, conn: &str) -> Vec<CursorState> {
        self.cursors
            .latest
            .values()
            .filter(|c| c.connection != conn)
            .map(|c| {
                let mut c = c.clone();
                self.anchor(&mut c);
                c
            })
            .collect()
    }

    /// Moves a text cursor forward to its document's head, if it is open here.
    fn anchor(&self, cursor: &mut CursorState) {
        if let Some(doc) = cursor.doc.as_deref().and_then(|d| self.docs.get(d)) {
            doc.anchor(cursor);
        }
    }
}
