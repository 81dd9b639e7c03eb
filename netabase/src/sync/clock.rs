//! A hybrid logical clock: timestamps that follow wall-clock time but never go
//! backwards and always exceed every timestamp this node has seen, so a write
//! made after seeing another is ordered after it even across skewed clocks.

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
    #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
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

    /// Folds in a timestamp seen on a record from elsewhere, so our next write
    /// orders after it.
    ///
    /// # Errors
    ///
    /// [`ClockError::TooFarAhead`] if it is more than the allowed drift ahead
    /// of our wall clock; the clock is then left as it was, so one peer with a
    /// broken clock cannot drag ours into the future.
    pub fn observe(&self, seen: Timestamp) -> Result<(), ClockError> {
        let wall = self.wall_millis();
        let ahead_ms = seen.millis().saturating_sub(wall);
        if ahead_ms > self.max_drift_ms {
            return Err(ClockError::TooFarAhead {
                ahead_ms,
                max_drift_ms: self.max_drift_ms,
            });
        }
        self.last.fetch_max(seen.0, Ordering::AcqRel);
        Ok(())
    }

    /// The configured drift bound in milliseconds.
    pub fn max_drift_ms(&self) -> u64 {
        self.max_drift_ms
    }
}

#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
fn system_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
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
    fn observing_moves_past_the_seen_timestamp() {
        let clock = Clock::with_wall_clock(1000, frozen);
        let seen = Timestamp::new(1_000_500, 7);
        clock.observe(seen).unwrap();
        assert!(clock.now() > seen);
    }

    #[test]
    fn far_future_is_refused_and_ignored() {
        let clock = Clock::with_wall_clock(1000, frozen);
        let before = clock.now();
        let err = clock
            .observe(Timestamp::new(1_000_000 + 10 * 60 * 1000, 0))
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
