//! Hybrid logical clock: the timestamps that order last-writer-wins writes and
//! tag set additions.
//!
//! A stamp is (wall milliseconds, counter, writer), compared in that order. The
//! wall part keeps stamps close to real time, so "last writer" means what people
//! expect; the counter keeps them strictly increasing when the wall clock
//! stalls or steps back; the writer breaks the remaining ties the same way on
//! every replica. Nothing here is floating point, and nothing reads a clock:
//! the caller passes `now_ms`.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// How far ahead of our own wall clock a remote stamp may be before we refuse
/// it. Without a bound, one stamp from a badly set clock (or a hostile peer)
/// would drag every later stamp into the future and win every write for as
/// long as the skew lasts.
pub const DEFAULT_MAX_DRIFT_MS: u64 = 60_000;

/// A hybrid logical clock timestamp. Ordered by wall time, then counter, then
/// writer, so two stamps are equal only when they are the same stamp.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Hlc {
    /// Milliseconds since the epoch, as the issuing clock saw them (or later,
    /// when it had already seen a later stamp).
    pub wall_ms: u64,
    /// Orders stamps that share a wall time.
    pub counter: u32,
    /// Who issued the stamp: a node or replica id, unique per clock.
    pub writer: String,
}

impl Hlc {
    pub fn new(wall_ms: u64, counter: u32, writer: impl Into<String>) -> Self {
        Self {
            wall_ms,
            counter,
            writer: writer.into(),
        }
    }
}

impl Ord for Hlc {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.wall_ms, self.counter, &self.writer).cmp(&(
            other.wall_ms,
            other.counter,
            &other.writer,
        ))
    }
}

impl PartialOrd for Hlc {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}@{}", self.wall_ms, self.counter, self.writer)
    }
}

/// Why the clock refused to issue or observe a stamp. The clock is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ClockError {
    #[error("remote stamp at {remote_ms} ms is more than {max_drift_ms} ms ahead of our clock ({now_ms} ms)")]
    TooFarAhead {
        remote_ms: u64,
        now_ms: u64,
        max_drift_ms: u64,
    },
    #[error("the clock has reached the largest stamp it can represent")]
    Exhausted,
}

/// Issues strictly increasing [`Hlc`] stamps for one writer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HlcClock {
    writer: String,
    /// The greatest (wall, counter) issued or observed so far.
    wall_ms: u64,
    counter: u32,
    max_drift_ms: u64,
}

impl HlcClock {
    /// A clock for `writer`, which must be unique among the clocks whose stamps
    /// meet (a node id, say): the writer is what makes stamps unique.
    pub fn new(writer: impl Into<String>) -> Self {
        Self::with_max_drift(writer, DEFAULT_MAX_DRIFT_MS)
    }

    /// A clock that refuses remote stamps more than `max_drift_ms` ahead of
    /// its own wall time (`u64::MAX` accepts any).
    pub fn with_max_drift(writer: impl Into<String>, max_drift_ms: u64) -> Self {
        Self {
            writer: writer.into(),
            wall_ms: 0,
            counter: 0,
            max_drift_ms,
        }
    }

    pub fn writer(&self) -> &str {
        &self.writer
    }

    /// A stamp greater than every stamp this clock issued or observed before.
    /// Takes the wall time when it has moved on; otherwise stays on the last
    /// wall time and bumps the counter, so a clock stepping back never makes
    /// stamps go backwards.
    pub fn issue(&mut self, now_ms: u64) -> Result<Hlc, ClockError> {
        let (wall_ms, counter) = if now_ms > self.wall_ms {
            (now_ms, 0)
        } else {
            successor(self.wall_ms, self.counter)?
        };
        self.wall_ms = wall_ms;
        self.counter = counter;
        Ok(Hlc {
            wall_ms,
            counter,
            writer: self.writer.clone(),
        })
    }

    /// Remembers a stamp seen from elsewhere, so the next stamp issued here
    /// orders after it: a write made after seeing another write wins over it.
    /// Refuses stamps too far ahead of `now_ms` (see [`DEFAULT_MAX_DRIFT_MS`]).
    pub fn observe(&mut self, remote: &Hlc, now_ms: u64) -> Result<(), ClockError> {
        if remote.wall_ms > now_ms.saturating_add(self.max_drift_ms) {
            return Err(ClockError::TooFarAhead {
                remote_ms: remote.wall_ms,
                now_ms,
                max_drift_ms: self.max_drift_ms,
            });
        }
        if (remote.wall_ms, remote.counter) > (self.wall_ms, self.counter) {
            self.wall_ms = remote.wall_ms;
            self.counter = remote.counter;
        }
        Ok(())
    }
}

/// The next (wall, counter) after the given one. A full counter carries into
/// the wall time, which keeps stamps strictly increasing at the cost of running
/// one millisecond ahead; it takes four billion stamps in one millisecond.
fn successor(wall_ms: u64, counter: u32) -> Result<(u64, u32), ClockError> {
    match counter.checked_add(1) {
        Some(counter) => Ok((wall_ms, counter)),
        None => wall_ms
            .checked_add(1)
            .map(|w| (w, 0))
            .ok_or(ClockError::Exhausted),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_order_by_wall_then_counter_then_writer() {
        assert!(Hlc::new(1, 9, "z") < Hlc::new(2, 0, "a"));
        assert!(Hlc::new(2, 0, "z") < Hlc::new(2, 1, "a"));
        assert!(Hlc::new(2, 1, "a") < Hlc::new(2, 1, "b"));
        assert_eq!(Hlc::new(2, 1, "a").to_string(), "2.1@a");
    }

    #[test]
    fn a_stalled_or_backward_clock_still_moves_forward() {
        let mut c = HlcClock::new("n1");
        assert_eq!(c.issue(100).unwrap(), Hlc::new(100, 0, "n1"));
        assert_eq!(c.issue(100).unwrap(), Hlc::new(100, 1, "n1"));
        assert_eq!(c.issue(50).unwrap(), Hlc::new(100, 2, "n1"));
        assert_eq!(c.issue(101).unwrap(), Hlc::new(101, 0, "n1"));
    }

    #[test]
    fn observing_a_later_stamp_puts_the_next_one_after_it() {
        let mut c = HlcClock::new("a");
        c.issue(10).unwrap();
        let remote = Hlc::new(500, 7, "z");
        c.observe(&remote, 20).unwrap();
        let next = c.issue(20).unwrap();
        assert_eq!(next, Hlc::new(500, 8, "a"));
        assert!(next > remote, "the counter, not the writer, puts it after");
    }

    #[test]
    fn a_full_counter_carries_into_the_wall_time() {
        let mut c = HlcClock::new("a");
        c.observe(&Hlc::new(5, u32::MAX, "b"), 5).unwrap();
        assert_eq!(c.issue(5).unwrap(), Hlc::new(6, 0, "a"));
        let mut c = HlcClock::with_max_drift("a", u64::MAX);
        c.observe(&Hlc::new(u64::MAX, u32::MAX, "b"), 0).unwrap();
        let before = c.clone();
        assert_eq!(c.issue(0), Err(ClockError::Exhausted));
        assert_eq!(c, before);
    }

    #[test]
    fn stamps_from_far_in_the_future_are_refused() {
        let mut c = HlcClock::with_max_drift("a", 1_000);
        let before = c.clone();
        let err = c.observe(&Hlc::new(10_001, 0, "b"), 9_000).unwrap_err();
        assert_eq!(
            err,
            ClockError::TooFarAhead {
                remote_ms: 10_001,
                now_ms: 9_000,
                max_drift_ms: 1_000
            }
        );
        assert_eq!(c, before);
        c.observe(&Hlc::new(10_000, 0, "b"), 9_000).unwrap();
    }
}
