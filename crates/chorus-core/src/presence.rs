//! Who is in a room, as a function of time.
//!
//! Presence belongs to a connection, not to a user: two tabs of one user are
//! two entries with the same user id, and closing one leaves the other. Each
//! entry carries the instant it expires unless refreshed; removal (by leaving
//! or by expiry) hands the entry back exactly once, so whoever removed it is
//! the one that announces the leave, and nobody announces it twice.
//!
//! Time is passed in as milliseconds, never read from a clock, so expiry is
//! testable to the millisecond and every backend agrees on it.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch (or any fixed origin a backend chooses).
pub type Millis = u64;

/// Display information about a user, as the token (or the user) gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar: Option<String>,
    /// A CSS colour; derived from the id when not given.
    pub color: String,
}

impl UserInfo {
    /// User info with the colour derived from the id unless one is given.
    pub fn new(id: impl Into<String>, name: Option<String>, avatar: Option<String>, color: Option<String>) -> Self {
        let id = id.into();
        let color = color.unwrap_or_else(|| color_for(&id));
        Self { id, name, avatar, color }
    }
}

/// One connection's presence in one room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub connection: String,
    pub user: UserInfo,
    /// Application state ("viewing page 3", "typing"); `null` when unset.
    #[serde(default)]
    pub state: serde_json::Value,
    pub joined_at: Millis,
}

/// A room's presence entries with their expiry instants.
#[derive(Debug, Clone, Default)]
pub struct PresenceTable {
    entries: HashMap<String, (Member, Millis)>,
    /// (expires_at, connection), so the next expiries are first.
    by_expiry: BTreeSet<(Millis, String)>,
}

impl PresenceTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a connection's entry.
    pub fn upsert(&mut self, member: Member, expires_at: Millis) {
        let conn = member.connection.clone();
        if let Some((_, old)) = self.entries.insert(conn.clone(), (member, expires_at)) {
            self.by_expiry.remove(&(old, conn.clone()));
        }
        self.by_expiry.insert((expires_at, conn));
    }

    /// Pushes an entry's expiry to `expires_at`; false when it is not live
    /// at `now` (left, or expired, swept or not). An expired entry is gone
    /// to whoever lists the room from then on, so only a join, which is
    /// announced, may bring it back: a refresh would do it in silence.
    pub fn refresh(&mut self, connection: &str, expires_at: Millis, now: Millis) -> bool {
        let Some((_, at)) = self.entries.get_mut(connection) else { return false };
        if *at <= now {
            return false;
        }
        self.by_expiry.remove(&(*at, connection.to_owned()));
        *at = expires_at;
        self.by_expiry.insert((expires_at, connection.to_owned()));
        true
    }

    /// Replaces an entry's application state; false when it is not live at
    /// `now`. As with [`PresenceTable::refresh`], an entry that expired is
    /// gone to whoever lists the room from then on: a state change of it
    /// would be announced about a member those lists do not hold.
    pub fn set_state(&mut self, connection: &str, state: serde_json::Value, now: Millis) -> bool {
        match self.entries.get_mut(connection) {
            Some((m, at)) if *at > now => {
                m.state = state;
                true
            }
            _ => false,
        }
    }

    /// Removes an entry, handing it back if it was here.
    pub fn remove(&mut self, connection: &str) -> Option<Member> {
        let (m, at) = self.entries.remove(connection)?;
        self.by_expiry.remove(&(at, connection.to_owned()));
        Some(m)
    }

    /// Removes and returns every entry whose expiry is at or before `now`.
    pub fn expire(&mut self, now: Millis) -> Vec<Member> {
        let mut gone = Vec::new();
        while let Some((at, _)) = self.by_expiry.first() {
            if *at > now {
                break;
            }
            let (_, conn) = self.by_expiry.pop_first().expect("first exists");
            if let Some((m, _)) = self.entries.remove(&conn) {
                gone.push(m);
            }
        }
        gone
    }

    /// Live entries at `now`, oldest join first.
    pub fn members(&self, now: Millis) -> Vec<Member> {
        let mut v: Vec<Member> =
            self.entries.values().filter(|(_, at)| *at > now).map(|(m, _)| m.clone()).collect();
        v.sort_by(|a, b| a.joined_at.cmp(&b.joined_at).then_with(|| a.connection.cmp(&b.connection)));
        v
    }

    /// Number of live entries at `now`.
    pub fn count(&self, now: Millis) -> usize {
        self.entries.values().filter(|(_, at)| *at > now).count()
    }

    pub fn get(&self, connection: &str) -> Option<&Member> {
        self.entries.get(connection).map(|(m, _)| m)
    }

    /// Whether `connection` has an entry live at `now` (one that expired
    /// but was not swept yet is not).
    pub fn is_live(&self, connection: &str, now: Millis) -> bool {
        self.entries.get(connection).is_some_and(|(_, at)| *at > now)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The earliest expiry instant, to know when to sweep next.
    pub fn next_expiry(&self) -> Option<Millis> {
        self.by_expiry.first().map(|(at, _)| *at)
    }
}

/// A stable colour for a user id: the same id gets the same colour on every
/// node and in every session. Hue from a hash of the id; saturation and
/// lightness fixed so every colour reads on white and on dark backgrounds.
pub fn color_for(user_id: &str) -> String {
    // FNV-1a: stable across platforms and releases, unlike std's hasher.
    let mut h: u32 = 0x811c_9dc5;
    for b in user_id.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let hue = (h % 360) as f64;
    let (r, g, b) = hsl_to_rgb(hue, 0.65, 0.50);
    format!("#{r:02x}{g:02x}{b:02x}")
}

fn hsl_to_rgb(h: f64, s: f64, l: f64) -> (u8, u8, u8) {
    let c = (1.0 - (2.0 * l - 1.0).abs()) * s;
    let x = c * (1.0 - ((h / 60.0) % 2.0 - 1.0).abs());
    let m = l - c / 2.0;
    let (r, g, b) = match h as u32 {
        0..=59 => (c, x, 0.0),
        60..=119 => (x, c, 0.0),
        120..=179 => (0.0, c, x),
        180..=239 => (0.0, x, c),
        240..=299 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let to = |v: f64| ((v + m) * 255.0).round() as u8;
    (to(r), to(g), to(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(conn: &str, user: &str, at: Millis) -> Member {
        Member {
            connection: conn.into(),
            user: UserInfo::new(user, None, None, None),
            state: serde_json::Value::Null,
            joined_at: at,
        }
    }

    #[test]
    fn entries_expire_once_unless_refreshed() {
        let mut t = PresenceTable::new();
        t.upsert(member("c1", "ann", 0), 100);
        t.upsert(member("c2", "ann", 1), 100);
        assert!(t.refresh("c2", 200, 50));
        assert_eq!(t.count(50), 2);
        assert_eq!(t.next_expiry(), Some(100));
        let gone = t.expire(100);
        assert_eq!(gone.iter().map(|m| m.connection.as_str()).collect::<Vec<_>>(), ["c1"]);
        assert!(t.expire(100).is_empty(), "an expired entry is handed back only once");
        assert!(!t.refresh("c1", 300, 100), "an expired entry cannot come back by refresh");
        assert_eq!(t.remove("c1"), None);
        assert_eq!(t.members(150).len(), 1);
        assert_eq!(t.remove("c2").map(|m| m.user.id), Some("ann".into()));
        assert!(t.is_empty());
    }

    #[test]
    fn an_entry_expired_but_not_swept_is_not_refreshed_back() {
        let mut t = PresenceTable::new();
        t.upsert(member("c1", "ann", 0), 100);
        assert!(t.is_live("c1", 99));
        assert!(!t.is_live("c1", 100));
        assert!(!t.refresh("c1", 300, 150), "listed as gone at 150, so gone");
        assert!(t.members(150).is_empty());
        assert_eq!(t.expire(150).len(), 1, "the sweep still finds it, and hands it back");
    }

    #[test]
    fn members_are_listed_in_join_order_and_hide_the_expired() {
        let mut t = PresenceTable::new();
        t.upsert(member("b", "u2", 5), 1_000);
        t.upsert(member("a", "u1", 7), 10);
        t.upsert(member("c", "u1", 5), 1_000);
        assert_eq!(t.members(20).iter().map(|m| m.connection.as_str()).collect::<Vec<_>>(), ["b", "c"]);
        assert_eq!(t.members(0).len(), 3);
        assert!(t.set_state("a", serde_json::json!({"page": 3}), 9));
        assert_eq!(t.get("a").unwrap().state["page"], 3);
        assert!(!t.set_state("a", serde_json::json!({"page": 4}), 10), "expired at 10, not swept");
        assert_eq!(t.get("a").unwrap().state["page"], 3);
    }

    #[test]
    fn colours_are_stable_and_spread() {
        assert_eq!(color_for("alice"), color_for("alice"));
        assert_ne!(color_for("alice"), color_for("bob"));
        assert!(color_for("x").starts_with('#') && color_for("x").len() == 7);
        let distinct: std::collections::HashSet<String> = (0..50).map(|i| color_for(&format!("user-{i}"))).collect();
        assert!(distinct.len() > 40);
        assert_eq!(UserInfo::new("u", None, None, Some("red".into())).color, "red");
    }
}
