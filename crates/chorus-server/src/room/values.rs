//! Shared values in the room: changes applied to the latest state and
//! written with the store's compare-and-set, every write heard back on the
//! bus with the room's values stamp.
//!
//! A write carries a token, so a write whose answer was lost (a timeout, a
//! dropped connection) is asked about again with the same token and found,
//! never applied twice. A gap in the stamps reloads all values, and so does
//! the reconciliation when the store's values hold something else at the
//! same stamp (it went back and moved on). Values the store no longer has
//! (it lost them), or holds in another state at the same or an older
//! version, can only be told with the whole room (an unsolicited `joined`):
//! clients take a `value` only when its version is newer.

use std::time::Duration;

use chorus_core::crdt::{Change, ValueKind};
use chorus_protocol::{ErrorCode, ServerMessage};
use chorus_store::{random_id, Stamp, StoreError, ValuePut};
use tokio::time::Instant;
use tracing::info;

use super::{Room, COMMIT_DEADLINE};
use crate::clock::now_ms;
use crate::refusal::Refusal;
use crate::values::{Sequence, ValueLimits};

impl Room {
    /// Applies a change to the latest state of a value and writes it with
    /// the store's compare-and-set, applying it again on the newer state
    /// when another node wrote first.
    pub(super) async fn update_value(&mut self, name: String, kind: ValueKind, change: Change, writer: String) -> Result<u64, Refusal> {
        let config = self.config();
        let limits = ValueLimits {
            max_value_bytes: config.max_value_bytes,
            values_per_room: config.values_per_room,
            max_room_value_bytes: config.max_room_value_bytes,
        };
        let deadline = Instant::now() + COMMIT_DEADLINE;
        while Instant::now() < deadline {
            let prepared = self.values.prepare(&name, kind, &change, &writer, limits, now_ms())?;
            let growth = prepared.bytes.saturating_sub(self.values.bytes_of(&name));
            self.rooms.budget.admit(growth, || format!("value {name} cannot grow"))?;
            let token = random_id();
            let mut pause = Duration::from_millis(50);
            let outcome = loop {
                match self.store().put_value(&self.name, &name, prepared.expected, &prepared.state, &token).await {
                    Ok(outcome) => break outcome,
                    // The write may have landed: ask again with its token.
                    Err(StoreError::Unavailable(_)) if Instant::now() + pause < deadline => {
                        tokio::time::sleep(pause).await;
                        pause *= 2;
                    }
                    Err(e) => {
                        return Err(Refusal::new(
                            ErrorCode::Unavailable,
                            format!("value {name}: {e}; the change may or may not have been applied (everyone in the room will see it if it was)"),
                        ))
                    }
                }
            };
            match outcome {
                ValuePut::Written { version } => {
                    self.value_changed(&name, version, prepared.state);
                    return Ok(version);
                }
                ValuePut::Conflict { current } => {
                    if self.values.conflict(&name, current) {
                        // The store went back: tell clients what it holds
                        // now, before the change made on it.
                        info!(room = %self.name, value = %name, "the store holds an older version of the value than this node did; telling the room");
                        self.send_joined_to_all();
                    }
                }
            }
        }
        Err(Refusal::new(ErrorCode::Unavailable, format!("value {name} is too busy to change; retry")))
    }

    fn value_changed(&mut self, name: &str, version: u64, state: chorus_core::crdt::Value) {
        if let Some(value) = self.values.changed(name, version, state) {
            self.fan_out(ServerMessage::Value { room: self.name.to_string(), value }, None);
        }
    }

    /// A value written by any node, from the bus.
    pub(super) fn value_event(&mut self, name: &str, version: u64, state: &chorus_core::crdt::Value, stamp: &Stamp) {
        if self.values.saw(stamp) == Sequence::Gap {
            metrics::counter!("chorus_room_resyncs_total", "reason" => "values_gap").increment(1);
            self.repair.need_values();
        }
        self.value_changed(name, version, state.clone());
    }

    /// Repair: every value from the store, the differences told.
    pub(super) async fn resync_values(&mut self) -> Result<(), StoreError> {
        let stored = self.store().values(&self.name).await?;
        let (changed, retold) = self.values.reset(stored);
        if retold {
            self.send_joined_to_all();
        } else {
            for value in changed {
                self.fan_out(ServerMessage::Value { room: self.name.to_string(), value }, None);
            }
        }
        Ok(())
    }
}
