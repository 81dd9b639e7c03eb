//! Kademlia's record store. Kademlia calls it synchronously from inside the
//! swarm's poll, so it answers from the replica's cache alone and never
//! touches redb: a cold record is served on the catch-up protocol instead,
//! from a blocking task (`get_record` asks for records there). Kademlia
//! routes and carries publications; it neither replicates nor republishes
//! from its store.

use std::borrow::Cow;

use libp2p::kad::store::{self, MemoryStore, RecordStore};
use libp2p::kad::{ProviderRecord, Record, RecordKey};
use libp2p::PeerId;

use crate::node::replica::cache::RecordCache;

/// The `RecordStore` Kademlia runs on: the cache, read-only, for records;
/// provider records (not netabase's data) in memory.
pub(crate) struct KadStore {
    cache: RecordCache,
    local: PeerId,
    max_record_bytes: usize,
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
}

impl RecordStore for KadStore {
    type RecordsIter<'a> = std::iter::Empty<Cow<'a, Record>>;
    type ProvidedIter<'a> = <MemoryStore as RecordStore>::ProvidedIter<'a>;

    fn get(&self, k: &RecordKey) -> Option<Cow<'_, Record>> {
        let cached = self.cache.peek(k.as_ref())?;
        Some(Cow::Owned(Record {
            key: k.clone(),
            value: cached.bytes.to_vec(),
            publisher: (cached.version.writer == self.local).then_some(self.local),
            expires: None,
        }))
    }

    fn put(&mut self, r: Record) -> store::Result<()> {
        // Only our own publications reach here (inbound puts are filtered and
        // stored by the node after validation), and the node has already
        // committed them.
        if r.value.len() > self.max_record_bytes {
            return Err(store::Error::ValueTooLarge);
        }
        Ok(())
    }

    fn remove(&mut self, _k: &RecordKey) {
        // Records never expire (no TTL is set); deletes travel as tombstones.
    }

    fn records(&self) -> Self::RecordsIter<'_> {
        // Kademlia's own replication and republication are off: the node
        // republishes from redb, a bounded batch at a time.
        std::iter::empty()
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

/// A Kademlia record carrying an envelope. The publisher field is left empty:
/// it is unsigned, and receivers go by the signature instead.
pub(crate) fn kad_record(record_key: &[u8], envelope: &[u8]) -> Record {
    Record {
        key: RecordKey::new(&record_key),
        value: envelope.to_vec(),
        publisher: None,
        expires: None,
    }
}
