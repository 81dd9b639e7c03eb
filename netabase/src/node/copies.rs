//! The copies of one record that peers return to `get_record`: each is
//! checked as it arrives, and the answer is the newest copy the model's
//! write rule lets follow from the others.

use std::sync::Arc;

use libp2p::PeerId;

use crate::codec::Envelope;

use super::stats::Rejection;
use super::{apply, NodeError, Shared};

/// One answer of a query: a copy from a peer (`None`: this node's own
/// store), or `None` when the query ended.
pub(crate) type Answer = Option<(Option<PeerId>, Vec<u8>)>;

/// The valid copies of one record received so far.
pub(crate) struct Copies {
    shared: Arc<Shared>,
    record_key: Vec<u8>,
    valid: Vec<(Option<PeerId>, Envelope)>,
}

impl Copies {
    pub(crate) fn new(shared: Arc<Shared>, record_key: Vec<u8>) -> Self {
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
        match apply::validate_remote(&self.shared, &self.record_key, &bytes) {
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
        self.valid.sort_by(|a, b| apply::precedence(&a.1, &b.1));
        let mut kept: Vec<(Option<PeerId>, Envelope)> = Vec::with_capacity(self.valid.len());
        for copy in self.valid.drain(..) {
            match kept.last() {
                Some(best) if apply::rule_refuses(&self.shared, &copy.1, &best.1) => {
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
            .filter(|(_, copy)| apply::wins(envelope, copy))
            .filter_map(|(peer, _)| *peer)
            .collect()
    }
}
