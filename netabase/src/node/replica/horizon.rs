//! The delete horizon: tombstones are collected once they are older than
//! `tombstone_horizon`, counted back from the node's last completed
//! catch-up. Because a collected delete leaves no trace, a peer that was away
//! longer than the horizon may still hold records deleted meanwhile
//! ("ghosts"); reconciliation spots them with [`reconcile::is_ghost`] and
//! they are dropped instead of spreading again.

use std::sync::atomic::Ordering;

use libp2p_identity::PeerId;

use crate::codec::Envelope;
use crate::sync::reconcile::{self, Watermarks};

use super::announce::tell;
use super::event::{ChangeKind, Origin};
use super::newer;
use super::registry::Written;
use super::state::{Replica, SYNCED_AT};
use super::storage;
use super::watermarks::gc_cutoff;
use crate::node::NodeError;

/// Deletes collected per transaction.
const GC_PAGE: usize = 4096;

/// Writes the in-memory catch-up watermark to the store, with the
/// subscriptions of `models` as in force now. Blocking.
pub(crate) fn persist_synced(
    shared: &Replica,
    models: &[crate::model::ModelId],
) -> Result<(), NodeError> {
    let _storing = shared.subscriptions.storing();
    let rows = shared.subscriptions.encoded(models);
    storage::write(shared, |txn| {
        // Read inside the transaction, so concurrent writers store the latest.
        txn.set_sync_meta(SYNCED_AT, shared.synced_at.load(Ordering::Acquire))?;
        for (model, row) in &rows {
            txn.set_subscription(model.0, Some(row))?;
        }
        Ok(())
    })
}

/// Collects deletes older than the cutoff from the store, a page of them
/// per transaction (the store lists deletes by time: nothing else is
/// read). Blocking. Returns how many were collected.
pub(crate) fn collect_tombstones(shared: &Replica) -> Result<usize, NodeError> {
    let cutoff = gc_cutoff(shared);
    if cutoff == 0 {
        return Ok(0);
    }
    let mut total = 0;
    loop {
        let keys = shared
            .store
            .begin_read()?
            .tombstones_before(cutoff, GC_PAGE)?;
        if keys.is_empty() {
            break;
        }
        let full = keys.len() == GC_PAGE;
        let collected = storage::write(shared, |txn| {
            let mut collected = Vec::with_capacity(keys.len());
            let mut table = txn.envelope_table()?;
            for key in keys {
                // A newer put may have replaced the delete since the list was read.
                let still = table
                    .get(&key)?
                    .and_then(|bytes| Envelope::from_trusted_bytes(&bytes).ok())
                    .filter(|e| e.is_tombstone() && e.version().timestamp.0 < cutoff);
                if let Some(tombstone) = still {
                    table.remove(&key)?;
                    collected.push((key, tombstone));
                }
            }
            table.flush()?;
            shared
                .cache
                .forget(collected.iter().map(|(key, _)| key.as_slice()));
            Ok(collected)
        })?;
        for (key, tombstone) in &collected {
            shared.cache.remove(key);
            // Nothing readable changes (the record was gone already), but the
            // delete itself is forgotten: watchers that mirror what the node
            // holds hear of it as the delete once more.
            tell(shared, tombstone, ChangeKind::Delete, Origin::Local);
        }
        shared.counters.collected(collected.len() as u64);
        total += collected.len();
        if !full || collected.is_empty() {
            break;
        }
    }
    if total > 0 {
        tracing::debug!(collected = total, "collected deletes past the horizon");
    }
    Ok(total)
}

/// Drops the envelopes held under `keys` that `doomed` still condemns when
/// checked again inside the transaction (each may have been replaced
/// meanwhile), with their typed records; then updates the Kademlia view and
/// tells subscribers of each record gone, as coming from `origin`.
/// Blocking. Returns what was dropped.
pub(crate) fn drop_held(
    shared: &Replica,
    keys: &[Vec<u8>],
    origin: Origin,
    doomed: impl Fn(&Envelope) -> bool,
) -> Result<Vec<Envelope>, NodeError> {
    let (dropped, listed) = storage::write(shared, |txn| {
        let mut dropped: Vec<Envelope> = Vec::new();
        let registry = shared.registry.read().unwrap_or_else(|e| e.into_inner());
        let mut table = txn.envelope_table()?;
        for key in keys {
            let Some(envelope) = table
                .get(key)?
                .and_then(|bytes| Envelope::from_trusted_bytes(&bytes).ok())
            else {
                continue;
            };
            if !doomed(&envelope) {
                continue;
            }
            if !envelope.is_tombstone() {
                if let Some(handler) = registry.get(envelope.model()) {
                    handler.remove(txn, envelope.key())?;
                }
            }
            table.remove(key)?;
            dropped.push(envelope);
        }
        table.flush()?;
        drop(table);
        let keys: Vec<Vec<u8>> = dropped.iter().map(Envelope::record_key).collect();
        shared.cache.forget(keys.iter().map(Vec::as_slice));
        // A dropped record of a newer version leaves that list too.
        let listed = newer::list(
            shared,
            txn,
            keys.iter().map(|key| (key.as_slice(), &Written::Whole)),
        )?;
        Ok((dropped, listed))
    })?;
    if let Some(listed) = &listed {
        newer::tell(shared, listed);
    }
    for envelope in &dropped {
        shared.cache.remove(&envelope.record_key());
        if !envelope.is_tombstone() {
            tell(shared, envelope, ChangeKind::Delete, origin);
        }
    }
    Ok(dropped)
}

/// Drops records `peer` showed to be ghosts (see the module docs), after
/// checking each again against the store. Blocking.
pub(crate) fn drop_ghosts(
    shared: &Replica,
    peer: PeerId,
    keys: &[Vec<u8>],
    ours: Watermarks,
    theirs: Watermarks,
) -> Result<usize, NodeError> {
    let dropped = drop_held(shared, keys, Origin::Peer(peer), |envelope| {
        reconcile::is_ghost(envelope.version().timestamp.0, ours, theirs)
    })?;
    shared.counters.ghosts(dropped.len() as u64);
    if !dropped.is_empty() {
        tracing::info!(%peer, dropped = dropped.len(), "dropped records deleted while this node was away");
    }
    Ok(dropped.len())
}
