//! Peers this node knows how to reach, and when to dial them again: a peer
//! that disconnects (it restarted, or the network dropped) is redialled
//! with a backoff, so either side of a pair coming back reconnects within
//! seconds. Bootstrap peers are dialled until they answer, forever; peers
//! learned from Identify are given up after failing for an hour.

use std::collections::HashMap;
use std::time::Duration;

use crate::node::platform::Instant;

use libp2p::{Multiaddr, PeerId};

/// The first wait before redialling a peer that went away.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between two dials of one peer.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long a peer learned from Identify may keep failing before it is
/// forgotten.
const GIVE_UP: Duration = Duration::from_secs(60 * 60);
/// Peers learned from Identify that are remembered at most: a flood of
/// peers cannot make this node hold or dial without bound.
const MAX_LEARNED: usize = 256;
/// Addresses remembered per peer.
const MAX_ADDRESSES: usize = 8;

struct Known {
    addresses: Vec<Multiaddr>,
    /// From the configuration: never given up.
    bootstrap: bool,
    connected: bool,
    /// When to dial next; `None` while connected or while a dial is out.
    next: Option<Instant>,
    backoff: Duration,
    failing_since: Option<Instant>,
}

#[derive(Default)]
pub(super) struct Redial {
    known: HashMap<PeerId, Known>,
}

impl Redial {
    /// A configured bootstrap peer: dialled at the next tick.
    pub(super) fn bootstrap(&mut self, peer: PeerId, address: Multiaddr, now: Instant) {
        let known = self.known.entry(peer).or_insert_with(|| Known {
            addresses: Vec::new(),
            bootstrap: true,
            connected: false,
            next: Some(now),
            backoff: FIRST_BACKOFF,
            failing_since: None,
        });
        known.bootstrap = true;
        remember(&mut known.addresses, address);
    }

    /// Where a connected peer listens, as it told us through Identify.
    pub(super) fn learn(&mut self, peer: PeerId, addresses: &[Multiaddr]) {
        if addresses.is_empty() {
            return;
        }
        if !self.known.contains_key(&peer) {
            let learned = self.known.values().filter(|k| !k.bootstrap).count();
            if learned >= MAX_LEARNED {
                return;
            }
        }
        let known = self.known.entry(peer).or_insert_with(|| Known {
            addresses: Vec::new(),
            bootstrap: false,
            connected: true,
            next: None,
            backoff: FIRST_BACKOFF,
            failing_since: None,
        });
        for address in addresses {
            remember(&mut known.addresses, address.clone());
        }
    }

    pub(super) fn connected(&mut self, peer: PeerId) {
        if let Some(known) = self.known.get_mut(&peer) {
            known.connected = true;
            known.next = None;
            known.backoff = FIRST_BACKOFF;
            known.failing_since = None;
        }
    }

    /// The last connection to `peer` closed: dial it again soon.
    pub(super) fn disconnected(&mut self, peer: PeerId, now: Instant) {
        if let Some(known) = self.known.get_mut(&peer) {
            known.connected = false;
            known.next = Some(now + known.backoff);
        }
    }

    /// A dial of `peer` failed: back off, or give up on a learned peer
    /// that has failed for long.
    pub(super) fn failed(&mut self, peer: PeerId, now: Instant) {
        let Some(known) = self.known.get_mut(&peer) else {
            return;
        };
        if known.connected {
            return;
        }
        let since = *known.failing_since.get_or_insert(now);
        if !known.bootstrap && now.duration_since(since) >= GIVE_UP {
            self.known.remove(&peer);
            return;
        }
        known.backoff = (known.backoff * 2).min(MAX_BACKOFF);
        known.next = Some(now + known.backoff);
    }

    /// Stops dialling `peer` (banned for breaking the protocol).
    pub(super) fn forget(&mut self, peer: &PeerId) {
        self.known.remove(peer);
    }

    /// The peers due for a dial now, with their addresses. A dial whose
    /// outcome is never reported counts as failed after the backoff.
    pub(super) fn due(&mut self, now: Instant) -> Vec<(PeerId, Vec<Multiaddr>)> {
        let mut due = Vec::new();
        for (peer, known) in &mut self.known {
            if known.connected || known.next.is_none_or(|at| at > now) {
                continue;
            }
            known.next = Some(now + known.backoff.max(FIRST_BACKOFF) * 2);
            due.push((*peer, known.addresses.clone()));
        }
        due
    }
}

fn remember(addresses: &mut Vec<Multiaddr>, address: Multiaddr) {
    if addresses.contains(&address) {
        return;
    }
    if addresses.len() >= MAX_ADDRESSES {
        addresses.remove(0);
    }
    addresses.push(address);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(port: u16) -> Multiaddr {
        format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap()
    }

    #[test]
    fn a_peer_that_went_away_is_dialled_again_with_a_backoff() {
        let mut redial = Redial::default();
        let peer = PeerId::random();
        let t0 = Instant::now();
        redial.learn(peer, &[address(1)]);
        redial.connected(peer);
        assert!(redial.due(t0).is_empty());
        redial.disconnected(peer, t0);
        assert!(redial.due(t0).is_empty());
        let due = redial.due(t0 + FIRST_BACKOFF);
        assert_eq!(due, vec![(peer, vec![address(1)])]);
        // Waiting for that dial: not dialled twice.
        assert!(redial.due(t0 + FIRST_BACKOFF).is_empty());
        redial.failed(peer, t0 + FIRST_BACKOFF);
        assert!(redial.due(t0 + FIRST_BACKOFF * 2).is_empty());
        assert_eq!(redial.due(t0 + FIRST_BACKOFF * 3).len(), 1);
        // Backoff doubles up to its cap.
        let mut now = t0;
        for _ in 0..20 {
            redial.failed(peer, now);
            now += Duration::from_secs(1);
        }
        assert!(redial.known[&peer].backoff <= MAX_BACKOFF);
        // A learned peer failing for an hour is forgotten; a bootstrap one is not.
        redial.failed(peer, t0 + GIVE_UP + Duration::from_secs(1));
        assert!(redial.due(t0 + GIVE_UP * 2).is_empty());
        let boot = PeerId::random();
        redial.bootstrap(boot, address(2), t0);
        redial.failed(boot, t0);
        redial.failed(boot, t0 + GIVE_UP * 2);
        assert_eq!(redial.due(t0 + GIVE_UP * 3).len(), 1);
    }

    #[test]
    fn what_is_remembered_is_bounded() {
        let mut redial = Redial::default();
        for _ in 0..MAX_LEARNED + 10 {
            redial.learn(PeerId::random(), &[address(1)]);
        }
        assert_eq!(redial.known.len(), MAX_LEARNED);
        let peer = *redial.known.keys().next().unwrap();
        let many: Vec<_> = (0..20).map(address).collect();
        redial.learn(peer, &many);
        assert_eq!(redial.known[&peer].addresses.len(), MAX_ADDRESSES);
    }
}
