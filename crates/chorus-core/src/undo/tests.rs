//! The undo history's behaviour, and its agreement with the reference model.

use std::collections::{BTreeSet, HashMap};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use std::sync::Arc;

use super::*;
use crate::oplog::{OpLog, OrderedText, Rebased};
use crate::text::{Component, Delete, OpBuilder};

fn later(log: &OpLog, from: u64) -> impl Iterator<Item = (u64, &TextOp)> {
    log.since(from)
        .into_iter()
        .flatten()
        .map(|e| (e.version, &e.op))
}

/// A document with its order and one undo history per user, playing the
/// part of the room that owns them.
struct Room {
    doc: OrderedText,
    stacks: HashMap<String, UndoStack>,
    seq: u64,
}

impl Room {
    fn new(text: &str) -> Self {
        Self {
            doc: OrderedText::new(text.into(), 0),
            stacks: HashMap::new(),
            seq: 0,
        }
    }

    fn text(&self) -> String {
        self.doc.text().to_string()
    }

    fn head(&self) -> u64 {
        self.doc.version()
    }

    fn stack(&mut self, user: &str) -> &mut UndoStack {
        self.stacks
            .entry(user.to_owned())
            .or_insert_with(|| UndoStack::with_limits(10_000, DEFAULT_CAPTURE_MS))
    }

    /// Orders `user`'s `op`, made at `base`, and records it; returns the
    /// op as committed.
    fn edit(&mut self, user: &str, base: u64, op: &TextOp, now_ms: u64) -> TextOp {
        self.seq += 1;
        let Rebased::Fresh(rebased) = self.doc.log().rebase(user, self.seq, base, op).unwrap()
        else {
            panic!("not a duplicate")
        };
        let full = self.doc.text().make_invertible(&rebased).unwrap();
        let version = self.doc.commit(user, self.seq, full.clone(), 0).unwrap().version;
        let stack = self.stacks.entry(user.to_owned()).or_default();
        stack
            .record(
                &full,
                version,
                now_ms,
                later(self.doc.log(), stack.version()),
            )
            .unwrap();
        full
    }

    fn undo(&mut self, user: &str) -> Option<TextOp> {
        self.step(user, Which::Undo)
    }

    fn redo(&mut self, user: &str) -> Option<TextOp> {
        self.step(user, Which::Redo)
    }

    fn step(&mut self, user: &str, chain: Which) -> Option<TextOp> {
        let head = self.head();
        self.stack(user);
        let stack = self.stacks.get_mut(user).unwrap();
        let from = stack.version();
        let proposed = match chain {
            Which::Undo => stack.undo(head, later(self.doc.log(), from)),
            Which::Redo => stack.redo(head, later(self.doc.log(), from)),
        }
        .unwrap()?;
        self.seq += 1;
        let version = self.doc.commit(user, self.seq, proposed.clone(), 0).unwrap().version;
        match chain {
            Which::Undo => stack.undone(&proposed, version, std::iter::empty()),
            Which::Redo => stack.redone(&proposed, version, std::iter::empty()),
        }
        .unwrap();
        Some(proposed)
    }
}

#[test]
fn undo_takes_back_only_the_users_own_text() {
    let mut room = Room::new("");
    room.edit("a", 0, &TextOp::insert(0, "hello"), 0);
    room.edit("b", 1, &TextOp::insert(5, " world"), 1_000);
    room.undo("a").unwrap();
    assert_eq!(room.text(), " world");
    assert_eq!(room.undo("a"), None, "nothing left to undo");
    room.redo("a").unwrap();
    assert_eq!(room.text(), "hello world");
}

#[test]
fn a_colleagues_text_inside_the_undone_insert_stays() {
    let mut room = Room::new("");
    room.edit("a", 0, &TextOp::insert(0, "hello"), 0);
    room.edit("b", 1, &TextOp::insert(3, "X"), 1_000);
    // b deletes the "o" a typed; a's undo removes only what is left.
    room.edit("b", 2, &TextOp::delete(5, 1), 2_000);
    assert_eq!(room.text(), "helXl");
    room.undo("a").unwrap();
    assert_eq!(room.text(), "X");
}

#[test]
fn deleted_text_comes_back_after_text_typed_at_its_spot() {
    let mut room = Room::new("hello world");
    room.edit("a", 0, &TextOp::delete(5, 6), 0);
    // b, still at version 0, types at the start; then at the new end.
    room.edit("b", 0, &TextOp::insert(0, "Hi "), 10);
    room.edit("b", 2, &TextOp::insert(8, "!"), 20);
    assert_eq!(room.text(), "Hi hello!");
    room.undo("a").unwrap();
    // "!" was typed where " world" had been, and OT keeps no trace of
    // deleted text, so the restored text goes after it.
    assert_eq!(room.text(), "Hi hello! world");
}

#[test]
fn own_later_edits_do_not_displace_earlier_undos() {
    // Undoing "delete bd" and then "delete c" must put c back between b
    // and d; transforming the first inverse through the second edit and
    // its undo would lose that position.
    let mut room = Room::new("abcde");
    room.edit("a", 0, &TextOp::delete(2, 1), 0);
    room.edit("a", 1, &TextOp::delete(1, 2), 1_000);
    assert_eq!(room.text(), "ae");
    room.undo("a").unwrap();
    assert_eq!(room.text(), "abde");
    room.undo("a").unwrap();
    assert_eq!(room.text(), "abcde");
    room.redo("a").unwrap();
    room.redo("a").unwrap();
    assert_eq!(room.text(), "ae");
}

#[test]
fn edits_within_the_capture_window_are_one_step() {
    let mut room = Room::new("");
    for (i, (c, t)) in [("a", 0), ("b", 300), ("c", 700), ("d", 1_300)]
        .into_iter()
        .enumerate()
    {
        room.edit("u", i as u64, &TextOp::insert(i, c), t);
    }
    // abc were typed less than 500 ms apart each; d came 600 ms later.
    assert_eq!(room.stacks["u"].undo_len(), 2);
    room.undo("u").unwrap();
    assert_eq!(room.text(), "abc");
    room.undo("u").unwrap();
    assert_eq!(room.text(), "");
    // An undo ends the step: the next edit does not join the redo history.
    room.redo("u").unwrap();
    room.edit("u", room.head(), &TextOp::insert(3, "!"), 1_400);
    assert_eq!(room.stacks["u"].undo_len(), 2);
    assert_eq!(room.stacks["u"].redo_len(), 0, "a new edit empties redo");
}

#[test]
fn typing_somewhere_else_starts_a_step_even_within_the_window() {
    let mut room = Room::new("0123456789");
    room.edit("u", 0, &TextOp::insert(2, "a"), 0);
    room.edit("u", 1, &TextOp::insert(3, "b"), 100);
    room.edit("u", 2, &TextOp::delete(3, 1), 150);
    room.edit("u", 3, &TextOp::insert(3, "c"), 200);
    assert_eq!(room.stacks["u"].undo_len(), 1, "one run of typing, a correction included");
    room.edit("u", 4, &TextOp::insert(10, "z"), 250);
    assert_eq!(room.stacks["u"].undo_len(), 2, "a jump starts a step");
    room.undo("u").unwrap();
    assert_eq!(room.text(), "01ac23456789");
    room.undo("u").unwrap();
    assert_eq!(room.text(), "0123456789");
}

#[test]
fn an_undo_the_log_rebases_is_still_the_step() {
    let mut room = Room::new("");
    room.edit("a", 0, &TextOp::insert(0, "abc"), 0);
    let proposed = room
        .stacks
        .get_mut("a")
        .unwrap()
        .undo(1, std::iter::empty())
        .unwrap()
        .unwrap();
    // b's op is ordered first; the log rebases a's undo past it.
    room.edit("b", 1, &TextOp::insert(0, "X"), 10);
    let accepted = room.doc.submit("a", 99, 1, &proposed).unwrap();
    let crate::oplog::Accepted::Committed { version, op } = accepted else {
        panic!("fresh")
    };
    let stack = room.stacks.get_mut("a").unwrap();
    stack
        .undone(&op, version, later(room.doc.log(), stack.version()))
        .unwrap();
    assert_eq!(room.text(), "X");
    room.redo("a").unwrap();
    assert_eq!(room.text(), "Xabc");
}

#[test]
fn depth_is_bounded() {
    let mut stack = UndoStack::with_limits(3, 0);
    let mut doc = crate::text::TextDoc::new();
    for v in 1..=5u64 {
        let op = TextOp::insert(doc.len_chars(), "x");
        doc.apply(&op).unwrap();
        stack.record(&op, v, v * 1_000, std::iter::empty()).unwrap();
    }
    assert_eq!(stack.undo_len(), 3);
}

#[test]
fn steps_others_emptied_are_skipped() {
    let mut room = Room::new("");
    room.edit("a", 0, &TextOp::insert(0, "keep "), 0);
    room.edit("a", 1, &TextOp::insert(5, "gone"), 1_000);
    room.edit("b", 2, &TextOp::delete(5, 4), 1_100);
    assert_eq!(room.text(), "keep ");
    room.undo("a").unwrap();
    assert_eq!(room.text(), "", "the emptied step was skipped");
    assert_eq!(room.stacks["a"].undo_len(), 0);
}

#[test]
fn refusals_are_typed() {
    let mut stack = UndoStack::new();
    let counted = TextOp::delete(0, 2);
    assert!(matches!(
        stack.record(&counted, 1, 0, std::iter::empty()),
        Err(UndoError::NotInvertible(_))
    ));
    let op = TextOp::insert(0, "ab");
    stack.record(&op, 1, 0, std::iter::empty()).unwrap();
    // The history is at 1; version 3 exists but 2 was not given.
    let third = TextOp::insert(0, "z");
    assert_eq!(
        stack.undo(3, [(3, &third)]),
        Err(UndoError::Gap { at: 1, next: 3 })
    );
    assert_eq!(
        stack.undo(3, std::iter::empty()),
        Err(UndoError::OutOfStep { at: 1, needed: 3 })
    );
    let proposed = stack.undo(1, std::iter::empty()).unwrap().unwrap();
    assert_eq!(proposed, TextOp::delete_text(0, "ab"));
    assert_eq!(
        stack.undone(&TextOp::delete(0, 1), 2, std::iter::empty()),
        Err(UndoError::NotProposed)
    );
    // The log may keep only the count of a delete.
    stack
        .undone(&TextOp::delete(0, 2), 2, std::iter::empty())
        .unwrap();
    assert_eq!(stack.redo(2, std::iter::empty()).unwrap(), Some(op));
    // An empty history needs no ops to move anywhere.
    let mut idle = UndoStack::new();
    assert_eq!(idle.undo(40, std::iter::empty()), Ok(None));
    assert_eq!(idle.version(), 40);
}

/// One unique code point per typed character, so every character can be
/// followed through the history by its value.
fn fresh(n: &mut u32, count: usize) -> String {
    (0..count)
        .map(|_| {
            *n += 1;
            char::from_u32(0x4E00 + *n).expect("a CJK code point")
        })
        .collect()
}

/// A random edit against `text`: an insert, a delete or a replacement.
fn random_op(rng: &mut ChaCha8Rng, text: &str, n: &mut u32) -> TextOp {
    let len = text.chars().count();
    let at = rng.random_range(0..=len);
    let del = if at < len && rng.random_bool(0.5) {
        rng.random_range(1..=(len - at).min(3))
    } else {
        0
    };
    let ins = if del == 0 || rng.random_bool(0.3) {
        rng.random_range(1..=3)
    } else {
        0
    };
    let mut b = OpBuilder::new();
    b.retain(at).delete(Delete::Len(del)).insert(fresh(n, ins));
    b.finish()
}

/// What a committed, invertible op does to the set of characters.
fn track(op: &TextOp, alive: &mut BTreeSet<char>) {
    for c in op.components() {
        match c {
            Component::Insert(s) => alive.extend(s.chars()),
            Component::Delete(Delete::Text(s)) => s.chars().for_each(|ch| {
                alive.remove(&ch);
            }),
            Component::Delete(Delete::Len(_)) => panic!("committed ops carry their text here"),
            Component::Retain(_) => {}
        }
    }
}

/// Several users edit at stale versions, undo and redo; then `u` undoes
/// everything. What is left must be exactly the characters the others'
/// committed ops (their edits, undos and redos) leave alive: nothing of
/// `u`'s, nothing of theirs lost, nothing doubled. Redoing everything
/// must then give back the text from before.
fn run_history(seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut n = 0u32;
    let initial = fresh(&mut n, 6);
    let mut room = Room::new(&initial);
    let mut texts = vec![initial.clone()];
    let mut others_alive: BTreeSet<char> = initial.chars().collect();
    let mut now = 0u64;
    for _ in 0..rng.random_range(10..80) {
        now += rng.random_range(0..700);
        let user = ["u", "u", "b", "c"][rng.random_range(0..4)];
        let committed = match rng.random_range(0..10) {
            0 | 1 => room.undo(user),
            2 => room.redo(user),
            _ => {
                let head = room.head();
                let base = head - rng.random_range(0..=head.min(4));
                let op = random_op(&mut rng, &texts[base as usize], &mut n);
                Some(room.edit(user, base, &op, now))
            }
        };
        while texts.len() as u64 <= room.head() {
            texts.push(room.text());
        }
        if let (Some(op), true) = (committed, user != "u") {
            track(&op, &mut others_alive);
        }
    }
    let before = room.text();
    let mut undos = 0;
    while room.undo("u").is_some() {
        undos += 1;
    }
    let after: Vec<char> = room.text().chars().collect();
    let kept: BTreeSet<char> = after.iter().copied().collect();
    assert_eq!(
        kept.len(),
        after.len(),
        "seed {seed}: a character is doubled in {:?}",
        room.text()
    );
    assert_eq!(
        kept,
        others_alive,
        "seed {seed}: {before:?} undone to {:?}",
        room.text()
    );
    let undone = room.text();
    for _ in 0..undos {
        room.redo("u").expect("a redo for every undo");
    }
    assert_eq!(room.text(), before, "seed {seed}: redo after undo");
    while room.undo("u").is_some() {}
    assert_eq!(room.text(), undone, "seed {seed}: undo after redo");
}

/// Runs many seeds, or only `CHORUS_UNDO_SEED` when set. A failure names
/// its seed.
#[test]
fn undoing_everything_leaves_exactly_the_others_text() {
    match std::env::var("CHORUS_UNDO_SEED") {
        Ok(seed) => run_history(seed.parse().expect("CHORUS_UNDO_SEED is a number")),
        Err(_) => (0..400).for_each(run_history),
    }
}

/// One user's history twice: the lazy one, fed each op as it is committed
/// (as the server does), and the reference, brought forward only when used
/// or before a trim (as the server did).
struct Pair {
    lazy: UndoStack,
    model: reference::UndoStack,
}

/// Runs a random session of several users with both histories side by side:
/// edits at stale versions, undos, redos, log trims, and reconnects (the
/// lazy history saved and loaded again, or loaded from the reference's
/// stored form, which is how histories were stored before). Every proposal
/// must be the same, and every history must come to the same steps.
fn run_against_reference(seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut n = 0u32;
    let mut doc = OrderedText::new(fresh(&mut n, 6).as_str().into(), 0);
    let mut texts = vec![doc.text().to_string()];
    let users = ["u", "v", "b"];
    let mut pairs: HashMap<&str, Pair> = users
        .iter()
        .map(|u| {
            let pair = Pair {
                lazy: UndoStack::with_limits(8, DEFAULT_CAPTURE_MS),
                model: reference::UndoStack::with_limits(8, DEFAULT_CAPTURE_MS),
            };
            (*u, pair)
        })
        .collect();
    let mut seq = 0;
    let mut now = 0u64;
    for round in 0..rng.random_range(20..160) {
        now += rng.random_range(0..700);
        let user = users[rng.random_range(0..users.len())];
        let ctx = format!("seed {seed}, round {round}, {user}");
        match rng.random_range(0..14) {
            0..=2 => {
                let head = doc.version();
                let pair = pairs.get_mut(user).unwrap();
                let from = pair.model.version();
                let undo = rng.random_bool(0.6);
                let (lazy, model) = if undo {
                    (pair.lazy.undo(head, std::iter::empty()), pair.model.undo(head, later(doc.log(), from)))
                } else {
                    (pair.lazy.redo(head, std::iter::empty()), pair.model.redo(head, later(doc.log(), from)))
                };
                let (lazy, model) = (lazy.expect(&ctx), model.expect(&ctx));
                assert_eq!(lazy, model, "{ctx}: the proposals differ");
                let Some(op) = model else { continue };
                seq += 1;
                let version = doc.commit(user, seq, op.clone(), now).unwrap().version;
                let pair = pairs.get_mut(user).unwrap();
                if undo {
                    pair.lazy.undone(&op, version, std::iter::empty()).expect(&ctx);
                    pair.model.undone(&op, version, std::iter::empty()).expect(&ctx);
                } else {
                    pair.lazy.redone(&op, version, std::iter::empty()).expect(&ctx);
                    pair.model.redone(&op, version, std::iter::empty()).expect(&ctx);
                }
                feed_others(&mut pairs, user, version, &op);
            }
            3 => {
                // The log is trimmed: the reference is brought forward first.
                let head = doc.version();
                for pair in pairs.values_mut() {
                    let from = pair.model.version();
                    pair.model.catch_up(later(doc.log(), from)).expect(&ctx);
                }
                doc.trim_to(head - rng.random_range(0..=head.min(3)));
            }
            4 => {
                // A reconnect: the history saved and loaded again.
                let pair = pairs.get_mut(user).unwrap();
                pair.lazy = if rng.random_bool(0.3) {
                    let from = pair.model.version();
                    pair.model.catch_up(later(doc.log(), from)).expect(&ctx);
                    let old = serde_json::to_string(&pair.model).unwrap();
                    serde_json::from_str(&old).expect("the old stored form loads")
                } else {
                    serde_json::from_str(&serde_json::to_string(&pair.lazy).unwrap()).expect("the stored form loads")
                };
            }
            _ => {
                let head = doc.version();
                let oldest = doc.log().oldest();
                let base = head - rng.random_range(0..=(head - oldest).min(4));
                let op = random_op(&mut rng, &texts[base as usize], &mut n);
                seq += 1;
                let Rebased::Fresh(rebased) = doc.log().rebase(user, seq, base, &op).unwrap() else { panic!("fresh") };
                let full = doc.text().make_invertible(&rebased).unwrap();
                let version = doc.commit(user, seq, full.clone(), now).unwrap().version;
                let pair = pairs.get_mut(user).unwrap();
                pair.lazy.record(&full, version, now, std::iter::empty()).expect(&ctx);
                let from = pair.model.version();
                pair.model.record(&full, version, now, later(doc.log(), from)).expect(&ctx);
                feed_others(&mut pairs, user, version, &full);
            }
        }
        while texts.len() as u64 <= doc.version() {
            texts.push(doc.text().to_string());
        }
        for (user, pair) in &mut pairs {
            let from = pair.model.version();
            let mut model = pair.model.clone();
            model.catch_up(later(doc.log(), from)).expect("the reference reaches the head");
            assert_eq!(pair.lazy.version(), doc.version(), "seed {seed}, round {round}: {user}'s history is at the head");
            assert_eq!(pair.lazy.present(), model.chains(), "seed {seed}, round {round}: {user}'s steps differ");
        }
    }
}

/// Gives a committed op to the histories of everyone but its author.
fn feed_others(pairs: &mut HashMap<&str, Pair>, author: &str, version: u64, op: &TextOp) {
    for (user, pair) in pairs.iter_mut() {
        if *user != author {
            pair.lazy.catch_up([(version, op)]).expect("one op after the head");
        }
    }
}

/// Runs many seeds, or only `CHORUS_UNDO_SEED` when set. A failure names
/// its seed.
#[test]
fn the_lazy_history_agrees_with_the_reference() {
    match std::env::var("CHORUS_UNDO_SEED") {
        Ok(seed) => run_against_reference(seed.parse().expect("CHORUS_UNDO_SEED is a number")),
        Err(_) => (0..1_000).for_each(run_against_reference),
    }
}

#[test]
fn a_one_step_history_holds_almost_nothing() {
    let mut stack = UndoStack::new();
    stack.record(&TextOp::insert(0, "mine"), 1, 0, std::iter::empty()).unwrap();
    let mut doc: String = "mine".into();
    for v in 2..2_000u64 {
        let op = TextOp::insert(doc.chars().count() / 2, "x");
        doc = crate::text::apply_to_str(&doc, &op).unwrap();
        stack.follow(v, &Arc::new(op)).unwrap();
    }
    let saved = serde_json::to_string(&stack).unwrap();
    assert!(saved.len() < 4_000, "the bottom step meets what it is given: {} bytes", saved.len());
    let undo = stack.undo(1_999, std::iter::empty()).unwrap().expect("a step");
    let undone = crate::text::apply_to_str(&doc, &undo).unwrap();
    assert_eq!(undone, "x".repeat(1_998), "only mine went");
}

#[test]
fn a_history_nobody_uses_forgets_its_older_steps_past_the_bound() {
    let mut stack = UndoStack::with_limits(100, 0);
    let mut doc = String::new();
    for v in 1..=3u64 {
        let op = TextOp::insert(0, "m");
        doc = crate::text::apply_to_str(&doc, &op).unwrap();
        stack.record(&op, v, v * 1_000, std::iter::empty()).unwrap();
    }
    assert_eq!(stack.undo_len(), 3);
    let others = DEFAULT_MAX_PENDING as u64 + 1_100;
    for v in 4..4 + others {
        let op = Arc::new(TextOp::insert(doc.chars().count(), "x"));
        doc = crate::text::apply_to_str(&doc, &op).unwrap();
        stack.follow(v, &op).unwrap();
    }
    assert_eq!(stack.undo_len(), 1, "the older steps were forgotten, the latest kept");
    let undo = stack.undo(3 + others, std::iter::empty()).unwrap().expect("the latest step");
    assert_eq!(undo, TextOp::delete_text(0, "m"));
}

#[test]
fn ops_not_yet_carried_past_a_step_are_stored_as_they_are_and_carried_after_loading() {
    // Two steps of ann's; bob types between and after them; ann's third
    // edit brings her top step forward, which leaves bob's ops for the step
    // below to carry when it is needed.
    let mut room = Room::new("");
    for (i, text) in ["one ", "two "].iter().enumerate() {
        let at = room.text().chars().count();
        room.edit("ann", room.head(), &TextOp::insert(at, *text), i as u64 * 1_000);
        room.edit("bob", room.head(), &TextOp::insert(i, "b"), i as u64 * 1_000 + 100);
    }
    // Within the capture window: the join is tried on the top step.
    room.edit("ann", room.head(), &TextOp::insert(0, ">"), 1_200);
    let saved = serde_json::to_string(&room.stacks["ann"]).unwrap();
    assert!(saved.contains(r#""past""#), "the step below keeps the top's old op: {saved}");
    let loaded: UndoStack = serde_json::from_str(&saved).unwrap();
    assert_eq!(loaded, room.stacks["ann"]);
    assert_eq!(loaded.present(), room.stacks["ann"].present(), "carried after loading as before");
    assert_eq!(room.text(), ">bbone two ");
    room.stacks.insert("ann".into(), loaded);
    while room.undo("ann").is_some() {}
    assert_eq!(room.text(), "bb", "every step of ann's undone, bob's text kept");
}
