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
//! `(version, &op)`), and they move the chain. Each committed op moves the
//! chain with [`Side::Right`](crate::text::Side::Right) for the undo steps, as if the undo were one
//! more op ordered after it, which is also how the op log rebases a late op;
//! so an undo proposed at one version and committed a few ops later by the
//! log's rebase is still the step it was. Moving the chain costs next to
//! nothing: an op is only noted for the top step, and a step is transformed
//! through the ops it missed when it is needed, one step at a time (see
//! `chain.rs`); an empty history needs no ops at all, so idle users cost
//! nothing.
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

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::text::{OpError, TextOp};

mod chain;
#[cfg(test)]
mod laws;
#[cfg(test)]
pub(crate) mod reference;
#[cfg(test)]
mod tests;

use chain::Chain;

/// Steps kept per user and document before the oldest is forgotten.
pub const DEFAULT_DEPTH: usize = 100;

/// Ops committed by others that one chain of a history holds before it has
/// needed them; past it, the chain's oldest steps are forgotten (its latest
/// step is kept). A history whose user keeps editing or undoing never gets
/// near it.
pub const DEFAULT_MAX_PENDING: usize = 20_000;

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
    /// Inverse steps, newest at the back; a chain starting at `version`
    /// once its steps have met their pending ops.
    undo: Chain,
    /// Steps that redo what was undone, newest at the back; also a chain
    /// starting at `version`.
    redo: Chain,
    /// The document version both chains apply to: every op up to it has
    /// been given to them.
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
enum Which {
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
            undo: Chain::default(),
            redo: Chain::default(),
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

    /// Moves the history through one op committed by someone else at
    /// `version`, shared with the document's other histories: each keeps a
    /// pointer to it until it needs it. Only the op's lengths matter, so it
    /// may be stripped of its deleted text ([`TextOp::strip_invertible`]).
    /// An op at or before `version()` is skipped.
    pub fn follow(&mut self, version: u64, op: &Arc<TextOp>) -> Result<(), UndoError> {
        if version <= self.version {
            return Ok(());
        }
        if !self.is_empty() && version != self.version + 1 {
            return Err(UndoError::Gap { at: self.version, next: version });
        }
        self.undo.give(op);
        self.redo.give(op);
        self.version = version;
        Ok(())
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
        // Undo this edit first, then the rest of the step; but only when it
        // continues the step's run of text (the step gains no piece): typing
        // somewhere else starts a step, as in an editor, which also keeps
        // steps small to move through others' ops. Only then does the top
        // step need to be in the present.
        let joined = match soon.then(|| self.undo.top()).flatten() {
            Some(top) => {
                let joined = inverse.compose(top);
                let joins = joined.components().len() <= top.components().len();
                if joins {
                    *top = joined;
                }
                joins
            }
            None => false,
        };
        if !joined {
            self.undo.push(inverse);
            self.undo.trim(self.depth);
        }
        self.undo.bound(DEFAULT_MAX_PENDING);
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
        Ok(self.undo.live_top().cloned())
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
        self.settle(Which::Undo, committed, version, later)
    }

    /// The op that redoes the latest undo, to commit at `head + 1`; `None`
    /// when there is nothing to redo. Mirrors [`UndoStack::undo`].
    pub fn redo<'a, I>(&mut self, head: u64, later: I) -> Result<Option<TextOp>, UndoError>
    where
        I: IntoIterator<Item = (u64, &'a TextOp)>,
    {
        self.align(later, head)?;
        Ok(self.redo.live_top().cloned())
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
        self.settle(Which::Redo, committed, version, later)
    }

    fn settle<'a, I>(
        &mut self,
        from: Which,
        committed: &TextOp,
        version: u64,
        later: I,
    ) -> Result<(), UndoError>
    where
        I: IntoIterator<Item = (u64, &'a TextOp)>,
    {
        self.align(later, before(version, self.version)?)?;
        let (source, target) = match from {
            Which::Undo => (&mut self.undo, &mut self.redo),
            Which::Redo => (&mut self.redo, &mut self.undo),
        };
        let top = source.live_top().ok_or(UndoError::NotProposed)?;
        // The log may have dropped deleted text on the way; the positions and
        // inserts must still be the proposal's.
        if top.strip_invertible() != committed.strip_invertible() {
            return Err(UndoError::NotProposed);
        }
        let inverse = top.invert()?;
        source.pop();
        target.push(inverse);
        target.trim(self.depth);
        target.bound(DEFAULT_MAX_PENDING);
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
            if !self.is_empty() {
                let shared = Arc::new(op.strip_invertible());
                self.undo.give(&shared);
                self.redo.give(&shared);
            }
            self.version = version;
        }
        Ok(())
    }
}

/// The version just before the op committed at `version`.
pub(crate) fn before(version: u64, at: u64) -> Result<u64, UndoError> {
    // Version 0 is a document no op has touched; no op is committed "at" it.
    version
        .checked_sub(1)
        .ok_or(UndoError::OutOfStep { at, needed: 0 })
}

#[cfg(test)]
impl UndoStack {
    /// Both chains with every step brought to the present, bottom first.
    fn present(&self) -> (Vec<TextOp>, Vec<TextOp>) {
        (self.undo.present(), self.redo.present())
    }
}
