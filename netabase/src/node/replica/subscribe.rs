//! Changing what a node subscribes to (see [`subscriptions`](super::subscriptions)):
//! the new subscription is stored, the records it no longer covers are
//! dropped (except this node's own writes), and copies of records it now
//! covers that were read on demand lately are stored without fetching them
//! again. Blocking.

use std::sync::atomic::Ordering;

use crate::codec::Envelope;
use crate::model::ModelId;
use crate::sync::reconcile::{Items, KeyRange};

use super::apply;
use super::event::Origin;
use super::horizon::drop_held;
use super::state::Replica;
use super::storage;
use crate::node::NodeError;

/// Records dropped per transaction.
const DROP_PAGE: usize = 1024;

/// What a change of subscription did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Subscribed {
    /// It covers keys it did not: a catch-up should fetch them now.
    pub(crate) widened: bool,
    /// Records dropped: no longer covered, and not this node's writes.
    pub(crate) dropped: usize,
    /// Copies read on demand earlier, now stored.
    pub(crate) taken: usize,
}

/// Subscribes `model` to `ranges` (normalized, of its record keys).
pub(crate) fn subscribe(
    shared: &Replica,
    model: ModelId,
    ranges: Vec<KeyRange>,
) -> Result<Subscribed, NodeError> {
    let node_synced = shared.synced_at.load(Ordering::Acquire);
    let before = {
        let _storing = shared.subscriptions.storing();
        let mut changed = shared.subscriptions.plan(model, ranges, node_synced);
        let encoded = changed.encoded();
        storage::write(shared, |txn| {
            txn.set_subscription(model.0, Some(&encoded))?;
            Ok(())
        })?;
        let before = std::mem::take(&mut changed.before);
        shared.subscriptions.install(changed);
        before
    };
    let mut out = Subscribed {
        widened: shared.subscriptions.synced(model, node_synced) == 0,
        ..Subscribed::default()
    };
    // Only where the subscription shrank: a range it still covers whole
    // (widening, or subscribing to what it had) is not read at all.
    for range in before.iter().filter(|r| !shared.subscriptions.covers(r)) {
        out.dropped += drop_unsubscribed(shared, range)?;
    }
    let copies = shared.remote.take(|key| {
        crate::store::rows::model_of(key) == Some(model.0.to_be_bytes())
            && shared.subscriptions.wants(key)
    });
    let mut envelopes = Vec::with_capacity(copies.len());
    let mut from = Vec::with_capacity(copies.len());
    for (bytes, peer) in copies {
        if let Ok(envelope) = Envelope::from_trusted_bytes(&bytes) {
            envelopes.push(envelope);
            from.push(peer.map_or(Origin::Local, Origin::Peer));
        }
    }
    if !envelopes.is_empty() {
        // Judged again against what is held now, as any record from a peer.
        let applied = apply::apply_batch_from(shared, &envelopes, |i| from[i])?;
        out.taken = applied.stored.len();
    }
    if out.dropped > 0 || out.taken > 0 {
        tracing::info!(
            model = model.0,
            dropped = out.dropped,
            taken = out.taken,
            "subscription changed"
        );
    }
    Ok(out)
}

/// Drops the records in `range` that the subscriptions no longer cover,
/// except this node's own writes, a page per transaction. Returns how many.
fn drop_unsubscribed(shared: &Replica, range: &KeyRange) -> Result<usize, NodeError> {
    let me = shared.peer_id;
    let mut lower = range.clone();
    let mut dropped = 0;
    loop {
        let read = shared.store.begin_read()?;
        let view = read.sync_index()?;
        let page: Vec<Vec<u8>> = view
            .items(&lower)
            .map(|item| item.key)
            .take(DROP_PAGE)
            .collect();
        if let Some(error) = view.failure() {
            return Err(error.into());
        }
        drop(view);
        drop(read);
        let Some(last) = page.last() else {
            return Ok(dropped);
        };
        // Keys sort after `last` from `last ++ 0x00` on.
        let mut next = last.clone();
        next.push(0);
        let full = page.len() == DROP_PAGE;
        let doomed: Vec<Vec<u8>> = page
            .into_iter()
            .filter(|key| !shared.subscriptions.wants(key))
            .collect();
        if !doomed.is_empty() {
            // The subscription is checked again inside the transaction's
            // judgement: another call may have widened it meanwhile.
            dropped += drop_held(shared, &doomed, Origin::Local, |envelope| {
                envelope.writer() != me && !shared.subscriptions.wants(&envelope.record_key())
            })?
            .len();
        }
        if !full {
            return Ok(dropped);
        }
        lower.lower = next;
    }
}
