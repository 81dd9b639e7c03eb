//! Remote queries in progress (see [`query`](crate::node::shell::query)):
//! which query each request belongs to, and how many peers' queries are
//! being answered. Bookkeeping only: the loop's side is in
//! `query_events.rs`.

use std::collections::{HashMap, HashSet};

use libp2p::request_response::OutboundRequestId;
use libp2p::PeerId;
use tokio::sync::mpsc;

/// Where a query's answers go, as `(peer, envelopes)`, then `None` once
/// every peer asked has answered or failed.
pub(crate) type QueryAnswers = mpsc::UnboundedSender<Option<(PeerId, Vec<Vec<u8>>)>>;

/// Peers one query asks, at most: each may answer with up to a MiB.
pub(super) const QUERY_FANOUT: usize = 4;
/// Peers' queries answered at once, at most (each reads at most
/// `MAX_QUERY_RESULTS` index entries and records); past it a query is
/// answered with nothing at once, and its asker hears from other peers.
pub(super) const QUERY_SLOTS: usize = 8;

/// Queries in progress and peers' queries being answered.
#[derive(Default)]
pub(super) struct Queries {
    next: u64,
    /// Each running query's unanswered requests and its caller.
    running: HashMap<u64, (usize, QueryAnswers)>,
    requests: HashMap<OutboundRequestId, u64>,
    /// Peers' queries being answered off the loop.
    pub(super) serving: usize,
    /// Connected peers whose Identify did not list the query protocol.
    no_query: HashSet<PeerId>,
}

impl Queries {
    /// What Identify said about `peer`.
    pub(super) fn identified(&mut self, peer: PeerId, serves: bool) {
        if serves {
            self.no_query.remove(&peer);
        } else {
            self.no_query.insert(peer);
        }
    }

    /// `peer` is no longer connected.
    pub(super) fn disconnected(&mut self, peer: &PeerId) {
        self.no_query.remove(peer);
    }

    /// Whether `peer` may answer queries (Identify did not say otherwise).
    pub(super) fn may_serve(&self, peer: &PeerId) -> bool {
        !self.no_query.contains(peer)
    }

    /// Starts a query asking `peers` (none: it ends at once).
    pub(super) fn start(&mut self, peers: usize, reply: QueryAnswers) -> Option<u64> {
        if peers == 0 {
            let _ = reply.send(None);
            return None;
        }
        let query = self.next;
        self.next += 1;
        self.running.insert(query, (peers, reply));
        Some(query)
    }

    /// Our request `id` belongs to `query`.
    pub(super) fn sent(&mut self, query: u64, id: OutboundRequestId) {
        self.requests.insert(id, query);
    }

    /// Request `id` was answered (`None`: it failed).
    pub(super) fn answered(
        &mut self,
        id: OutboundRequestId,
        answer: Option<(PeerId, Vec<Vec<u8>>)>,
    ) {
        let Some(query) = self.requests.remove(&id) else {
            return;
        };
        let Some((outstanding, reply)) = self.running.get_mut(&query) else {
            return;
        };
        *outstanding -= 1;
        if let Some(answer) = answer {
            // A caller that gave up is fine: the query just ends.
            let _ = reply.send(Some(answer));
        }
        if *outstanding == 0 {
            if let Some((_, reply)) = self.running.remove(&query) {
                let _ = reply.send(None);
            }
        }
    }
}
