//! The records a node holds, as the network and the node's calls read them:
//! redb is the truth, and a cache with a byte budget
//! ([`NetabaseConfig::cache_bytes`](crate::node::NetabaseConfig::cache_bytes))
//! keeps the envelopes read or written lately, so hot reads cost no disk
//! and memory does not grow with the data set. The swarm's Kademlia store
//! reads the cache alone, never redb (see the shell's `kad_store`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::codec::Envelope;
use crate::store::{EnvelopeState, Store, StoreError};
use crate::sync::{reconcile, Version};

/// One synced record as the node reads it.
#[derive(Clone, Debug)]
pub(crate) struct Cached {
    pub(crate) bytes: Arc<[u8]>,
    pub(crate) version: Version,
    pub(crate) tombstone: bool,
    /// When and from whom a copy of a record this node does not store was
    /// fetched (see [`RemoteCopies`]); `None` for what the node holds.
    pub(crate) fetched: Option<Box<(web_time::Instant, Option<libp2p_identity::PeerId>)>>,
}

impl Cached {
    fn of(envelope: &Envelope) -> Self {
        Cached {
            bytes: envelope.as_bytes().into(),
            version: envelope.version(),
            tombstone: envelope.is_tombstone(),
            fetched: None,
        }
    }

    fn cost(&self, key: &[u8]) -> usize {
        self.bytes.len() + key.len() + ENTRY_OVERHEAD
    }
}

/// What the index keeps of `envelope`.
pub(crate) fn state_of(envelope: &Envelope) -> EnvelopeState {
    EnvelopeState {
        digest: reconcile::digest(envelope.as_bytes()),
        timestamp: envelope.version().timestamp.0,
        tombstone: envelope.is_tombstone(),
    }
}

/// Bytes an entry costs beyond its key and envelope: the maps' slots, the
/// `Arc`'s counts, the version. An estimate that errs high.
const ENTRY_OVERHEAD: usize = 128;

/// A cache slot: a record held, or known not to be.
#[derive(Clone, Debug)]
enum Slot {
    Held(Cached),
    Absent,
}

impl Slot {
    fn cost(&self, key: &[u8]) -> usize {
        match self {
            Slot::Held(cached) => cached.cost(key),
            Slot::Absent => key.len() + ENTRY_OVERHEAD,
        }
    }
}

/// Two generations: entries go into `young`; when it has used half the
/// budget, it becomes `old` and the previous `old` is dropped. A hit in
/// `old` moves back to `young`. An approximation of least-recently-used
/// with O(1) work and no list to keep: whatever was used since the last
/// turn survives it.
#[derive(Default)]
struct Generations {
    young: HashMap<Vec<u8>, Slot>,
    old: HashMap<Vec<u8>, Slot>,
    young_bytes: usize,
    /// Bumped by every change a writer makes (see [`RecordCache::fill`]).
    epoch: u64,
}

impl Generations {
    fn get(&mut self, key: &[u8], budget: usize) -> Option<Slot> {
        if let Some(slot) = self.young.get(key) {
            return Some(slot.clone());
        }
        let slot = self.old.remove(key)?;
        self.put(key.to_vec(), slot.clone(), budget);
        Some(slot)
    }

    fn put(&mut self, key: Vec<u8>, slot: Slot, budget: usize) {
        self.old.remove(&key);
        let cost = slot.cost(&key);
        if cost > budget / 2 {
            // Bigger than a generation: not worth a turn.
            self.remove(&key);
            return;
        }
        if self.young_bytes + cost > budget / 2 {
            self.old = std::mem::take(&mut self.young);
            self.young_bytes = 0;
        }
        if let Some(previous) = self.young.insert(key.clone(), slot) {
            self.young_bytes -= previous.cost(&key);
        }
        self.young_bytes += cost;
    }

    fn remove(&mut self, key: &[u8]) {
        if let Some(previous) = self.young.remove(key) {
            self.young_bytes -= previous.cost(key);
        }
        self.old.remove(key);
    }
}

/// The node's cache of envelopes, shared by the swarm, storage tasks and
/// the handle.
///
/// Writers keep it right around their commits: [`forget`](Self::forget)
/// the keys a transaction writes before it commits (so nobody reads the
/// version it replaces from here once the new one is on disk), then
/// [`insert`](Self::insert) or [`remove`](Self::remove) after. A reader
/// that missed fills the cache from redb only if no writer changed it
/// meanwhile, so a version read before a commit is never put back after.
#[derive(Clone)]
pub(crate) struct RecordCache {
    inner: Arc<Mutex<Generations>>,
    budget: usize,
}

impl std::fmt::Debug for RecordCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordCache")
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl RecordCache {
    pub(crate) fn new(budget: usize) -> Self {
        RecordCache {
            inner: Arc::default(),
            budget,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        // Every update is one map operation: a poisoned lock is still sound.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// After a commit: `envelope` is held.
    pub(crate) fn insert(&self, envelope: &Envelope) {
        let mut inner = self.lock();
        inner.epoch += 1;
        inner.put(
            envelope.record_key(),
            Slot::Held(Cached::of(envelope)),
            self.budget,
        );
    }

    /// After a commit: nothing is held under `record_key`.
    pub(crate) fn remove(&self, record_key: &[u8]) {
        let mut inner = self.lock();
        inner.epoch += 1;
        inner.put(record_key.to_vec(), Slot::Absent, self.budget);
    }

    /// Before a commit that writes `keys`: they are read from redb until
    /// the writer inserts or removes them.
    pub(crate) fn forget<'a>(&self, keys: impl IntoIterator<Item = &'a [u8]>) {
        let mut inner = self.lock();
        inner.epoch += 1;
        for key in keys {
            inner.remove(key);
        }
    }

    /// The cached state of `record_key`: `Some(None)` if known not held,
    /// `None` if not cached. Never reads redb.
    pub(crate) fn cached(&self, record_key: &[u8]) -> Option<Option<Cached>> {
        match self.lock().get(record_key, self.budget)? {
            Slot::Held(cached) => Some(Some(cached)),
            Slot::Absent => Some(None),
        }
    }

    /// The record under `record_key` if the cache has it; never reads
    /// redb (for the swarm's poll).
    pub(crate) fn peek(&self, record_key: &[u8]) -> Option<Cached> {
        self.cached(record_key).flatten()
    }

    /// The record held under `record_key`: from the cache, else one read
    /// of `store`, which fills the cache. Blocking.
    pub(crate) fn get(
        &self,
        store: &Store,
        record_key: &[u8],
    ) -> Result<Option<Cached>, StoreError> {
        if let Some(cached) = self.cached(record_key) {
            return Ok(cached);
        }
        let epoch = self.lock().epoch;
        let bytes = store.begin_read()?.envelope(record_key)?;
        let cached = match bytes.as_deref().map(Envelope::from_trusted_bytes) {
            Some(Ok(envelope)) => Some(Cached::of(&envelope)),
            Some(Err(error)) => {
                tracing::warn!(%error, "an unreadable stored envelope reads as not held");
                None
            }
            None => None,
        };
        self.fill(record_key, cached.clone(), epoch);
        Ok(cached)
    }

    /// Caches what a reader found in redb, unless a writer changed the
    /// cache since `epoch` (what it read may be older than what that
    /// writer committed).
    fn fill(&self, record_key: &[u8], found: Option<Cached>, epoch: u64) {
        let mut inner = self.lock();
        if inner.epoch != epoch {
            return;
        }
        let slot = found.map_or(Slot::Absent, Slot::Held);
        inner.put(record_key.to_vec(), slot, self.budget);
    }
}

/// Copies of records this node does not keep in sync, read from peers on
/// demand: kept within their own byte budget for `ttl`, so a record read
/// again soon costs no network, and one read later is asked for again
/// (nothing keeps a copy here up to date). Nothing here is stored, served
/// to peers, or counted as held.
pub(crate) struct RemoteCopies {
    inner: Mutex<Generations>,
    budget: usize,
    ttl: std::time::Duration,
}

impl RemoteCopies {
    pub(crate) fn new(budget: usize, ttl: std::time::Duration) -> Self {
        RemoteCopies {
            inner: Mutex::default(),
            budget,
            ttl,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps a copy of `envelope`, checked, just fetched from `from`.
    pub(crate) fn insert(&self, envelope: &Envelope, from: Option<libp2p_identity::PeerId>) {
        let mut cached = Cached::of(envelope);
        cached.fetched = Some(Box::new((web_time::Instant::now(), from)));
        self.lock()
            .put(envelope.record_key(), Slot::Held(cached), self.budget);
    }

    /// The copy of `record_key`, if one was fetched less than the time to
    /// live ago.
    pub(crate) fn get(&self, record_key: &[u8]) -> Option<Cached> {
        let mut inner = self.lock();
        let Some(Slot::Held(cached)) = inner.get(record_key, self.budget) else {
            return None;
        };
        let fresh = cached
            .fetched
            .as_deref()
            .is_some_and(|(at, _)| at.elapsed() < self.ttl);
        if !fresh {
            inner.remove(record_key);
            return None;
        }
        Some(cached)
    }

    /// Takes out the copies whose keys `wanted` accepts (to be stored),
    /// with the peers they came from.
    pub(crate) fn take(
        &self,
        wanted: impl Fn(&[u8]) -> bool,
    ) -> Vec<(Arc<[u8]>, Option<libp2p_identity::PeerId>)> {
        let mut inner = self.lock();
        let keys: Vec<Vec<u8>> = inner
            .young
            .keys()
            .chain(inner.old.keys())
            .filter(|key| wanted(key))
            .cloned()
            .collect();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let slot = inner
                .young
                .get(&key)
                .or_else(|| inner.old.get(&key))
                .cloned();
            if let Some(Slot::Held(cached)) = slot {
                let from = cached.fetched.and_then(|fetched| fetched.1);
                out.push((cached.bytes, from));
            }
            inner.remove(&key);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p_identity::PeerId;

    fn cached(len: usize) -> Slot {
        Slot::Held(Cached {
            bytes: vec![0; len].into(),
            version: Version {
                timestamp: crate::sync::Timestamp(1),
                writer: PeerId::random(),
            },
            tombstone: false,
            fetched: None,
        })
    }

    #[test]
    fn the_cache_stays_within_its_budget_and_keeps_what_is_used() {
        let budget = 100_000;
        let mut generations = Generations::default();
        generations.put(b"hot".to_vec(), cached(300), budget);
        for i in 0..10_000u32 {
            generations.put(i.to_be_bytes().to_vec(), cached(300), budget);
            // Used between every write: it survives every turn.
            assert!(generations.get(b"hot", budget).is_some(), "lost at {i}");
            let bytes: usize = generations
                .young
                .iter()
                .chain(&generations.old)
                .map(|(k, s)| s.cost(k))
                .sum();
            assert!(bytes <= budget, "{bytes} > {budget}");
        }
        assert!(generations.get(&0u32.to_be_bytes(), budget).is_none());
    }

    #[test]
    fn an_entry_over_half_the_budget_is_not_cached() {
        let mut generations = Generations::default();
        generations.put(b"big".to_vec(), cached(600), 1000);
        assert!(generations.get(b"big", 1000).is_none());
    }
}
