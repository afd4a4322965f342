//! The undo history as it was before steps moved lazily: every op given
//! moves every step of both chains at once. Kept for tests only, as the
//! model the lazy [`super::UndoStack`] must agree with step for step, and as
//! the writer of the stored format that histories saved before the change
//! still have.

#![allow(dead_code)]

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::{before, UndoError};
use crate::text::{Side, TextOp};

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
    /// An empty history with the default limits.
    pub fn new() -> Self {
        Self::with_limits(super::DEFAULT_DEPTH, super::DEFAULT_CAPTURE_MS)
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

impl UndoStack {
    /// Both chains, bottom first: what the lazy history must come to when
    /// every step is brought to the present.
    pub fn chains(&self) -> (Vec<TextOp>, Vec<TextOp>) {
        (self.undo.iter().cloned().collect(), self.redo.iter().cloned().collect())
    }
}

/// Whether the inverse of a new edit, composed before the top step, keeps
/// the step's number of pieces: the edit extends or trims the step's text
/// rather than touching text elsewhere.
fn joins_run(inverse: &TextOp, top: &TextOp) -> bool {
    inverse.compose(top).components().len() <= top.components().len()
}
