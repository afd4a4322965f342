//! Counters that merge: grow-only, and up-and-down as a pair of grow-only ones.
//!
//! Each writer counts only in its own slot, and a merge keeps the larger of
//! each slot, so merging is commutative, associative and idempotent while the
//! total is the sum of the slots. Increments themselves are not idempotent: the
//! same increment applied twice counts twice, so whoever applies ops (the
//! server) must apply each one exactly once, deduplicating resubmissions as it
//! does for text ops. Arithmetic is checked; an increment that would overflow
//! is refused and changes nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ValueError;

/// A counter that only goes up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GCounter {
    /// Each writer's own total. Zero slots are never stored, so equal counts
    /// are equal states.
    counts: BTreeMap<String, u64>,
}

impl GCounter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `amount` to `writer`'s slot. Refused when the slot or the total
    /// would pass `u64::MAX`.
    pub fn increment(&mut self, writer: &str, amount: u64) -> Result<(), ValueError> {
        self.check_increment(writer, amount)?;
        if amount > 0 {
            *self.counts.entry(writer.to_owned()).or_default() += amount;
        }
        Ok(())
    }

    fn check_increment(&self, writer: &str, amount: u64) -> Result<(), ValueError> {
        self.count_of(writer)
            .checked_add(amount)
            .ok_or(ValueError::Overflow)?;
        self.value()?
            .checked_add(amount)
            .ok_or(ValueError::Overflow)?;
        Ok(())
    }

    /// The total. Local increments keep it in range, but merging replicas that
    /// each stayed in range can still pass `u64::MAX`; that is an error rather
    /// than a wrapped or clamped number.
    pub fn value(&self) -> Result<u64, ValueError> {
        self.counts
            .values()
            .try_fold(0u64, |sum, n| sum.checked_add(*n))
            .ok_or(ValueError::Overflow)
    }

    /// What `writer` has added in total.
    pub fn count_of(&self, writer: &str) -> u64 {
        self.counts.get(writer).copied().unwrap_or(0)
    }

    /// Keeps the larger count of every writer.
    pub fn merge(&mut self, other: &GCounter) {
        for (writer, &theirs) in &other.counts {
            if theirs > self.count_of(writer) {
                self.counts.insert(writer.clone(), theirs);
            }
        }
    }
}

/// A counter that goes up and down: the increments minus the decrements, each
/// a [`GCounter`]. Its value is an `i64`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PnCounter {
    increments: GCounter,
    decrements: GCounter,
}

impl PnCounter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `amount` (negative to subtract) for `writer`. Refused when the
    /// value would leave the `i64` range or a slot would overflow.
    pub fn increment(&mut self, writer: &str, amount: i64) -> Result<(), ValueError> {
        let magnitude = amount.unsigned_abs();
        let (grows, other) = if amount >= 0 {
            (&mut self.increments, &self.decrements)
        } else {
            (&mut self.decrements, &self.increments)
        };
        grows.check_increment(writer, magnitude)?;
        let (up, down) = if amount >= 0 {
            (grows.value()? + magnitude, other.value()?)
        } else {
            (other.value()?, grows.value()? + magnitude)
        };
        signed_difference(up, down)?;
        grows.increment(writer, magnitude)
    }

    /// Subtracts `amount` (negative to add).
    pub fn decrement(&mut self, writer: &str, amount: i64) -> Result<(), ValueError> {
        self.increment(writer, amount.checked_neg().ok_or(ValueError::Overflow)?)
    }

    /// The increments minus the decrements; an error when merging has taken
    /// it out of the `i64` range.
    pub fn value(&self) -> Result<i64, ValueError> {
        signed_difference(self.increments.value()?, self.decrements.value()?)
    }

    pub fn merge(&mut self, other: &PnCounter) {
        self.increments.merge(&other.increments);
        self.decrements.merge(&other.decrements);
    }
}

fn signed_difference(up: u64, down: u64) -> Result<i64, ValueError> {
    i64::try_from(i128::from(up) - i128::from(down)).map_err(|_| ValueError::Overflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflowing_increments_are_refused_and_change_nothing() {
        let mut g = GCounter::new();
        g.increment("a", u64::MAX - 1).unwrap();
        let before = g.clone();
        assert_eq!(g.increment("a", 2), Err(ValueError::Overflow));
        assert_eq!(
            g.increment("b", 2),
            Err(ValueError::Overflow),
            "the total would overflow"
        );
        assert_eq!(g, before);
        g.increment("b", 1).unwrap();
        assert_eq!(g.value(), Ok(u64::MAX));

        let mut p = PnCounter::new();
        p.increment("a", i64::MAX).unwrap();
        assert_eq!(p.increment("b", 1), Err(ValueError::Overflow));
        p.increment("b", -5).unwrap();
        assert_eq!(p.value(), Ok(i64::MAX - 5));
        assert_eq!(p.decrement("a", i64::MIN), Err(ValueError::Overflow));
        let mut n = PnCounter::new();
        n.increment("a", i64::MIN).unwrap();
        assert_eq!(n.value(), Ok(i64::MIN));
        assert_eq!(n.decrement("a", 1), Err(ValueError::Overflow));
    }

    #[test]
    fn merged_totals_that_overflow_are_errors_not_numbers() {
        let (mut a, mut b) = (GCounter::new(), GCounter::new());
        a.increment("a", u64::MAX).unwrap();
        b.increment("b", 1).unwrap();
        a.merge(&b);
        assert_eq!(a.value(), Err(ValueError::Overflow));
    }

    #[test]
    fn merge_keeps_each_writers_latest_count() {
        let (mut a, mut b) = (PnCounter::new(), PnCounter::new());
        a.increment("a", 5).unwrap();
        b.merge(&a);
        b.increment("b", -2).unwrap();
        a.increment("a", 1).unwrap();
        a.merge(&b);
        b.merge(&a);
        assert_eq!(a, b);
        assert_eq!(a.value(), Ok(4));
    }

    #[test]
    fn zero_increments_store_nothing() {
        let mut g = GCounter::new();
        g.increment("a", 0).unwrap();
        assert_eq!(g, GCounter::new());
    }
}
