//! Records held at a version of their model newer than this build knows
//! (`netabase/sync/newer`, record key -> that version, 4 bytes big-endian),
//! and how many of each model (`netabase/sync/newer_counts`, model id ->
//! count). A node on an older release of the app keeps such records as
//! their signed envelopes, with no typed row and no index entries, serves
//! them to peers, and reads them into its typed tree once the app registers
//! a version that knows them. The node decides which records these are; the
//! store keeps the list and its counts in the same transaction.

use redb::{ReadableTable, TableDefinition};

use super::error::{storage, StoreError};
use super::read::ReadTransaction;
use super::tables::{Bytes, KeyBytes};
use super::write::WriteTransaction;

const NEWER: TableDefinition<'static, KeyBytes, Bytes> =
    TableDefinition::new("netabase/sync/newer");
const COUNTS: TableDefinition<'static, u32, u64> =
    TableDefinition::new("netabase/sync/newer_counts");

/// The model id a record key starts with.
fn model_of(record_key: &[u8]) -> Option<u32> {
    record_key
        .first_chunk::<4>()
        .map(|model| u32::from_be_bytes(*model))
}

/// The list of newer-version records, opened for many reads and writes in
/// a transaction.
#[doc(hidden)]
pub struct NewerTable<'txn> {
    keys: redb::Table<'txn, KeyBytes, Bytes>,
    counts: redb::Table<'txn, u32, u64>,
}

impl NewerTable<'_> {
    /// Lists `record_key` as held at `version`; true if it was not listed.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    pub fn insert(&mut self, record_key: &[u8], version: u32) -> Result<bool, StoreError> {
        let old = self
            .keys
            .insert(record_key, &version.to_be_bytes()[..])
            .map_err(storage("list a record of a newer version"))?
            .is_some();
        if !old {
            self.add(record_key, 1)?;
        }
        Ok(!old)
    }

    /// Unlists `record_key`; true if it was listed.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    pub fn remove(&mut self, record_key: &[u8]) -> Result<bool, StoreError> {
        let old = self
            .keys
            .remove(record_key)
            .map_err(storage("unlist a record of a newer version"))?
            .is_some();
        if old {
            self.add(record_key, -1)?;
        }
        Ok(old)
    }

    fn add(&mut self, record_key: &[u8], delta: i64) -> Result<(), StoreError> {
        let Some(model) = model_of(record_key) else {
            return Ok(());
        };
        let count = self
            .counts
            .get(model)
            .map_err(storage("read the count of newer records"))?
            .map_or(0, |count| count.value());
        let count = count.saturating_add_signed(delta);
        let written = if count == 0 {
            self.counts.remove(model).map(drop)
        } else {
            self.counts.insert(model, count).map(drop)
        };
        written.map_err(storage("count newer records"))
    }

    /// Up to `limit` listed records of model `model` at `version` or
    /// older, in key order, with their versions.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    pub fn up_to(
        &self,
        model: u32,
        version: u32,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, u32)>, StoreError> {
        let prefix = model.to_be_bytes();
        let mut out = Vec::new();
        for entry in self
            .keys
            .range::<&[u8]>(&prefix[..]..)
            .map_err(storage("read newer records"))?
        {
            let (key, listed) = entry.map_err(storage("read newer records"))?;
            let key = key.value();
            if !key.starts_with(&prefix) || out.len() == limit {
                break;
            }
            let listed = listed
                .value()
                .first_chunk::<4>()
                .map_or(u32::MAX, |v| u32::from_be_bytes(*v));
            if listed <= version {
                out.push((key.to_vec(), listed));
            }
        }
        Ok(out)
    }

    /// Records of model `model` listed.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    pub fn count(&self, model: u32) -> Result<u64, StoreError> {
        Ok(self
            .counts
            .get(model)
            .map_err(storage("read the count of newer records"))?
            .map_or(0, |count| count.value()))
    }

    /// Records listed, of every model.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    pub fn total(&self) -> Result<u64, StoreError> {
        total(&self.counts)
    }
}

fn total(counts: &impl ReadableTable<u32, u64>) -> Result<u64, StoreError> {
    let mut total = 0u64;
    for entry in counts
        .iter()
        .map_err(storage("read the counts of newer records"))?
    {
        let (_, count) = entry.map_err(storage("read the counts of newer records"))?;
        total = total.saturating_add(count.value());
    }
    Ok(total)
}

impl WriteTransaction {
    /// Opens the list of newer-version records for many reads and writes.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    #[doc(hidden)]
    pub fn newer_table(&self) -> Result<NewerTable<'_>, StoreError> {
        let open = storage("open the list of newer records");
        Ok(NewerTable {
            keys: self.raw().open_table(NEWER).map_err(open)?,
            counts: self
                .raw()
                .open_table(COUNTS)
                .map_err(storage("open the counts of newer records"))?,
        })
    }
}

impl ReadTransaction {
    /// Records held at a version of their model newer than this build
    /// knows, of every model (see [`WriteTransaction::newer_table`]).
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    #[doc(hidden)]
    pub fn newer_total(&self) -> Result<u64, StoreError> {
        match self.raw().open_table(COUNTS) {
            Ok(counts) => total(&counts),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
            Err(error) => Err(storage("open the counts of newer records")(error)),
        }
    }
}
