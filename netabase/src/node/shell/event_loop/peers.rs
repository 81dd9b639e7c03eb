//! What the event loop keeps per peer to bound what any one peer can make
//! this node do: requests being answered (per peer and in total), strikes
//! for breaking the protocol and the bans they lead to, and catch-ups to
//! retry later.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::node::platform::Instant;

use libp2p::request_response::{InboundRequestId, ResponseChannel};
use libp2p::PeerId;

use crate::node::shell::catchup::{SyncRequest, SyncResponse, FETCHES_IN_FLIGHT};

/// Sync requests one peer may have being answered at once.
const SERVING_PER_PEER: usize = 2;
/// Sync requests one peer may have waiting for a slot: an honest peer has
/// its fetches and one reconciliation message out at a time.
const WAITING_PER_PEER: usize = FETCHES_IN_FLIGHT + 4;
/// Sync requests being answered at once, over every peer. With responses of
/// at most 4 MiB, this bounds the memory held for peers that never read.
const SERVING_TOTAL: usize = 16;
/// Protocol violations before a peer is disconnected and refused.
const STRIKES: u32 = 3;
/// How long a banned peer is refused.
pub(crate) const BAN: Duration = Duration::from_secs(10 * 60);
/// How long a request may count as being answered: past it (a lost event),
/// its slot is freed.
const SERVING_LIMIT: Duration = Duration::from_secs(120);

/// A request waiting for a slot.
pub(super) type Waiting = (InboundRequestId, SyncRequest, ResponseChannel<SyncResponse>);

/// Whether a request may be answered now.
pub(super) enum Admit {
    /// Yes: it counts until [`Peers::served`].
    Now(SyncRequest, ResponseChannel<SyncResponse>),
    /// It waits for a slot ([`Peers::next_waiting`]).
    Later,
    /// The peer has too many requests waiting: it goes unanswered.
    Refused,
}

#[derive(Default)]
pub(super) struct Peers {
    serving: HashMap<InboundRequestId, (PeerId, Instant)>,
    waiting: HashMap<PeerId, VecDeque<Waiting>>,
    /// Peers with requests waiting, in turn order.
    turns: VecDeque<PeerId>,
    per_peer: HashMap<PeerId, usize>,
    strikes: HashMap<PeerId, u32>,
    banned: HashMap<PeerId, Instant>,
    retries: HashMap<PeerId, Instant>,
}

impl Peers {
    /// Whether a request from `peer` may be answered now, must wait for a
    /// slot, or is refused.
    pub(super) fn admit(
        &mut self,
        peer: PeerId,
        id: InboundRequestId,
        request: SyncRequest,
        channel: ResponseChannel<SyncResponse>,
    ) -> Admit {
        let waiting = self.waiting.get(&peer).map_or(0, VecDeque::len);
        if waiting == 0 && self.has_slot(&peer) {
            self.start(peer, id);
            return Admit::Now(request, channel);
        }
        let queue = self.waiting.entry(peer).or_default();
        if queue.len() >= WAITING_PER_PEER {
            return Admit::Refused;
        }
        if queue.is_empty() {
            self.turns.push_back(peer);
        }
        queue.push_back((id, request, channel));
        Admit::Later
    }

    fn has_slot(&self, peer: &PeerId) -> bool {
        self.per_peer.get(peer).copied().unwrap_or(0) < SERVING_PER_PEER
            && self.serving.len() < SERVING_TOTAL
    }

    fn start(&mut self, peer: PeerId, id: InboundRequestId) {
        self.serving.insert(id, (peer, Instant::now()));
        *self.per_peer.entry(peer).or_default() += 1;
    }

    /// The next waiting request that may be answered now, peers taking
    /// turns; it counts until [`served`](Self::served).
    pub(super) fn next_waiting(&mut self) -> Option<(PeerId, Waiting)> {
        for _ in 0..self.turns.len() {
            let peer = self.turns.pop_front()?;
            if !self.has_slot(&peer) {
                self.turns.push_back(peer);
                continue;
            }
            let queue = self.waiting.get_mut(&peer)?;
            let next = queue.pop_front();
            if queue.is_empty() {
                self.waiting.remove(&peer);
            } else {
                self.turns.push_back(peer);
            }
            if let Some(waiting) = next {
                self.start(peer, waiting.0);
                return Some((peer, waiting));
            }
        }
        None
    }

    /// Forgets the waiting requests of a peer that disconnected.
    pub(super) fn drop_peer(&mut self, peer: &PeerId) {
        self.waiting.remove(peer);
        self.turns.retain(|p| p != peer);
    }

    /// The request `id` was answered, failed or dropped. Idempotent.
    pub(super) fn served(&mut self, id: InboundRequestId) {
        if let Some((peer, _)) = self.serving.remove(&id) {
            if let Some(n) = self.per_peer.get_mut(&peer) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_peer.remove(&peer);
                }
            }
        }
    }

    /// Counts a violation; true when it is the one that bans the peer.
    pub(super) fn strike(&mut self, peer: PeerId) -> bool {
        let strikes = self.strikes.entry(peer).or_default();
        *strikes += 1;
        if *strikes < STRIKES {
            return false;
        }
        self.strikes.remove(&peer);
        self.banned.insert(peer, Instant::now() + BAN);
        true
    }

    pub(super) fn is_banned(&self, peer: &PeerId) -> bool {
        self.banned.contains_key(peer)
    }

    /// Asks for a catch-up with `peer` after `delay` (the earliest request wins).
    pub(super) fn retry_after(&mut self, peer: PeerId, delay: Duration) {
        let at = Instant::now() + delay;
        let due = self.retries.entry(peer).or_insert(at);
        *due = (*due).min(at);
    }

    /// Housekeeping: peers whose ban ended (to unblock) and peers due a
    /// catch-up retry.
    pub(super) fn tick(&mut self, now: Instant) -> (Vec<PeerId>, Vec<PeerId>) {
        let unbanned = take_due(&mut self.banned, now);
        let due = take_due(&mut self.retries, now);
        let stale: Vec<InboundRequestId> = self
            .serving
            .iter()
            .filter(|(_, (_, since))| now.duration_since(*since) > SERVING_LIMIT)
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            self.served(id);
        }
        (unbanned, due)
    }
}

/// Removes and returns the peers whose time in `times` has come.
fn take_due(times: &mut HashMap<PeerId, Instant>, now: Instant) -> Vec<PeerId> {
    let due: Vec<PeerId> = times
        .iter()
        .filter(|(_, at)| **at <= now)
        .map(|(peer, _)| *peer)
        .collect();
    for peer in &due {
        times.remove(peer);
    }
    due
}
