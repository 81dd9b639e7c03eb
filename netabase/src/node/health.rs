//! The store's health as the node sees it. A storage I/O error (a full disk)
//! leaves redb refusing every write until the database is reopened, so the
//! node marks itself degraded: it stops taking records from peers (Kademlia
//! goes to client mode, so peers stop pushing and no acknowledgement is
//! given for a record that cannot be stored), says so (an event, a stat, and
//! the whole cause chain in the log), and probes: reopen, then a test
//! write, backing off while the disk stays full. When a probe succeeds the
//! node serves again and catches up with every connected peer, so whatever
//! it missed meanwhile, or acknowledged and could not store, comes back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::event::Event;
use super::stats::Counters;
use super::{NodeError, Shared};
use crate::store::{StoreError, WriteTransaction};

/// The first wait between probes; it doubles up to [`MAX_BACKOFF`].
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest wait between probes.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Where the probe writes, in the sync meta table.
const PROBE_KEY: &str = "storage_probe";

#[derive(Debug, Default)]
pub(crate) struct Health {
    degraded: AtomicBool,
    /// Wakes the event loop when the store fails, so it stops taking records
    /// at once rather than at its next housekeeping tick.
    pub(crate) changed: tokio::sync::Notify,
}

impl Health {
    /// Whether the store failed and has not been reopened since.
    pub(crate) fn degraded(&self) -> bool {
        self.degraded.load(Ordering::Acquire)
    }
}

/// Before a local write: if the store has failed, tries to bring it back
/// first (so a node whose swarm is stopped recovers too), else returns the
/// error that says why writes fail. Blocking.
pub(crate) fn ready(shared: &Shared) -> Result<(), NodeError> {
    if !shared.health.degraded() {
        return Ok(());
    }
    probe(shared).map_err(NodeError::Store)
}

/// Runs `f` in one write transaction and commits it if `f` returns `Ok`
/// ([`Store::write`](crate::store::Store::write)); a storage I/O failure on
/// the way marks the node degraded. Blocking.
pub(crate) fn write<T>(
    shared: &Shared,
    f: impl FnOnce(&WriteTransaction) -> Result<T, NodeError>,
) -> Result<T, NodeError> {
    shared
        .store
        .write(f)
        .inspect_err(|error| check(shared, error))
}

/// Looks at an error from a storage task: an I/O failure marks the node
/// degraded (once per failure, with an event and the cause chain logged).
pub(crate) fn check(shared: &Shared, error: &NodeError) {
    let NodeError::Store(store) = error else {
        return;
    };
    if store.needs_reopen() {
        failed(shared, store);
    }
}

fn failed(shared: &Shared, error: &StoreError) {
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
pub(crate) fn probe(shared: &Shared) -> Result<(), StoreError> {
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
