//! Submitter ids: who an op in a document's log belongs to.
//!
//! The log deduplicates ops by (submitter, sequence number), and undo reads
//! a user's own edits off it, so a submitter id is a claim about whose op it
//! is. Clients choose the id they submit under (to recognise their own ops
//! after a reconnect), but never the namespace: the server files a
//! connection's id under its authenticated user, with the user's length
//! first so that no user id can reach into another's (`u3:ann:tab-1` is
//! ann's `tab-1`; `u5:ann:x:tab-1` is user `ann:x`'s). Ops of the HTTP API
//! and of undo have namespaces of their own (`api:…`, `h…`) that no
//! connection's id can enter, so one user can never affect another's
//! deduplication or history.

/// The id a connection of `user` submits under, for the client id it chose.
pub fn connection(user: &str, client: &str) -> String {
    format!("u{}:{user}:{client}", user.len())
}

/// The id of ops a backend submits through the HTTP API under `name`.
pub fn api(name: &str) -> String {
    format!("api:{name}")
}

/// The id of `user`'s undo and redo ops.
pub fn history(user: &str) -> String {
    format!("h{}:{user}", user.len())
}

/// Recognises the ids of one user's connections.
pub struct UserEdits(String);

pub fn of_user(user: &str) -> UserEdits {
    UserEdits(format!("u{}:{user}:", user.len()))
}

impl UserEdits {
    pub fn owns(&self, submitter: &str) -> bool {
        submitter.starts_with(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_one_reaches_anothers_namespace() {
        let ann = of_user("ann");
        assert!(ann.owns(&connection("ann", "tab-1")));
        assert!(ann.owns(&connection("ann", "u3:bob:x")), "whatever the client id");
        assert!(!ann.owns(&connection("ann:x", "tab-1")), "a user whose id starts with ann's");
        assert!(!ann.owns(&connection("an", "n:tab")));
        assert!(!ann.owns(&api("u3:ann:tab-1")));
        assert!(!ann.owns(&history("ann")));
        // No connection id is ever an API or history id.
        for (user, client) in [("ann", "x"), ("h3", "ann"), ("api", "x"), ("", "")] {
            let id = connection(user, client);
            assert!(!id.starts_with("api:") && !id.starts_with('h'), "{id}");
        }
        assert_ne!(history("ann"), history("ann "));
    }
}
