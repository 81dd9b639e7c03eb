//! The loop's side of remote queries: which peers a query asks, handing
//! their answers to the caller as they come, and answering peers' queries
//! off the loop, a bounded number at once.

use libp2p::kad::KBucketKey;
use libp2p::request_response;
use libp2p::PeerId;

use super::queries::{QueryAnswers, QUERY_FANOUT, QUERY_SLOTS};
use super::EventLoop;
use crate::node::shell::query::{QueryRequest, QueryResponse};

impl EventLoop {
    /// Asks up to [`QUERY_FANOUT`] connected peers, closest to the queried
    /// value first (there is no better guess of who holds such records).
    pub(super) fn start_query(&mut self, request: QueryRequest, reply: QueryAnswers) {
        let mut target = request.model.to_be_bytes().to_vec();
        target.extend_from_slice(&request.index.to_be_bytes());
        target.extend_from_slice(&request.value);
        let target = KBucketKey::new(target);
        let mut peers: Vec<PeerId> = self
            .swarm
            .connected_peers()
            .filter(|peer| !self.peers.is_banned(peer) && self.queries.may_serve(peer))
            .copied()
            .collect();
        peers.sort_by_key(|peer| target.distance(&KBucketKey::from(*peer)));
        peers.truncate(QUERY_FANOUT);
        let Some(query) = self.queries.start(peers.len(), reply) else {
            return;
        };
        for peer in peers {
            let id = self
                .swarm
                .behaviour_mut()
                .query
                .send_request(&peer, request.clone());
            self.queries.sent(query, id);
        }
    }

    pub(super) fn on_query_event(
        &mut self,
        event: request_response::Event<QueryRequest, QueryResponse>,
    ) {
        use request_response::{Event as Rr, Message};
        match event {
            Rr::Message {
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                if self.queries.serving >= QUERY_SLOTS || self.shared.health.degraded() {
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .query
                        .send_response(channel, QueryResponse::default());
                    return;
                }
                self.queries.serving += 1;
                self.answer_query_off_loop(request, channel);
            }
            Rr::Message {
                peer,
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => self
                .queries
                .answered(request_id, Some((peer, response.records))),
            Rr::OutboundFailure {
                request_id, error, ..
            } => {
                tracing::debug!(%error, "a remote query to a peer failed");
                self.queries.answered(request_id, None);
            }
            Rr::InboundFailure { .. } | Rr::ResponseSent { .. } => {}
        }
    }

    /// A peer's query was answered off the loop: send it.
    pub(super) fn on_query_answered(
        &mut self,
        channel: request_response::ResponseChannel<QueryResponse>,
        response: QueryResponse,
    ) {
        self.queries.serving = self.queries.serving.saturating_sub(1);
        if self
            .swarm
            .behaviour_mut()
            .query
            .send_response(channel, response)
            .is_err()
        {
            tracing::debug!("a query's asker left before its answer");
        }
    }
}
