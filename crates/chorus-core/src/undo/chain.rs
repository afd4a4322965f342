//! A chain of undo steps that moves through later ops lazily, one step at a
//! time, and only when that step is needed.
//!
//! Moving a chain through an op means: the top step is transformed through
//! the op, the op is carried past the (old) top step, and the carried op
//! moves the step below, and so on down. Step `i` therefore needs only the
//! ops as carried past the steps above it, in order; so each step keeps the
//! ops it has not met yet ([`Pending`]), and bringing a step to the present
//! passes its pending ops, carried past it, on to the step below. The pairs
//! of (step, op) that get transformed are the same as moving the whole chain
//! at every op, so the steps come out the same; but an op given to the chain
//! costs a push, and a step pays only when it reaches the top.
//!
//! An op is given to every history of a document as one shared copy (an
//! [`Arc`]), so a history pays a pointer for it. Bringing the top step to
//! the present (which every edit does, to see whether it joins the step)
//! does not carry its ops past it for the step below yet: the step below
//! keeps the top's old op and the shared ops, and carries them when it is
//! needed itself. Most steps are forgotten past the depth without ever being
//! needed, and then cost a transform per op for the top's sake only. A step
//! alone in its chain has nobody to carry ops to, so it meets its pending
//! ops as soon as there are a few ([`Chain::EAGER`]): a one-step history
//! holds almost nothing. What a chain holds is bounded
//! ([`DEFAULT_MAX_PENDING`](super::DEFAULT_MAX_PENDING)): past the bound its
//! oldest steps are forgotten, as past its depth.
//!
//! Ops are not folded together by composition: composing two ops and
//! carrying the result past a step can order an insert and a delete at one
//! spot differently from carrying them one by one, and that order decides
//! where a later undo puts its text (`laws.rs` keeps the counterexample).

use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::text::{Side, TextOp};

/// Ops a step has yet to be transformed through, oldest first. They only
/// ever move steps (their lengths count, never their text), so deletes are
/// kept as counts.
///
/// Ops carried past the step above are kept as that step was when it met
/// them and the ops it met ([`Segment::Past`]), and carried only when this
/// step is needed: in an edit storm most steps are forgotten past the depth
/// long before anyone undoes them, and then nothing is carried at all.
///
/// The count of ops is kept beside the segments: a history checks its bound
/// at every edit of its user, and summing the segments of every step there
/// was a few percent of a busy room's CPU.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Pending {
    segments: Vec<Segment>,
    len: usize,
}

/// A run of a step's pending ops.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Ops as they are.
    Ops(Vec<Arc<TextOp>>),
    /// The ops the step above met, starting from `past` (its op before them),
    /// not yet carried past it: carrying `ops[i]` past the step as it was
    /// after `ops[..i]` gives this step's op.
    Past { past: TextOp, ops: Vec<Arc<TextOp>> },
}

impl Segment {
    /// The ops as this step meets them: those of a `Past` carried past the
    /// step above, the ops that carrying empties dropped.
    fn carry_into(self, out: &mut Vec<Arc<TextOp>>) {
        match self {
            Segment::Ops(ops) if out.is_empty() => *out = ops,
            Segment::Ops(ops) => out.extend(ops),
            Segment::Past { mut past, ops } => {
                out.reserve(ops.len());
                for op in ops {
                    let carried = op.transform(&past, Side::Left);
                    if !carried.is_noop() {
                        out.push(Arc::new(carried));
                    }
                    past = past.transform(&op, Side::Right);
                }
            }
        }
    }
}

impl Pending {
    pub(super) fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    fn len(&self) -> usize {
        debug_assert_eq!(
            self.len,
            self.segments.iter().map(|s| match s {
                Segment::Ops(ops) | Segment::Past { ops, .. } => ops.len(),
            }).sum::<usize>(),
            "the count kept beside the segments"
        );
        self.len
    }

    fn push(&mut self, op: &Arc<TextOp>) {
        match self.segments.last_mut() {
            Some(Segment::Ops(ops)) => ops.push(op.clone()),
            _ => self.segments.push(Segment::Ops(vec![op.clone()])),
        }
        self.len += 1;
    }

    /// Adds ops not yet carried past the step above.
    fn push_past(&mut self, past: TextOp, ops: Vec<Arc<TextOp>>) {
        self.len += ops.len();
        self.segments.push(Segment::Past { past, ops });
    }

    /// Takes the ops, carried where they were not yet.
    fn take(&mut self) -> Vec<Arc<TextOp>> {
        let mut out = Vec::new();
        self.len = 0;
        for segment in std::mem::take(&mut self.segments) {
            segment.carry_into(&mut out);
        }
        out
    }
}

/// How a pending op is stored: an op as it is, or ops not yet carried past
/// the step above (histories stored before that have only the first kind).
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum StoredPending<T, L> {
    Op(T),
    Past { past: T, ops: L },
}

impl Serialize for Pending {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let stored = self.segments.iter().flat_map(|segment| -> Box<dyn Iterator<Item = StoredPending<&TextOp, Vec<&TextOp>>>> {
            match segment {
                Segment::Ops(ops) => Box::new(ops.iter().map(|op| StoredPending::Op(&**op))),
                Segment::Past { past, ops } => Box::new(std::iter::once(StoredPending::Past { past, ops: ops.iter().map(|op| &**op).collect() })),
            }
        });
        s.collect_seq(stored)
    }
}

impl<'de> Deserialize<'de> for Pending {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut pending = Pending::default();
        for stored in Vec::<StoredPending<TextOp, Vec<TextOp>>>::deserialize(d)? {
            match stored {
                StoredPending::Op(op) => pending.push(&Arc::new(op)),
                StoredPending::Past { past, ops } => pending.push_past(past, ops.into_iter().map(Arc::new).collect()),
            }
        }
        Ok(pending)
    }
}

/// One step: the op that takes it back (or forward again), and the ops it
/// has not met yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Step {
    pub(super) op: TextOp,
    pub(super) pending: Pending,
}

/// The stored form of a step: a step with nothing pending is stored as its
/// op alone, which is also how histories were stored before steps moved
/// lazily, so those load as they are.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum StoredStep {
    Present(TextOp),
    Behind { op: TextOp, pending: Pending },
}

impl Serialize for Step {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.pending.is_empty() {
            self.op.serialize(s)
        } else {
            #[derive(Serialize)]
            struct Behind<'a> {
                op: &'a TextOp,
                pending: &'a Pending,
            }
            Behind { op: &self.op, pending: &self.pending }.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Step {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match StoredStep::deserialize(d)? {
            StoredStep::Present(op) => Step { op, pending: Pending::default() },
            StoredStep::Behind { op, pending } => Step { op, pending },
        })
    }
}

/// Steps, newest at the back; each applies to the document the one above
/// it would leave, once both have met their pending ops.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(super) struct Chain(VecDeque<Step>);

impl Chain {
    /// Pending ops the bottom step keeps before meeting them.
    pub(super) const EAGER: usize = 32;

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn clear(&mut self) {
        self.0.clear();
    }

    /// Ops held, over all steps.
    pub(super) fn pending(&self) -> usize {
        self.0.iter().map(|s| s.pending.len()).sum()
    }

    /// Moves the chain through an op committed after it (stripped of its
    /// deleted text): the top step will meet it when it is next needed.
    pub(super) fn give(&mut self, op: &Arc<TextOp>) {
        let Some(top) = self.0.back_mut() else { return };
        top.pending.push(op);
        // Only a history nobody uses keeps ops in its top step for long;
        // checking every so often bounds it at a sum's cost.
        if top.pending.len() % 1024 == 0 {
            self.bound(super::DEFAULT_MAX_PENDING);
        }
        self.settle_bottom();
    }

    /// Brings the top step to the present, passing what it met on to the
    /// step below (to be carried past it when that step is needed); the
    /// top, if any.
    pub(super) fn top(&mut self) -> Option<&mut TextOp> {
        let mut top = self.0.pop_back()?;
        if !top.pending.is_empty() {
            let ops = top.pending.take();
            let past = self.0.back().map(|_| top.op.clone());
            for op in &ops {
                top.op = top.op.transform(op, Side::Right);
            }
            if let (Some(below), Some(past)) = (self.0.back_mut(), past) {
                below.pending.push_past(past, ops);
            }
        }
        self.0.push_back(top);
        self.settle_bottom();
        self.0.back_mut().map(|s| &mut s.op)
    }

    /// Lets a step alone in its chain meet its pending ops once it holds a
    /// few: it carries them nowhere, so this costs one transform each. (The
    /// bottom of a longer chain gains ops only while it is second, and is
    /// the next step forgotten past the depth: it is left lazy.)
    fn settle_bottom(&mut self) {
        if self.0.len() != 1 {
            return;
        }
        let Some(bottom) = self.0.front_mut() else { return };
        if bottom.pending.len() > Self::EAGER {
            for op in bottom.pending.take() {
                bottom.op = bottom.op.transform(&op, Side::Right);
            }
        }
    }

    /// Forgets the oldest steps while the chain holds more than `max`
    /// pending ops (the top step alone is then the bottom, and settles).
    pub(super) fn bound(&mut self, max: usize) {
        while self.0.len() > 1 && self.pending() > max {
            self.0.pop_front();
        }
        self.settle_bottom();
    }

    /// The top step in the present, after dropping steps that no longer
    /// change anything (which leaves the chain valid: the step below
    /// applies to the same text).
    pub(super) fn live_top(&mut self) -> Option<&TextOp> {
        while self.top().is_some_and(|op| op.is_noop()) {
            self.0.pop_back();
        }
        self.0.back().map(|s| &s.op)
    }

    /// Takes off the top step; it must be in the present ([`Chain::top`]).
    pub(super) fn pop(&mut self) -> Option<TextOp> {
        let step = self.0.pop_back()?;
        debug_assert!(step.pending.is_empty(), "a step is taken off only in the present");
        Some(step.op)
    }

    /// Puts a step on top; it applies to the present document.
    pub(super) fn push(&mut self, op: TextOp) {
        self.0.push_back(Step { op, pending: Pending::default() });
    }

    /// Forgets the oldest steps beyond `depth`. The oldest step is the last
    /// one a chain reaches, so the rest of the chain stays valid.
    pub(super) fn trim(&mut self, depth: usize) {
        while self.0.len() > depth {
            self.0.pop_front();
        }
    }

    /// Every step brought to the present, bottom first (for tests).
    #[cfg(test)]
    pub(super) fn present(&self) -> Vec<TextOp> {
        let mut chain = self.clone();
        let mut out = Vec::new();
        while chain.top().is_some() {
            out.push(chain.pop().expect("a top"));
        }
        out.reverse();
        out
    }
}
