//! `get_record`'s way to a record: the local copy, else the copies peers
//! return, each checked as it arrives; the answer is the newest copy the
//! model's write rule lets follow from the others.

use std::sync::Arc;

use libp2p::kad::RecordKey;
use libp2p::PeerId;
use tokio::sync::mpsc;

use crate::codec::{self, Envelope};
use crate::model::NetabaseModel;
use crate::KeyEncode;

use super::event_loop::Command;
use super::kad_store::kad_record;
use super::network::Network;
use crate::node::platform;
use crate::node::replica::event::Origin;
use crate::node::replica::stats::Rejection;
use crate::node::replica::{apply, order, validate, Replica};
use crate::node::NodeError;

/// One answer of a query: a copy from a peer (`None`: this node's own
/// store), or `None` when the query ended.
pub(crate) type Answer = Option<(Option<PeerId>, Vec<u8>)>;

/// The valid copies of one record received so far.
pub(crate) struct Copies {
    shared: Arc<Replica>,
    record_key: Vec<u8>,
    valid: Vec<(Option<PeerId>, Envelope)>,
}

impl Copies {
    pub(crate) fn new(shared: Arc<Replica>, record_key: Vec<u8>) -> Self {
        Copies {
            shared,
            record_key,
            valid: Vec::new(),
        }
    }

    /// Whether a valid copy has arrived.
    pub(crate) fn any(&self) -> bool {
        !self.valid.is_empty()
    }

    /// Takes the query's next message (`None`: the swarm stopped); returns
    /// whether the query ended. A copy that fails a check is counted and
    /// dropped.
    pub(crate) fn take(&mut self, message: Option<Answer>) -> Result<bool, NodeError> {
        let (peer, bytes) = match message {
            Some(Some(copy)) => copy,
            Some(None) => return Ok(true),
            None => return Err(NodeError::Stopped),
        };
        // Close peers mostly answer with the same bytes: a copy equal to
        // one already checked would pass as that one did (the checks depend
        // on the bytes and on what this node holds, which a get leaves
        // alone), so it is not checked again.
        if self
            .valid
            .iter()
            .any(|(_, checked)| checked.as_bytes() == bytes.as_slice())
        {
            // Nothing to learn from it, and its peer is not behind.
            return Ok(false);
        }
        // Only records this node does not hold are looked for on the network.
        match validate::validate_remote(&self.shared, &self.record_key, &bytes, None) {
            Ok(envelope) => self.valid.push((peer, envelope)),
            Err(refused) => self.shared.counters.reject(refused.reason),
        }
        Ok(false)
    }

    /// The newest copy. Oldest first, each newer copy must follow from the
    /// best so far under the model's write rule (a forger's rival chain does
    /// not), as it would have to if this node held the older one; copies
    /// that do not are counted and dropped.
    pub(crate) fn newest(&mut self) -> Option<(Option<PeerId>, Envelope)> {
        self.valid.sort_by(|a, b| order::precedence(&a.1, &b.1));
        let mut kept: Vec<(Option<PeerId>, Envelope)> = Vec::with_capacity(self.valid.len());
        for copy in self.valid.drain(..) {
            match kept.last() {
                Some(best) if validate::rule_refuses(&self.shared, &copy.1, &best.1) => {
                    self.shared.counters.reject(Rejection::NotAllowed);
                }
                _ => kept.push(copy),
            }
        }
        self.valid = kept;
        self.valid.last().cloned()
    }

    /// The peers that answered with a version older than `envelope`.
    pub(crate) fn older_than(&self, envelope: &Envelope) -> Vec<PeerId> {
        self.valid
            .iter()
            .filter(|(_, copy)| order::wins(envelope, copy))
            .filter_map(|(peer, _)| *peer)
            .collect()
    }
}

impl Network {
    /// The signed version of `M`'s record under `key` that `get_record`
    /// answers with: the one held, else the newest valid copy peers return
    /// (sent back to peers with older ones, and kept in the background).
    /// `None` if nobody has one.
    pub(crate) async fn find_envelope<M: NetabaseModel>(
        &self,
        replica: &Arc<Replica>,
        key: &M::Key,
    ) -> Result<Option<Envelope>, NodeError> {
        replica.check_registered::<M>()?;
        let record_key = codec::record_key(M::ID, key.to_key_bytes().as_slice());
        // A hot record is in the cache: no trip to redb. A cold one costs
        // one read, on this thread (`read_now`): it is well under a
        // microsecond when its pages are cached, and two thread hand-offs
        // through the blocking pool would cost far more.
        let held = match replica.cache.cached(&record_key) {
            Some(cached) => cached,
            None => {
                let replica = replica.clone();
                let key = record_key.clone();
                platform::read_now(move || replica.held(&key))
                    .await
                    .map_err(NodeError::Task)??
            }
        };
        // Else a copy read lately of a record this node does not keep.
        if let Some(cached) = held.or_else(|| replica.remote.get(&record_key)) {
            return Envelope::from_trusted_bytes(&cached.bytes)
                .map(Some)
                .map_err(|_| NodeError::NotFound);
        }
        let (reply, mut found) = mpsc::unbounded_channel();
        self.send(Command::Get {
            key: RecordKey::new(&record_key),
            reply,
        })
        .await?;
        // Each copy is checked as it arrives, while the query asks the
        // remaining peers (signature checks are CPU only, tens of
        // microseconds). The answer waits for the first valid copy, then a
        // grace period for the other close peers' answers, never for the
        // query's end: a frozen peer would hold it for the whole timeout.
        let mut copies = Copies::new(replica.clone(), record_key.clone());
        let mut ended = false;
        while !copies.any() && !ended {
            ended = copies.take(found.recv().await)?;
        }
        if !ended {
            let grace = platform::sleep(self.config.read_grace);
            tokio::pin!(grace);
            while !ended {
                tokio::select! {
                    copy = found.recv() => ended = copies.take(copy)?,
                    _ = &mut grace => break,
                }
            }
        }
        let Some((peer, envelope)) = copies.newest() else {
            return Ok(None);
        };
        self.write_back(&envelope, copies.older_than(&envelope))
            .await;
        if !ended {
            // The rest of the answers, in the background: a newer copy is
            // kept, and peers behind get the newest back.
            let network = self.clone();
            let replica = replica.clone();
            let answered = envelope.clone();
            platform::spawn(async move {
                let mut later = copies;
                while let Ok(false) = later.take(found.recv().await) {}
                if let Some((peer, newest)) = later.newest() {
                    if order::wins(&newest, &answered) {
                        keep(&replica, newest.clone(), peer);
                    }
                    network.write_back(&newest, later.older_than(&newest)).await;
                }
            });
        }
        keep(replica, envelope.clone(), peer);
        Ok(Some(envelope))
    }

    /// Sends `envelope` to `peers`, which answered with an older version.
    /// Best effort: the swarm may have stopped meanwhile.
    async fn write_back(&self, envelope: &Envelope, peers: Vec<PeerId>) {
        if peers.is_empty() {
            return;
        }
        let record = kad_record(&envelope.record_key(), envelope.as_bytes());
        let _ = self.send(Command::PutTo { record, peers }).await;
    }
}

/// Keeps a copy fetched from `peer` (`None`: this node), off the caller's
/// path: an answer does not wait for a commit. A record outside this
/// node's subscriptions is kept in memory for a while, not stored.
pub(crate) fn keep(replica: &Arc<Replica>, envelope: Envelope, peer: Option<PeerId>) {
    if !replica.subscriptions.wants(&envelope.record_key()) {
        replica.remote.insert(&envelope, peer);
        return;
    }
    let shared = replica.clone();
    let origin = peer.map(Origin::Peer).unwrap_or(Origin::Local);
    let kept = envelope;
    // The batch path counts what it accepts or refuses, and keeps a copy
    // that loses a unique value as a conflict, as catch-up would. Handed
    // to the blocking pool from a task of its own: woken from here, the
    // pool's thread took the caller's core on a 2-core machine before
    // the answer was returned (paired bench: 1.34-1.38x the same work,
    // 1.26-1.34x this way).
    platform::spawn(async move {
        platform::blocking(move || {
            if let Err(error) = apply::apply_batch(&shared, std::slice::from_ref(&kept), origin) {
                tracing::warn!(error = %crate::error::chain(&error), "could not keep a fetched record");
            }
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::replica::tests::{note, replica};
    use libp2p_identity::Keypair;

    #[test]
    fn a_copy_equal_to_a_checked_one_is_taken_once_and_a_newer_one_wins() {
        let replica = replica();
        let writer = Keypair::generate_ed25519();
        let (a, b) = (PeerId::random(), PeerId::random());
        let first = Envelope::seal(&writer, &note(1, "a"), replica.clock.now()).unwrap();
        let mut copies = Copies::new(replica.clone(), first.record_key());
        let copy =
            |peer, envelope: &Envelope| Some(Some((Some(peer), envelope.as_bytes().to_vec())));
        assert!(!copies.take(copy(a, &first)).unwrap());
        assert!(!copies.take(copy(b, &first)).unwrap());
        assert_eq!(copies.valid.len(), 1, "the same bytes are kept once");
        assert!(copies.older_than(&first).is_empty(), "no peer is behind");

        // A forged copy is still refused, whatever came before it.
        let mut forged = first.as_bytes().to_vec();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert!(!copies.take(Some(Some((Some(b), forged)))).unwrap());
        assert_eq!(copies.valid.len(), 1);

        let later = replica.clock.now_after(Some(first.version().timestamp));
        let second = Envelope::seal(&writer, &note(1, "b"), later).unwrap();
        assert!(!copies.take(copy(b, &second)).unwrap());
        let (peer, newest) = copies.newest().unwrap();
        assert_eq!((peer, newest.as_bytes()), (Some(b), second.as_bytes()));
        assert_eq!(copies.older_than(&second), vec![a]);
        assert!(copies.take(Some(None)).unwrap(), "the end of the query");
    }
}
