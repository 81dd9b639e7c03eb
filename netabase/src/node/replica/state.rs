//! What a replica holds: its store, its identity and clock, the models it
//! knows, the cache in front of redb, and the queues the network fills.
//! Opening one reads a few rows of metadata, never a record.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use libp2p_identity::{Keypair, PeerId};
use tokio::sync::{broadcast, Notify};

use super::cache::{Cached, RecordCache, RemoteCopies};
use super::event::Event;
use super::fetched::Lane;
use super::health::Health;
use super::inbound::InboundQueue;
use super::registry::Registry;
use super::stats::Counters;
use super::subscriptions::Subscriptions;
use super::upgrade;
use crate::model::{ModelId, NetabaseModel};
use crate::node::NodeError;
use crate::store::{Store, StoreError};
use crate::sync::{Clock, Timestamp};

/// Events buffered per subscriber before a slow one starts missing them.
const EVENT_BUFFER: usize = 4096;
/// The sync metadata row holding the latest timestamp this node wrote, which
/// seeds its clock at the next open (so nothing it writes after a restart
/// sorts before what it wrote before, whatever the wall clock did).
pub(crate) const ISSUED: &str = "issued";
/// The sync metadata row that keeps when this node last caught up.
pub(crate) const SYNCED_AT: &str = "synced_at";

/// The part of the node's configuration the replica decides by.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// The largest envelope accepted or written.
    pub(crate) max_record_bytes: usize,
    /// How long deletes are kept before they are collected.
    pub(crate) tombstone_horizon: Option<Duration>,
    /// Whether the node reconciles with peers (the horizon counts from the
    /// last catch-up if so, else from now).
    pub(crate) catch_up: bool,
    /// Bytes of envelopes the cache keeps.
    pub(crate) record_cache_bytes: usize,
    /// Bytes of copies of unsubscribed records kept, and for how long.
    pub(crate) remote_copy_bytes: usize,
    pub(crate) remote_copy_ttl: Duration,
    /// How far ahead of this clock a peer's timestamp may be.
    pub(crate) max_clock_drift: Duration,
    /// A test's skew of this node's clock, in milliseconds.
    pub(crate) clock_skew_ms: i64,
    /// The admins the configuration names, by model id.
    pub(crate) admins: HashMap<ModelId, Vec<PeerId>>,
}

/// A node's replica: what it holds and decides, shared by the handle, the
/// network's event loop and storage tasks. No network type appears here:
/// the network shell calls into the replica, never the other way round.
pub(crate) struct Replica {
    pub(crate) store: Store,
    /// The same database, read-only: what `Netabase::store` hands out.
    pub(crate) read_only_store: Store,
    pub(crate) keypair: Keypair,
    pub(crate) peer_id: PeerId,
    pub(crate) settings: Settings,
    pub(crate) clock: Clock,
    pub(crate) registry: RwLock<Registry>,
    pub(crate) cache: RecordCache,
    /// Copies of records outside the subscriptions, read on demand.
    pub(crate) remote: RemoteCopies,
    /// What the node keeps in sync, per model.
    pub(crate) subscriptions: Subscriptions,
    pub(crate) events: broadcast::Sender<Event>,
    pub(crate) counters: Counters,
    /// Records pushed by peers, waiting to be stored.
    pub(crate) pushed: InboundQueue,
    /// Fetched catch-up batches, checked, waiting to be stored.
    pub(crate) fetched: Lane,
    /// Whether the store failed and awaits a reopen.
    pub(crate) health: Health,
    /// Some record may be listed as a unique conflict (see `apply::settle`).
    pub(crate) conflicts_listed: AtomicBool,
    /// Some record may be listed as of a newer version (see `newer::list`).
    pub(crate) newer_listed: AtomicBool,
    /// Records were dropped because a membership changed (see
    /// `members::drop_uncovered`): peers may hold the versions before them,
    /// so the network catches up with every peer again.
    pub(crate) resync: Notify,
    /// When this node last completed a catch-up (a timestamp; 0: never).
    pub(crate) synced_at: AtomicU64,
}

impl Replica {
    /// Opens the replica on `store`: moves an earlier layout's records
    /// once, then reads the few metadata rows it starts from.
    pub(crate) fn open(
        place: &dyn std::fmt::Display,
        keypair: Keypair,
        store: Store,
        settings: Settings,
    ) -> Result<Arc<Self>, NodeError> {
        let cache = RecordCache::new(settings.record_cache_bytes);
        let peer_id = keypair.public().to_peer_id();
        upgrade::envelopes(&store, peer_id)?;
        let read = store.begin_read()?;
        let synced_at = read.sync_meta(SYNCED_AT)?.unwrap_or(0);
        let conflicts_listed = !read.conflicts(&[], 1)?.is_empty();
        let newer = read.newer_total()?;
        // The latest version this node wrote, to seed its clock with.
        let issued = Timestamp(read.sync_meta(ISSUED)?.unwrap_or(0));
        let records = read.sync_index()?.len()?;
        let subscriptions = Subscriptions::load(&read)?;
        drop(read);
        tracing::info!(%peer_id, path = %place, records, "opened node");
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let counters = Counters::default();
        counters
            .newer_held
            .store(newer, std::sync::atomic::Ordering::Relaxed);
        let clock = Clock::system(settings.max_clock_drift.as_millis() as u64)
            .skewed(settings.clock_skew_ms);
        clock.seed(issued);
        let replica = Arc::new(Replica {
            read_only_store: store.read_only(),
            store,
            keypair,
            peer_id,
            clock,
            registry: RwLock::new(Registry::default()),
            cache,
            remote: RemoteCopies::new(settings.remote_copy_bytes, settings.remote_copy_ttl),
            subscriptions,
            events,
            counters,
            pushed: InboundQueue::default(),
            fetched: Lane::default(),
            health: Health::default(),
            conflicts_listed: AtomicBool::new(conflicts_listed),
            newer_listed: AtomicBool::new(newer > 0),
            resync: Notify::new(),
            synced_at: AtomicU64::new(synced_at),
            settings,
        });
        // Memberships are everyone's business: the members rule reads them.
        replica.register::<crate::rules::Membership>()?;
        Ok(replica)
    }

    /// Registers model `M`: checks it against the models registered, then
    /// opens (or rebuilds) its tables. The records of `M` held at a newer
    /// version are the caller's to promote next (`newer::promote`).
    pub(crate) fn register<M: NetabaseModel>(&self) -> Result<(), NodeError> {
        let mut registry = self.registry.write().unwrap_or_else(|e| e.into_inner());
        registry.check::<M>()?;
        self.store.register::<M>()?;
        registry.register::<M>()
    }

    /// `NotRegistered` unless `M` is registered.
    pub(crate) fn check_registered<M: NetabaseModel>(&self) -> Result<(), NodeError> {
        let registry = self.registry.read().unwrap_or_else(|e| e.into_inner());
        if registry.is_registered::<M>() {
            Ok(())
        } else {
            Err(NodeError::NotRegistered { model: M::NAME })
        }
    }

    /// The record held under `record_key`: from the cache, else one read
    /// of the store. Blocking.
    pub(crate) fn held(&self, record_key: &[u8]) -> Result<Option<Cached>, StoreError> {
        self.cache.get(&self.store, record_key)
    }
}
