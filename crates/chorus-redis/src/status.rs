//! Where a room stands, in one script: what the periodic reconciliation of
//! a room compares with what the node believes.

use async_trait::async_trait;
use chorus_core::presence::Millis;
use chorus_store::{DocHead, LiveMembers, RoomStatus, StatusStore, StoreResult, ValuesContent};
use redis::Value as Reply;

use crate::docs::digest;
use crate::presence::presence_keys;
use crate::values::value_keys;
use crate::{decode_error, doc_key, number, stamp, text, RedisStore};

#[async_trait]
impl StatusStore for RedisStore {
    async fn status(&self, room: &str, docs: &[&str], now: Millis) -> StoreResult<RoomStatus> {
        let [members, _, expiry, presence] = presence_keys(room);
        let [versions, states, _, values] = value_keys(room);
        let mut keys = vec![presence, members, expiry, values, versions, states];
        keys.extend(docs.iter().map(|doc| doc_key(room, doc, "meta")));
        let items: Vec<Reply> = self.invoke(self.scripts.room_status.keys(&keys).arg(now)).await?;
        let [p_epoch, p_seq, live, fingerprint, v_epoch, v_seq, v_count, v_fingerprint, heads @ ..] = items.as_slice() else {
            return Err(decode_error("room status", format!("{items:?}")));
        };
        let docs = heads
            .chunks(3)
            .map(|head| match head {
                [Reply::Nil, _, _] => Ok(None),
                [epoch, version, d] => Ok(Some(DocHead { epoch: text(epoch)?, version: number(version)?, digest: digest(d)? })),
                other => Err(decode_error("document head", format!("{other:?}"))),
            })
            .collect::<StoreResult<Vec<_>>>()?;
        let fingerprint = u32::from_str_radix(&text(fingerprint)?, 16).map_err(|e| decode_error("member fingerprint", e))?;
        let members = LiveMembers { count: number(live)? as usize, fingerprint };
        let v_fingerprint = u32::from_str_radix(&text(v_fingerprint)?, 16).map_err(|e| decode_error("values fingerprint", e))?;
        let value_content = ValuesContent { count: number(v_count)? as usize, fingerprint: v_fingerprint };
        Ok(RoomStatus { presence: stamp(p_epoch, p_seq)?, members, values: stamp(v_epoch, v_seq)?, value_content, docs })
    }
}
