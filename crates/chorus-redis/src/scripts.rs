//! The Lua scripts, and how they are run: by hash (EVALSHA), with their
//! text (EVAL) only where the server does not know them yet.
//!
//! redis-rs's own scripts answer "no such script" by loading the script
//! on every master of a Cluster (SCRIPT LOAD goes to all of them) before
//! trying again, so a room whose master is healthy failed while any other
//! master hung or was down, typically right after a master restarted with
//! an empty script cache. Here a script travels only to the master of its
//! keys: EVAL sends its text there, and the server keeps it for the next
//! EVALSHA. Every script names its room's keys, so the master of its room
//! is the only server it ever needs.
//!
//! A call is written once, as the EVALSHA command itself (a call per op
//! wrote every key and argument into a buffer of its own, then copied
//! them all into the command); EVAL, rarely needed, copies it.

use redis::ToRedisArgs;

/// A script: its text and its SHA-1.
pub(crate) struct Script {
    code: String,
    hash: String,
}

impl Script {
    fn new(code: &str) -> Self {
        Self { hash: redis::Script::new(code).get_hash().to_owned(), code: code.to_owned() }
    }

    /// A call of the script on these keys; its arguments follow
    /// ([`Invocation::arg`]).
    pub(crate) fn keys<K: AsRef<str>>(&self, keys: &[K]) -> Invocation<'_> {
        let mut by_hash = redis::cmd("EVALSHA");
        by_hash.arg(&self.hash).arg(keys.len());
        for key in keys {
            by_hash.arg(key.as_ref());
        }
        Invocation { script: self, by_hash }
    }
}

/// A call of a script: its keys and arguments, written as EVALSHA.
pub(crate) struct Invocation<'a> {
    script: &'a Script,
    by_hash: redis::Cmd,
}

/// EVALSHA and EVAL name the script in the same place: their second argument.
const SCRIPT_ARG: usize = 1;

impl Invocation<'_> {
    pub(crate) fn arg<T: ToRedisArgs>(&mut self, arg: T) -> &mut Self {
        self.by_hash.arg(arg);
        self
    }

    /// EVALSHA: the script by its hash. The Cluster client routes it by
    /// its first key, like any command.
    pub(crate) fn by_hash(&self) -> &redis::Cmd {
        &self.by_hash
    }

    /// EVAL: the script with its text, for a server that does not know it
    /// (which then keeps it for later calls by hash).
    pub(crate) fn by_text(&self) -> redis::Cmd {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(&self.script.code);
        for arg in self.by_hash.args_iter().skip(SCRIPT_ARG + 1) {
            if let redis::Arg::Simple(arg) = arg {
                cmd.arg(arg);
            }
        }
        cmd
    }
}

/// Whether a call failed because the server does not know the script.
pub(crate) fn unknown_script(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}

/// The Lua scripts, each the `.lua` files beside this module.
pub(crate) struct Scripts {
    pub presence_join: Script,
    pub presence_refresh: Script,
    pub presence_state: Script,
    pub presence_leave: Script,
    pub presence_expire: Script,
    pub presence_members: Script,
    pub doc_load: Script,
    pub doc_append: Script,
    pub doc_append_group: Script,
    pub doc_since: Script,
    pub doc_snapshot: Script,
    pub doc_delete: Script,
    pub doc_discard: Script,
    pub doc_import: Script,
    pub doc_list: Script,
    pub value_put: Script,
    pub value_all: Script,
    pub history_load: Script,
    pub history_save: Script,
    pub room_status: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Self {
            presence_join: Script::new(concat!(include_str!("lua/live_members.lua"), include_str!("lua/presence_join.lua"))),
            presence_refresh: Script::new(include_str!("lua/presence_refresh.lua")),
            presence_state: Script::new(include_str!("lua/presence_state.lua")),
            presence_leave: Script::new(include_str!("lua/presence_leave.lua")),
            presence_expire: Script::new(include_str!("lua/presence_expire.lua")),
            presence_members: Script::new(concat!(include_str!("lua/live_members.lua"), include_str!("lua/presence_members.lua"))),
            doc_load: Script::new(include_str!("lua/doc_load.lua")),
            doc_append: Script::new(concat!(include_str!("lua/doc_head.lua"), include_str!("lua/doc_append.lua"))),
            doc_append_group: Script::new(concat!(include_str!("lua/doc_head.lua"), include_str!("lua/doc_append_group.lua"))),
            doc_since: Script::new(include_str!("lua/doc_since.lua")),
            doc_snapshot: Script::new(include_str!("lua/doc_snapshot.lua")),
            doc_delete: Script::new(include_str!("lua/doc_delete.lua")),
            doc_discard: Script::new(include_str!("lua/doc_discard.lua")),
            doc_import: Script::new(include_str!("lua/doc_import.lua")),
            doc_list: Script::new(include_str!("lua/doc_list.lua")),
            value_put: Script::new(include_str!("lua/value_put.lua")),
            value_all: Script::new(include_str!("lua/value_all.lua")),
            history_load: Script::new(include_str!("lua/history_load.lua")),
            history_save: Script::new(include_str!("lua/history_save.lua")),
            room_status: Script::new(include_str!("lua/room_status.lua")),
        }
    }
}
