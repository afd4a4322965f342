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
        let mut bytes = Vec::with_capacity(40 + client.len() + op.components().len() * 9);
        bytes.extend_from_slice(&self.0.to_le_bytes());
        bytes.extend_from_slice(&version.to_le_bytes());
        bytes.extend_from_slice(&seq.to_le_bytes());
        push_str(&mut bytes, client);
        for c in op.components() {
            match c {
                Component::Retain(n) => {
                    bytes.push(b'r');
                    bytes.extend_from_slice(&(*n as u64).to_le_bytes());
                }
                Component::Insert(s) => {
                    bytes.push(b'i');
                    push_str(&mut bytes, s);
                }
                Component::Delete(Delete::Len(n)) => {
                    bytes.push(b'd');
                    bytes.extend_from_slice(&(*n as u64).to_le_bytes());
                }
                Component::Delete(Delete::Text(s)) => {
                    bytes.push(b'D');
                    push_str(&mut bytes, s);
                }
            }
        }
        Digest(xxhash_rust::xxh3::xxh3_64(&bytes))
    }

    /// The 16 hex digits of the wire form.
    pub fn to_hex(self) -> String {
        format!("{:016x}", self.0)
    }

    pub fn from_hex(s: &str) -> Option<Digest> {
        if s.len() != 16 {
            return None;
        }
        u64::from_str_radix(s, 16).ok().map(Digest)
    }
}

/// Length-prefixed, so that no two (client, components) pairs share bytes.
fn push_str(bytes: &mut Vec<u8>, s: &str) {
    bytes.extend_from_slice(&(s.len() as u64).to_le_bytes());
    bytes.extend_from_slice(s.as_bytes());
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
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::from_hex(&s).ok_or_else(|| serde::de::Error::custom(format!("a digest is 16 hex digits, not {s:?}")))
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
    }

    /// Nodes of different Chorus versions share stores: the chain must not
    /// change with the build.
    #[test]
    fn the_chain_is_pinned() {
        let d = Digest::EMPTY.next(1, "u3:ann:tab", 7, &op(r#"[2, "hé😭", {"d": "x"}]"#));
        assert_eq!(d.to_hex(), "1b14d87b025e5514");
    }
}
