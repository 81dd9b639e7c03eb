//! The Kademlia record store: an in-memory view of the envelopes held in redb.
//!
//! Kademlia calls its store synchronously from inside the swarm's poll, so
//! this store never touches redb: storage tasks write redb first and then
//! update this view; the swarm only reads it. It holds every synced record's
//! envelope, so memory grows with the data set (see the README's limits).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use libp2p::kad::store::{self, MemoryStore, RecordStore};
use libp2p::kad::{ProviderRecord, Record, RecordKey};
use libp2p::PeerId;

use crate::codec::Envelope;
use crate::sync::reconcile::{self, ItemSet, ItemState};
use crate::sync::Version;

/// One synced record as the swarm serves it.
#[derive(Clone, Debug)]
pub(crate) struct Cached {
    pub(crate) bytes: Arc<[u8]>,
    pub(crate) version: Version,
    pub(crate) tombstone: bool,
}

/// The shared view: storage tasks write it, the swarm reads it. It also keeps
/// the item set that catch-up reconciles, under its own lock, so answering a
/// peer's message never holds up the swarm's reads of records.
#[derive(Clone, Default, Debug)]
pub(crate) struct RecordCache {
    records: Arc<RwLock<HashMap<Vec<u8>, Cached>>>,
    items: Arc<RwLock<ItemSet>>,
}

impl RecordCache {
    pub(crate) fn insert(&self, envelope: &Envelope) {
        let cached = Cached {
            bytes: envelope.as_bytes().into(),
            version: envelope.version(),
            tombstone: envelope.is_tombstone(),
        };
        let key = envelope.record_key();
        let state = ItemState {
            digest: reconcile::digest(envelope.as_bytes()),
            timestamp: envelope.version().timestamp.0,
        };
        // Records first, then items, each lock on its own: a reader sees a
        // record a moment before reconciliation does, never the reverse.
        write(&self.records).insert(key.clone(), cached);
        write(&self.items).insert(key, state);
    }

    pub(crate) fn get(&self, record_key: &[u8]) -> Option<Cached> {
        read(&self.records).get(record_key).cloned()
    }

    pub(crate) fn remove(&self, record_key: &[u8]) {
        write(&self.items).remove(record_key);
        write(&self.records).remove(record_key);
    }

    /// Keys of deletes stamped before `cutoff`.
    pub(crate) fn tombstones_before(&self, cutoff: u64) -> Vec<Vec<u8>> {
        read(&self.records)
            .iter()
            .filter(|(_, c)| c.tombstone && c.version.timestamp.0 < cutoff)
            .map(|(k, _)| k.clone())
            .collect()
    }

    pub(crate) fn len(&self) -> usize {
        read(&self.records).len()
    }

    /// Runs `f` on the reconciliation item set. Every use is bounded work
    /// (see [`reconcile`]'s bounds), so writers wait at most that long.
    pub(crate) fn with_items<T>(&self, f: impl FnOnce(&ItemSet) -> T) -> T {
        f(&read(&self.items))
    }

    /// Every record whose writer is `writer`.
    pub(crate) fn written_by(&self, writer: PeerId) -> Vec<(Vec<u8>, Cached)> {
        read(&self.records)
            .iter()
            .filter(|(_, c)| c.version.writer == writer)
            .map(|(k, c)| (k.clone(), c.clone()))
            .collect()
    }

    /// Every record whose key starts with `prefix` (a model's records).
    pub(crate) fn with_prefix(&self, prefix: &[u8]) -> Vec<(Vec<u8>, Cached)> {
        read(&self.records)
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, c)| (k.clone(), c.clone()))
            .collect()
    }

    fn all(&self) -> Vec<(Vec<u8>, Cached)> {
        read(&self.records)
            .iter()
            .map(|(k, c)| (k.clone(), c.clone()))
            .collect()
    }
}

// A panic while holding a lock cannot leave the view half-updated in a way
// that matters (each update is one insert or remove), so a poisoned lock is
// still sound.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

/// The `RecordStore` Kademlia runs on.
pub(crate) struct KadStore {
    cache: RecordCache,
    local: PeerId,
    max_record_bytes: usize,
    // Provider records are not part of netabase's data; kept in memory.
    providers: MemoryStore,
}

impl KadStore {
    pub(crate) fn new(cache: RecordCache, local: PeerId, max_record_bytes: usize) -> Self {
        KadStore {
            cache,
            local,
            max_record_bytes,
            providers: MemoryStore::new(local),
        }
    }

    fn to_record(&self, key: &[u8], cached: &Cached) -> Record {
        Record {
            key: RecordKey::new(&key),
            value: cached.bytes.to_vec(),
            // Marks our own records for Kademlia's republication; not trusted
            // on receipt (the signature says who wrote a record).
            publisher: (cached.version.writer == self.local).then_some(self.local),
            expires: None,
        }
    }
}

impl RecordStore for KadStore {
    type RecordsIter<'a> = std::vec::IntoIter<Cow<'a, Record>>;
    type ProvidedIter<'a> = <MemoryStore as RecordStore>::ProvidedIter<'a>;

    fn get(&self, k: &RecordKey) -> Option<Cow<'_, Record>> {
        let cached = self.cache.get(k.as_ref())?;
        Some(Cow::Owned(self.to_record(k.as_ref(), &cached)))
    }

    fn put(&mut self, r: Record) -> store::Result<()> {
        // Only our own publications reach here (inbound puts are filtered and
        // stored by the node after validation), and the node has already
        // committed and cached them.
        if r.value.len() > self.max_record_bytes {
            return Err(store::Error::ValueTooLarge);
        }
        Ok(())
    }

    fn remove(&mut self, _k: &RecordKey) {
        // Records never expire (no TTL is set); deletes travel as tombstones.
    }

    fn records(&self) -> Self::RecordsIter<'_> {
        self.cache
            .all()
            .iter()
            .map(|(k, c)| Cow::Owned(self.to_record(k, c)))
            .collect::<Vec<_>>()
            .into_iter()
    }

    fn add_provider(&mut self, record: ProviderRecord) -> store::Result<()> {
        self.providers.add_provider(record)
    }

    fn providers(&self, key: &RecordKey) -> Vec<ProviderRecord> {
        self.providers.providers(key)
    }

    fn provided(&self) -> Self::ProvidedIter<'_> {
        self.providers.provided()
    }

    fn remove_provider(&mut self, k: &RecordKey, p: &PeerId) {
        self.providers.remove_provider(k, p)
    }
}
