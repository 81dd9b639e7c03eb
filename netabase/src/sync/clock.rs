//! A hybrid logical clock: timestamps that follow wall-clock time but never go
//! backwards. A write to a key is stamped past the version of that key it
//! replaces ([`Clock::now_after`]), so it is ordered after it even across
//! skewed clocks; records from elsewhere are only checked against the drift
//! bound ([`Clock::check`]) and never move the clock, so one record stamped
//! far ahead cannot drag every later write of this node forward.

use std::sync::atomic::{AtomicU64, Ordering};

/// Bits of a [`Timestamp`] holding the logical counter.
const LOGICAL_BITS: u32 = 16;

/// A hybrid logical clock timestamp: milliseconds since the Unix epoch in the
/// upper 48 bits, a logical counter in the lower 16. Ordered as an integer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The timestamp at `millis` with logical counter `counter`.
    pub const fn new(millis: u64, counter: u16) -> Self {
        Timestamp((millis << LOGICAL_BITS) | counter as u64)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn millis(self) -> u64 {
        self.0 >> LOGICAL_BITS
    }

    /// The logical counter.
    pub const fn counter(self) -> u16 {
        (self.0 & ((1 << LOGICAL_BITS) - 1)) as u16
    }
}

/// A timestamp from another node was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClockError {
    /// The timestamp is further ahead of our wall clock than the allowed drift.
    #[error(
        "timestamp is {ahead_ms} ms ahead of this node's clock (at most {max_drift_ms} ms allowed)"
    )]
    TooFarAhead {
        /// How far ahead it is.
        ahead_ms: u64,
        /// The configured bound.
        max_drift_ms: u64,
    },
}

/// A hybrid logical clock. Thread-safe; share it behind an `Arc`.
#[derive(Debug)]
pub struct Clock {
    last: AtomicU64,
    max_drift_ms: u64,
    wall_ms: fn() -> u64,
    offset_ms: i64,
}

impl Clock {
    /// Default bound on how far ahead of our clock a peer's timestamp may be: 5 minutes.
    pub const DEFAULT_MAX_DRIFT_MS: u64 = 5 * 60 * 1000;

    /// A clock on the system's wall clock.
    pub fn system(max_drift_ms: u64) -> Self {
        Self::with_wall_clock(max_drift_ms, system_millis)
    }

    /// A clock reading wall-clock milliseconds from `wall_ms` (for platforms
    /// without `SystemTime`, and for tests).
    pub fn with_wall_clock(max_drift_ms: u64, wall_ms: fn() -> u64) -> Self {
        Clock {
            last: AtomicU64::new(0),
            max_drift_ms,
            wall_ms,
            offset_ms: 0,
        }
    }

    /// The same clock, reading `offset_ms` ahead of (or, negative, behind)
    /// its wall clock: simulates a machine whose clock is off.
    pub fn skewed(self, offset_ms: i64) -> Self {
        Clock { offset_ms, ..self }
    }

    /// Wall-clock milliseconds as this clock reads them.
    pub fn wall_millis(&self) -> u64 {
        (self.wall_ms)().saturating_add_signed(self.offset_ms)
    }

    /// A new timestamp, greater than every one this clock has issued or observed.
    pub fn now(&self) -> Timestamp {
        let wall = Timestamp::new(self.wall_millis(), 0).0;
        let previous = self
            .last
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |last| {
                Some(wall.max(last.saturating_add(1)))
            })
            // The closure always returns Some.
            .unwrap_or_else(|last| last);
        Timestamp(wall.max(previous.saturating_add(1)))
    }

    /// A new timestamp for a write replacing a version stamped `held`:
    /// [`now`](Self::now), or just past `held` if that is later (a version
    /// from a peer whose clock is ahead, or written before this machine's
    /// clock was set back). Only this write is moved forward; later writes
    /// to other keys follow the wall clock again.
    pub fn now_after(&self, held: Option<Timestamp>) -> Timestamp {
        let now = self.now();
        match held {
            Some(held) if held >= now => Timestamp(held.0.saturating_add(1)),
            _ => now,
        }
    }

    /// Checks a timestamp seen on a record from elsewhere against the drift
    /// bound. The clock is not moved: conflicts are per key, and
    /// [`now_after`](Self::now_after) orders a write after the version it
    /// replaces.
    ///
    /// # Errors
    ///
    /// [`ClockError::TooFarAhead`] if it is more than the allowed drift ahead
    /// of our wall clock.
    pub fn check(&self, seen: Timestamp) -> Result<(), ClockError> {
        let wall = self.wall_millis();
        let ahead_ms = seen.millis().saturating_sub(wall);
        if ahead_ms > self.max_drift_ms {
            return Err(ClockError::TooFarAhead {
                ahead_ms,
                max_drift_ms: self.max_drift_ms,
            });
        }
        Ok(())
    }

    /// Makes every later timestamp greater than `issued`, a timestamp this
    /// node issued before (read back from its store on open), so its writes
    /// keep their order across a restart even if the machine's clock was set
    /// back. Timestamps more than the drift bound ahead of the wall clock are
    /// counted only up to that bound.
    pub fn seed(&self, issued: Timestamp) {
        let cap = Timestamp::new(
            self.wall_millis().saturating_add(self.max_drift_ms),
            u16::MAX,
        );
        self.last.fetch_max(issued.min(cap).0, Ordering::AcqRel);
    }

    /// The configured drift bound in milliseconds.
    pub fn max_drift_ms(&self) -> u64 {
        self.max_drift_ms
    }
}

// web-time's: std's `SystemTime::now()` panics in a browser.
fn system_millis() -> u64 {
    web_time::SystemTime::now()
        .duration_since(web_time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        // A clock set before 1970 reads as the epoch; the counter still advances.
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frozen() -> u64 {
        1_000_000
    }

    #[test]
    fn timestamps_only_grow() {
        let clock = Clock::with_wall_clock(1000, frozen);
        let a = clock.now();
        let b = clock.now();
        assert!(b > a);
        assert_eq!(a.millis(), 1_000_000);
        assert_eq!(b.counter(), a.counter() + 1);
    }

    #[test]
    fn a_write_is_stamped_past_the_version_it_replaces_and_only_that_write() {
        let clock = Clock::with_wall_clock(1000, frozen);
        let held = Timestamp::new(1_000_500, 7);
        clock.check(held).unwrap();
        assert_eq!(clock.now_after(Some(held)), Timestamp::new(1_000_500, 8));
        // The record ahead did not drag the clock: other keys follow the wall.
        assert_eq!(clock.now().millis(), 1_000_000);
        assert_eq!(clock.now_after(None).millis(), 1_000_000);
    }

    #[test]
    fn seeding_orders_later_writes_after_earlier_ones_within_the_drift() {
        let clock = Clock::with_wall_clock(1000, frozen);
        clock.seed(Timestamp::new(1_000_400, 3));
        assert_eq!(clock.now(), Timestamp::new(1_000_400, 4));
        // A stored timestamp far ahead counts only up to the drift bound.
        let clock = Clock::with_wall_clock(1000, frozen);
        clock.seed(Timestamp::new(9_000_000, 0));
        assert_eq!(clock.now().millis(), 1_001_001);
    }

    #[test]
    fn far_future_is_refused_and_ignored() {
        let clock = Clock::with_wall_clock(1000, frozen);
        let before = clock.now();
        let err = clock
            .check(Timestamp::new(1_000_000 + 10 * 60 * 1000, 0))
            .unwrap_err();
        assert_eq!(
            err,
            ClockError::TooFarAhead {
                ahead_ms: 600_000,
                max_drift_ms: 1000
            }
        );
        assert_eq!(clock.now().millis(), before.millis());
    }

    #[test]
    fn a_skewed_clock_reads_ahead() {
        let clock = Clock::with_wall_clock(1000, frozen).skewed(600_000);
        assert_eq!(clock.now().millis(), 1_600_000);
        assert_eq!(clock.wall_millis(), 1_600_000);
    }

    #[test]
    fn parts_round_trip() {
        let t = Timestamp::new(123_456, 789);
        assert_eq!((t.millis(), t.counter()), (123_456, 789));
        assert!(Timestamp::new(2, 0) > Timestamp::new(1, u16::MAX));
    }
}
