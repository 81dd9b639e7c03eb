//! Fetched catch-up batches: checked in parallel, stored one transaction at
//! a time.
//!
//! Checking a batch's signatures is most of catch-up's work and needs no
//! lock, so every batch is checked in its own blocking task, as many at once
//! as there are batches in flight. Storing needs the database's one write
//! transaction: a checked batch joins a queue, and one worker at a time
//! (whichever task found nobody storing) commits everything queued together,
//! in one transaction with one fsync. While it commits, the next batches are
//! being checked on the other cores, so neither waits for the other, and a
//! slow disk merges more batches per commit instead of holding up the
//! checks. The queue never holds more than the batches in flight
//! (the catch-up protocol's fetches in flight per peer, each
//! counted until stored).

use std::collections::VecDeque;
use std::sync::Mutex;

use libp2p_identity::PeerId;

use crate::codec::Envelope;
use crate::model::ModelId;

/// Records committed in one transaction, at most: four of the catch-up
/// protocol's batches of 512, so one commit never holds up a catch-up's
/// next batches for long.
const MAX_MERGED: usize = 2048;

/// A fetched batch whose signatures were checked.
pub(crate) struct Checked {
    pub(crate) peer: PeerId,
    /// The keys the batch answered (to be fetchable again once stored).
    pub(crate) keys: Vec<Vec<u8>>,
    pub(crate) envelopes: Vec<Envelope>,
    /// Records refused by the checks.
    pub(crate) refused: u64,
}

/// What storing a batch did, for the event loop.
pub(crate) struct Stored {
    pub(crate) peer: PeerId,
    pub(crate) keys: Vec<Vec<u8>>,
    /// Records stored, per model.
    pub(crate) received: Vec<(ModelId, u64)>,
    /// Records refused, by the checks or by the model's rule.
    pub(crate) refused: u64,
    /// The commit failed: nothing of the batch was stored.
    pub(crate) failed: bool,
    /// A membership stored in the commit dropped records: compare again
    /// before reporting the catch-up, or it would end holding none of their
    /// versions while the peer holds the one before.
    pub(crate) dropped: bool,
}

#[derive(Default)]
pub(crate) struct Lane {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Checked>,
    storing: bool,
}

impl Lane {
    /// Queues a checked batch; `true` if the caller is to store the queue
    /// ([`store_queued`]), nobody else being at it.
    pub(crate) fn push(&self, batch: Checked) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.queue.push_back(batch);
        !std::mem::replace(&mut state.storing, true)
    }

    /// Queued batches, up to [`MAX_MERGED`] records (at least one batch);
    /// empty, and the worker is to stop, when nothing is queued.
    pub(crate) fn take(&self) -> Vec<Checked> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut taken = Vec::new();
        let mut records = 0;
        while let Some(next) = state.queue.front() {
            if !taken.is_empty() && records + next.envelopes.len() > MAX_MERGED {
                break;
            }
            records += next.envelopes.len();
            taken.extend(state.queue.pop_front());
        }
        if taken.is_empty() {
            state.storing = false;
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::Timestamp;

    fn batch(records: usize) -> Checked {
        let keypair = libp2p_identity::Keypair::generate_ed25519();
        let envelope =
            Envelope::seal_raw(&keypair, ModelId(1), b"k", Vec::new(), Timestamp(1), true)
                .expect("sign");
        Checked {
            peer: PeerId::random(),
            keys: Vec::new(),
            envelopes: vec![envelope; records],
            refused: 0,
        }
    }

    #[test]
    fn one_worker_stores_and_takes_several_batches_per_commit_up_to_a_cap() {
        let lane = Lane::default();
        assert!(lane.push(batch(512)), "the first batch starts a worker");
        for _ in 0..5 {
            assert!(!lane.push(batch(512)), "a worker is already storing");
        }
        assert_eq!(lane.take().len(), MAX_MERGED / 512);
        assert_eq!(lane.take().len(), 6 - MAX_MERGED / 512);
        assert!(lane.take().is_empty());
        // The worker stopped: the next batch starts one again.
        assert!(lane.push(batch(MAX_MERGED + 1)));
        assert_eq!(lane.take().len(), 1, "a batch over the cap is taken alone");
    }
}
