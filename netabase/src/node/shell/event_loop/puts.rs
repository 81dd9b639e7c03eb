//! `put_record`'s network path. The record goes to the peers closest to
//! its key among those this node knows (connected, or in the routing
//! table: those are dialled), each in a query of its own, so every peer's
//! answer is seen as it comes: the caller returns once its quorum is met
//! (or, with `WriteQuorum::Available`, once the peers it waits for have
//! answered or a grace period has passed), and a frozen peer never sets
//! the time of a write. Peers that let a request time out lately are sent
//! the record but not waited for ([`slow`](super::slow)).
//!
//! When the node knows as many peers as Kademlia's replication factor, the
//! closest it knows may not be the closest there are: a Kademlia put (its
//! lookup, then the closest peers it finds) also runs, in the background.

use std::collections::HashMap;

use libp2p::kad::{self, PutRecordResult, QueryId, Quorum, Record};
use libp2p::PeerId;
use tokio::sync::mpsc;

use super::gets::closest;
use super::EventLoop;
use crate::node::platform::Instant;

/// What a put tells its caller, as it happens. The channel closes when
/// every peer asked has answered or failed.
#[derive(Debug)]
pub(crate) enum PutAnswer {
    /// The peers asked that the caller waits for (the others are slow).
    Asked(Vec<PeerId>),
    /// This peer stored the record.
    Stored(PeerId),
    /// This peer refused it, could not be reached, or did not answer in
    /// time.
    Failed(PeerId),
}

/// Where a put sends its answers.
pub(crate) type PutsSender = mpsc::UnboundedSender<PutAnswer>;

/// The puts' queries in flight, one a peer.
#[derive(Default)]
pub(super) struct Puts {
    queries: HashMap<QueryId, (PeerId, PutsSender)>,
}

impl EventLoop {
    /// Sends `record` to the closest known peers, one query each.
    pub(super) fn start_put(&mut self, record: Record, reply: PutsSender) {
        let now = Instant::now();
        let known = self.known_peers();
        let crowded = known.len() >= kad::K_VALUE.get();
        let targets = closest(&record.key, known, kad::K_VALUE.get(), |peer| {
            self.slow.is_slow(peer, now)
        });
        let waited = targets
            .iter()
            .map(|(peer, _)| *peer)
            .filter(|peer| !self.slow.is_slow(peer, now))
            .collect();
        let _ = reply.send(PutAnswer::Asked(waited));
        for (peer, _) in targets {
            let query = self.swarm.behaviour_mut().kad.put_record_to(
                record.clone(),
                std::iter::once(peer),
                Quorum::One,
            );
            self.puts.queries.insert(query, (peer, reply.clone()));
        }
        if crowded {
            // Kademlia's own put: its result is not waited for.
            if let Err(error) = self
                .swarm
                .behaviour_mut()
                .kad
                .put_record(record, Quorum::One)
            {
                tracing::debug!(?error, "could not start a Kademlia put");
            }
        }
    }

    /// A put's query ended; `false` if it was not one of a put's.
    pub(super) fn put_finished(&mut self, query: QueryId, result: PutRecordResult) -> bool {
        let Some((peer, reply)) = self.puts.queries.remove(&query) else {
            return false;
        };
        let answer = match result {
            Ok(_) => {
                self.slow.answered(&peer);
                PutAnswer::Stored(peer)
            }
            Err(error) => {
                // Timed out, unreachable, or refusing (a peer whose store
                // failed takes no records): not waited for, for a while.
                tracing::debug!(%peer, %error, "a peer did not take a put");
                self.slow.mark(peer, Instant::now());
                PutAnswer::Failed(peer)
            }
        };
        // The caller may have returned already: the answer is not needed.
        let _ = reply.send(answer);
        true
    }
}
