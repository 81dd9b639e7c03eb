//! Writes through the store that watch its health: a storage I/O failure
//! marks the node degraded (see [`health`](super::health)), and a probe
//! brings it back.

use std::sync::atomic::Ordering;

use super::event::Event;
use super::state::Replica;
use super::stats::Counters;
use crate::node::NodeError;
use crate::store::{StoreError, WriteTransaction};

/// Where the probe writes, in the sync meta table.
const PROBE_KEY: &str = "storage_probe";

/// Before a local write: if the store has failed, tries to bring it back
/// first (so a node whose swarm is stopped recovers too), else returns the
/// error that says why writes fail. Blocking.
pub(crate) fn ready(shared: &Replica) -> Result<(), NodeError> {
    if !shared.health.degraded() {
        return Ok(());
    }
    probe(shared).map_err(NodeError::Store)
}

/// Runs `f` in one write transaction and commits it if `f` returns `Ok`
/// ([`Store::write`](crate::store::Store::write)); a storage I/O failure on
/// the way marks the node degraded. Blocking.
pub(crate) fn write<T>(
    shared: &Replica,
    f: impl FnOnce(&WriteTransaction) -> Result<T, NodeError>,
) -> Result<T, NodeError> {
    shared
        .store
        .write(f)
        .inspect_err(|error| check(shared, error))
}

/// Looks at an error from a storage task: an I/O failure marks the node
/// degraded (once per failure, with an event and the cause chain logged).
pub(crate) fn check(shared: &Replica, error: &NodeError) {
    let NodeError::Store(store) = error else {
        return;
    };
    if store.needs_reopen() {
        failed(shared, store);
    }
}

fn failed(shared: &Replica, error: &StoreError) {
    if shared.health.degraded.swap(true, Ordering::AcqRel) {
        return;
    }
    let chain = crate::error::chain(error);
    Counters::bump(&shared.counters.storage_failures);
    tracing::error!(error = %chain, "the store failed; refusing records from peers until it can write again");
    shared.health.changed.notify_one();
    let _ = shared.events.send(Event::StorageFailed { error: chain });
}

/// Reopens the store and checks that a write succeeds; on success the node
/// is healthy again. Blocking.
pub(crate) fn probe(shared: &Replica) -> Result<(), StoreError> {
    shared.store.reopen()?;
    let txn = shared.store.begin_write()?;
    txn.set_sync_meta(PROBE_KEY, shared.clock.wall_millis())?;
    txn.commit()?;
    if shared.health.degraded.swap(false, Ordering::AcqRel) {
        Counters::bump(&shared.counters.storage_recoveries);
        tracing::info!("the store writes again; taking records from peers again");
        let _ = shared.events.send(Event::StorageRecovered);
    }
    Ok(())
}
