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
//!
//! The room does not wait for a cursor's publication: on a bus that waits
//! (a round trip to Redis per cursor), a room of 64 senders at 20 Hz spent
//! most of its time waiting, every other message queued behind those
//! waits, and the bunched arrivals were coalesced by the rate bound (W2 on
//! Redis delivered 91 % of cursors, p99 0.4 s). A publication is started
//! (its first poll hands it to the bus, in the order of the room's calls),
//! then polled by the room's loop beside everything else, a bounded number
//! at a time; past that bound, updates wait in the senders' gates, latest
//! wins. A store that publishes at once (in memory) is done at the first
//! poll. Before a sender's leave is published its cursors are, so nobody
//! hears a cursor after its owner left; the leave waits for its own
//! sender's publications only, not for everyone's (on a slow bus, up to
//! [`MAX_PUBLISHING`] of them).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use chorus_protocol::{CursorState, ServerMessage};
use chorus_store::RoomEvent;
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde_json::Value;
use tokio::time::Instant;
use tracing::warn;

use super::Room;
use crate::outbox::CursorKey;

/// Publications in flight at most, per room (each holds one cursor); past
/// this, updates wait in their senders' gates.
pub(super) const MAX_PUBLISHING: usize = 128;

/// A cursor's publication; it ends with its sender's connection.
type Publish = Pin<Box<dyn Future<Output = Arc<str>> + Send>>;

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
    /// Publications started and not finished. (In a mutex only so that the
    /// room stays `Sync`: it is only ever reached through `&mut`.)
    publishing: Mutex<FuturesUnordered<Publish>>,
    /// Publications in flight by sender.
    owed: HashMap<Arc<str>, usize>,
}

impl Cursors {
    pub(super) fn new(interval: Duration) -> Self {
        Self { latest: HashMap::new(), gates: HashMap::new(), interval, publishing: Mutex::new(FuturesUnordered::new()), owed: HashMap::new() }
    }

    fn publishing(&mut self) -> &mut FuturesUnordered<Publish> {
        self.publishing.get_mut().unwrap_or_else(|p| p.into_inner())
    }

    /// Publications in flight.
    pub(super) fn in_flight(&mut self) -> usize {
        self.publishing().len()
    }

    /// Waits for a publication in flight to finish; pending while none is.
    pub(super) fn published(&mut self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| match self.publishing().poll_next_unpin(cx) {
            Poll::Ready(Some(conn)) => {
                self.done(&conn);
                Poll::Ready(())
            }
            // None in flight: the room's loop asks again once it started one.
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        })
    }

    /// Finishes the publications in flight until none of `conn`'s is left
    /// (others finishing meanwhile are done with as usual).
    pub(super) async fn settle(&mut self, conn: &str) {
        while self.owed.contains_key(conn) {
            match self.publishing().next().await {
                Some(done) => self.done(&done),
                None => {
                    self.owed.clear();
                    break;
                }
            }
        }
    }

    fn started(&mut self, conn: Arc<str>) {
        *self.owed.entry(conn).or_default() += 1;
    }

    fn done(&mut self, conn: &str) {
        if let Some(n) = self.owed.get_mut(conn) {
            *n -= 1;
            if *n == 0 {
                self.owed.remove(conn);
            }
        }
    }

    /// Every connection's latest cursor (in no order).
    pub(super) fn states(&self) -> impl Iterator<Item = &CursorState> {
        self.latest.values()
    }

    /// When the next update waiting in a gate is due; none while the
    /// publications in flight are at their bound (one finishing ends the
    /// room's wait, and the next turn of its loop asks again).
    pub(super) fn next_flush(&mut self) -> Option<Instant> {
        if self.in_flight() >= MAX_PUBLISHING {
            return None;
        }
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
    pub(super) fn cursor(&mut self, conn: Arc<str>, cursor: Value, doc: Option<String>, version: Option<u64>) {
        let Some(local) = self.local.get(&conn).filter(|l| l.visible) else { return };
        let state = CursorState { connection: conn.to_string(), user: local.user.clone(), cursor, doc, version };
        let interval = self.cursors.interval;
        let room_to_publish = self.cursors.in_flight() < MAX_PUBLISHING;
        let gate = self.cursors.gates.entry(conn.clone()).or_default();
        let now = Instant::now();
        if room_to_publish && gate.last_sent.is_none_or(|t| now.duration_since(t) >= interval) {
            gate.last_sent = Some(now);
            gate.pending = None;
            self.publish_cursor(conn, state);
        } else {
            crate::hot_metrics().cursors_coalesced.increment(u64::from(gate.pending.is_some()));
            gate.pending = Some(state);
        }
    }

    pub(super) fn flush_cursors(&mut self) {
        let now = Instant::now();
        let interval = self.cursors.interval;
        let room = MAX_PUBLISHING.saturating_sub(self.cursors.in_flight());
        let due: Vec<(Arc<str>, CursorState)> = self
            .cursors
            .gates
            .iter_mut()
            .filter(|(_, g)| g.pending.is_some() && g.last_sent.is_none_or(|t| now.duration_since(t) >= interval))
            .take(room)
            .filter_map(|(conn, g)| {
                g.last_sent = Some(now);
                g.pending.take().map(|state| (conn.clone(), state))
            })
            .collect();
        for (conn, state) in due {
            self.publish_cursor(conn, state);
        }
    }

    /// Starts publishing `conn`'s cursor; the room's loop finishes it.
    fn publish_cursor(&mut self, conn: Arc<str>, cursor: CursorState) {
        let (store, room, sender) = (self.store().clone(), self.name.clone(), conn.clone());
        let mut publish: Publish = Box::pin(async move {
            if let Err(e) = store.publish(&room, RoomEvent::Cursor { cursor }).await {
                warn!(%room, "could not publish a cursor: {e}");
            }
            sender
        });
        if publish.as_mut().poll(&mut Context::from_waker(Waker::noop())).is_pending() {
            self.cursors.publishing().push(publish);
            self.cursors.started(conn);
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
