//! The `joined` reply: the room as one connection should see it (members,
//! everyone else's cursors, the values), counted against that connection's
//! outbox before it is built, since a room of large values could otherwise
//! queue megabytes for a client that does not read.

use chorus_core::presence::Member;
use chorus_protocol::ServerMessage;
use serde_json::Value;

use super::Room;
use crate::outbox::Outbox;

impl Room {
    /// The room as `conn` should see it: members, everyone else's cursors,
    /// and the values.
    fn joined(&self, id: Option<u64>, conn: &str) -> ServerMessage {
        let members: Vec<Member> = self.members.list();
        ServerMessage::Joined {
            id,
            room: self.name.to_string(),
            connection: conn.to_owned(),
            count: members.len(),
            members,
            cursors: self.cursors_for(conn),
            values: self.values.states(),
        }
    }

    /// About how many bytes a `joined` reply of this room takes: its values,
    /// the members' and cursors' states, and their fixed fields. Counted
    /// against a connection's outbox before the reply is built, so joining
    /// a room of large values without reading closes the connection
    /// instead of queueing copies of them.
    fn joined_estimate(&self) -> usize {
        const ENTRY: usize = 256;
        let members: usize = self.members.states().map(|state| ENTRY + json_size(state)).sum();
        let cursors: usize = self.cursors.states().map(|c| ENTRY + json_size(&c.cursor)).sum();
        ENTRY + self.values.total_bytes() + members + cursors
    }

    /// Sends a `joined` reply to one connection, if it fits its outbox (a
    /// connection over its budget is being closed as a slow consumer).
    pub(super) fn send_joined(&self, outbox: &Outbox, id: Option<u64>, conn: &str) {
        if outbox.reserve(self.joined_estimate()) {
            outbox.push(self.joined(id, conn).to_json().into());
        }
    }

    /// Tells every local connection the room as it now is, replacing what
    /// it had (after a loss no event can describe).
    pub(super) fn send_joined_to_all(&self) {
        for (conn, local) in &self.local {
            self.send_joined(&local.outbox, None, conn);
        }
    }
}

/// About how many bytes `value` takes as JSON, without writing it out.
fn json_size(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(_) => 5,
        Value::Number(_) => 24,
        Value::String(s) => s.len() + 2,
        Value::Array(items) => 2 + items.iter().map(|v| json_size(v) + 1).sum::<usize>(),
        Value::Object(fields) => 2 + fields.iter().map(|(k, v)| k.len() + 4 + json_size(v)).sum::<usize>(),
    }
}

#[cfg(test)]
mod tests {
    use super::json_size;

    #[test]
    fn json_size_is_about_the_written_size() {
        let values = [
            serde_json::json!(null),
            serde_json::json!({"page": 3, "typing": true, "name": "Ann"}),
            serde_json::json!([1, 2.5, "x", {"a": [null, false]}]),
            serde_json::json!({"text": "y".repeat(10_000)}),
        ];
        for v in values {
            let written = serde_json::to_string(&v).unwrap().len();
            let estimate = json_size(&v);
            assert!(estimate >= written && estimate <= written * 3 + 24, "{v}: estimated {estimate}, written {written}");
        }
    }
}
