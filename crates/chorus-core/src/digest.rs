//! A fingerprint of a document's history: a hash chain over its ops.
//!
//! Versions number ops, but they do not name them: a store that lost its
//! latest ops (an older backup restored, a failover to a replica that was
//! behind, an fsync that never happened) hands out the same version numbers
//! again for different ops. A client or a replica that trusted "version 120"
//! would then take the new history's ops as the continuation of its own and
//! diverge for good. The digest of version `v` hashes the digest of `v - 1`
//! with the op at `v` (its version, submitter, sequence number and
//! components), so two histories that differ anywhere up to `v` have
//! different digests at `v`: whoever holds a (version, digest) pair can tell
//! whether the log it talks to is the one it knew.
//!
//! The hash is xxh3 (64 bits), chosen for speed: it guards against accidents
//! of storage, not against an adversary, who cannot choose which ops a store
//! forgets. Its byte input is fixed here, not left to a serializer, so every
//! node and every version of Chorus computes the same chain.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::text::{Component, Delete, TextOp};

/// The fingerprint of a document's history at one version.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Digest(u64);

impl Digest {
    /// The digest of version 0 of every log.
    pub const EMPTY: Digest = Digest(0);

    /// The digest after `op`, committed at `version` by (client, seq), on
    /// top of the history whose digest is `self`.
    pub fn next(self, version: u64, client: &str, seq: u64, op: &TextOp) -> Digest {
        // Every op is hashed on the room's task (and again by each replica
        // that hears it): the bytes of a typical one fit on the stack.
        let len = 32 + client.len() + op.components().iter().map(|c| 9 + text_of(c).map_or(0, str::len)).sum::<usize>();
        if len <= STACK_BYTES {
            let mut bytes = Stack { buf: [0; STACK_BYTES], len: 0 };
            self.feed(&mut bytes, version, client, seq, op);
            Digest(xxhash_rust::xxh3::xxh3_64(&bytes.buf[..bytes.len]))
        } else {
            let mut bytes = Vec::with_capacity(len);
            self.feed(&mut bytes, version, client, seq, op);
            Digest(xxhash_rust::xxh3::xxh3_64(&bytes))
        }
    }

    /// The bytes the digest after `op` hashes, in their fixed order.
    fn feed(self, bytes: &mut impl Sink, version: u64, client: &str, seq: u64, op: &TextOp) {
        bytes.put(&self.0.to_le_bytes());
        bytes.put(&version.to_le_bytes());
        bytes.put(&seq.to_le_bytes());
        push_str(bytes, client);
        for c in op.components() {
            match c {
                Component::Retain(n) => {
                    bytes.put(b"r");
                    bytes.put(&(*n as u64).to_le_bytes());
                }
                Component::Insert(s) => {
                    bytes.put(b"i");
                    push_str(bytes, s);
                }
                Component::Delete(Delete::Len(n)) => {
                    bytes.put(b"d");
                    bytes.put(&(*n as u64).to_le_bytes());
                }
                Component::Delete(Delete::Text(s)) => {
                    bytes.put(b"D");
                    push_str(bytes, s);
                }
            }
        }
    }

    /// The 16 hex digits of the wire form, without an allocation.
    fn hex(self) -> [u8; 16] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0; 16];
        for (i, d) in out.iter_mut().enumerate() {
            *d = DIGITS[((self.0 >> (60 - 4 * i)) & 0xf) as usize];
        }
        out
    }

    /// The 16 hex digits of the wire form.
    pub fn to_hex(self) -> String {
        String::from_utf8(self.hex().to_vec()).expect("hex digits are ASCII")
    }

    pub fn from_hex(s: &str) -> Option<Digest> {
        // from_str_radix alone would take a sign: "+" and 15 digits.
        if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(s, 16).ok().map(Digest)
    }
}

/// Length-prefixed, so that no two (client, components) pairs share bytes.
fn push_str(bytes: &mut impl Sink, s: &str) {
    bytes.put(&(s.len() as u64).to_le_bytes());
    bytes.put(s.as_bytes());
}

/// The text a component carries, if any.
fn text_of(c: &Component) -> Option<&str> {
    match c {
        Component::Insert(s) | Component::Delete(Delete::Text(s)) => Some(s),
        Component::Retain(_) | Component::Delete(Delete::Len(_)) => None,
    }
}

/// Ops whose hashed bytes fit in this many are hashed from the stack.
const STACK_BYTES: usize = 256;

/// Where the hashed bytes are written.
trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A buffer on the stack, of the length computed beforehand.
struct Stack {
    buf: [u8; STACK_BYTES],
    len: usize,
}

impl Sink for Stack {
    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({:016x})", self.0)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Every `op` and `ack` frame carries one: no string per frame.
        let hex = self.hex();
        s.serialize_str(std::str::from_utf8(&hex).expect("hex digits are ASCII"))
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(HexVisitor)
    }
}

/// Reads the digest from the string in place (every `op` a client or a
/// node reads has one), without a copy of it.
struct HexVisitor;

impl serde::de::Visitor<'_> for HexVisitor {
    type Value = Digest;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a digest of 16 hex digits")
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Digest, E> {
        Digest::from_hex(s).ok_or_else(|| E::custom(format!("a digest is 16 hex digits, not {s:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::test_op as op;

    #[test]
    fn every_part_of_an_op_counts() {
        let base = Digest::EMPTY.next(1, "a", 1, &op(r#"["x"]"#));
        let variants = [
            Digest::EMPTY.next(2, "a", 1, &op(r#"["x"]"#)),
            Digest::EMPTY.next(1, "b", 1, &op(r#"["x"]"#)),
            Digest::EMPTY.next(1, "a", 2, &op(r#"["x"]"#)),
            Digest::EMPTY.next(1, "a", 1, &op(r#"["y"]"#)),
            Digest::EMPTY.next(1, "a", 1, &op(r#"[1, "x"]"#)),
            Digest::EMPTY.next(1, "a", 1, &op(r#"[{"d": 1}]"#)),
            Digest::EMPTY.next(1, "a", 1, &op(r#"[{"d": "x"}]"#)),
            base.next(2, "a", 2, &op(r#"["x"]"#)),
        ];
        for (i, v) in variants.iter().enumerate() {
            assert_ne!(*v, base, "variant {i}");
        }
        // Client and text cannot trade bytes.
        assert_ne!(Digest::EMPTY.next(1, "ab", 1, &op(r#"["c"]"#)), Digest::EMPTY.next(1, "a", 1, &op(r#"["bc"]"#)));
        assert_eq!(base, Digest::EMPTY.next(1, "a", 1, &op(r#"["x"]"#)), "deterministic");
    }

    #[test]
    fn the_wire_form_is_sixteen_hex_digits() {
        let d = Digest::EMPTY.next(1, "a", 1, &op(r#"["x"]"#));
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json.len(), 18);
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Digest>(r#""xyz""#).is_err());
        assert_eq!(Digest::EMPTY.to_hex(), "0000000000000000");
        assert_eq!(Digest::from_hex("000000000000000a"), Some(Digest(10)));
        for bad in ["+00000000000000a", "-00000000000000a", "00000000000000a", "000000000000000g", " 00000000000000a"] {
            assert_eq!(Digest::from_hex(bad), None, "{bad:?}");
        }
    }

    /// Ops too long for the stack buffer hash the same bytes from the heap.
    #[test]
    fn long_ops_hash_the_same_bytes() {
        for n in [200, STACK_BYTES, 1_000] {
            let text = "é".repeat(n);
            let mut bytes = Vec::new();
            for part in [&7u64.to_le_bytes()[..], &3u64.to_le_bytes(), &9u64.to_le_bytes(), &1u64.to_le_bytes(), b"a", b"r", &2u64.to_le_bytes(), b"i"] {
                bytes.extend_from_slice(part);
            }
            bytes.extend_from_slice(&(text.len() as u64).to_le_bytes());
            bytes.extend_from_slice(text.as_bytes());
            let op = op(&format!(r#"[2, "{text}"]"#));
            assert_eq!(Digest(7).next(3, "a", 9, &op), Digest(xxhash_rust::xxh3::xxh3_64(&bytes)), "{n} characters");
        }
    }

    /// Nodes of different Chorus versions share stores: the chain must not
    /// change with the build.
    #[test]
    fn the_chain_is_pinned() {
        let d = Digest::EMPTY.next(1, "u3:ann:tab", 7, &op(r#"[2, "hé😭", {"d": "x"}]"#));
        assert_eq!(d.to_hex(), "1b14d87b025e5514");
    }
}
