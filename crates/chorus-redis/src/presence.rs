//! Presence on Redis: who is in which room, with per-entry expiry.
//!
//! Every change is one script on the room's keys that also publishes the
//! change with the room's presence stamp, so removal (leave or expiry)
//! hands an entry back to exactly one caller however many nodes race, and
//! no change can be made without being announced. Members and their states
//! are kept in two hashes so that a state update never rewrites (or
//! re-encodes) the member. The keys of a room go with its last entry.
//!
//! The index of rooms by earliest expiry is one key for the whole store, so
//! on a Cluster it lives in another slot than the rooms and no script may
//! touch both. It is a hint kept at or before each room's earliest expiry:
//! a join lowers it after its script, and a sweep that raises it reads the
//! room again afterwards and lowers it back if a join slipped in between
//! (that join's script ran before its own lowering, so before the re-read).

use async_trait::async_trait;
use chorus_core::presence::{Member, Millis};
use chorus_protocol::LeaveReason;
use chorus_store::{random_id, Expired, Joined, Members, PresenceStore, RoomSummary, StoreResult, Sweep};
use redis::Value as Reply;
use serde_json::Value;
use tracing::warn;

use crate::{channel, decode_error, number, room_key, stamp, text, RedisStore, PREFIX};

/// Rooms by a time at or before their earliest presence expiry.
fn rooms_index() -> String {
    format!("{PREFIX}:presence-rooms")
}

pub(crate) fn presence_keys(room: &str) -> [String; 4] {
    [room_key(room, "members"), room_key(room, "states"), room_key(room, "expiry"), room_key(room, "presence")]
}

/// A stored member with its state put back.
fn member_from(member: &[u8], state: &[u8]) -> StoreResult<Member> {
    let mut m: Member = serde_json::from_slice(member).map_err(|e| decode_error("member", e))?;
    m.state = serde_json::from_slice(state).map_err(|e| decode_error("presence state", e))?;
    Ok(m)
}

/// Members from a flat {member, state, member, state, ...} reply.
fn members_from(items: &[Reply]) -> StoreResult<Vec<Member>> {
    let mut list = items
        .chunks(2)
        .map(|pair| match pair {
            [Reply::BulkString(m), Reply::BulkString(s)] => member_from(m, s),
            other => Err(decode_error("member list", format!("{other:?}"))),
        })
        .collect::<StoreResult<Vec<_>>>()?;
    sort_by_join(&mut list);
    Ok(list)
}

/// Members with their stamp from {epoch, seq, member, state, ...}.
fn stamped_members(items: &[Reply]) -> StoreResult<Members> {
    let [epoch, seq, rest @ ..] = items else {
        return Err(decode_error("member list", format!("{items:?}")));
    };
    Ok(Members { members: members_from(rest)?, stamp: stamp(epoch, seq)? })
}

/// An expiry time from a script's reply: a number, or empty for none.
fn expiry_from(reply: &Reply) -> StoreResult<Option<f64>> {
    let text = text(reply)?;
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|e| decode_error("expiry", e))
}

impl RedisStore {
    /// Points the rooms index at a room's earliest expiry after a sweep (or
    /// drops the room), then puts back anything a concurrent join added.
    async fn reindex(&self, room: &str, earliest: Option<f64>) -> StoreResult<()> {
        let _: i64 = match earliest {
            Some(at) => self.query(redis::cmd("ZADD").arg(rooms_index()).arg(at).arg(room)).await?,
            None => self.query(redis::cmd("ZREM").arg(rooms_index()).arg(room)).await?,
        };
        let [_, _, expiry, _] = presence_keys(room);
        let first: Vec<(String, f64)> = self.query(redis::cmd("ZRANGE").arg(expiry).arg(0).arg(0).arg("WITHSCORES")).await?;
        if let Some((_, now_first)) = first.first() {
            if earliest.is_none_or(|at| *now_first < at) {
                let _: i64 = self.query(redis::cmd("ZADD").arg(rooms_index()).arg("LT").arg(*now_first).arg(room)).await?;
            }
        }
        Ok(())
    }
}

fn sort_by_join(members: &mut [Member]) {
    members.sort_by(|a, b| a.joined_at.cmp(&b.joined_at).then_with(|| a.connection.cmp(&b.connection)));
}

#[async_trait]
impl PresenceStore for RedisStore {
    async fn join(&self, room: &str, member: Member, expires_at: Millis, now: Millis, limit: usize) -> StoreResult<Joined> {
        let state = serde_json::to_string(&member.state).map_err(|e| decode_error("presence state", e))?;
        let whole = serde_json::to_string(&member).map_err(|e| decode_error("member", e))?;
        let stored = serde_json::to_string(&Member { state: Value::Null, ..member.clone() }).map_err(|e| decode_error("member", e))?;
        let [members, states, expiry, presence] = presence_keys(room);
        let items: Vec<Reply> = self.invoke(self.scripts.presence_join.keys(&[members, states, expiry, presence])
            .arg(&member.connection)
            .arg(stored)
            .arg(state)
            .arg(expires_at)
            .arg(now)
            .arg(limit)
            .arg(random_id())
            .arg(channel(room))
            .arg(self.publish_command())
            .arg(whole)).await?;
        let Some((outcome, rest)) = items.split_first() else { return Err(decode_error("join reply", "empty")) };
        if text(outcome)? == "full" {
            return Ok(Joined::Full { limit });
        }
        let members = stamped_members(rest)?;
        let _: i64 = self.query(redis::cmd("ZADD").arg(rooms_index()).arg("LT").arg(expires_at).arg(room)).await?;
        Ok(Joined::Entered { members })
    }

    async fn refresh(&self, room: &str, connection: &str, expires_at: Millis, now: Millis) -> StoreResult<bool> {
        let [members, _, expiry, _] = presence_keys(room);
        let done: i64 = self.invoke(self.scripts.presence_refresh.keys(&[members, expiry])
            .arg(connection)
            .arg(expires_at)
            .arg(now)).await?;
        Ok(done == 1)
    }

    async fn set_state(&self, room: &str, connection: &str, state: Value, now: Millis) -> StoreResult<bool> {
        let [members, states, expiry, presence] = presence_keys(room);
        let json = serde_json::to_string(&state).map_err(|e| decode_error("presence state", e))?;
        let done: i64 = self.invoke(self.scripts.presence_state.keys(&[members, states, expiry, presence])
            .arg(connection)
            .arg(json)
            .arg(channel(room))
            .arg(self.publish_command())
            .arg(now)).await?;
        Ok(done == 1)
    }

    async fn leave(&self, room: &str, connection: &str, reason: LeaveReason, now: Millis) -> StoreResult<Option<(Member, usize)>> {
        let [members, states, expiry, presence] = presence_keys(room);
        let reason = serde_json::to_value(reason).map_err(|e| decode_error("reason", e))?;
        let reply: Reply = self.invoke(self.scripts.presence_leave.keys(&[members, states, expiry, presence])
            .arg(connection)
            .arg(now)
            .arg(reason.as_str().unwrap_or("closed"))
            .arg(channel(room))
            .arg(self.publish_command())).await?;
        match reply {
            Reply::Nil => Ok(None),
            Reply::Array(items) => match items.as_slice() {
                [Reply::BulkString(m), Reply::BulkString(s), Reply::Int(count)] => Ok(Some((member_from(m, s)?, *count as usize))),
                other => Err(decode_error("leave reply", format!("{other:?}"))),
            },
            other => Err(decode_error("leave reply", format!("{other:?}"))),
        }
    }

    async fn members(&self, room: &str, now: Millis) -> StoreResult<Members> {
        let [members, states, expiry, presence] = presence_keys(room);
        let items: Vec<Reply> = self.invoke(self.scripts.presence_members.keys(&[members, states, expiry, presence])
            .arg(now)).await?;
        stamped_members(&items)
    }

    async fn count(&self, room: &str, now: Millis) -> StoreResult<usize> {
        let [_, _, expiry, _] = presence_keys(room);
        self.query(redis::cmd("ZCOUNT").arg(expiry).arg(format!("({now}")).arg("+inf")).await
    }

    async fn expire(&self, now: Millis) -> StoreResult<Sweep> {
        let due: Vec<String> = self.query(redis::cmd("ZRANGEBYSCORE")
            .arg(rooms_index())
            .arg("-inf")
            .arg(now)
            ).await?;
        let mut sweep = Sweep::default();
        for room in due {
            match self.expire_room(&room, now).await {
                Ok(expired) => sweep.expired.extend(expired),
                Err(e) => {
                    // The next sweep tries this room again; the others go on.
                    warn!(%room, "could not sweep presence: {e}");
                    sweep.failed.push((room, e));
                }
            }
        }
        Ok(sweep)
    }

    async fn rooms(&self, now: Millis) -> StoreResult<Vec<RoomSummary>> {
        let rooms: Vec<String> = self.query(redis::cmd("ZRANGE").arg(rooms_index()).arg(0).arg(-1)).await?;
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
        let _: String = self.query(&mut redis::cmd("PING")).await?;
        Ok(())
    }
}

impl RedisStore {
    /// Expires one room's entries (each announced by the script) and points
    /// the rooms index at what is left.
    async fn expire_room(&self, room: &str, now: Millis) -> StoreResult<Vec<Expired>> {
        let [members, states, expiry, presence] = presence_keys(room);
        let items: Vec<Reply> = self.invoke(self.scripts.presence_expire.keys(&[members, states, expiry, presence])
            .arg(now)
            .arg(channel(room))
            .arg(self.publish_command())).await?;
        let [earliest, gone @ ..] = items.as_slice() else {
            return Err(decode_error("expiry reply", format!("{items:?}")));
        };
        let mut out = Vec::new();
        for triple in gone.chunks(3) {
            match triple {
                [Reply::BulkString(m), Reply::BulkString(s), count] => {
                    out.push(Expired { room: room.to_owned(), member: member_from(m, s)?, count: number(count)? as usize })
                }
                other => return Err(decode_error("expiry reply", format!("{other:?}"))),
            }
        }
        // The entries are gone and announced whatever happens to the index;
        // a failure here only delays the next sweep of this room.
        if let Err(e) = self.reindex(room, expiry_from(earliest)?).await {
            warn!(%room, "could not update the presence index: {e}");
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Persistence, Redis, RedisServer};
    use chorus_core::presence::UserInfo;

    fn member(connection: &str) -> Member {
        Member { connection: connection.into(), user: UserInfo::new("ann", None, None, None), state: Value::Null, joined_at: 1 }
    }

    async fn indexed(store: &RedisStore, room: &str) -> Option<f64> {
        redis::cmd("ZSCORE").arg(rooms_index()).arg(room).query_async(&mut store.conn()).await.unwrap()
    }

    /// A sweep decides from what its script saw; a join whose script ran
    /// after that must still be found by the next sweep.
    #[tokio::test]
    async fn a_sweep_puts_back_a_join_that_slipped_in() {
        let server = RedisServer::start();
        let store = RedisStore::connect(&server.url()).await.unwrap();
        store.join("r", member("a"), 100, 0, 10).await.unwrap();
        // The sweep saw the room empty...
        store.reindex("r", None).await.unwrap();
        assert_eq!(indexed(&store, "r").await, Some(100.0), "the entry that joined meanwhile keeps the room indexed");
        // ...or saw only a later entry.
        store.reindex("r", Some(5_000.0)).await.unwrap();
        assert_eq!(indexed(&store, "r").await, Some(100.0));
        let gone = store.expire(100).await.unwrap().expired;
        assert_eq!(gone.len(), 1);
        assert_eq!(indexed(&store, "r").await, None, "an empty room leaves the index");
    }

    /// A room that cannot be swept (here, damaged data) must not cost the
    /// other rooms their expiries, nor their announcements.
    async fn a_sweep_goes_on_past_a_room_that_fails(mut redis: Redis) {
        let store = RedisStore::connect(&redis.url()).await.unwrap();
        for room in ["a", "broken", "c"] {
            store.join(room, member(&format!("{room}-1")), 100, 0, 10).await.unwrap();
        }
        let mut subs = Vec::new();
        for room in ["a", "c"] {
            subs.push(chorus_store::Bus::subscribe(&store, room).await.unwrap());
        }
        // The members hash of "broken" is no hash any more.
        let server = redis.server_for("chorus:{broken}:members");
        server.cli(&["DEL", "chorus:{broken}:members"]);
        server.cli(&["SET", "chorus:{broken}:members", "not a hash"]);
        let sweep = store.expire(100).await.expect("the sweep as a whole succeeds");
        let mut gone: Vec<&str> = sweep.expired.iter().map(|e| e.room.as_str()).collect();
        gone.sort();
        assert_eq!(gone, ["a", "c"]);
        assert_eq!(sweep.failed.iter().map(|(r, _)| r.as_str()).collect::<Vec<_>>(), ["broken"]);
        for sub in &mut subs {
            let event = tokio::time::timeout(std::time::Duration::from_secs(5), sub.recv()).await.expect("announced").unwrap();
            assert!(matches!(*event, chorus_store::RoomEvent::MemberLeft { .. }), "{event:?}");
        }
        assert_eq!(indexed(&store, "broken").await, Some(100.0), "the failed room stays due for the next sweep");
    }

    #[tokio::test]
    async fn a_sweep_goes_on_past_a_room_that_fails_on_redis() {
        a_sweep_goes_on_past_a_room_that_fails(Redis::standalone(Persistence::None)).await
    }

    /// The three rooms' keys live on three different masters.
    #[tokio::test]
    async fn a_sweep_goes_on_past_a_room_that_fails_on_a_cluster() {
        a_sweep_goes_on_past_a_room_that_fails(Redis::cluster(Persistence::None)).await
    }
}
