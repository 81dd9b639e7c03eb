//! The envelope table: for every synced record, the signed bytes it travelled
//! in (`netabase/sync/envelopes`, record key -> envelope). Written in the
//! same transaction as the typed record, so the signature, version and value
//! never disagree. Opaque bytes here: the store knows nothing of their
//! format, only the timestamp its writer gives with each. Every write also
//! updates reconciliation's index of the envelopes ([`super::fingerprints`])
//! in the same transaction, so the two never disagree either.

use redb::{ReadableTable, TableDefinition};

use super::error::{storage, StoreError};
use super::fingerprints::{self, Boundaries};
use super::read::ReadTransaction;
use super::tables::{Bytes, KeyBytes};
use super::write::WriteTransaction;

/// A stored envelope: `(record key, envelope bytes)`.
pub type StoredEnvelope = (Vec<u8>, Vec<u8>);

const ENVELOPES: TableDefinition<'static, KeyBytes, Bytes> =
    TableDefinition::new("netabase/sync/envelopes");
/// Small values the sync layer keeps about itself (e.g. when it last caught up).
const SYNC_META: TableDefinition<'static, &'static str, u64> =
    TableDefinition::new("netabase/sync/meta");

/// The envelope table opened once for many reads and writes in a
/// transaction (opening a table per record costs more than the write).
#[doc(hidden)]
pub struct EnvelopeTable<'txn> {
    table: redb::Table<'txn, KeyBytes, Bytes>,
    index: fingerprints::WriteView<'txn>,
}

impl EnvelopeTable<'_> {
    /// The envelope stored under `record_key`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    pub fn get(&self, record_key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let value = self
            .table
            .get(record_key)
            .map_err(storage("read an envelope"))?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    /// Stores `envelope`, stamped `timestamp`, under `record_key`,
    /// replacing any previous one.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    pub fn insert(
        &mut self,
        record_key: &[u8],
        envelope: &[u8],
        timestamp: u64,
    ) -> Result<(), StoreError> {
        self.table
            .insert(record_key, envelope)
            .map_err(storage("write an envelope"))?;
        self.index
            .insert(record_key, item_state(envelope, timestamp))?;
        Ok(())
    }

    /// Removes the envelope stored under `record_key`; true if there was one.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    pub fn remove(&mut self, record_key: &[u8]) -> Result<bool, StoreError> {
        let removed = self
            .table
            .remove(record_key)
            .map_err(storage("remove an envelope"))?;
        self.index.remove(record_key)?;
        Ok(removed.is_some())
    }
}

/// How reconciliation sees an envelope.
fn item_state(envelope: &[u8], timestamp: u64) -> crate::sync::reconcile::ItemState {
    crate::sync::reconcile::ItemState {
        digest: crate::sync::reconcile::digest(envelope),
        timestamp,
    }
}

/// Names in the sync meta table of the two halves of the secret seed that
/// decides the index's bucket boundaries (see [`super::fingerprints`]).
const SEED: [&str; 2] = ["index_seed_0", "index_seed_1"];

/// The seed read from `meta`, if one was made.
fn stored_seed(
    meta: &impl ReadableTable<&'static str, u64>,
) -> Result<Option<[u8; 16]>, StoreError> {
    let mut seed = [0u8; 16];
    for (half, name) in SEED.iter().enumerate() {
        let Some(value) = meta.get(*name).map_err(storage("read sync state"))? else {
            return Ok(None);
        };
        seed[half * 8..half * 8 + 8].copy_from_slice(&value.value().to_le_bytes());
    }
    Ok(Some(seed))
}

/// A fresh secret seed. A throwaway key pair is the randomness source every
/// platform here has, the browser included (through libp2p-identity).
fn fresh_seed() -> [u8; 16] {
    let secret = libp2p_identity::Keypair::generate_ed25519()
        .derive_secret(b"netabase/sync/index-seed")
        .unwrap_or_default();
    let mut seed = [0u8; 16];
    seed.copy_from_slice(&secret[..16]);
    seed
}

impl WriteTransaction {
    /// Opens the envelope table for many reads and writes.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    #[doc(hidden)]
    pub fn envelope_table(&self) -> Result<EnvelopeTable<'_>, StoreError> {
        let table = self
            .raw()
            .open_table(ENVELOPES)
            .map_err(storage("open the envelope table"))?;
        let index = fingerprints::WriteView::open(self.raw(), self.index_boundaries()?)?;
        Ok(EnvelopeTable { table, index })
    }

    /// The index's boundaries, making its seed on first use.
    fn index_boundaries(&self) -> Result<Boundaries, StoreError> {
        let mut meta = self
            .raw()
            .open_table(SYNC_META)
            .map_err(storage("open the sync table"))?;
        if let Some(seed) = stored_seed(&meta)? {
            return Ok(Boundaries::new(seed));
        }
        let seed = fresh_seed();
        for (half, name) in SEED.iter().enumerate() {
            let mut value = [0u8; 8];
            value.copy_from_slice(&seed[half * 8..half * 8 + 8]);
            meta.insert(*name, u64::from_le_bytes(value))
                .map_err(storage("write sync state"))?;
        }
        Ok(Boundaries::new(seed))
    }

    /// Rebuilds reconciliation's index from the envelopes, each stamped as
    /// `timestamp_of` reads it: for a file written before the index was
    /// kept. One pass in key order.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    pub(crate) fn rebuild_sync_index(
        &self,
        timestamp_of: impl Fn(&[u8]) -> u64,
    ) -> Result<u64, StoreError> {
        let boundaries = self.index_boundaries()?;
        let table = self
            .raw()
            .open_table(ENVELOPES)
            .map_err(storage("open the envelope table"))?;
        let items = table
            .iter()
            .map_err(storage("read envelopes"))?
            .map(|entry| {
                let (key, value) = entry.map_err(storage("read envelopes"))?;
                let state = item_state(value.value(), timestamp_of(value.value()));
                Ok((key.value().to_vec(), state))
            });
        fingerprints::rebuild(self.raw(), boundaries, items)
    }

    /// Sets a sync bookkeeping value.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    #[doc(hidden)]
    pub fn set_sync_meta(&self, name: &str, value: u64) -> Result<(), StoreError> {
        let mut table = self
            .raw()
            .open_table(SYNC_META)
            .map_err(storage("open the sync table"))?;
        table
            .insert(name, value)
            .map_err(storage("write sync state"))?;
        Ok(())
    }
}

impl ReadTransaction {
    /// Reconciliation's index of the envelopes, as of this snapshot.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    pub(crate) fn sync_index(&self) -> Result<fingerprints::ReadView, StoreError> {
        let seed = match self.raw().open_table(SYNC_META) {
            Ok(meta) => stored_seed(&meta)?,
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(error) => return Err(storage("open the sync table")(error)),
        };
        // No seed yet: nothing was ever indexed, and the view is empty.
        fingerprints::ReadView::open(self.raw(), Boundaries::new(seed.unwrap_or_default()))
    }

    /// How many envelopes are stored.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    pub(crate) fn envelope_count(&self) -> Result<u64, StoreError> {
        match self.raw().open_table(ENVELOPES) {
            Ok(table) => {
                use redb::ReadableTableMetadata;
                table.len().map_err(storage("read envelopes"))
            }
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
            Err(error) => Err(storage("open the envelope table")(error)),
        }
    }

    /// A sync bookkeeping value, if set.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    #[doc(hidden)]
    pub fn sync_meta(&self, name: &str) -> Result<Option<u64>, StoreError> {
        let table = match self.raw().open_table(SYNC_META) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(error) => return Err(storage("open the sync table")(error)),
        };
        let value = table.get(name).map_err(storage("read sync state"))?;
        Ok(value.map(|v| v.value()))
    }

    /// Every stored envelope as `(record key, envelope)`, in key order.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    #[doc(hidden)]
    pub fn envelopes(&self) -> Result<Vec<StoredEnvelope>, StoreError> {
        let table = match self.raw().open_table(ENVELOPES) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(error) => return Err(storage("open the envelope table")(error)),
        };
        let mut out = Vec::new();
        for entry in table.iter().map_err(storage("read envelopes"))? {
            let (key, value) = entry.map_err(storage("read envelopes"))?;
            out.push((key.value().to_vec(), value.value().to_vec()));
        }
        Ok(out)
    }
}

/// Records held but kept out of their typed tree because another record
/// holds one of their unique values (`netabase/sync/conflicts`, record key
/// -> nothing). The node decides which; the store only keeps the list.
const CONFLICTS: TableDefinition<'static, KeyBytes, Bytes> =
    TableDefinition::new("netabase/sync/conflicts");

/// The conflict list opened for many reads and writes in a transaction.
#[doc(hidden)]
pub struct ConflictTable<'txn> {
    table: redb::Table<'txn, KeyBytes, Bytes>,
}

impl ConflictTable<'_> {
    /// Adds `record_key`; true if it was not listed.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    pub fn insert(&mut self, record_key: &[u8]) -> Result<bool, StoreError> {
        let old = self
            .table
            .insert(record_key, &[][..])
            .map_err(storage("list a conflict"))?;
        Ok(old.is_none())
    }

    /// Removes `record_key`; true if it was listed.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    pub fn remove(&mut self, record_key: &[u8]) -> Result<bool, StoreError> {
        let old = self
            .table
            .remove(record_key)
            .map_err(storage("unlist a conflict"))?;
        Ok(old.is_some())
    }

    /// Up to `limit` listed keys starting with `prefix`, in key order.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    pub fn with_prefix(&self, prefix: &[u8], limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        keys_with_prefix(&self.table, prefix, limit)
    }
}

fn keys_with_prefix(
    table: &impl ReadableTable<KeyBytes, Bytes>,
    prefix: &[u8],
    limit: usize,
) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut out = Vec::new();
    for entry in table
        .range::<&[u8]>(prefix..)
        .map_err(storage("read conflicts"))?
    {
        let (key, _) = entry.map_err(storage("read conflicts"))?;
        let key = key.value();
        if !key.starts_with(prefix) || out.len() == limit {
            break;
        }
        out.push(key.to_vec());
    }
    Ok(out)
}

impl WriteTransaction {
    /// Opens the conflict list for many reads and writes.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    #[doc(hidden)]
    pub fn conflict_table(&self) -> Result<ConflictTable<'_>, StoreError> {
        let table = self
            .raw()
            .open_table(CONFLICTS)
            .map_err(storage("open the conflict table"))?;
        Ok(ConflictTable { table })
    }
}

impl ReadTransaction {
    /// Up to `limit` record keys listed as conflicts, starting with `prefix`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    #[doc(hidden)]
    pub fn conflicts(&self, prefix: &[u8], limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        match self.raw().open_table(CONFLICTS) {
            Ok(table) => keys_with_prefix(&table, prefix, limit),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(Vec::new()),
            Err(error) => Err(storage("open the conflict table")(error)),
        }
    }

    /// The envelope stored under `record_key`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    #[doc(hidden)]
    pub fn envelope(&self, record_key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let table = match self.raw().open_table(ENVELOPES) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(error) => return Err(storage("open the envelope table")(error)),
        };
        let value = table.get(record_key).map_err(storage("read an envelope"))?;
        Ok(value.map(|v| v.value().to_vec()))
    }
}
