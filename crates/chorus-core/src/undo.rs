//! Per-user selective undo and redo for one text document: the pure part.
//!
//! Undo inverts only the user's own edits, and never by their original
//! positions: by the time someone presses undo, colleagues may have typed
//! above the edit, so the inverse must be transformed through everything
//! committed since. [`UndoStack`] keeps each user's history as a chain of
//! inverse ops relative to the document at [`UndoStack::version`]: the top
//! step applies to that document, the step below it applies to the document
//! the top step would leave, and so on (as ot.js's undo manager keeps it).
//! Because the chain is relative to the present, a user's own later
//! edits and undos are never transformed through each other; transforming an
//! inverse through an edit and then through that edit's own undo loses the
//! position of the text in between, and would put restored text back in the
//! wrong place even with one user.
//!
//! The chain is brought forward lazily: every call that needs the present is
//! given the ops committed after `version()` (from the op log, as
//! `(version, &op)`), and transforms the chain through the ones it has not seen
//! yet. Each committed op moves the chain with [`Side::Right`] for the undo
//! steps, as if the undo were one more op ordered after it, which is also how
//! the op log rebases a late op; so an undo proposed at one version and
//! committed a few ops later by the log's rebase is still the step it was.
//! An empty history needs no ops to move, so idle users cost nothing.
//!
//! The protocol, for the room that owns the document's order:
//! 1. After committing one of the user's edits at version `v`, in its
//!    invertible form ([`TextDoc::make_invertible`](crate::text::TextDoc::make_invertible)),
//!    call [`UndoStack::record`]. Edits within the capture window (500 ms by
//!    default) of the previous one join its step; any edit empties redo.
//! 2. To undo, [`UndoStack::undo`] proposes the op to commit at the head (or
//!    `None`: nothing to undo). Commit it, then tell the stack with
//!    [`UndoStack::undone`], which moves the step to redo. Redo is the mirror
//!    image ([`UndoStack::redo`], [`UndoStack::redone`]).
//! 3. Keep the op log back to the oldest `version()` of a non-empty history, or
//!    call [`UndoStack::catch_up`] before trimming. A history whose ops are
//!    gone reports [`UndoError::Gap`] (or [`UndoError::OutOfStep`] when none
//!    at all are given); clear it.
//!
//! What undo guarantees, and what it cannot:
//! - It never removes a colleague's text. An undo deletes only characters the
//!   user inserted; a colleague's insert inside them splits the delete, and
//!   characters a colleague already deleted drop out of it.
//! - Text the user deleted comes back; where colleagues typed at the same spot
//!   since, it goes after their text.
//! - A step that colleagues' edits have emptied (they deleted everything it
//!   would remove) is skipped, so undo does the next step rather than nothing.
//! - OT keeps no trace of deleted text. If colleagues delete a range and
//!   restore it (by their own undo, say), restored text is new text to
//!   everyone else: the user's undo no longer removes the user's characters in
//!   it (they count as the colleague's now), and text the user deleted from
//!   inside that range comes back at its edge rather than at its old spot.
//! - The result can be a document nobody has seen before; that is what
//!   selective undo means.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::text::{OpError, Side, TextOp};

/// Steps kept per user and document before the oldest is forgotten.
pub const DEFAULT_DEPTH: usize = 100;

/// Edits closer together than this form one undo step, so undo takes back a
/// burst of typing rather than one character.
pub const DEFAULT_CAPTURE_MS: u64 = 500;

/// Why the history could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum UndoError {
    #[error("only ops whose deletes carry their text can be undone: {0}")]
    NotInvertible(#[from] OpError),
    #[error("the undo history is at version {at} but the next op given is version {next}; the ops in between are gone, so clear the history")]
    Gap { at: u64, next: u64 },
    #[error("the undo history is at version {at} and needs to be at version {needed}; pass the ops committed in between")]
    OutOfStep { at: u64, needed: u64 },
    #[error("the committed op is not the step that was proposed")]
    NotProposed,
}

/// One user's undo and redo history for one document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndoStack {
    /// Inverse steps, newest at the back; a chain starting at `version`.
    undo: VecDeque<TextOp>,
    /// Steps that redo what was undone, newest at the back; also a chain
    /// starting at `version`.
    redo: VecDeque<TextOp>,
    /// The document version both chains apply to.
    version: u64,
    depth: usize,
    capture_ms: u64,
    /// When the last recorded edit happened; `None` after an undo or redo, so
    /// the next edit starts a step of its own.
    last_edit_ms: Option<u64>,
}

impl Default for UndoStack {
    fn default() -> Self {
        Self::new()
    }
}

/// Which chain a proposal comes from.
#[derive(Clone, Copy)]
enum Chain {
    Undo,
    Redo,
}

impl UndoStack {
    /// An empty history keeping [`DEFAULT_DEPTH`] steps and joining edits
    /// within [`DEFAULT_CAPTURE_MS`].
    pub fn new() -> Self {
        Self::with_limits(DEFAULT_DEPTH, DEFAULT_CAPTURE_MS)
    }

    pub fn with_limits(depth: usize, capture_ms: u64) -> Self {
        Self {
            undo: VecDeque::new(),
            redo: VecDeque::new(),
            version: 0,
            depth,
            capture_ms,
            last_edit_ms: None,
        }
    }

    /// An empty history that starts recording after `version`: edits at or
    /// before it are not the user's to undo here.
    pub fn starting_at(version: u64) -> Self {
        Self { version, ..Self::new() }
    }

    /// The document version the history is relative to.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Steps that undo could take back (some may have been emptied by
    /// colleagues' edits and will be skipped).
    pub fn undo_len(&self) -> usize {
        self.undo.len()
    }

    pub fn redo_len(&self) -> usize {
        self.redo.len()
    }

    pub fn is_empty(&self) -> bool {
        self.undo.is_empty() && self.redo.is_empty()
    }

    /// Forgets everything, as after a [`UndoError::Gap`].
    pub fn clear(&mut self) {
        self.undo.clear();
        self.redo.clear();
        self.last_edit_ms = None;
    }

    /// Moves the history through `later`: ops committed after `version()`, as
    /// `(version, op)` in order. Entries at or before `version()` are skipped,
    /// so a longer stretch of the log can be passed as is.
    pub fn catch_up<'a, I>(&mut self, later: I) -> Result<(), UndoError>
    where
        I: IntoIterator<Item = (u64, &'a TextOp)>,
    {
        self.advance(later, u64::MAX)
    }

    /// Records the user's own edit `op`, committed at `version` in its
    /// invertible form, made at `now_ms`. `later` must reach the op before it
    /// (entries from `version` on are ignored, so the log since `version()`
    /// can be passed as is). Call it for each own edit right after committing
    /// it; a no-op edit records nothing.
    pub fn record<'a, I>(
        &mut self,
        op: &TextOp,
        version: u64,
        now_ms: u64,
        later: I,
    ) -> Result<(), UndoError>
    where
        I: IntoIterator<Item = (u64, &'a TextOp)>,
    {
        let inverse = op.invert()?;
        self.align(later, before(version, self.version)?)?;
        self.version = version;
        if op.is_noop() {
            return Ok(());
        }
        self.redo.clear();
        let soon = self
            .last_edit_ms
            .is_some_and(|last| now_ms.saturating_sub(last) < self.capture_ms);
        match self.undo.pop_back() {
            // Undo this edit first, then the rest of the step; but only when
            // it continues the step's run of text (the step gains no piece):
            // typing somewhere else starts a step, as in an editor, which
            // also keeps steps small to move through others' ops.
            Some(top) if soon && joins_run(&inverse, &top) => self.undo.push_back(inverse.compose(&top)),
            top => {
                self.undo.extend(top);
                self.undo.push_back(inverse);
            }
        }
        trim(&mut self.undo, self.depth);
        self.last_edit_ms = Some(now_ms);
        Ok(())
    }

    /// The op that undoes the latest step, to commit at version `head + 1`;
    /// `None` when there is nothing to undo. `later` must reach `head`. The
    /// step stays until [`UndoStack::undone`] says it was committed.
    pub fn undo<'a, I>(&mut self, head: u64, later: I) -> Result<Option<TextOp>, UndoError>
    where
        I: IntoIterator<Item = (u64, &'a TextOp)>,
    {
        self.align(later, head)?;
        Ok(live_top(&mut self.undo).cloned())
    }

    /// Records that the op [`UndoStack::undo`] proposed was committed at
    /// `version` (rebased by the log, if others committed first; `later` must
    /// then reach the op before it). Its inverse becomes the next redo.
    pub fn undone<'a, I>(
        &mut self,
        committed: &TextOp,
        version: u64,
        later: I,
    ) -> Result<(), UndoError>
    where
        I: IntoIterator<Item = (u64, &'a TextOp)>,
    {
        self.settle(Chain::Undo, committed, version, later)
    }

    /// The op that redoes the latest undo, to commit at `head + 1`; `None`
    /// when there is nothing to redo. Mirrors [`UndoStack::undo`].
    pub fn redo<'a, I>(&mut self, head: u64, later: I) -> Result<Option<TextOp>, UndoError>
    where
        I: IntoIterator<Item = (u64, &'a TextOp)>,
    {
        self.align(later, head)?;
        Ok(live_top(&mut self.redo).cloned())
    }

    /// Records that the op [`UndoStack::redo`] proposed was committed at
    /// `version`. Its inverse goes back on the undo chain, as a step of its own.
    pub fn redone<'a, I>(
        &mut self,
        committed: &TextOp,
        version: u64,
        later: I,
    ) -> Result<(), UndoError>
    where
        I: IntoIterator<Item = (u64, &'a TextOp)>,
    {
        self.settle(Chain::Redo, committed, version, later)
    }

    fn settle<'a, I>(
        &mut self,
        from: Chain,
        committed: &TextOp,
        version: u64,
        later: I,
    ) -> Result<(), UndoError>
    where
        I: IntoIterator<Item = (u64, &'a TextOp)>,
    {
        self.align(later, before(version, self.version)?)?;
        let (source, target) = match from {
            Chain::Undo => (&mut self.undo, &mut self.redo),
            Chain::Redo => (&mut self.redo, &mut self.undo),
        };
        let top = live_top(source).ok_or(UndoError::NotProposed)?;
        // The log may have dropped deleted text on the way; the positions and
        // inserts must still be the proposal's.
        if top.strip_invertible() != committed.strip_invertible() {
            return Err(UndoError::NotProposed);
        }
        let inverse = top.invert()?;
        source.pop_back();
        target.push_back(inverse);
        trim(target, self.depth);
        self.version = version;
        self.last_edit_ms = None;
        Ok(())
    }

    /// Moves the history to exactly `needed`, through the given ops.
    fn align<'a, I>(&mut self, later: I, needed: u64) -> Result<(), UndoError>
    where
        I: IntoIterator<Item = (u64, &'a TextOp)>,
    {
        self.advance(later, needed)?;
        if self.is_empty() {
            self.version = needed;
        }
        if self.version != needed {
            return Err(UndoError::OutOfStep {
                at: self.version,
                needed,
            });
        }
        Ok(())
    }

    /// Transforms both chains through the ops after `version()`, up to and
    /// including version `until`.
    fn advance<'a, I>(&mut self, later: I, until: u64) -> Result<(), UndoError>
    where
        I: IntoIterator<Item = (u64, &'a TextOp)>,
    {
        for (version, op) in later {
            if version > until {
                break;
            }
            if version <= self.version {
                continue;
            }
            if !self.is_empty() && version != self.version + 1 {
                return Err(UndoError::Gap {
                    at: self.version,
                    next: version,
                });
            }
            transform_chain(&mut self.undo, op);
            transform_chain(&mut self.redo, op);
            self.version = version;
        }
        Ok(())
    }
}

/// Whether the inverse of a new edit, composed before the top step, keeps
/// the step's number of pieces: the edit extends or trims the step's text
/// rather than touching text elsewhere.
fn joins_run(inverse: &TextOp, top: &TextOp) -> bool {
    inverse.compose(top).components().len() <= top.components().len()
}

/// The version just before the op committed at `version`.
fn before(version: u64, at: u64) -> Result<u64, UndoError> {
    // Version 0 is a document no op has touched; no op is committed "at" it.
    version
        .checked_sub(1)
        .ok_or(UndoError::OutOfStep { at, needed: 0 })
}

/// Moves a chain that applies before `op` to apply after it. Each step is
/// transformed as the later op; `op` is carried down the chain so that each
/// step below meets it in the document that step applies to.
fn transform_chain(chain: &mut VecDeque<TextOp>, op: &TextOp) {
    let mut other = op.clone();
    for step in chain.iter_mut().rev() {
        if other.is_noop() {
            break;
        }
        let carried = other.transform(step, Side::Left);
        *step = step.transform(&other, Side::Right);
        other = carried;
    }
}

/// The top of a chain after dropping steps that no longer change anything
/// (which leaves the chain valid: the step below applies to the same text).
fn live_top(chain: &mut VecDeque<TextOp>) -> Option<&TextOp> {
    while chain.back().is_some_and(TextOp::is_noop) {
        chain.pop_back();
    }
    chain.back()
}

/// Forgets the oldest steps beyond `depth`. The oldest step is the last one a
/// chain reaches, so the rest of the chain stays valid.
fn trim(chain: &mut VecDeque<TextOp>, depth: usize) {
    while chain.len() > depth {
        chain.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};

    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

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
            self.step(user, Chain::Undo)
        }

        fn redo(&mut self, user: &str) -> Option<TextOp> {
            self.step(user, Chain::Redo)
        }

        fn step(&mut self, user: &str, chain: Chain) -> Option<TextOp> {
            let head = self.head();
            self.stack(user);
            let stack = self.stacks.get_mut(user).unwrap();
            let from = stack.version();
            let proposed = match chain {
                Chain::Undo => stack.undo(head, later(self.doc.log(), from)),
                Chain::Redo => stack.redo(head, later(self.doc.log(), from)),
            }
            .unwrap()?;
            self.seq += 1;
            let version = self.doc.commit(user, self.seq, proposed.clone(), 0).unwrap().version;
            match chain {
                Chain::Undo => stack.undone(&proposed, version, std::iter::empty()),
                Chain::Redo => stack.redone(&proposed, version, std::iter::empty()),
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
}
