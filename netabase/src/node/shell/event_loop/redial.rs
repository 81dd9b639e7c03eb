//! Peers this node knows how to reach, and when to dial them again: a peer
//! that disconnects (it restarted, or the network dropped) is redialled
//! with a backoff, so either side of a pair coming back reconnects within
//! seconds. Bootstrap peers are dialled until they answer, forever; peers
//! learned from Identify are given up after failing for an hour.
//!
//! Only this schedule's own dials move it: a node publishing during an
//! outage dials the missing peer for every record (Kademlia does), and if
//! each of those failures doubled the backoff, it would reach its cap within
//! seconds and the peer, once back, would wait a minute to be found.

use std::collections::HashMap;
use std::time::Duration;

use crate::node::platform::Instant;

use libp2p::swarm::ConnectionId;
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
/// How early a dial may go: the schedule is read once a tick (a second), and
/// a dial due a few milliseconds after one would otherwise wait a whole
/// tick more.
const EARLY: Duration = Duration::from_millis(250);

struct Known {
    addresses: Vec<Multiaddr>,
    /// From the configuration: never given up.
    bootstrap: bool,
    connected: bool,
    /// When to dial next; `None` while connected.
    next: Option<Instant>,
    /// This schedule's dial in progress: only its failure backs off.
    dialling: Option<ConnectionId>,
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
            dialling: None,
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
            dialling: None,
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
            known.dialling = None;
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

    /// This schedule's dial of `peer` is under way as `connection`.
    pub(super) fn dialling(&mut self, peer: PeerId, connection: ConnectionId) {
        if let Some(known) = self.known.get_mut(&peer) {
            known.dialling = Some(connection);
        }
    }

    /// A dial of `peer` failed. If it was this schedule's (`connection`),
    /// back off, or give up on a learned peer that has failed for long;
    /// another's failure (a query, a publish) changes nothing.
    pub(super) fn failed(&mut self, peer: PeerId, connection: ConnectionId, now: Instant) {
        let Some(known) = self.known.get_mut(&peer) else {
            return;
        };
        if known.connected || known.dialling != Some(connection) {
            return;
        }
        known.dialling = None;
        self.back_off(peer, now);
    }

    /// This schedule's dial of `peer` could not start: back off as after a
    /// failure, unless another dial of it is already under way (`busy`),
    /// whose outcome counts instead; then try again at the first backoff.
    pub(super) fn not_started(&mut self, peer: PeerId, busy: bool, now: Instant) {
        match self.known.get_mut(&peer) {
            Some(known) if busy => known.next = Some(now + FIRST_BACKOFF),
            Some(_) => self.back_off(peer, now),
            None => {}
        }
    }

    fn back_off(&mut self, peer: PeerId, now: Instant) {
        let Some(known) = self.known.get_mut(&peer) else {
            return;
        };
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
    /// outcome is never reported is given up on after twice the backoff,
    /// and the peer dialled again.
    pub(super) fn due(&mut self, now: Instant) -> Vec<(PeerId, Vec<Multiaddr>)> {
        let mut due = Vec::new();
        for (peer, known) in &mut self.known {
            if known.connected || known.next.is_none_or(|at| at > now + EARLY) {
                continue;
            }
            known.dialling = None;
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

    /// Dials `peer` if due at `now`, as the event loop does; returns whether
    /// it was due, and the dial's id.
    fn dial_due(redial: &mut Redial, peer: PeerId, now: Instant, id: usize) -> bool {
        let due = redial.due(now).iter().any(|(p, _)| *p == peer);
        if due {
            redial.dialling(peer, ConnectionId::new_unchecked(id));
        }
        due
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
        redial.dialling(peer, ConnectionId::new_unchecked(1));
        // Waiting for that dial: not dialled twice.
        assert!(redial.due(t0 + FIRST_BACKOFF).is_empty());
        redial.failed(peer, ConnectionId::new_unchecked(1), t0 + FIRST_BACKOFF);
        assert!(redial.due(t0 + FIRST_BACKOFF * 2).is_empty());
        assert!(dial_due(&mut redial, peer, t0 + FIRST_BACKOFF * 3, 2));
        // Backoff doubles up to its cap.
        let mut now = t0;
        for id in 3..23 {
            redial.dialling(peer, ConnectionId::new_unchecked(id));
            redial.failed(peer, ConnectionId::new_unchecked(id), now);
            now += Duration::from_secs(1);
        }
        assert_eq!(redial.known[&peer].backoff, MAX_BACKOFF);
        // A learned peer failing for an hour is forgotten; a bootstrap one is not.
        redial.dialling(peer, ConnectionId::new_unchecked(30));
        redial.not_started(peer, false, t0 + GIVE_UP + Duration::from_secs(1));
        assert!(redial.due(t0 + GIVE_UP * 2).is_empty());
        let boot = PeerId::random();
        redial.bootstrap(boot, address(2), t0);
        redial.not_started(boot, false, t0);
        redial.not_started(boot, false, t0 + GIVE_UP * 2);
        assert_eq!(redial.due(t0 + GIVE_UP * 3).len(), 1);
    }

    #[test]
    fn dials_made_for_other_reasons_do_not_move_the_schedule() {
        let mut redial = Redial::default();
        let peer = PeerId::random();
        let t0 = Instant::now();
        redial.bootstrap(peer, address(1), t0);
        redial.connected(peer);
        redial.disconnected(peer, t0);
        // A publish a second dials the missing peer, and each dial fails.
        let mut id = 100;
        let mut dialled = Vec::new();
        for second in 0..10u32 {
            let now = t0 + Duration::from_secs(second.into());
            for _ in 0..5 {
                id += 1;
                redial.failed(peer, ConnectionId::new_unchecked(id), now);
            }
            if dial_due(&mut redial, peer, now, second as usize) {
                redial.failed(peer, ConnectionId::new_unchecked(second as usize), now);
                dialled.push(second);
            }
        }
        // The schedule's own: after 1, then 2 and 4 seconds more.
        assert_eq!(dialled, vec![1, 3, 7]);
        assert_eq!(redial.known[&peer].backoff, FIRST_BACKOFF * 8);
        // Another dial already under way: try again a second later, without
        // backing off.
        let now = t0 + Duration::from_secs(15);
        assert!(redial.due(now).len() == 1);
        redial.not_started(peer, true, now);
        assert!(redial.due(now).is_empty());
        assert_eq!(redial.due(now + FIRST_BACKOFF).len(), 1);
        assert_eq!(redial.known[&peer].backoff, FIRST_BACKOFF * 8);
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
