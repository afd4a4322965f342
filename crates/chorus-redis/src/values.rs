//! Shared values on Redis: per room, a hash of versions and a hash of
//! states (JSON), changed by one compare-and-set script that also
//! publishes the new state. Merging happens on the nodes; Redis only
//! orders the writers of each value.

use async_trait::async_trait;
use chorus_core::crdt::Value;
use chorus_store::{StoreError, StoreResult, StoredValue, ValuePut, ValueStore};
use redis::Value as Reply;

use crate::{channel, decode_error, number, room_key, store_error, RedisStore};

fn value_keys(room: &str) -> [String; 2] {
    [room_key(room, "values:version"), room_key(room, "values:state")]
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
    async fn values(&self, room: &str) -> StoreResult<Vec<(String, StoredValue)>> {
        let [versions, states] = value_keys(room);
        let items: Vec<Reply> = self.scripts.value_all.key(versions).key(states).invoke_async(&mut self.conn()).await.map_err(store_error)?;
        items
            .chunks(3)
            .map(|item| match item {
                [name, version, state] => Ok((String::from_utf8_lossy(bytes(name)?).into_owned(), stored(version, state)?)),
                other => Err(decode_error("value list", format!("{other:?}"))),
            })
            .collect()
    }

    async fn put_value(&self, room: &str, name: &str, expected: u64, state: &Value) -> StoreResult<ValuePut> {
        let json = serde_json::to_string(state).map_err(|e| StoreError::Backend(e.to_string()))?;
        let [versions, states] = value_keys(room);
        let reply: Vec<Reply> = self
            .scripts
            .value_put
            .key(versions)
            .key(states)
            .arg(name)
            .arg(expected)
            .arg(json)
            .arg(channel(room))
            .arg(self.publish_command())
            .invoke_async(&mut self.conn())
            .await
            .map_err(store_error)?;
        match reply.as_slice() {
            [outcome, version] if bytes(outcome)? == b"written" => Ok(ValuePut::Written { version: number(version)? }),
            [_] => Ok(ValuePut::Conflict { current: None }),
            [_, version, state] => Ok(ValuePut::Conflict { current: Some(stored(version, state)?) }),
            other => Err(decode_error("value reply", format!("{other:?}"))),
        }
    }
}
