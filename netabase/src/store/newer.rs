//! Records held at a version of their model newer than this build knows
//! (`netabase/sync/newer`, record key -> that version, 4 bytes big-endian),
//! and how many of each model at each version (`netabase/sync/newer_counts`,
//! model id << 32 | version -> count). A node on an older release of the
//! app keeps such records as their signed envelopes, with no typed row and
//! no index entries, serves them to peers, and reads them into its typed
//! tree once the app registers a version that knows them. The node decides
//! which records these are; the store keeps the list and its counts in the
//! same transaction. The counts by version let a node tell, without reading
//! the list, whether a model registered at start-up has anything to read.

use redb::{ReadableTable, TableDefinition};

use super::error::{storage, StoreError};
use super::read::ReadTransaction;
use super::rows::model_of;
use super::tables::{Bytes, KeyBytes};
use super::write::WriteTransaction;

const NEWER: TableDefinition<'static, KeyBytes, Bytes> =
    TableDefinition::new("netabase/sync/newer");
const COUNTS: TableDefinition<'static, u64, u64> =
    TableDefinition::new("netabase/sync/newer_counts");

/// The counts table's key for `model` at `version`.
fn count_key(model: u32, version: u32) -> u64 {
    (u64::from(model) << 32) | u64::from(version)
}

/// The version a list entry holds (an unreadable one sorts as the newest).
fn version_of(listed: &[u8]) -> u32 {
    listed
        .first_chunk::<4>()
        .map_or(u32::MAX, |v| u32::from_be_bytes(*v))
}

/// The list of newer-version records, opened for many reads and writes in
/// a transaction.
#[doc(hidden)]
pub struct NewerTable<'txn> {
    keys: redb::Table<'txn, KeyBytes, Bytes>,
    counts: redb::Table<'txn, u64, u64>,
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
            .map(|old| version_of(old.value()));
        if let Some(old) = old {
            self.add(record_key, old, -1)?;
        }
        self.add(record_key, version, 1)?;
        Ok(old.is_none())
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
            .map(|old| version_of(old.value()));
        if let Some(old) = old {
            self.add(record_key, old, -1)?;
        }
        Ok(old.is_some())
    }

    fn add(&mut self, record_key: &[u8], version: u32, delta: i64) -> Result<(), StoreError> {
        let Some(model) = model_of(record_key) else {
            return Ok(());
        };
        let key = count_key(u32::from_be_bytes(model), version);
        let count = self
            .counts
            .get(key)
            .map_err(storage("read the count of newer records"))?
            .map_or(0, |count| count.value());
        let written = match count.saturating_add_signed(delta) {
            0 => self.counts.remove(key).map(drop),
            count => self.counts.insert(key, count).map(drop),
        };
        written.map_err(storage("count newer records"))
    }

    /// Up to `limit` listed records of model `model` at `version` or
    /// older, in key order after `after` (from the first if `None`), with
    /// their versions.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    pub fn up_to(
        &self,
        model: u32,
        version: u32,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, u32)>, StoreError> {
        let prefix = model.to_be_bytes();
        let range = match after {
            Some(after) => self
                .keys
                .range::<&[u8]>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded)),
            None => self.keys.range::<&[u8]>(&prefix[..]..),
        };
        let mut out = Vec::new();
        for entry in range.map_err(storage("read newer records"))? {
            let (key, listed) = entry.map_err(storage("read newer records"))?;
            let key = key.value();
            if !key.starts_with(&prefix) || out.len() == limit {
                break;
            }
            let listed = version_of(listed.value());
            if listed <= version {
                out.push((key.to_vec(), listed));
            }
        }
        Ok(out)
    }

    /// Whether any record of model `model` is listed at `version` or older:
    /// read from the counts, not the list.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    pub fn any_up_to(&self, model: u32, version: u32) -> Result<bool, StoreError> {
        let mut counts = self
            .counts
            .range(count_key(model, 0)..=count_key(model, version))
            .map_err(storage("read the counts of newer records"))?;
        Ok(counts.next().is_some())
    }

    /// Records of model `model` listed, at any version.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    pub fn count(&self, model: u32) -> Result<u64, StoreError> {
        sum(
            &self.counts,
            count_key(model, 0)..=count_key(model, u32::MAX),
        )
    }

    /// Records listed, of every model.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    pub fn total(&self) -> Result<u64, StoreError> {
        sum(&self.counts, ..)
    }
}

/// The counts in `range` of the counts table, added up.
fn sum(
    counts: &impl ReadableTable<u64, u64>,
    range: impl std::ops::RangeBounds<u64>,
) -> Result<u64, StoreError> {
    let mut total = 0u64;
    for entry in counts
        .range(range)
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
        Ok(NewerTable {
            keys: self
                .raw()
                .open_table(NEWER)
                .map_err(storage("open the list of newer records"))?,
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
            Ok(counts) => sum(&counts, ..),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
            Err(error) => Err(storage("open the counts of newer records")(error)),
        }
    }
}
