//! The records the node syncs, as signed envelopes (`netabase/sync/records`,
//! record key -> a row: the record's reconciliation state, then the signed
//! bytes it travelled in). Written in the same transaction as the typed
//! record, so the signature, version and value never disagree, and the
//! reconciliation index (see [`fingerprints`](super::fingerprints)) is
//! updated by the same writes. Deletes are also listed by timestamp
//! (`netabase/sync/tombstones`), so collecting old ones reads only those.
//! A record's envelope is stored whole, or split when its typed row holds
//! its payload (see [`rows`](super::rows)); the node says which, and what
//! each envelope's state is.

use redb::{ReadableTable, TableDefinition};

use super::error::{storage, StoreError};
use super::fingerprints::{self, Boundaries, ReadView, WriteView};
use super::read::ReadTransaction;
use super::rows::{self, Form, ReadRows, WriteRows};
use super::tables::{Bytes, KeyBytes};
use super::write::WriteTransaction;
use crate::sync::reconcile::ItemState;

/// A stored envelope: `(record key, envelope bytes)`.
pub type StoredEnvelope = (Vec<u8>, Vec<u8>);

/// What the index keeps of an envelope, as the node reads it.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnvelopeState {
    /// Its digest (see `sync::reconcile::digest`).
    pub digest: u128,
    /// Its version's timestamp.
    pub timestamp: u64,
    /// Whether it is a delete.
    pub tombstone: bool,
}

impl EnvelopeState {
    fn item(self) -> ItemState {
        ItemState {
            digest: self.digest,
            timestamp: self.timestamp,
        }
    }
}

/// The table of the format before the records table: record key ->
/// envelope, with no state. Moved into the records table by
/// [`WriteTransaction::upgrade_envelopes`].
const OLD_ENVELOPES: TableDefinition<'static, KeyBytes, Bytes> =
    TableDefinition::new("netabase/sync/envelopes");
/// Deletes by timestamp: `timestamp (8 bytes, big-endian) ++ record key`.
const TOMBSTONES: TableDefinition<'static, KeyBytes, ()> =
    TableDefinition::new("netabase/sync/tombstones");
/// Small values the sync layer keeps about itself (e.g. when it last caught up).
const SYNC_META: TableDefinition<'static, &'static str, u64> =
    TableDefinition::new("netabase/sync/meta");
/// The two halves of the index's secret seed, in the meta table.
const SEED: [&str; 2] = ["index-seed-0", "index-seed-1"];

fn tombstone_key(timestamp: u64, record_key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + record_key.len());
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.extend_from_slice(record_key);
    out
}

/// A seed no peer can guess: the secret half of a fresh key pair (the
/// platform's randomness, which key generation already uses everywhere
/// this crate runs), hashed.
fn fresh_seed() -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let keypair = libp2p_identity::Keypair::generate_ed25519();
    let secret = keypair
        .try_into_ed25519()
        .map(|k| k.secret().as_ref().to_vec())
        .unwrap_or_default();
    let hash = Sha256::new()
        .chain_update(b"netabase index seed")
        .chain_update(secret)
        .finalize();
    let mut seed = [0; 16];
    seed.copy_from_slice(&hash[..16]);
    seed
}

fn seed_from(halves: [Option<u64>; 2]) -> Option<Boundaries> {
    let [Some(a), Some(b)] = halves else {
        return None;
    };
    let mut seed = [0; 16];
    seed[..8].copy_from_slice(&a.to_le_bytes());
    seed[8..].copy_from_slice(&b.to_le_bytes());
    Some(Boundaries::new(seed))
}

/// The records table opened once for many reads and writes in a
/// transaction (opening a table per record costs more than the write),
/// with the index its writes keep up to date.
#[doc(hidden)]
pub struct EnvelopeTable<'txn> {
    index: WriteView<'txn>,
    tombstones: redb::Table<'txn, KeyBytes, ()>,
    /// Reads the typed rows of split envelopes.
    rows: std::cell::RefCell<WriteRows<'txn>>,
}

impl EnvelopeTable<'_> {
    /// The envelope stored under `record_key`. Read a split one before its
    /// model's tree is opened in the transaction (redb opens a table once
    /// at a time), and before its typed row changes.
    ///
    /// # Errors
    ///
    /// [`StoreError::SyncedRecordChanged`] if its typed row no longer fits
    /// it; [`StoreError::Storage`] if the database fails.
    pub fn get(&self, record_key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let row = self
            .index
            .records()
            .get(record_key)
            .map_err(storage("read an envelope"))?
            .map(|v| v.value().to_vec());
        match row {
            Some(row) => {
                let mut typed = self.rows.borrow_mut();
                rows::envelope_of(record_key, &row, &mut *typed).map(Some)
            }
            None => Ok(None),
        }
    }

    /// Stores `envelope` under `record_key` in the `form` given, replacing
    /// any previous one. A split envelope's typed row must already hold its
    /// payload, byte for byte.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    pub fn insert(
        &mut self,
        record_key: &[u8],
        envelope: &[u8],
        state: EnvelopeState,
        form: Form<'_>,
    ) -> Result<(), StoreError> {
        let form = match (form, rows::model_of(record_key)) {
            (Form::Split { table, rest }, Some(model)) if !state.tombstone => {
                self.rows.borrow_mut().note_table(model, table)?;
                Form::Split { table, rest }
            }
            _ => Form::Whole,
        };
        let row = rows::row_for(state.item(), state.tombstone, envelope, form);
        let old = self.index.insert_row(record_key, &row)?;
        self.unlist(record_key, old)?;
        if state.tombstone {
            self.tombstones
                .insert(&tombstone_key(state.timestamp, record_key)[..], ())
                .map_err(storage("list a delete"))?;
        }
        Ok(())
    }

    /// Removes the envelope stored under `record_key`; true if there was one.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    pub fn remove(&mut self, record_key: &[u8]) -> Result<bool, StoreError> {
        let old = self.index.remove_row(record_key)?;
        let removed = old.is_some();
        self.unlist(record_key, old)?;
        Ok(removed)
    }

    /// Takes a replaced or removed delete off the list of deletes.
    fn unlist(
        &mut self,
        record_key: &[u8],
        old: Option<(ItemState, bool)>,
    ) -> Result<(), StoreError> {
        if let Some((state, true)) = old {
            self.tombstones
                .remove(&tombstone_key(state.timestamp, record_key)[..])
                .map_err(storage("unlist a delete"))?;
        }
        Ok(())
    }

    /// Writes what the index holds in memory; call before the commit
    /// (dropping the table does it too, but can only log a failure).
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    pub fn flush(&mut self) -> Result<(), StoreError> {
        self.index.flush()
    }
}

impl WriteTransaction {
    /// Opens the records table for many reads and writes.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    #[doc(hidden)]
    pub fn envelope_table(&self) -> Result<EnvelopeTable<'_>, StoreError> {
        let boundaries = self.boundaries()?;
        let index = WriteView::open(self.raw(), boundaries)?;
        let tombstones = self
            .raw()
            .open_table(TOMBSTONES)
            .map_err(storage("open the delete list"))?;
        Ok(EnvelopeTable {
            index,
            tombstones,
            rows: std::cell::RefCell::new(WriteRows::new(self.raw())),
        })
    }

    /// The index's boundaries, from the seed kept in the file (made on
    /// first use).
    fn boundaries(&self) -> Result<Boundaries, StoreError> {
        let mut table = self
            .raw()
            .open_table(SYNC_META)
            .map_err(storage("open the sync table"))?;
        let mut halves = [None; 2];
        for (half, name) in halves.iter_mut().zip(SEED) {
            *half = table
                .get(name)
                .map_err(storage("read sync state"))?
                .map(|v| v.value());
        }
        if let Some(boundaries) = seed_from(halves) {
            return Ok(boundaries);
        }
        let seed = fresh_seed();
        for (name, half) in SEED.into_iter().zip(seed.chunks(8)) {
            let mut bytes = [0; 8];
            bytes.copy_from_slice(half);
            table
                .insert(name, u64::from_le_bytes(bytes))
                .map_err(storage("write sync state"))?;
        }
        Ok(Boundaries::new(seed))
    }

    /// Moves up to `limit` envelopes of the earlier format (a table of
    /// envelopes alone) into the records table, each with the state
    /// `state_of` reads from it (`None`: unreadable, dropped with a
    /// warning). Returns how many it moved: 0 once none are left.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    #[doc(hidden)]
    pub fn upgrade_envelopes(
        &self,
        limit: usize,
        state_of: impl Fn(&[u8]) -> Option<EnvelopeState>,
    ) -> Result<usize, StoreError> {
        let mut old = match self.raw().open_table(OLD_ENVELOPES) {
            Ok(table) => table,
            Err(error) => return Err(storage("open the old envelope table")(error)),
        };
        let mut batch = Vec::new();
        for entry in old.iter().map_err(storage("read envelopes"))?.take(limit) {
            let (key, value) = entry.map_err(storage("read envelopes"))?;
            batch.push((key.value().to_vec(), value.value().to_vec()));
        }
        let mut table = self.envelope_table()?;
        for (key, envelope) in &batch {
            old.remove(&key[..]).map_err(storage("move an envelope"))?;
            match state_of(envelope) {
                Some(state) => table.insert(key, envelope, state, Form::Whole)?,
                None => tracing::warn!("dropped an unreadable stored envelope"),
            }
        }
        table.flush()?;
        drop(table);
        if batch.is_empty() {
            drop(old);
            self.raw()
                .delete_table(OLD_ENVELOPES)
                .map_err(storage("drop the old envelope table"))?;
        }
        Ok(batch.len())
    }

    /// A sync bookkeeping value, if set, as this transaction sees it.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    #[doc(hidden)]
    pub fn sync_meta(&self, name: &str) -> Result<Option<u64>, StoreError> {
        let table = self
            .raw()
            .open_table(SYNC_META)
            .map_err(storage("open the sync table"))?;
        let value = table.get(name).map_err(storage("read sync state"))?;
        Ok(value.map(|v| v.value()))
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

    /// Whether envelopes of the earlier format wait to be moved (see
    /// [`WriteTransaction::upgrade_envelopes`]).
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    #[doc(hidden)]
    pub fn has_old_envelopes(&self) -> Result<bool, StoreError> {
        match self.raw().open_table(OLD_ENVELOPES) {
            Ok(_) => Ok(true),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(false),
            Err(error) => Err(storage("open the old envelope table")(error)),
        }
    }

    /// The reconciliation index as of this snapshot.
    #[cfg_attr(not(feature = "node"), allow(dead_code))]
    pub(crate) fn sync_index(&self) -> Result<ReadView, StoreError> {
        let halves = SEED.map(|name| self.sync_meta(name));
        let [a, b] = halves;
        // No seed yet: nothing was ever written, any boundaries will do.
        let boundaries = seed_from([a?, b?]).unwrap_or_else(|| Boundaries::new([0; 16]));
        ReadView::open(self.raw(), boundaries)
    }

    /// Up to `limit` stored envelopes as `(record key, envelope)` in key
    /// order, from the first key after `after` (`None`: from the start).
    /// Stream through every envelope a page at a time with it.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    #[doc(hidden)]
    pub fn envelopes_after(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<StoredEnvelope>, StoreError> {
        Ok(self.envelopes_after_where(after, limit, |_| true)?.0)
    }

    /// Up to `scan` rows from the first key after `after`, in key order:
    /// the envelopes among them that are whole or whose split row's rest
    /// `keep` accepts (tested before any join, so the rows it refuses cost
    /// no read of their typed row), and the last key scanned (`None` once
    /// the table has no more rows).
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    #[cfg_attr(not(feature = "node"), allow(dead_code))]
    pub(crate) fn envelopes_after_where(
        &self,
        after: Option<&[u8]>,
        scan: usize,
        keep: impl Fn(&[u8]) -> bool,
    ) -> Result<(Vec<StoredEnvelope>, Option<Vec<u8>>), StoreError> {
        let lower = match after {
            Some(key) => std::ops::Bound::Excluded(key),
            None => std::ops::Bound::Unbounded,
        };
        let table = match self.raw().open_table(fingerprints::RECORDS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok((Vec::new(), None)),
            Err(error) => return Err(storage("open the envelope table")(error)),
        };
        let mut typed = ReadRows::new(self.raw(), self.model_tables());
        let mut out = Vec::new();
        let mut last = None;
        let mut scanned = 0;
        for entry in table
            .range::<&[u8]>((lower, std::ops::Bound::Unbounded))
            .map_err(storage("read envelopes"))?
            .take(scan)
        {
            let (key, value) = entry.map_err(storage("read envelopes"))?;
            let (key, row) = (key.value(), value.value());
            scanned += 1;
            last = Some(key.to_vec());
            if rows::split_rest(row).is_some_and(|rest| !keep(rest)) {
                continue;
            }
            if let Some(envelope) = rows::envelope_or_skip(key, row, &mut typed)? {
                out.push((key.to_vec(), envelope));
            }
        }
        Ok((out, if scanned == scan { last } else { None }))
    }

    /// Calls `f` with each stored `(record key, envelope)` whose key starts
    /// with `prefix` (a model's), in key order, reading them one at a time.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    #[doc(hidden)]
    pub fn for_each_envelope_with_prefix(
        &self,
        prefix: &[u8],
        mut f: impl FnMut(&[u8], &[u8]),
    ) -> Result<(), StoreError> {
        let table = match self.raw().open_table(fingerprints::RECORDS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(error) => return Err(storage("open the envelope table")(error)),
        };
        let mut typed = ReadRows::new(self.raw(), self.model_tables());
        for entry in table
            .range::<&[u8]>(prefix..)
            .map_err(storage("read envelopes"))?
        {
            let (key, value) = entry.map_err(storage("read envelopes"))?;
            let key = key.value();
            if !key.starts_with(prefix) {
                break;
            }
            if let Some(envelope) = rows::envelope_or_skip(key, value.value(), &mut typed)? {
                f(key, &envelope);
            }
        }
        Ok(())
    }

    /// Every stored envelope as `(record key, envelope)`, in key order.
    /// Reads them all into memory: for tests and tools; the node streams
    /// with [`envelopes_after`](Self::envelopes_after).
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    #[doc(hidden)]
    pub fn envelopes(&self) -> Result<Vec<StoredEnvelope>, StoreError> {
        self.envelopes_after(None, usize::MAX)
    }

    /// Up to `limit` record keys of deletes stamped before `cutoff`,
    /// oldest first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    #[doc(hidden)]
    pub fn tombstones_before(&self, cutoff: u64, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        let table = match self.raw().open_table(TOMBSTONES) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(error) => return Err(storage("open the delete list")(error)),
        };
        let end = cutoff.to_be_bytes();
        let mut out = Vec::new();
        for entry in table
            .range::<&[u8]>(..&end[..])
            .map_err(storage("read the delete list"))?
            .take(limit)
        {
            let (key, _) = entry.map_err(storage("read the delete list"))?;
            out.push(key.value().get(8..).unwrap_or_default().to_vec());
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

    /// The envelopes stored under `keys`, in order (`None`: not held, or
    /// its typed row no longer fits it, which is logged), with the table
    /// opened once for all of them.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    #[doc(hidden)]
    pub fn envelopes_of<'k>(
        &self,
        keys: impl IntoIterator<Item = &'k [u8]>,
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let table = match self.raw().open_table(fingerprints::RECORDS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => {
                return Ok(keys.into_iter().map(|_| None).collect())
            }
            Err(error) => return Err(storage("open the envelope table")(error)),
        };
        let mut typed = ReadRows::new(self.raw(), self.model_tables());
        keys.into_iter()
            .map(
                |key| match table.get(key).map_err(storage("read an envelope"))? {
                    Some(row) => rows::envelope_or_skip(key, row.value(), &mut typed),
                    None => Ok(None),
                },
            )
            .collect()
    }

    /// The envelope stored under `record_key`.
    ///
    /// # Errors
    ///
    /// [`StoreError::SyncedRecordChanged`] if its typed row no longer fits
    /// it; [`StoreError::Storage`] if the database fails.
    #[doc(hidden)]
    pub fn envelope(&self, record_key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let table = match self.raw().open_table(fingerprints::RECORDS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(error) => return Err(storage("open the envelope table")(error)),
        };
        let Some(row) = table.get(record_key).map_err(storage("read an envelope"))? else {
            return Ok(None);
        };
        rows::envelope_of(
            record_key,
            row.value(),
            &mut ReadRows::new(self.raw(), self.model_tables()),
        )
        .map(Some)
    }
}
