//! Peers that did not answer in time lately: a get asks them last and a
//! put does not wait for them, for a while, so one frozen peer (a closed
//! laptop lid, a suspended phone app: its connections stay open) costs
//! each call a grace period at most once, not a timeout every time.

use std::collections::HashMap;
use std::time::Duration;

use libp2p::PeerId;

use crate::node::platform::Instant;

/// How long a peer that let a request time out stays slow, unless it
/// answers something first.
const SLOW_FOR: Duration = Duration::from_secs(120);
/// Slow peers remembered at most; past this the longest-known are forgotten.
const MAX_SLOW: usize = 4096;

#[derive(Default)]
pub(super) struct Slow {
    until: HashMap<PeerId, Instant>,
}

impl Slow {
    /// `peer` let a request time out.
    pub(super) fn mark(&mut self, peer: PeerId, now: Instant) {
        if self.until.len() >= MAX_SLOW {
            self.until.retain(|_, until| *until > now);
            if self.until.len() >= MAX_SLOW {
                if let Some(oldest) = self.until.iter().min_by_key(|(_, u)| **u).map(|(p, _)| *p) {
                    self.until.remove(&oldest);
                }
            }
        }
        self.until.insert(peer, now + SLOW_FOR);
    }

    /// `peer` answered: it is not slow now.
    pub(super) fn answered(&mut self, peer: &PeerId) {
        self.until.remove(peer);
    }

    /// Whether `peer` let a request time out lately.
    pub(super) fn is_slow(&self, peer: &PeerId, now: Instant) -> bool {
        self.until.get(peer).is_some_and(|until| *until > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_slow_until_it_answers_or_the_penalty_ends() {
        let mut slow = Slow::default();
        let (a, b) = (PeerId::random(), PeerId::random());
        let now = Instant::now();
        slow.mark(a, now);
        slow.mark(b, now);
        assert!(slow.is_slow(&a, now) && slow.is_slow(&b, now));
        slow.answered(&a);
        assert!(!slow.is_slow(&a, now));
        assert!(!slow.is_slow(&b, now + SLOW_FOR));
    }

    #[test]
    fn the_set_is_bounded() {
        let mut slow = Slow::default();
        let now = Instant::now();
        for _ in 0..MAX_SLOW + 10 {
            slow.mark(PeerId::random(), now);
        }
        assert!(slow.until.len() <= MAX_SLOW);
    }
}
