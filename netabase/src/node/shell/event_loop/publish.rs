//! The loop's side of `put_record`'s network path: sending a put to each
//! peer, and reading each peer's answer (the bookkeeping is in
//! [`puts`](super::puts)).

use libp2p::kad::{PutRecordResult, QueryId, Quorum, Record};

use super::gets::closest;
use super::puts::{PutAnswer, PutsSender};
use super::EventLoop;
use crate::node::platform::Instant;

impl EventLoop {
    /// Sends `record` to the closest known peers, one query each.
    pub(super) fn start_put(&mut self, record: Record, reply: PutsSender) {
        let now = Instant::now();
        let known = self.known_peers();
        let copies = self.config.replication_factor;
        let crowded = known.len() >= copies;
        let targets = closest(&record.key, known, copies, |peer| {
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
