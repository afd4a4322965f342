//! Presence in memory: a table per room, with the room's stamp. A room's
//! record goes when its last entry does, so a room that fills again starts
//! a new epoch (as on Redis, where the keys of an empty room are deleted).

use async_trait::async_trait;
use chorus_core::presence::{Member, Millis, PresenceTable};
use chorus_protocol::LeaveReason;
use serde_json::Value;

use super::{lock, MemoryStore};
use crate::{random_id, Expired, Joined, LiveMembers, Members, PresenceStore, RoomEvent, RoomSummary, Stamp, StoreResult, Sweep};

pub(super) struct RoomPresence {
    table: PresenceTable,
    epoch: String,
    seq: u64,
}

impl RoomPresence {
    fn new() -> Self {
        Self { table: PresenceTable::new(), epoch: random_id(), seq: 0 }
    }

    /// The stamp of the next change.
    fn bump(&mut self) -> Stamp {
        self.seq += 1;
        self.stamp()
    }

    fn stamp(&self) -> Stamp {
        Stamp { epoch: self.epoch.clone(), seq: self.seq }
    }

    fn members(&self, now: Millis) -> Members {
        Members { members: self.table.members(now), stamp: Some(self.stamp()) }
    }
}

impl MemoryStore {
    /// The room's presence stamp, and who is live at `now`.
    pub(super) fn presence_status(&self, room: &str, now: Millis) -> (Option<Stamp>, LiveMembers) {
        let rooms = lock(&self.inner.rooms);
        let Some(p) = rooms.get(room) else { return (None, LiveMembers::default()) };
        let members = p.table.members(now);
        (Some(p.stamp()), LiveMembers::of(members.iter().map(|m| m.connection.as_str())))
    }
}

#[async_trait]
impl PresenceStore for MemoryStore {
    async fn join(&self, room: &str, member: Member, expires_at: Millis, now: Millis, limit: usize) -> StoreResult<Joined> {
        let mut rooms = lock(&self.inner.rooms);
        let p = rooms.entry(room.to_owned()).or_insert_with(RoomPresence::new);
        if p.table.is_live(&member.connection, now) {
            // A retried join: the entry is there, and was announced.
            p.table.refresh(&member.connection, expires_at, now);
            return Ok(Joined::Entered { members: p.members(now) });
        }
        // An entry that expired and was not swept yet was listed as gone
        // since: it is joined again below, and announced.
        if p.table.count(now) >= limit {
            if p.table.is_empty() {
                rooms.remove(room);
            }
            return Ok(Joined::Full { limit });
        }
        p.table.upsert(member.clone(), expires_at);
        let stamp = p.bump();
        let count = p.table.count(now);
        self.broadcast(room, RoomEvent::MemberJoined { member, count, stamp });
        Ok(Joined::Entered { members: p.members(now) })
    }

    async fn refresh(&self, room: &str, connection: &str, expires_at: Millis, now: Millis) -> StoreResult<bool> {
        Ok(lock(&self.inner.rooms).get_mut(room).is_some_and(|p| p.table.refresh(connection, expires_at, now)))
    }

    async fn set_state(&self, room: &str, connection: &str, state: Value, now: Millis) -> StoreResult<bool> {
        let mut rooms = lock(&self.inner.rooms);
        let Some(p) = rooms.get_mut(room) else { return Ok(false) };
        if !p.table.set_state(connection, state.clone(), now) {
            return Ok(false);
        }
        let stamp = p.bump();
        self.broadcast(room, RoomEvent::Presence { connection: connection.to_owned(), state, stamp });
        Ok(true)
    }

    async fn leave(&self, room: &str, connection: &str, reason: LeaveReason, now: Millis) -> StoreResult<Option<(Member, usize)>> {
        let mut rooms = lock(&self.inner.rooms);
        let Some(p) = rooms.get_mut(room) else { return Ok(None) };
        let Some(member) = p.table.remove(connection) else { return Ok(None) };
        let count = p.table.count(now);
        let stamp = p.bump();
        let event = RoomEvent::MemberLeft { connection: connection.to_owned(), user: member.user.id.clone(), reason, count, stamp };
        self.broadcast(room, event);
        if p.table.is_empty() {
            rooms.remove(room);
        }
        Ok(Some((member, count)))
    }

    async fn members(&self, room: &str, now: Millis) -> StoreResult<Members> {
        Ok(lock(&self.inner.rooms).get(room).map_or(Members { members: Vec::new(), stamp: None }, |p| p.members(now)))
    }

    async fn count(&self, room: &str, now: Millis) -> StoreResult<usize> {
        Ok(lock(&self.inner.rooms).get(room).map_or(0, |p| p.table.count(now)))
    }

    async fn expire(&self, now: Millis) -> StoreResult<Sweep> {
        let mut rooms = lock(&self.inner.rooms);
        let mut sweep = Sweep::default();
        rooms.retain(|room, p| {
            if p.table.next_expiry().is_some_and(|at| at <= now) {
                let gone = p.table.expire(now);
                let mut count = p.table.count(now) + gone.len();
                for member in gone {
                    // Each leave counts the members left after it.
                    count -= 1;
                    let stamp = p.bump();
                    let event = RoomEvent::MemberLeft {
                        connection: member.connection.clone(),
                        user: member.user.id.clone(),
                        reason: LeaveReason::Expired,
                        count,
                        stamp,
                    };
                    self.broadcast(room, event);
                    sweep.expired.push(Expired { room: room.clone(), member, count });
                }
            }
            !p.table.is_empty()
        });
        Ok(sweep)
    }

    async fn rooms(&self, now: Millis) -> StoreResult<Vec<RoomSummary>> {
        let mut v: Vec<RoomSummary> = lock(&self.inner.rooms)
            .iter()
            .map(|(room, p)| RoomSummary { room: room.clone(), members: p.table.count(now) })
            .filter(|s| s.members > 0)
            .collect();
        v.sort_by(|a, b| a.room.cmp(&b.room));
        Ok(v)
    }

    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }
}
