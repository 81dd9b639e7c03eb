//! `query_remote`'s way to its records: the local matches, and the
//! matches a few connected peers return, each checked as any record from a
//! peer is and against the query; per key, the newest version wins.

use std::collections::HashMap;
use std::sync::Arc;

use libp2p::PeerId;
use tokio::sync::mpsc;

use super::copies::keep;
use super::event_loop::Command;
use super::network::Network;
use super::query::{QueryRequest, MAX_QUERY_RESULTS};
use crate::codec::Envelope;
use crate::key::KeyBuf;
use crate::model::{NetabaseModel, SecondaryKey};
use crate::node::platform;
use crate::node::replica::local::open_record;
use crate::node::replica::stats::Rejection;
use crate::node::replica::{order, validate, Replica};
use crate::node::NodeError;
use crate::store::lookup;

/// A peer's answer, as the loop hands it over.
type Answer = Option<(PeerId, Vec<Vec<u8>>)>;

/// One key's newest version found, where it came from (`None`: this node
/// holds it), and its record.
type Found<M> = (Envelope, Option<PeerId>, M);

impl Network {
    /// The records of `M` whose index holds `key`, at most `limit` (and
    /// [`MAX_QUERY_RESULTS`]): this node's, and those connected peers
    /// return by `read_grace` after the first answer (or all answers, or
    /// `query_timeout`), newest version per key, in key order.
    pub(crate) async fn query_remote<M: NetabaseModel>(
        &self,
        replica: &Arc<Replica>,
        key: M::SecondaryKey,
        limit: usize,
    ) -> Result<Vec<M>, NodeError> {
        replica.check_registered::<M>()?;
        let limit = limit.min(MAX_QUERY_RESULTS);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut value = KeyBuf::new();
        key.encode_key(&mut value);
        let request = QueryRequest {
            model: M::ID.0,
            index: u16::try_from(key.index()).unwrap_or(u16::MAX),
            value: value.as_slice().to_vec(),
            limit: limit as u32,
        };
        let (reply, mut answers) = mpsc::unbounded_channel();
        let asked = self.send(Command::Query { request, reply }).await;
        let mut received: Vec<(PeerId, Vec<Vec<u8>>)> = Vec::new();
        match asked {
            Ok(()) => collect(&mut answers, &mut received, self).await,
            // A node whose swarm is stopped answers from its own store.
            Err(NodeError::NotRunning) => {}
            Err(error) => return Err(error),
        }
        let shared = replica.clone();
        let checked = platform::blocking(move || check::<M>(&shared, &key, limit, received))
            .await
            .map_err(NodeError::Task)??;
        let mut out = Vec::with_capacity(checked.len());
        for (envelope, peer, record) in checked {
            if let Some(peer) = peer {
                keep(replica, envelope, Some(peer));
            }
            out.push(record);
        }
        Ok(out)
    }
}

/// Takes answers until every peer asked has answered, or `read_grace`
/// after the first, or `query_timeout`.
async fn collect(
    answers: &mut mpsc::UnboundedReceiver<Answer>,
    received: &mut Vec<(PeerId, Vec<Vec<u8>>)>,
    network: &Network,
) {
    // The first answer, within the query's timeout.
    let first = platform::timeout(network.config.query_timeout, answers.recv()).await;
    match first {
        Ok(Some(Some(answer))) => received.push(answer),
        // Nobody to ask, everyone failed, the swarm stopped, or time is up.
        _ => return,
    }
    // The others', for the grace period: a frozen peer never sets the time.
    let _ = platform::timeout(network.config.read_grace, async {
        while let Some(Some(answer)) = answers.recv().await {
            received.push(answer);
        }
    })
    .await;
}

/// What one query found, checked: per record key, the newest valid version
/// that holds the value (from a peer: `Some(peer)`, to be kept; held here:
/// `None`), at most `limit`, in key order. Each record is decoded once.
/// Blocking: signatures, and reads of what this node holds.
fn check<M: NetabaseModel>(
    shared: &Replica,
    key: &M::SecondaryKey,
    limit: usize,
    received: Vec<(PeerId, Vec<Vec<u8>>)>,
) -> Result<Vec<Found<M>>, NodeError> {
    // Per record key; a copy held here that does not read (`None`) is
    // still the version a peer's must beat, and is not an answer.
    let mut best: HashMap<Vec<u8>, (Envelope, Option<PeerId>, Option<M>)> = HashMap::new();
    // This node's own matches first, as any peer's would be.
    let local = {
        let read = shared.store.begin_read()?;
        let tree = read.open_tree::<M>()?;
        let mut value = KeyBuf::new();
        key.encode_key(&mut value);
        lookup::index_primaries(&tree, key.index(), value.as_slice(), limit)?
    };
    for primary in local {
        let record_key = crate::codec::record_key(M::ID, &primary);
        if let Some(held) = shared.held(&record_key)? {
            if let Ok(envelope) = Envelope::from_trusted_bytes(&held.bytes) {
                let record = open_record::<M>(&envelope).ok();
                best.insert(record_key, (envelope, None, record));
            }
        }
    }
    for (peer, records) in received {
        for bytes in records {
            let envelope = match validate::validate_unkeyed(shared, &bytes) {
                Ok(envelope) => envelope,
                Err(refused) => {
                    shared.counters.reject(refused.reason);
                    continue;
                }
            };
            let record = (envelope.model() == M::ID && !envelope.is_tombstone())
                .then(|| open_record::<M>(&envelope).ok())
                .flatten()
                .filter(|record| record.secondary_keys().contains(key));
            let Some(record) = record else {
                shared.counters.reject(Rejection::OffQuery);
                continue;
            };
            let record_key = envelope.record_key();
            let newer = match best.get(&record_key) {
                None => true,
                // A newer copy must follow from the one it replaces under
                // the write rule, as it would if this node held that one.
                Some((current, _, _)) => {
                    order::wins(&envelope, current)
                        && !validate::rule_refuses(shared, &envelope, current)
                }
            };
            if newer {
                best.insert(record_key, (envelope, Some(peer), Some(record)));
            }
        }
    }
    let mut out: Vec<Found<M>> = best
        .into_values()
        .filter_map(|(envelope, peer, record)| Some((envelope, peer, record?)))
        .collect();
    out.sort_by(|a, b| a.0.key().cmp(b.0.key()));
    out.truncate(limit);
    Ok(out)
}
