//! The envelope table: for every synced record, the signed bytes it travelled
//! in (`netabase/sync/envelopes`, record key -> envelope). Written in the
//! same transaction as the typed record, so the signature, version and value
//! never disagree. Opaque bytes here: the store knows nothing of their format.

use redb::{ReadableTable, TableDefinition};

use super::error::{storage, StoreError};
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

    /// Stores `envelope` under `record_key`, replacing any previous one.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    pub fn insert(&mut self, record_key: &[u8], envelope: &[u8]) -> Result<(), StoreError> {
        self.table
            .insert(record_key, envelope)
            .map_err(storage("write an envelope"))?;
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
        Ok(removed.is_some())
    }
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
        Ok(EnvelopeTable { table })
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
