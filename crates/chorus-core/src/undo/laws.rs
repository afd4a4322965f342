//! The laws a lazy chain relies on (see `chain.rs`), checked on random
//! documents and ops, with inserts at shared positions, overlapping
//! deletes, astral code points, and deletes with and without their text.
//!
//! - A step moved through an op, and an op carried past a step, do not
//!   depend on the op's deleted text: the chain keeps ops others commit as
//!   counts, where the reference kept them as committed.
//! - An op that changes nothing moves no step, and carried past a step
//!   still changes nothing: the chain drops such ops where the reference
//!   stopped carrying them down.
//!
//! Equal as ops, component for component, not only in effect. Folding ops
//! by composition is not among the laws: it does not hold (the last test
//! here keeps a counterexample), which is why the chain keeps ops one by one.

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::text::{apply_to_str, Delete, OpBuilder, Side, TextOp};
use crate::text::test_op;

const ALPHABET: &[char] = &['a', 'b', 'é', '😭', '\u{301}'];

fn text(rng: &mut ChaCha8Rng, max: usize) -> String {
    let n = rng.random_range(0..=max);
    (0..n).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())]).collect()
}

/// A random op against `doc`: a few inserts and deletes at sorted spots,
/// often touching, deletes with their text or counted.
fn op(rng: &mut ChaCha8Rng, doc: &str, with_text: bool) -> TextOp {
    let chars: Vec<char> = doc.chars().collect();
    let mut b = OpBuilder::new();
    let mut at = 0;
    for _ in 0..rng.random_range(1..=3) {
        let skip = rng.random_range(0..=(chars.len() - at).min(3));
        b.retain(skip);
        at += skip;
        if rng.random_bool(0.5) {
            b.insert(text(rng, 3));
        }
        if at < chars.len() && rng.random_bool(0.5) {
            let n = rng.random_range(1..=(chars.len() - at).min(4));
            let gone: String = chars[at..at + n].iter().collect();
            b.delete(if with_text { Delete::Text(gone) } else { Delete::Len(n) });
            at += n;
        }
        if rng.random_bool(0.3) {
            b.insert(text(rng, 2));
        }
    }
    b.finish()
}

/// A document, a step `a` made on it, and ops `b` and `c` committed after
/// one another on it.
fn case(seed: u64) -> (TextOp, TextOp, TextOp) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let doc = text(&mut rng, 8);
    let a = op(&mut rng, &doc, true);
    let counted = rng.random_bool(0.5);
    let b = op(&mut rng, &doc, counted);
    let after_b = apply_to_str(&doc, &b).expect("b applies");
    let counted = rng.random_bool(0.5);
    let c = op(&mut rng, &after_b, counted);
    (a, b, c)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    #[test]
    fn deleted_text_does_not_move_steps(seed in any::<u64>()) {
        let (a, b, _) = case(seed);
        prop_assert_eq!(a.transform(&b.strip_invertible(), Side::Right), a.transform(&b, Side::Right), "seed {}", seed);
        prop_assert_eq!(b.strip_invertible().transform(&a, Side::Left), b.transform(&a, Side::Left).strip_invertible(), "seed {}", seed);
    }

    #[test]
    fn an_op_that_changes_nothing_moves_nothing(seed in any::<u64>()) {
        let (a, _, _) = case(seed);
        let nothing = TextOp::new();
        prop_assert_eq!(a.transform(&nothing, Side::Right), a.clone(), "seed {}", seed);
        prop_assert!(nothing.transform(&a, Side::Left).is_noop(), "seed {}", seed);
    }
}

/// Carrying `compose(b, c)` past a step orders an insert and a delete at
/// one spot otherwise than carrying `b` and `c` one by one, and a step that
/// inserts at that spot lands on either side of the insert accordingly.
#[test]
fn folding_ops_would_move_a_later_step_elsewhere() {
    let (a, b, c) = case(17643373847759321297);
    let folded = b.compose(&c).transform(&a, Side::Left);
    let one_by_one = b.transform(&a, Side::Left).compose(&c.transform(&a.transform(&b, Side::Right), Side::Left));
    assert_eq!(folded, test_op(r#"[1,{"d":"ba"},"aé"]"#));
    assert_eq!(one_by_one, test_op(r#"[1,"aé",{"d":"ba"}]"#));
    let step = TextOp::insert(1, "X");
    assert_eq!(step.transform(&folded, Side::Right), TextOp::insert(1, "X"));
    assert_eq!(step.transform(&one_by_one, Side::Right), TextOp::insert(3, "X"));
}
