//! Who is in the room, on every node: joins, leaves and presence states.
//!
//! The store makes and announces each change in one step, stamped with the
//! room's presence sequence ([`Stamp`]). The room keeps the member list as
//! the announcements build it and the stamp it is at: an announcement that
//! skips a number, or comes from another epoch (the store lost the room's
//! presence and started again), sends it to the store for the whole list,
//! which it compares with its own and tells its connections the difference
//! as ordinary joins, leaves and state changes. Announcements older than
//! the list are dropped. So every connection sees one leave per departed
//! member, whatever was lost on the way.
//!
//! An entry is gone from the moment it expires, though the sweep may find
//! it later: lists read in between leave it out. So nothing brings it back
//! in silence (the store refuses a late refresh); a live connection's node
//! puts it back with a join, announced to every node like any join, and a
//! node that still lists it tells its connections nothing new.
//!
//! A leave or a join whose answer never came is settled in the background:
//! the entry is removed again (removal is idempotent) until the store says
//! it is gone, so nobody stays listed until the TTL for a connection that
//! is not there.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chorus_core::presence::Member;
use chorus_protocol::{ErrorCode, LeaveReason, ServerMessage};
use chorus_store::{Backend, Joined, LiveMembers, Members as StoredMembers, RoomEvent, Stamp};
use serde_json::Value;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::{JoinRequest, Local, Room};
use crate::clock::now_ms;
use crate::outbox::CursorKey;
use crate::refusal::Refusal;
use crate::values::{sequence, Sequence};

/// The room's members as this node knows them.
pub(super) struct Members {
    by_connection: HashMap<Arc<str>, Member>,
    stamp: Option<Stamp>,
}

impl Members {
    pub(super) fn new(stored: StoredMembers) -> Self {
        Self { by_connection: stored.members.into_iter().map(|m| (Arc::from(m.connection.as_str()), m)).collect(), stamp: stored.stamp }
    }

    pub(super) fn stamp(&self) -> Option<&Stamp> {
        self.stamp.as_ref()
    }

    /// Who the room lists, as the store's status tells who is live there.
    pub(super) fn live(&self) -> LiveMembers {
        LiveMembers::of(self.by_connection.keys().map(|c| &**c))
    }

    /// The members' states (in no order).
    pub(super) fn states(&self) -> impl Iterator<Item = &Value> {
        self.by_connection.values().map(|m| &m.state)
    }

    /// In join order, as clients list them.
    pub(super) fn list(&self) -> Vec<Member> {
        let mut list: Vec<Member> = self.by_connection.values().cloned().collect();
        list.sort_by(|a, b| a.joined_at.cmp(&b.joined_at).then_with(|| a.connection.cmp(&b.connection)));
        list
    }

    /// Whether `stored` is a later state than the one known (or another
    /// incarnation of it).
    fn is_newer(&self, stored: &StoredMembers) -> bool {
        match (&self.stamp, &stored.stamp) {
            (Some(known), Some(s)) => known.epoch != s.epoch || s.seq > known.seq,
            (None, Some(_)) => true,
            (Some(_), None) => true,
            (None, None) => !stored.members.is_empty() || !self.by_connection.is_empty(),
        }
    }
}

/// Removes a connection's entry until the store confirms it is gone: after
/// a leave or a join whose answer was lost. Entries expire by themselves
/// after the TTL, so retrying longer than that is pointless.
pub(super) fn settle_leave(store: Arc<dyn Backend>, room: Arc<str>, conn: Arc<str>, reason: LeaveReason, give_up_after: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + give_up_after;
        let mut delay = Duration::from_millis(100);
        loop {
            match store.leave(&room, &conn, reason, now_ms()).await {
                Ok(_) => return,
                Err(e) if tokio::time::Instant::now() + delay >= deadline => {
                    warn!(%room, %conn, "could not remove a presence entry; it will expire: {e}");
                    return;
                }
                Err(e) => warn!(%room, %conn, "could not remove a presence entry yet, retrying in {delay:?}: {e}"),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    })
}

/// The connections whose entries are being taken back in the background
/// ([`settle_leave`]): none of them may join again until that is done.
#[derive(Default)]
pub(super) struct Settling(HashMap<Arc<str>, JoinHandle<()>>);

impl Settling {
    fn insert(&mut self, conn: Arc<str>, settle: JoinHandle<()>) {
        self.0.retain(|_, s| !s.is_finished());
        self.0.insert(conn, settle);
    }

    fn is_pending(&self, conn: &str) -> bool {
        self.0.get(conn).is_some_and(|s| !s.is_finished())
    }
}

impl Room {
    pub(super) async fn join(&mut self, request: JoinRequest) -> Result<(), Refusal> {
        let JoinRequest { conn, user, visible, state, id, outbox, dropped, heard } = request;
        if self.local.contains_key(&conn) {
            return Err(Refusal::new(ErrorCode::AlreadyJoined, format!("already in room {}", self.name)));
        }
        // An earlier entry of this connection still being taken back would
        // take this join's entry with it (a leave whose answer was lost is
        // tried again), leaving a client told it joined out of the room.
        if self.settling.is_pending(&conn) {
            return Err(Refusal::new(ErrorCode::Unavailable, format!("room {} is still taking back an earlier join of this connection; try again", self.name)));
        }
        let now = now_ms();
        let member = Member { connection: conn.to_string(), user: user.clone(), state, joined_at: now };
        if visible {
            let expires = now + self.config().presence_ttl_ms;
            let limit = self.config().members_per_room;
            match self.store().join(&self.name, member.clone(), expires, now, limit).await {
                Ok(Joined::Entered { members }) => self.adopt_members(members, false).await,
                Ok(Joined::Full { limit }) => {
                    return Err(Refusal::new(ErrorCode::RoomFull, format!("room {} is full ({limit} members)", self.name)));
                }
                Err(e) => {
                    // The entry may have been written (and announced) all
                    // the same: take it back.
                    self.take_back(&conn, LeaveReason::Closed);
                    return Err(e.into());
                }
            }
        }
        // Counted before it is built: a room of large values joined again
        // and again by a client that does not read closes that client.
        self.send_joined(&outbox, id, &conn);
        self.local.insert(conn, Local { outbox, dropped, heard, user: user.id, visible, member });
        Ok(())
    }

    pub(super) async fn leave(&mut self, conn: &Arc<str>, reason: LeaveReason, id: Option<u64>) {
        let Some(local) = self.local.remove(conn) else { return };
        self.cursors.forget(conn);
        // Its last cursors reach the bus before its leave does.
        self.cursors.settle(conn).await;
        self.unsubscribe_all(conn, Some(&local.user));
        if local.visible {
            // The store announces the leave; this room hears it like the others.
            if let Err(e) = self.store().leave(&self.name, conn, reason, now_ms()).await {
                warn!(room = %self.name, %conn, "could not remove presence; retrying in the background: {e}");
                self.take_back(conn, reason);
            }
        }
        if matches!(reason, LeaveReason::Left | LeaveReason::Forbidden) {
            local.outbox.push(ServerMessage::Left { id, room: self.name.to_string(), reason }.to_json().into());
        }
    }

    /// Removes `conn`'s entry in the background until the store confirms
    /// it ([`settle_leave`]), and keeps `conn` from joining again meanwhile.
    fn take_back(&mut self, conn: &Arc<str>, reason: LeaveReason) {
        let settle = settle_leave(self.store().clone(), self.name.clone(), conn.clone(), reason, self.config().presence_ttl());
        self.settling.insert(conn.clone(), settle);
    }

    pub(super) async fn presence(&mut self, conn: Arc<str>, state: Value) -> Result<(), Refusal> {
        if !self.local.get(&conn).is_some_and(|l| l.visible) {
            return Err(Refusal::new(ErrorCode::NotJoined, format!("not a member of room {}", self.name)));
        }
        let now = now_ms();
        if self.store().set_state(&self.name, &conn, state.clone(), now).await? {
            return Ok(());
        }
        // The store let the entry of this connection expire (its refreshes
        // did not get through) though the connection is here and just
        // spoke. The store's sweep would announce it leaving and this room
        // would put it back; it is put back now instead, with its new
        // state, in a join every node hears (those that still list it hear
        // only the state).
        let Some(local) = self.local.get(&conn).filter(|l| !l.outbox.is_closing()) else {
            return Err(Refusal::new(ErrorCode::NotJoined, format!("your presence in room {} expired; join again", self.name)));
        };
        let listed = self.members.by_connection.get(&conn).cloned().unwrap_or_else(|| local.member.clone());
        let member = Member { state, ..listed };
        info!(room = %self.name, %conn, "the store let a live connection's presence expire; putting it back with its new state");
        let expires = now + self.config().presence_ttl_ms;
        if let Err(e) = self.store().join(&self.name, member, expires, now, usize::MAX).await {
            // The expired entry is swept and announced as a leave, and
            // this room puts the connection back then.
            return Err(e.into());
        }
        Ok(())
    }

    /// A presence announcement from the bus.
    pub(super) async fn presence_event(&mut self, event: &RoomEvent) {
        let stamp = match event {
            RoomEvent::MemberJoined { stamp, .. } | RoomEvent::MemberLeft { stamp, .. } | RoomEvent::Presence { stamp, .. } => stamp,
            _ => return,
        };
        match sequence(self.members.stamp(), stamp) {
            Sequence::Old => return,
            Sequence::Next => {}
            Sequence::Gap => {
                metrics::counter!("chorus_room_resyncs_total", "reason" => "presence_gap").increment(1);
                self.repair.need_members();
            }
        }
        self.members.stamp = Some(stamp.clone());
        match event.clone() {
            RoomEvent::MemberJoined { member, count, .. } => {
                let conn: Arc<str> = Arc::from(member.connection.as_str());
                // A member listed here already joins again when its node
                // puts back an entry that expired unswept (lists read since
                // left it out): no news to the connections here, who were
                // told this list, unless its state changed.
                match self.members.by_connection.insert(conn.clone(), member.clone()) {
                    Some(old) if old.user == member.user && old.joined_at == member.joined_at => {
                        if old.state != member.state {
                            let msg = ServerMessage::Presence { room: self.name.to_string(), connection: conn.to_string(), state: member.state };
                            self.fan_out(msg, Some(&conn));
                        }
                    }
                    _ => self.fan_out(ServerMessage::MemberJoined { room: self.name.to_string(), member, count }, Some(&conn)),
                }
            }
            RoomEvent::MemberLeft { connection, user, reason, count, .. } => {
                if let Some(alive) = self.member_left(Arc::from(connection.as_str()), user, reason, count) {
                    self.put_back(vec![alive]).await;
                }
            }
            RoomEvent::Presence { connection, state, .. } => {
                if let Some(m) = self.members.by_connection.get_mut(connection.as_str()) {
                    m.state = state.clone();
                }
                if let Some(local) = self.local.get_mut(connection.as_str()) {
                    local.member.state = state.clone();
                }
                self.fan_out(ServerMessage::Presence { room: self.name.to_string(), connection: connection.clone(), state }, Some(&connection));
            }
            _ => {}
        }
    }

    /// A member is gone: tell everyone here (once: a member this node no
    /// longer lists was told already), and if it was a connection of this
    /// node that expired, drop it and tell its session. Unless that
    /// connection is alive: still open and heard from so recently that its
    /// entry would still be there had its last refresh reached the store
    /// (within the TTL less one heartbeat interval, the most a session waits
    /// between refreshes), so the store let it expire because refreshing
    /// failed. Then it stays, and is returned, to be put back. A connection
    /// silent for longer is gone even if its session has not closed it yet
    /// (the store's sweep and the session's own deadline race): putting it
    /// back would announce it joining and then leaving a second time.
    fn member_left(&mut self, conn: Arc<str>, user: String, reason: LeaveReason, count: usize) -> Option<Arc<str>> {
        let config = self.config();
        let live_within_ms = config.presence_ttl_ms.saturating_sub(config.heartbeat_interval().as_millis() as u64);
        let alive = reason == LeaveReason::Expired
            && self.local.get(&conn).is_some_and(|l| {
                let silent_ms = now_ms().saturating_sub(l.heard.load(Ordering::Relaxed));
                l.visible && !l.outbox.is_closing() && silent_ms < live_within_ms
            });
        let known = self.members.by_connection.remove(&conn).is_some();
        self.cursors.remove(&conn);
        if alive {
            info!(room = %self.name, %conn, "the store let a live connection's presence expire; putting it back");
        } else if let Some(local) = self.local.remove(&conn) {
            // Said at info: a connection of this node that the store let go
            // is told it left, and it stays out unless its client joins
            // again.
            let silent_ms = now_ms().saturating_sub(local.heard.load(Ordering::Relaxed));
            info!(room = %self.name, %conn, ?reason, silent_ms, closing = local.outbox.is_closing(), "a connection of this node left the room in the store; telling it");
            self.cursors.forget(&conn);
            self.unsubscribe_all(&conn, Some(&local.user));
            local.outbox.push(ServerMessage::Left { id: None, room: self.name.to_string(), reason }.to_json().into());
            let _ = local.dropped.send(self.name.clone());
        }
        let key: CursorKey = (self.name.clone(), conn);
        if known {
            let msg: axum::extract::ws::Utf8Bytes =
                ServerMessage::MemberLeft { room: self.name.to_string(), connection: key.1.to_string(), user, reason, count }.to_json().into();
            for (c, local) in &self.local {
                if *c != key.1 {
                    local.outbox.push_clearing_cursor(msg.clone(), &key);
                }
            }
            crate::hot_metrics().messages_out.increment(self.local.len() as u64);
        }
        alive.then_some(key.1)
    }

    /// Takes the store's member list when it is newer than the room's (or,
    /// with `force`, whenever it differs), telling the connections here
    /// what changed as ordinary joins, leaves and state changes. Connections
    /// of this node missing from a list of another incarnation (the store
    /// lost the room's presence) are put back; missing from the same
    /// incarnation, they expired.
    pub(super) async fn adopt_members(&mut self, stored: StoredMembers, force: bool) {
        if !force && !self.members.is_newer(&stored) {
            return;
        }
        let lost_by_store = match (&self.members.stamp, &stored.stamp) {
            (Some(known), Some(s)) => known.epoch != s.epoch || s.seq < known.seq,
            (Some(_), None) => true,
            _ => false,
        };
        let fresh: HashMap<Arc<str>, Member> = stored.members.into_iter().map(|m| (Arc::from(m.connection.as_str()), m)).collect();
        let count = fresh.len();
        let gone: Vec<(Arc<str>, String)> =
            self.members.by_connection.iter().filter(|(c, _)| !fresh.contains_key(*c)).map(|(c, m)| (c.clone(), m.user.id.clone())).collect();
        let mut put_back = Vec::new();
        for (conn, user) in gone {
            if lost_by_store && self.local.get(&conn).is_some_and(|l| l.visible) {
                put_back.push(conn);
                continue;
            }
            put_back.extend(self.member_left(conn, user, LeaveReason::Expired, count));
        }
        for (conn, member) in &fresh {
            match self.members.by_connection.get(conn) {
                None => self.fan_out(ServerMessage::MemberJoined { room: self.name.to_string(), member: member.clone(), count }, Some(conn)),
                Some(old) if old.state != member.state => {
                    let msg = ServerMessage::Presence { room: self.name.to_string(), connection: conn.to_string(), state: member.state.clone() };
                    self.fan_out(msg, Some(conn));
                }
                Some(_) => {}
            }
        }
        let mut fresh = fresh;
        for conn in &put_back {
            // Those the store lost stay listed (nobody was told they left).
            if let Some(m) = self.members.by_connection.get(conn) {
                fresh.insert(conn.clone(), m.clone());
            }
        }
        self.members.by_connection = fresh;
        self.members.stamp = stored.stamp;
        if !put_back.is_empty() {
            info!(room = %self.name, count = put_back.len(), "the store lost or let expire members of this node that are still here; putting them back");
            self.put_back(put_back).await;
        }
    }

    /// Joins this node's connections again after the store lost them or
    /// let them expire; a failure leaves the repair pending (the next
    /// resync finds them missing again, and puts them back).
    async fn put_back(&mut self, conns: Vec<Arc<str>>) {
        let now = now_ms();
        let expires = now + self.config().presence_ttl_ms;
        for conn in conns {
            let Some(local) = self.local.get(&conn) else { continue };
            let member = self.members.by_connection.get(&conn).cloned().unwrap_or_else(|| local.member.clone());
            if let Err(e) = self.store().join(&self.name, member, expires, now, usize::MAX).await {
                warn!(room = %self.name, %conn, "could not put a member back yet: {e}");
                self.repair.need_members();
            }
        }
    }

    /// Repair: the store's member list, compared with the room's.
    pub(super) async fn resync_members(&mut self) -> Result<(), chorus_store::StoreError> {
        let stored = self.store().members(&self.name, now_ms()).await?;
        self.adopt_members(stored, true).await;
        Ok(())
    }
}
