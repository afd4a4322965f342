//! A token's lifetime on an open connection.
//!
//! A connection authenticated by a token lives no longer than the token: at
//! its `exp` the connection is closed with 4001, unless the client has sent
//! `auth` with a fresh token first. The fresh token must name the same user;
//! its permissions apply from then on, and rooms it no longer lets the
//! connection read are left with reason `forbidden` (a `left` message).
//! Presence visibility stays what it was at the join.

use std::time::Duration;

use chorus_protocol::{ErrorCode, LeaveReason, ServerMessage};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::info;

use super::{Reply, Session};
use crate::auth::Permission;
use crate::clock::now_ms;
use crate::room::RoomCommand;

impl Session {
    /// When this connection's token expires, if it does.
    pub(super) fn token_deadline(&self) -> Option<Instant> {
        let at = self.identity.expires_at?;
        Some(Instant::now() + Duration::from_millis(at.saturating_sub(now_ms())))
    }

    /// `auth`: takes a fresh token for this connection.
    pub(super) async fn reauthenticate(&mut self, id: Option<u64>, token: &str) -> Result<(), Reply> {
        let fresh = self.node.auth.authenticate(Some(token), None, None).map_err(|e| Reply::new(ErrorCode::Unauthorized, e.to_string()))?;
        if fresh.anonymous {
            return Err(Reply::new(ErrorCode::Unauthorized, "this server checks no tokens (development mode without a key): nothing to refresh"));
        }
        if fresh.user.id != self.identity.user.id {
            let msg = format!("the fresh token is for user {}, this connection is user {}", fresh.user.id, self.identity.user.id);
            return Err(Reply::new(ErrorCode::Unauthorized, msg));
        }
        info!(conn = %self.conn, user = %fresh.user.id, expires_at = fresh.expires_at, "token refreshed");
        self.identity = fresh;
        let gone: Vec<String> = self.rooms.keys().filter(|room| !self.identity.can(room, Permission::Read)).cloned().collect();
        for room in gone {
            if let Some(handle) = self.rooms.get(&room).cloned() {
                let (reply, done) = oneshot::channel();
                let cmd = RoomCommand::Leave { conn: self.conn.clone(), reason: LeaveReason::Forbidden, id: None, reply };
                if handle.tx.send(cmd).await.is_ok() {
                    let _ = done.await;
                }
            }
            self.forget_room(&room);
        }
        self.send(ServerMessage::Authenticated { id, token_expires_at: self.identity.expires_at });
        Ok(())
    }
}

/// Sleeps until `at`, or forever.
pub(super) async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
