//! The delete horizon: tombstones are collected once they are older than
//! `tombstone_horizon`, counted back from the node's last completed
//! catch-up. Because a collected delete leaves no trace, a peer that was away
//! longer than the horizon may still hold records deleted meanwhile
//! ("ghosts"); reconciliation spots them with [`reconcile::is_ghost`] and
//! they are dropped instead of spreading again.

use std::sync::atomic::Ordering;

use libp2p::PeerId;

use crate::codec::Envelope;
use crate::sync::reconcile::{self, Watermarks};
use crate::sync::Timestamp;

use super::event::{ChangeKind, Origin};
use super::{apply, health, NodeError, Shared};

/// The key in the sync meta table holding when this node last caught up.
pub(crate) const SYNCED_AT: &str = "synced_at";
/// Deletes collected per transaction.
const GC_PAGE: usize = 4096;

fn horizon_ms(shared: &Shared) -> Option<u64> {
    shared
        .config
        .tombstone_horizon
        .map(|h| u64::try_from(h.as_millis()).unwrap_or(u64::MAX))
}

/// `at` minus the horizon, as a timestamp; 0 when there is no horizon or
/// nothing to count back from.
fn minus_horizon(shared: &Shared, at_millis: u64) -> u64 {
    match horizon_ms(shared) {
        Some(h) if at_millis > 0 => Timestamp::new(at_millis.saturating_sub(h), 0).0,
        _ => 0,
    }
}

/// What this node states about itself when reconciling.
pub(crate) fn watermarks(shared: &Shared) -> Watermarks {
    let synced = shared.synced_at.load(Ordering::Acquire);
    Watermarks {
        synced,
        floor: if shared.config.catch_up {
            minus_horizon(shared, Timestamp(synced).millis())
        } else {
            0
        },
    }
}

/// Deletes stamped before this are collected.
pub(crate) fn gc_cutoff(shared: &Shared) -> u64 {
    if shared.config.catch_up {
        watermarks(shared).floor
    } else {
        // Without catch-up nothing reconciles ghosts anyway: count from now.
        minus_horizon(shared, shared.clock.wall_millis())
    }
}

/// A peer's watermarks, bounded by what this node's own horizon allows: a
/// peer claiming a floor later than "now minus our horizon" could otherwise
/// make us drop recent records.
pub(crate) fn bound_theirs(shared: &Shared, theirs: Watermarks) -> Watermarks {
    let cap = minus_horizon(shared, shared.clock.wall_millis());
    Watermarks {
        synced: theirs.synced,
        floor: theirs.floor.min(cap),
    }
}

/// Records in memory that this node completed a catch-up that started at
/// `started`; true if that moved its watermark (then [`persist_synced`]).
pub(crate) fn caught_up(shared: &Shared, started: Timestamp) -> bool {
    shared.synced_at.fetch_max(started.0, Ordering::AcqRel) < started.0
}

/// Writes the in-memory catch-up watermark to the store. Blocking.
pub(crate) fn persist_synced(shared: &Shared) -> Result<(), NodeError> {
    health::write(shared, |txn| {
        // Read inside the transaction, so concurrent writers store the latest.
        txn.set_sync_meta(SYNCED_AT, shared.synced_at.load(Ordering::Acquire))?;
        Ok(())
    })
}

/// Collects deletes older than the cutoff from the store, a page of them
/// per transaction (the store lists deletes by time: nothing else is
/// read). Blocking. Returns how many were collected.
pub(crate) fn collect_tombstones(shared: &Shared) -> Result<usize, NodeError> {
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
        let collected = health::write(shared, |txn| {
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
            apply::tell(shared, tombstone, ChangeKind::Delete, Origin::Local);
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
    shared: &Shared,
    keys: &[Vec<u8>],
    origin: Origin,
    doomed: impl Fn(&Envelope) -> bool,
) -> Result<Vec<Envelope>, NodeError> {
    let dropped = health::write(shared, |txn| {
        let mut dropped = Vec::new();
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
        shared.cache.forget(
            dropped
                .iter()
                .map(|e| e.record_key())
                .collect::<Vec<_>>()
                .iter()
                .map(|k| k.as_slice()),
        );
        Ok(dropped)
    })?;
    for envelope in &dropped {
        shared.cache.remove(&envelope.record_key());
        if !envelope.is_tombstone() {
            apply::tell(shared, envelope, ChangeKind::Delete, origin);
        }
    }
    Ok(dropped)
}

/// Drops records `peer` showed to be ghosts (see the module docs), after
/// checking each again against the store. Blocking.
pub(crate) fn drop_ghosts(
    shared: &Shared,
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
