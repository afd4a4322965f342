//! Presence on Redis: who is in which room, with per-entry expiry.
//!
//! Every change is one script on the room's keys, so removal (leave or
//! expiry) hands an entry back to exactly one caller however many nodes race.
//! Members and their states are kept in two hashes so that a state update
//! never rewrites (or re-encodes) the member.

use async_trait::async_trait;
use chorus_core::presence::{Member, Millis};
use chorus_store::{Expired, PresenceStore, RoomSummary, StoreResult};
use redis::Value as Reply;
use serde_json::Value;

use crate::{decode_error, room_key, store_error, RedisStore, PREFIX};

/// Rooms by a time at or before their earliest presence expiry.
fn rooms_index() -> String {
    format!("{PREFIX}:presence-rooms")
}

fn presence_keys(room: &str) -> [String; 3] {
    [room_key(room, "members"), room_key(room, "states"), room_key(room, "expiry")]
}

/// A stored member with its state put back.
fn member_from(member: &[u8], state: &[u8]) -> StoreResult<Member> {
    let mut m: Member = serde_json::from_slice(member).map_err(|e| decode_error("member", e))?;
    m.state = serde_json::from_slice(state).map_err(|e| decode_error("presence state", e))?;
    Ok(m)
}

/// Members from a flat {member, state, member, state, ...} reply.
fn members_from(items: &[Reply]) -> StoreResult<Vec<Member>> {
    items
        .chunks(2)
        .map(|pair| match pair {
            [Reply::BulkString(m), Reply::BulkString(s)] => member_from(m, s),
            other => Err(decode_error("member list", format!("{other:?}"))),
        })
        .collect()
}

fn sort_by_join(members: &mut [Member]) {
    members.sort_by(|a, b| a.joined_at.cmp(&b.joined_at).then_with(|| a.connection.cmp(&b.connection)));
}

#[async_trait]
impl PresenceStore for RedisStore {
    async fn join(&self, room: &str, member: Member, expires_at: Millis, now: Millis) -> StoreResult<usize> {
        let state = serde_json::to_string(&member.state).map_err(|e| decode_error("presence state", e))?;
        let stored = serde_json::to_string(&Member { state: Value::Null, ..member.clone() }).map_err(|e| decode_error("member", e))?;
        let [members, states, expiry] = presence_keys(room);
        let count: usize = self
            .scripts
            .presence_join
            .key(members)
            .key(states)
            .key(expiry)
            .key(rooms_index())
            .arg(&member.connection)
            .arg(stored)
            .arg(state)
            .arg(expires_at)
            .arg(now)
            .arg(room)
            .invoke_async(&mut self.conn())
            .await
            .map_err(store_error)?;
        Ok(count)
    }

    async fn refresh(&self, room: &str, connection: &str, expires_at: Millis) -> StoreResult<bool> {
        let [members, _, expiry] = presence_keys(room);
        let done: i64 = self
            .scripts
            .presence_refresh
            .key(members)
            .key(expiry)
            .arg(connection)
            .arg(expires_at)
            .invoke_async(&mut self.conn())
            .await
            .map_err(store_error)?;
        Ok(done == 1)
    }

    async fn set_state(&self, room: &str, connection: &str, state: Value) -> StoreResult<bool> {
        let [members, states, _] = presence_keys(room);
        let json = serde_json::to_string(&state).map_err(|e| decode_error("presence state", e))?;
        let done: i64 = self
            .scripts
            .presence_state
            .key(members)
            .key(states)
            .arg(connection)
            .arg(json)
            .invoke_async(&mut self.conn())
            .await
            .map_err(store_error)?;
        Ok(done == 1)
    }

    async fn leave(&self, room: &str, connection: &str, now: Millis) -> StoreResult<Option<(Member, usize)>> {
        let [members, states, expiry] = presence_keys(room);
        let reply: Reply = self
            .scripts
            .presence_leave
            .key(members)
            .key(states)
            .key(expiry)
            .key(rooms_index())
            .arg(connection)
            .arg(now)
            .arg(room)
            .invoke_async(&mut self.conn())
            .await
            .map_err(store_error)?;
        match reply {
            Reply::Nil => Ok(None),
            Reply::Array(items) => match items.as_slice() {
                [Reply::BulkString(m), Reply::BulkString(s), Reply::Int(count)] => Ok(Some((member_from(m, s)?, *count as usize))),
                other => Err(decode_error("leave reply", format!("{other:?}"))),
            },
            other => Err(decode_error("leave reply", format!("{other:?}"))),
        }
    }

    async fn members(&self, room: &str, now: Millis) -> StoreResult<Vec<Member>> {
        let [members, states, expiry] = presence_keys(room);
        let items: Vec<Reply> = self
            .scripts
            .presence_members
            .key(members)
            .key(states)
            .key(expiry)
            .arg(now)
            .invoke_async(&mut self.conn())
            .await
            .map_err(store_error)?;
        let mut list = members_from(&items)?;
        sort_by_join(&mut list);
        Ok(list)
    }

    async fn count(&self, room: &str, now: Millis) -> StoreResult<usize> {
        let [_, _, expiry] = presence_keys(room);
        redis::cmd("ZCOUNT").arg(expiry).arg(format!("({now}")).arg("+inf").query_async(&mut self.conn()).await.map_err(store_error)
    }

    async fn expire(&self, now: Millis) -> StoreResult<Vec<Expired>> {
        let due: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(rooms_index())
            .arg("-inf")
            .arg(now)
            .query_async(&mut self.conn())
            .await
            .map_err(store_error)?;
        let mut out = Vec::new();
        for room in due {
            let [members, states, expiry] = presence_keys(&room);
            let items: Vec<Reply> = self
                .scripts
                .presence_expire
                .key(members)
                .key(states)
                .key(expiry)
                .key(rooms_index())
                .arg(now)
                .arg(&room)
                .invoke_async(&mut self.conn())
                .await
                .map_err(store_error)?;
            let Some((Reply::Int(count), gone)) = items.split_first() else {
                return Err(decode_error("expiry reply", format!("{items:?}")));
            };
            for member in members_from(gone)? {
                out.push(Expired { room: room.clone(), member, count: *count as usize });
            }
        }
        Ok(out)
    }

    async fn rooms(&self, now: Millis) -> StoreResult<Vec<RoomSummary>> {
        let rooms: Vec<String> = redis::cmd("ZRANGE").arg(rooms_index()).arg(0).arg(-1).query_async(&mut self.conn()).await.map_err(store_error)?;
        let mut out = Vec::new();
        for room in rooms {
            let members = self.count(&room, now).await?;
            if members > 0 {
                out.push(RoomSummary { room, members });
            }
        }
        out.sort_by(|a, b| a.room.cmp(&b.room));
        Ok(out)
    }

    async fn ping(&self) -> StoreResult<()> {
        let _: String = redis::cmd("PING").query_async(&mut self.conn()).await.map_err(store_error)?;
        Ok(())
    }
}
