//! The algebraic laws of the text type, checked on random documents and ops
//! that include astral emoji, a ZWJ sequence, combining marks and CRLF.

use chorus_core::text::{apply_to_str, Author, Component, Delete, OpBuilder, Side, TextDoc, TextOp};
use proptest::prelude::*;

/// Pieces documents and inserts are made of; each is one or more code points.
const POOL: &[&str] = &["a", "b", "c", " ", "\r\n", "\n", "😭", "🏳️‍🌈", "e\u{301}", "\u{308}", "漢", "𝒳"];

/// A private-use code point no generated text contains: the marker for
/// position tests.
const MARK: char = '\u{E000}';

fn text(max_pieces: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(POOL), 0..max_pieces).prop_map(|v| v.concat())
}

fn nonempty_text() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(POOL), 1..4).prop_map(|v| v.concat())
}

/// Raw steps, interpreted against a document by [`build_op`].
fn steps() -> impl Strategy<Value = Vec<(u8, usize, String, bool)>> {
    prop::collection::vec((0u8..3, 1usize..8, nonempty_text(), any::<bool>()), 0..7)
}

/// Turns raw steps into a valid op for `doc`: retains and deletes never run
/// past its end, and deletes carry their text when the flag says so.
fn build_op(doc: &str, steps: &[(u8, usize, String, bool)]) -> TextOp {
    let chars: Vec<char> = doc.chars().collect();
    let mut b = OpBuilder::new();
    let mut pos = 0;
    for (kind, n, ins, with_text) in steps {
        let room = chars.len() - pos;
        match kind {
            0 if room > 0 => {
                let k = 1 + n % room;
                b.retain(k);
                pos += k;
            }
            1 if room > 0 => {
                let k = 1 + n % room;
                let d = if *with_text {
                    Delete::Text(chars[pos..pos + k].iter().collect())
                } else {
                    Delete::Len(k)
                };
                b.push(Component::Delete(d));
                pos += k;
            }
            _ => {
                b.insert(ins.clone());
            }
        }
    }
    b.finish()
}

fn doc_and_op() -> impl Strategy<Value = (String, TextOp)> {
    (text(16), steps()).prop_map(|(d, s)| {
        let op = build_op(&d, &s);
        (d, op)
    })
}

fn doc_and_two_ops() -> impl Strategy<Value = (String, TextOp, TextOp)> {
    (text(16), steps(), steps()).prop_map(|(d, s1, s2)| {
        let a = build_op(&d, &s1);
        let b = build_op(&d, &s2);
        (d, a, b)
    })
}

fn apply(doc: &str, op: &TextOp) -> String {
    apply_to_str(doc, op).unwrap_or_else(|e| panic!("apply {op} to {doc:?}: {e}"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn generated_ops_are_valid((doc, op) in doc_and_op()) {
        prop_assert_eq!(op.check_against(doc.chars().count()), Ok(()));
        prop_assert_eq!(op.clone().normalize(), op);
    }

    /// TP1: both orders of two concurrent ops reach one text, for either tie-break.
    #[test]
    fn transform_converges((doc, a, b) in doc_and_two_ops(), a_first in any::<bool>()) {
        let (sa, sb) = if a_first { (Side::Left, Side::Right) } else { (Side::Right, Side::Left) };
        let via_a = apply(&apply(&doc, &a), &b.transform(&a, sb));
        let via_b = apply(&apply(&doc, &b), &a.transform(&b, sa));
        prop_assert_eq!(via_a, via_b);
    }

    /// Transformed ops stay valid and in canonical form.
    #[test]
    fn transform_keeps_ops_canonical((doc, a, b) in doc_and_two_ops()) {
        let t = a.transform(&b, Side::Left);
        prop_assert_eq!(t.check(), Ok(()));
        prop_assert_eq!(t.check_against(apply(&doc, &b).chars().count()), Ok(()));
    }

    #[test]
    fn compose_equals_sequential_apply((doc, a) in doc_and_op(), s2 in steps()) {
        let mid = apply(&doc, &a);
        let b = build_op(&mid, &s2);
        let composed = a.compose(&b);
        prop_assert_eq!(composed.check(), Ok(()));
        prop_assert_eq!(apply(&doc, &composed), apply(&mid, &b));
    }

    /// Ops that carry their deleted text keep carrying it through compose and
    /// transform, so undo can always invert what the server stores.
    #[test]
    fn invertibility_survives_compose_and_transform((doc, a, b) in doc_and_two_ops(), s2 in steps()) {
        let d = TextDoc::from(doc.as_str());
        let a = d.make_invertible(&a).unwrap();
        let b = d.make_invertible(&b).unwrap();
        prop_assert!(a.transform(&b, Side::Left).is_invertible());
        prop_assert!(b.transform(&a, Side::Right).is_invertible());
        let mid = TextDoc::from(apply(&doc, &a).as_str());
        let c = mid.make_invertible(&build_op(&mid.to_string(), &s2)).unwrap();
        let ac = a.compose(&c);
        prop_assert!(ac.is_invertible());
        prop_assert_eq!(apply(&apply(&doc, &ac), &ac.invert().unwrap()), doc);
    }

    #[test]
    fn invert_restores_the_document((doc, op) in doc_and_op()) {
        let full = TextDoc::from(doc.as_str()).make_invertible(&op).unwrap();
        let inverse = full.invert().unwrap();
        prop_assert_eq!(apply(&apply(&doc, &full), &inverse), doc);
        prop_assert_eq!(inverse.invert().unwrap(), full);
    }

    /// A position moves exactly like a marker character placed there: someone
    /// else's insert at the spot goes after the marker, the owner's before it.
    #[test]
    fn transform_position_follows_a_marker((doc, op) in doc_and_op(), at in any::<prop::sample::Index>()) {
        let len = doc.chars().count();
        let p = at.index(len + 1);
        let marker = TextOp::insert(p, MARK.to_string());
        let marked = apply(&doc, &marker);
        for (author, side) in [(Author::Other, Side::Right), (Author::Own, Side::Left)] {
            let after = apply(&marked, &op.transform(&marker, side));
            let expected = after.chars().position(|c| c == MARK).expect("the marker survives");
            prop_assert_eq!(op.transform_position(p, author), expected, "{:?}", author);
        }
    }
}

#[test]
fn ties_between_concurrent_inserts_are_deterministic() {
    // The shared trace never has two people typing at one spot; this does.
    let doc = "ab";
    let x = TextOp::insert(1, "X");
    let y = TextOp::insert(1, "Y");
    // x was ordered first, so it is Left and stays first on every replica.
    let at_x = apply(&apply(doc, &x), &y.transform(&x, Side::Right));
    let at_y = apply(&apply(doc, &y), &x.transform(&y, Side::Left));
    assert_eq!(at_x, "aXYb");
    assert_eq!(at_y, "aXYb");
}
