//! Shared values on Redis: per room, hashes of versions, states (JSON) and
//! the token of each value's last write, and the room's values stamp,
//! changed by one compare-and-set script that also publishes the new
//! state. Merging happens on the nodes; Redis only orders the writers of
//! each value.

use async_trait::async_trait;
use chorus_core::crdt::Value;
use chorus_store::{random_id, RoomValuesStored, StoreError, StoreResult, StoredValue, ValuePut, ValueStore};
use redis::Value as Reply;

use crate::{channel, decode_error, number, room_key, stamp, RedisStore};

pub(crate) fn value_keys(room: &str) -> [String; 4] {
    [room_key(room, "values:version"), room_key(room, "values:state"), room_key(room, "values:token"), room_key(room, "values:meta")]
}

fn bytes(reply: &Reply) -> StoreResult<&[u8]> {
    match reply {
        Reply::BulkString(b) => Ok(b),
        other => Err(decode_error("value reply", format!("{other:?}"))),
    }
}

fn stored(version: &Reply, state: &Reply) -> StoreResult<StoredValue> {
    let version = number(version)?;
    let state: Value = serde_json::from_slice(bytes(state)?).map_err(|e| decode_error("value", e))?;
    Ok(StoredValue { version, state })
}

#[async_trait]
impl ValueStore for RedisStore {
    async fn values(&self, room: &str) -> StoreResult<RoomValuesStored> {
        let [versions, states, _, meta] = value_keys(room);
        let items: Vec<Reply> = self.invoke(&self.scripts.value_all.keys(&[versions, states, meta])).await?;
        let [epoch, seq, values @ ..] = items.as_slice() else {
            return Err(decode_error("values", format!("{items:?}")));
        };
        let values = values
            .chunks(3)
            .map(|item| match item {
                [name, version, state] => Ok((String::from_utf8_lossy(bytes(name)?).into_owned(), stored(version, state)?)),
                other => Err(decode_error("value list", format!("{other:?}"))),
            })
            .collect::<StoreResult<_>>()?;
        Ok(RoomValuesStored { values, stamp: stamp(epoch, seq)? })
    }

    async fn put_value(&self, room: &str, name: &str, expected: u64, state: &Value, token: &str) -> StoreResult<ValuePut> {
        let json = serde_json::to_string(state).map_err(|e| StoreError::Backend(e.to_string()))?;
        let [versions, states, tokens, meta] = value_keys(room);
        let reply: Vec<Reply> = self.invoke(self.scripts.value_put.keys(&[versions, states, tokens, meta])
            .arg(name)
            .arg(expected)
            .arg(json)
            .arg(token)
            .arg(random_id())
            .arg(channel(room))
            .arg(self.publish_command())).await?;
        match reply.as_slice() {
            [outcome, version] if bytes(outcome)? == b"written" => Ok(ValuePut::Written { version: number(version)? }),
            [_] => Ok(ValuePut::Conflict { current: None }),
            [_, version, state] => Ok(ValuePut::Conflict { current: Some(stored(version, state)?) }),
            other => Err(decode_error("value reply", format!("{other:?}"))),
        }
    }
}
