//! Storing what peers send: the records they push and the catch-up batches
//! fetched from them, each taken from its queue ([`inbound`](super::inbound),
//! [`fetched`](super::fetched)) and committed in batches. Blocking.

use libp2p_identity::PeerId;

use super::event::Origin;
use super::fetched::{Checked, Stored};
use super::inbound::KeyValue;
use super::state::Replica;
use super::stats::Rejection;
use super::{apply, validate};
use crate::model::ModelId;

/// Stores queued pushes until the queues are empty. Blocking: run it in a
/// blocking task, started when [`InboundQueue::push`] says so.
pub(crate) fn drain(shared: &Replica) {
    loop {
        let batch = shared.pushed.take();
        if batch.is_empty() {
            return;
        }
        store_pushed(shared, batch);
    }
}

fn store_pushed(shared: &Replica, batch: Vec<(PeerId, Vec<u8>, Vec<u8>)>) {
    let (peers, pairs): (Vec<PeerId>, Vec<KeyValue>) =
        batch.into_iter().map(|(p, k, v)| (p, (k, v))).unzip();
    let mut valid = Vec::with_capacity(pairs.len());
    let mut origins = Vec::with_capacity(pairs.len());
    for (checked, peer) in validate::validate_batch(shared, &pairs)
        .into_iter()
        .zip(peers)
    {
        match checked {
            Ok(envelope) => {
                valid.push(envelope);
                origins.push(Origin::Peer(peer));
            }
            Err(refused) => {
                shared.counters.reject(refused.reason);
                tracing::debug!(%peer, reason = ?refused.reason, "dropped a pushed record");
            }
        }
    }
    if valid.is_empty() {
        return;
    }
    if let Err(error) = apply::apply_batch_from(shared, &valid, |i| origins[i]) {
        for _ in &valid {
            shared.counters.reject(Rejection::StorageFailed);
        }
        tracing::warn!(
            records = valid.len(),
            error = %crate::error::chain(&error),
            "could not store records pushed by peers"
        );
    }
}

/// Stores queued batches until the queue is empty, reporting each batch
/// through `report`. Blocking: run it in a blocking task, when
/// [`Lane::push`](super::fetched::Lane::push) says so.
pub(crate) fn store_queued(shared: &Replica, report: impl Fn(Stored)) {
    loop {
        let batches = shared.fetched.take();
        if batches.is_empty() {
            return;
        }
        for stored in store_fetched(shared, batches) {
            report(stored);
        }
    }
}

/// Commits `batches` in one transaction.
fn store_fetched(shared: &Replica, batches: Vec<Checked>) -> Vec<Stored> {
    // Each envelope's batch, by index into the merged list.
    let mut batch_of = Vec::new();
    let mut envelopes = Vec::new();
    let mut reports = Vec::with_capacity(batches.len());
    for (b, batch) in batches.into_iter().enumerate() {
        batch_of.extend(std::iter::repeat_n(b, batch.envelopes.len()));
        envelopes.extend(batch.envelopes);
        reports.push(Stored {
            peer: batch.peer,
            keys: batch.keys,
            received: Vec::new(),
            refused: batch.refused,
            failed: false,
            dropped: false,
        });
    }
    let origin_of = |i: usize| Origin::Peer(reports[batch_of[i]].peer);
    let applied = apply::apply_batch_from(shared, &envelopes, origin_of);
    match applied {
        Ok(applied) => {
            for (i, model) in applied.stored {
                count(&mut reports[batch_of[i]].received, model);
            }
            for i in applied.refused {
                reports[batch_of[i]].refused += 1;
            }
            for report in &mut reports {
                report.dropped = applied.dropped;
            }
        }
        Err(error) => {
            tracing::warn!(
                records = envelopes.len(),
                error = %crate::error::chain(&error),
                "could not store fetched records"
            );
            for report in &mut reports {
                report.failed = true;
            }
        }
    }
    reports
}

fn count(counts: &mut Vec<(ModelId, u64)>, model: ModelId) {
    match counts.iter_mut().find(|(m, _)| *m == model) {
        Some((_, n)) => *n += 1,
        None => counts.push((model, 1)),
    }
}
