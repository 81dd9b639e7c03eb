//! The version a write carries, and the order that decides conflicts.

use std::cmp::Ordering;

use libp2p_identity::PeerId;

use super::Timestamp;

/// The version of a write: when (hybrid logical clock) and by whom. Versions
/// are totally ordered by timestamp, then by the writer's peer id bytes; the
/// greater version wins a conflict, on every peer alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Version {
    /// When the write was made.
    pub timestamp: Timestamp,
    /// Who made it (the signer of the record).
    pub writer: PeerId,
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.timestamp
            .cmp(&other.timestamp)
            .then_with(|| self.writer.to_bytes().cmp(&other.writer.to_bytes()))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_first_then_writer() {
        let a = PeerId::random();
        let b = PeerId::random();
        let (low, high) = if a.to_bytes() < b.to_bytes() {
            (a, b)
        } else {
            (b, a)
        };
        let t = Timestamp::new(10, 0);
        assert!(
            Version {
                timestamp: t,
                writer: high
            } > Version {
                timestamp: t,
                writer: low
            }
        );
        let later = Timestamp::new(10, 1);
        assert!(
            Version {
                timestamp: later,
                writer: low
            } > Version {
                timestamp: t,
                writer: high
            }
        );
    }
}
