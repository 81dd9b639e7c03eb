//! Records peers push over Kademlia, queued per peer and stored in batches.
//!
//! Kademlia acknowledges a push before the node has looked at it, so what a
//! node does next decides whether one peer can crowd out the others. Each
//! peer gets its own bounded queue; one storage worker takes records from
//! the queues in turn (a fair share each) and commits them in one
//! transaction per batch (group commit: one fsync for many records), with
//! one batched signature check. A peer that pushes faster than its share
//! fills only its own queue: its extra records are dropped and counted
//! (`Rejection::Overloaded`), and the node catches up with that peer soon
//! after, so what it acknowledged is still fetched.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use libp2p_identity::PeerId;

/// Records queued from one peer, at most.
pub(crate) const PER_PEER: usize = 256;
/// Records queued over every peer, at most.
const TOTAL: usize = 8192;
/// Records committed in one transaction, at most.
const BATCH: usize = 512;
/// Records taken from one peer's queue per turn.
const SHARE: usize = 32;

/// What became of a pushed record.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Queued; a worker is already draining the queues.
    Queued,
    /// Queued; start a worker ([`drain`]).
    StartWorker,
    /// That peer's queue (or the node's) is full: dropped.
    Full,
}

/// A pushed record: its Kademlia key and value.
pub(crate) type KeyValue = (Vec<u8>, Vec<u8>);

#[derive(Default)]
pub(crate) struct InboundQueue {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    queues: HashMap<PeerId, VecDeque<KeyValue>>,
    /// Peers with records queued, in turn order.
    turns: VecDeque<PeerId>,
    total: usize,
    working: bool,
}

impl InboundQueue {
    /// Queues the record `(key, value)` pushed by `peer`.
    pub(crate) fn push(&self, peer: PeerId, key: Vec<u8>, value: Vec<u8>) -> Pushed {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.total >= TOTAL {
            return Pushed::Full;
        }
        let queue = state.queues.entry(peer).or_default();
        if queue.len() >= PER_PEER {
            return Pushed::Full;
        }
        let first = queue.is_empty();
        queue.push_back((key, value));
        state.total += 1;
        if first {
            state.turns.push_back(peer);
        }
        if state.working {
            Pushed::Queued
        } else {
            state.working = true;
            Pushed::StartWorker
        }
    }

    /// The next batch, a share from each peer in turn; empty (and the worker
    /// should stop) when nothing is queued.
    pub(crate) fn take(&self) -> Vec<(PeerId, Vec<u8>, Vec<u8>)> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut batch = Vec::new();
        while batch.len() < BATCH {
            let Some(peer) = state.turns.pop_front() else {
                break;
            };
            let room = SHARE.min(BATCH - batch.len());
            let (taken, left) = match state.queues.get_mut(&peer) {
                Some(queue) => {
                    let taken: Vec<_> = queue.drain(..room.min(queue.len())).collect();
                    (taken, queue.len())
                }
                None => (Vec::new(), 0),
            };
            state.total -= taken.len();
            batch.extend(taken.into_iter().map(|(k, v)| (peer, k, v)));
            if left > 0 {
                state.turns.push_back(peer);
            } else {
                state.queues.remove(&peer);
            }
        }
        if batch.is_empty() {
            state.working = false;
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flooding_peer_fills_only_its_own_queue_and_others_take_turns() {
        let queue = InboundQueue::default();
        let (flooder, honest) = (PeerId::random(), PeerId::random());
        let mut full = 0;
        for i in 0..PER_PEER + 50 {
            match queue.push(flooder, vec![0, i as u8], Vec::new()) {
                Pushed::Full => full += 1,
                Pushed::StartWorker => assert_eq!(i, 0),
                Pushed::Queued => {}
            }
        }
        assert_eq!(full, 50);
        for i in 0..5u8 {
            assert_eq!(queue.push(honest, vec![1, i], Vec::new()), Pushed::Queued);
        }
        // The first batch already holds every honest record, after one share
        // of the flooder's.
        let batch = queue.take();
        let position = batch.iter().position(|(p, _, _)| *p == honest).unwrap();
        assert_eq!(position, SHARE);
        assert_eq!(batch.iter().filter(|(p, _, _)| *p == honest).count(), 5);
        // Draining: the worker is told to stop once everything is taken.
        let mut taken = batch.len();
        loop {
            let batch = queue.take();
            if batch.is_empty() {
                break;
            }
            taken += batch.len();
        }
        assert_eq!(taken, PER_PEER + 5);
        assert_eq!(queue.push(honest, vec![2], Vec::new()), Pushed::StartWorker);
    }
}
