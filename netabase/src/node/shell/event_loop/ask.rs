//! The loop's side of `get_record`'s network path: sending a get's asks
//! and routing query, and reading their answers (the bookkeeping is in
//! [`gets`](super::gets)).

use libp2p::kad::{GetClosestPeersError, GetClosestPeersResult, QueryId, RecordKey};
use libp2p::{request_response, PeerId};

use super::gets::{self, GetId, Step, ALPHA};
use super::{CopiesSender, EventLoop};
use crate::node::platform;
use crate::node::replica::stats::Rejection;
use crate::node::shell::catchup::{SyncRequest, SyncResponse};

impl EventLoop {
    /// Starts a get of `key`: the peers closest to it that this node
    /// knows (connected, or in the routing table: those are dialled) are
    /// asked first (most gets end there, one round trip), Kademlia's
    /// routing only if none of them has a copy. Known peers, not only
    /// connected ones: right after start-up, a node not yet connected to
    /// its bootstrap peers would otherwise ask whichever connected first.
    pub(super) fn start_get(&mut self, key: RecordKey, reply: CopiesSender) {
        let now = platform::Instant::now();
        let mut known = self.known_peers();
        known.retain(|(peer, _)| self.gets.may_serve(peer));
        let near = gets::closest(&key, known, ALPHA, |peer| self.slow.is_slow(peer, now));
        let deadline = now + self.config.query_timeout;
        let id = self.gets.start(key, reply, near, deadline);
        self.advance_get(id);
    }

    /// The peers this node knows, with the addresses its routing table has
    /// for them: connected ones and those in the routing table, not banned.
    pub(super) fn known_peers(&mut self) -> Vec<(PeerId, Vec<libp2p::Multiaddr>)> {
        let mut known: std::collections::HashMap<PeerId, Vec<libp2p::Multiaddr>> = self
            .swarm
            .connected_peers()
            .map(|peer| (*peer, Vec::new()))
            .collect();
        for bucket in self.swarm.behaviour_mut().kad.kbuckets() {
            for entry in bucket.iter() {
                known
                    .entry(*entry.node.key.preimage())
                    .or_default()
                    .extend(entry.node.value.iter().cloned());
            }
        }
        known.retain(|peer, _| !self.peers.is_banned(peer));
        known.into_iter().collect()
    }

    /// Does what get `id` needs next: asks, routes, or waits.
    fn advance_get(&mut self, id: GetId) {
        loop {
            match self.gets.step(id) {
                Step::Ask(peer, addresses, key) => {
                    // A peer that is not connected (one routing named) is
                    // dialled at these addresses and at those Kademlia's
                    // routing table knows.
                    let request = SyncRequest::Fetch(vec![key.to_vec()]);
                    let sent = self
                        .swarm
                        .behaviour_mut()
                        .sync
                        .send_request_with_addresses(&peer, request, addresses);
                    self.gets.sent(id, peer, sent);
                }
                Step::Route(key) => {
                    let query = self
                        .swarm
                        .behaviour_mut()
                        .kad
                        .get_closest_peers(key.to_vec());
                    self.gets.routing(id, query);
                    return;
                }
                Step::Wait => return,
            }
        }
    }

    /// Whether `request` is one of a get's (its answer goes to
    /// [`get_answered`](Self::get_answered), never to catch-up's fetches).
    pub(super) fn is_get_request(&self, request: request_response::OutboundRequestId) -> bool {
        self.gets.owns(request)
    }

    /// A peer answered a get's `Fetch` of one key.
    pub(super) fn get_answered(
        &mut self,
        peer: PeerId,
        request: request_response::OutboundRequestId,
        response: SyncResponse,
    ) {
        let copy = match response {
            // An empty entry (or none) means the peer holds no copy.
            SyncResponse::Records(mut records) if records.len() <= 1 => {
                records.pop().filter(|bytes| !bytes.is_empty())
            }
            SyncResponse::Records(_) => {
                self.shared.counters.reject(Rejection::Malformed);
                self.strike(peer, "answered a get with more records than asked for");
                None
            }
            SyncResponse::Reconcile(..) => {
                self.strike(peer, "answered a get with a reconciliation");
                None
            }
        };
        self.slow.answered(&peer);
        if let Some(id) = self.gets.answered(request, copy) {
            self.advance_get(id);
        }
    }

    /// A get's request failed: the peer counts as having no copy.
    pub(super) fn get_failed(
        &mut self,
        peer: PeerId,
        request: request_response::OutboundRequestId,
        error: request_response::OutboundFailure,
    ) {
        let malformed = matches!(
            &error,
            request_response::OutboundFailure::Io(e) if e.kind() == std::io::ErrorKind::InvalidData
        );
        if malformed {
            self.strike(peer, &format!("sent a malformed answer to a get ({error})"));
        } else if matches!(error, request_response::OutboundFailure::Timeout) {
            self.slow.mark(peer, platform::Instant::now());
        } else {
            tracing::debug!(%peer, %error, "a get's request failed");
        }
        if let Some(id) = self.gets.answered(request, None) {
            self.advance_get(id);
        }
    }

    /// Kademlia found the peers closest to a get's key (all it found if
    /// the query timed out).
    pub(super) fn routed(&mut self, query: QueryId, result: GetClosestPeersResult) {
        let peers = match result {
            Ok(ok) => ok.peers,
            Err(GetClosestPeersError::Timeout { peers, .. }) => peers,
        };
        let peers = peers
            .into_iter()
            .map(|info| (info.peer_id, info.addrs))
            .collect();
        let local = *self.swarm.local_peer_id();
        if let Some(id) = self.gets.routed(query, peers, &local) {
            self.advance_get(id);
        }
    }
}
