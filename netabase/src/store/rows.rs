//! How an envelope is read back from its records-table row.
//!
//! A row is the record's reconciliation state, then flags, then either the
//! whole envelope or, when the row is *split*, only what the envelope holds
//! beyond the record's typed row, record key and state (see
//! `codec::split`). A split row's envelope is joined from its parts when
//! read, and checked against the digest in the state, so a typed row
//! changed behind the node's back (a `Store` opened on the node's file) is
//! reported as [`StoreError::SyncedRecordChanged`], never served with a
//! signature that no longer fits.
//!
//! Which typed table holds a model's rows is kept in
//! `netabase/sync/models` (model id -> table name), written with the first
//! split row of the model, so the store joins envelopes of models the node
//! has not registered (yet) in this run.

use std::collections::HashMap;

use redb::{ReadableTable, TableDefinition};

use super::error::{storage, StoreError};
use super::fingerprints::{row_state, STATE_BYTES};
use super::tables::{Bytes, KeyBytes, ReadTable};
use crate::codec::split;
use crate::sync::reconcile::digest;

/// The row's envelope is split: its payload is the typed row.
pub(crate) const SPLIT_FLAG: u8 = 2;

/// Model id (4 bytes, big-endian) -> the name of its typed table.
const MODELS: TableDefinition<'static, KeyBytes, Bytes> =
    TableDefinition::new("netabase/sync/models");

/// How to store an envelope.
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub enum Form<'a> {
    /// Whole: a delete, a record kept out of its typed tree, or one whose
    /// typed row is not its payload.
    Whole,
    /// Split: the typed row in `table` holds the payload, byte for byte,
    /// and `rest` is the rest of the envelope (`Envelope::rest`).
    Split {
        /// The model's typed table.
        table: &'static str,
        /// What the typed row, record key and state leave out.
        rest: &'a [u8],
    },
}

/// The model id part of a record key.
pub(crate) fn model_of(record_key: &[u8]) -> Option<[u8; 4]> {
    record_key.get(..4)?.try_into().ok()
}

/// Where the typed rows of split envelopes are read from.
pub(crate) trait TypedRows {
    /// The name of the typed table of the model with this id.
    fn table_of(&mut self, model: [u8; 4]) -> Result<Option<String>, StoreError>;
    /// The typed row of `key` in `table`.
    fn typed_row(&mut self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
}

/// The envelope of the row `row` stored under `record_key`.
///
/// # Errors
///
/// [`StoreError::SyncedRecordChanged`] if a split row's typed row is gone
/// or no longer joins to the envelope held; [`StoreError::Storage`] if the
/// database fails.
pub(crate) fn envelope_of(
    record_key: &[u8],
    row: &[u8],
    typed: &mut impl TypedRows,
) -> Result<Vec<u8>, StoreError> {
    let Some(rest) = split_rest(row) else {
        return Ok(row.get(STATE_BYTES..).unwrap_or_default().to_vec());
    };
    let Some(model) = model_of(record_key) else {
        return Err(StoreError::SyncedRecordChanged);
    };
    let Some(table) = typed.table_of(model)? else {
        return Err(StoreError::SyncedRecordChanged);
    };
    let key = &record_key[4..];
    let Some(payload) = typed.typed_row(&table, key)? else {
        return Err(StoreError::SyncedRecordChanged);
    };
    let (state, _) = row_state(row);
    match split::join(
        rest,
        u32::from_be_bytes(model),
        key,
        &payload,
        state.timestamp,
    ) {
        Some(envelope) if digest(&envelope) == state.digest => Ok(envelope),
        _ => Err(StoreError::SyncedRecordChanged),
    }
}

/// The rest a split row holds (see `codec::split`), or `None` for a whole
/// row.
pub(crate) fn split_rest(row: &[u8]) -> Option<&[u8]> {
    let flags = row.get(STATE_BYTES - 1).copied()?;
    (flags & SPLIT_FLAG != 0).then(|| row.get(STATE_BYTES..).unwrap_or_default())
}

/// Like [`envelope_of`], but a record whose envelope cannot be joined is
/// logged and left out (`None`), so one damaged row does not stop a node
/// serving the rest.
pub(crate) fn envelope_or_skip(
    record_key: &[u8],
    row: &[u8],
    typed: &mut impl TypedRows,
) -> Result<Option<Vec<u8>>, StoreError> {
    match envelope_of(record_key, row, typed) {
        Ok(envelope) => Ok(Some(envelope)),
        Err(StoreError::SyncedRecordChanged) => {
            tracing::warn!(
                record_key = %hex(record_key),
                "a synced record's typed row no longer fits its signed envelope: left out"
            );
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

/// Bytes in hex, for logs and errors.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Model id -> typed table name, as read from committed transactions: a
/// store keeps one, so a cold read does not look the name up again. Only
/// registered models' rows are split, so it holds a few entries.
#[derive(Default)]
pub(crate) struct ModelTables(std::sync::Mutex<HashMap<[u8; 4], String>>);

impl ModelTables {
    fn get(&self, model: [u8; 4]) -> Option<String> {
        let names = self.0.lock().unwrap_or_else(|e| e.into_inner());
        names.get(&model).cloned()
    }

    fn insert(&self, model: [u8; 4], table: &str) {
        let mut names = self.0.lock().unwrap_or_else(|e| e.into_inner());
        names.insert(model, table.to_string());
    }
}

/// Typed rows read in a read transaction, each table opened once.
pub(crate) struct ReadRows<'t> {
    txn: &'t redb::ReadTransaction,
    known: &'t ModelTables,
    models: Option<Option<ReadTable>>,
    names: HashMap<[u8; 4], Option<String>>,
    tables: HashMap<String, Option<ReadTable>>,
}

impl<'t> ReadRows<'t> {
    pub(crate) fn new(txn: &'t redb::ReadTransaction, known: &'t ModelTables) -> Self {
        ReadRows {
            txn,
            known,
            models: None,
            names: HashMap::new(),
            tables: HashMap::new(),
        }
    }

    fn open(
        &self,
        definition: TableDefinition<'_, KeyBytes, Bytes>,
    ) -> Result<Option<ReadTable>, StoreError> {
        match self.txn.open_table(definition) {
            Ok(table) => Ok(Some(table)),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(error) => Err(storage("open a typed table")(error)),
        }
    }
}

impl TypedRows for ReadRows<'_> {
    fn table_of(&mut self, model: [u8; 4]) -> Result<Option<String>, StoreError> {
        if let Some(name) = self.names.get(&model) {
            return Ok(name.clone());
        }
        // Committed, so true of every later snapshot too.
        if let Some(name) = self.known.get(model) {
            return Ok(Some(name));
        }
        if self.models.is_none() {
            self.models = Some(self.open(MODELS)?);
        }
        let name = match self.models.as_ref().and_then(Option::as_ref) {
            Some(table) => table
                .get(&model[..])
                .map_err(storage("read a model's table name"))?
                .and_then(|name| String::from_utf8(name.value().to_vec()).ok()),
            None => None,
        };
        if let Some(name) = &name {
            self.known.insert(model, name);
        }
        self.names.insert(model, name.clone());
        Ok(name)
    }

    fn typed_row(&mut self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if !self.tables.contains_key(table) {
            let opened = self.open(TableDefinition::new(table))?;
            self.tables.insert(table.to_string(), opened);
        }
        let Some(Some(table)) = self.tables.get(table) else {
            return Ok(None);
        };
        let row = table.get(key).map_err(storage("read a typed row"))?;
        Ok(row.map(|row| row.value().to_vec()))
    }
}

/// Typed rows read in a write transaction. Each read opens its table and
/// closes it again: the node writes the same tables through its trees in
/// the same transaction, and redb opens a table once at a time.
pub(crate) struct WriteRows<'t> {
    txn: &'t redb::WriteTransaction,
    names: HashMap<[u8; 4], Option<String>>,
}

impl<'t> WriteRows<'t> {
    pub(crate) fn new(txn: &'t redb::WriteTransaction) -> Self {
        WriteRows {
            txn,
            names: HashMap::new(),
        }
    }

    /// Notes that `model`'s typed table is `table`, once a transaction.
    pub(crate) fn note_table(&mut self, model: [u8; 4], table: &str) -> Result<(), StoreError> {
        if self.names.get(&model).and_then(Option::as_deref) == Some(table) {
            return Ok(());
        }
        let mut models = self
            .txn
            .open_table(MODELS)
            .map_err(storage("open the model table"))?;
        let held = models
            .get(&model[..])
            .map_err(storage("read a model's table name"))?
            .map(|name| name.value() == table.as_bytes());
        if held != Some(true) {
            models
                .insert(&model[..], table.as_bytes())
                .map_err(storage("write a model's table name"))?;
        }
        self.names.insert(model, Some(table.to_string()));
        Ok(())
    }
}

impl TypedRows for WriteRows<'_> {
    fn table_of(&mut self, model: [u8; 4]) -> Result<Option<String>, StoreError> {
        if let Some(name) = self.names.get(&model) {
            return Ok(name.clone());
        }
        let models = match self.txn.open_table(MODELS) {
            Ok(table) => table,
            Err(error) => return Err(storage("open the model table")(error)),
        };
        let name = models
            .get(&model[..])
            .map_err(storage("read a model's table name"))?
            .and_then(|name| String::from_utf8(name.value().to_vec()).ok());
        drop(models);
        self.names.insert(model, name.clone());
        Ok(name)
    }

    fn typed_row(&mut self, table: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let definition = TableDefinition::<KeyBytes, Bytes>::new(table);
        let table = match self.txn.open_table(definition) {
            Ok(table) => table,
            Err(error @ redb::TableError::TableAlreadyOpen(..)) => {
                // A bug in the node, not the data: name it plainly.
                tracing::error!(
                    table,
                    "a typed table was open while a split envelope was read"
                );
                return Err(storage("read a typed row while its tree is open")(error));
            }
            Err(error) => return Err(storage("open a typed table")(error)),
        };
        let row = table.get(key).map_err(storage("read a typed row"))?;
        Ok(row.map(|row| row.value().to_vec()))
    }
}

/// Rewrites every split row whose record key starts with `prefix` (a
/// model's) whole, joined with its typed row as it is now: before those
/// typed rows change (a migration). The state, and so the index, stays.
pub(crate) fn keep_whole(txn: &redb::WriteTransaction, prefix: &[u8]) -> Result<(), StoreError> {
    use redb::TableHandle;
    const CHUNK: usize = 1024;
    // A typed store alone has no records table: none is made here.
    let records = super::fingerprints::RECORDS.name();
    if !txn
        .list_tables()
        .map_err(storage("list tables"))?
        .any(|table| table.name() == records)
    {
        return Ok(());
    }
    let mut after: Option<Vec<u8>> = None;
    loop {
        let mut split = Vec::new();
        let mut scanned = 0;
        {
            let table = match txn.open_table(super::fingerprints::RECORDS) {
                Ok(table) => table,
                Err(error) => return Err(storage("open the records table")(error)),
            };
            let lower = match &after {
                Some(key) => std::ops::Bound::Excluded(key.as_slice()),
                None => std::ops::Bound::Included(prefix),
            };
            for entry in table
                .range::<&[u8]>((lower, std::ops::Bound::Unbounded))
                .map_err(storage("read envelopes"))?
                .take(CHUNK)
            {
                let (key, row) = entry.map_err(storage("read envelopes"))?;
                if !key.value().starts_with(prefix) {
                    break;
                }
                scanned += 1;
                after = Some(key.value().to_vec());
                if split_rest(row.value()).is_some() {
                    split.push((key.value().to_vec(), row.value().to_vec()));
                }
            }
        }
        let mut typed = WriteRows::new(txn);
        let mut whole = Vec::with_capacity(split.len());
        for (key, row) in split {
            let envelope = envelope_of(&key, &row, &mut typed)?;
            let mut out = row[..STATE_BYTES].to_vec();
            out[STATE_BYTES - 1] &= !SPLIT_FLAG;
            out.extend_from_slice(&envelope);
            whole.push((key, out));
        }
        let mut table = txn
            .open_table(super::fingerprints::RECORDS)
            .map_err(storage("open the records table"))?;
        for (key, row) in &whole {
            table
                .insert(key.as_slice(), row.as_slice())
                .map_err(storage("keep an envelope whole"))?;
        }
        if scanned < CHUNK {
            return Ok(());
        }
    }
}

/// The row to store: `state` and flags, then the envelope or its rest.
pub(crate) fn row_for(
    state: crate::sync::reconcile::ItemState,
    tombstone: bool,
    envelope: &[u8],
    form: Form<'_>,
) -> Vec<u8> {
    match form {
        Form::Whole => super::fingerprints::row(state, tombstone, envelope),
        Form::Split { rest, .. } => {
            let mut row = super::fingerprints::row(state, tombstone, rest);
            row[STATE_BYTES - 1] |= SPLIT_FLAG;
            row
        }
    }
}
