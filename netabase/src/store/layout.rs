//! Each model's index layout as last written to the file
//! (`netabase/layouts`: records table name -> one line per secondary index,
//! its table and whether it is unique). When a model's indexes change
//! between builds (a `#[secondary_key]` added, removed or made unique), the
//! first write transaction that opens its tree rebuilds the changed indexes
//! from the records, in that transaction, so no record is ever missing from
//! an index it belongs to. A versioned model's layout starts with its
//! version (`version\tN`, from version 2): records stored at an older one
//! are migrated to the newest (see [`migrate`](super::migrate)) in the same
//! way, and every index rebuilt.

use std::any::TypeId;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};

use super::error::{storage, StoreError};
use super::tables::{self, Bytes, KeyBytes};
use crate::model::NetabaseModel;

const LAYOUTS: TableDefinition<'static, &'static str, &'static str> =
    TableDefinition::new("netabase/layouts");

/// Which model type's layout each records table is known to have in the
/// file, so a model is checked once per process, not on every transaction.
/// By type: two types stored under one name (two versions of a model in
/// one test, say) each check, and the last one checked is the file's.
#[derive(Default)]
pub(crate) struct Checked(Mutex<HashMap<&'static str, TypeId>>);

impl Checked {
    pub(crate) fn contains<M: NetabaseModel>(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(M::TABLE)
            == Some(&TypeId::of::<M>())
    }

    pub(crate) fn insert<M: NetabaseModel>(&self) {
        self.insert_type(M::TABLE, TypeId::of::<M>());
    }

    pub(crate) fn insert_type(&self, table: &'static str, model: TypeId) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(table, model);
    }
}

/// `M`'s index layout in its stored form: from version 2, a first line
/// with the version (version 1 has none, as files from before versions).
fn layout<M: NetabaseModel>() -> String {
    let version = match M::VERSION {
        1 => String::new(),
        version => format!("{VERSION_LINE}{version}\n"),
    };
    version + &index_lines::<M>()
}

/// The start of a stored layout's version line.
const VERSION_LINE: &str = "version\t";

/// One line per secondary index: its table and whether it is unique.
fn index_lines<M: NetabaseModel>() -> String {
    M::INDEXES
        .iter()
        .map(|spec| format!("{}\t{}\n", spec.table, if spec.unique { 'u' } else { 'n' }))
        .collect()
}

/// The version a stored layout names (1 if none), and its index lines.
fn parse_stored(stored: &str) -> (u32, Vec<&str>) {
    let mut version = 1;
    let mut lines = Vec::new();
    for line in stored.lines() {
        match line.strip_prefix(VERSION_LINE) {
            Some(number) => version = number.parse().unwrap_or(u32::MAX),
            None => lines.push(line),
        }
    }
    (version, lines)
}

/// What the file says of `M`'s index layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stored {
    /// The stored layout is `M`'s: nothing to do.
    Current,
    /// No layout stored and no record either: nothing to rebuild, but the
    /// layout must be written with the first write, or the next process
    /// would find records without one and rebuild every index.
    Unwritten,
    /// Another layout, or records written before layouts were kept: the
    /// indexes must be rebuilt before they are read.
    Stale,
}

/// What the file says of `M`'s index layout.
pub(crate) fn stored<M: NetabaseModel>(txn: &redb::ReadTransaction) -> Result<Stored, StoreError> {
    let stored = match txn.open_table(LAYOUTS) {
        Ok(table) => table
            .get(M::TABLE)
            .map_err(storage("read a model's layout"))?
            .map(|v| v.value().to_owned()),
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(error) => return Err(storage("open the layout table")(error)),
    };
    let empty = || match txn.open_table(tables::records_table::<M>()) {
        Ok(records) => records.is_empty().map_err(storage("read records")),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(true),
        Err(error) => Err(storage("open a table")(error)),
    };
    Ok(match stored {
        Some(stored) if stored == layout::<M>() => Stored::Current,
        Some(_) => Stored::Stale,
        None if empty()? => Stored::Unwritten,
        None => Stored::Stale,
    })
}

/// Brings `M`'s indexes in line with its current layout, within `txn`:
/// drops the tables of indexes that are gone, rebuilds new or changed ones
/// from the records, and stores the layout. Returns whether it rebuilt.
///
/// # Errors
///
/// [`StoreError::Codec`] if a stored record no longer decodes as `M` (a
/// field was added or removed), [`StoreError::UniqueViolation`] if an index
/// made unique finds a value shared by two records; the transaction must
/// then be dropped, and the file keeps its old layout.
pub(crate) fn upgrade<M: NetabaseModel>(txn: &redb::WriteTransaction) -> Result<bool, StoreError> {
    let current = layout::<M>();
    let mut layouts = txn
        .open_table(LAYOUTS)
        .map_err(storage("open the layout table"))?;
    let stored = layouts
        .get(M::TABLE)
        .map_err(storage("read a model's layout"))?
        .map(|v| v.value().to_owned());
    if stored.as_deref() == Some(current.as_str()) {
        return Ok(false);
    }
    let records = txn
        .open_table(tables::records_table::<M>())
        .map_err(storage("open a table"))?;
    let count = records.len().map_err(storage("read records"))?;
    let current_lines = index_lines::<M>();
    let (stored_version, old_lines): (u32, HashSet<&str>) = match &stored {
        Some(stored) => {
            let (version, lines) = parse_stored(stored);
            (version, lines.into_iter().collect())
        }
        // Written before layouts were kept: trust no index.
        None if count > 0 => (1, HashSet::new()),
        // Nothing written yet: nothing to rebuild or migrate.
        None => (M::VERSION, current_lines.lines().collect()),
    };
    drop(records);
    if stored_version > M::VERSION {
        return Err(StoreError::NewerVersion {
            model: M::NAME,
            stored: stored_version,
            known: M::VERSION,
        });
    }
    let new_lines: HashSet<&str> = current_lines.lines().collect();
    let mut dropped = 0;
    for line in old_lines.difference(&new_lines) {
        let name = line.split('\t').next().unwrap_or_default();
        let definition: TableDefinition<'_, KeyBytes, Bytes> = TableDefinition::new(name);
        // A table that is still in use (its unique flag changed) is rebuilt below.
        if txn
            .delete_table(definition)
            .map_err(storage("drop an index"))?
        {
            dropped += 1;
        }
    }
    // Records of an older version: converted, and every index filled from
    // the results (the values it holds may have changed with them).
    let migrated = if stored_version < M::VERSION && count > 0 {
        super::migrate::prepare::<M>(txn)?;
        let mut tree = super::write::WriteTree::<M>::open(txn)?;
        Some(tree.rewrite_all(super::migrate::converter::<M>(stored_version))?)
    } else {
        None
    };
    let rebuild: Vec<usize> = M::INDEXES
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            migrated.is_none()
                && !old_lines.contains(current_lines.lines().nth(*i).unwrap_or_default())
        })
        .map(|(i, _)| i)
        .collect();
    if !rebuild.is_empty() {
        for &index in &rebuild {
            let definition = tables::index_table(&M::INDEXES[index]);
            txn.delete_table(definition)
                .map_err(storage("clear an index"))?;
        }
        let mut tree = super::write::WriteTree::<M>::open(txn)?;
        tree.rebuild_indexes(&rebuild)?;
    }
    layouts
        .insert(M::TABLE, current.as_str())
        .map_err(storage("write a model's layout"))?;
    if let Some(migrated) = migrated {
        tracing::info!(
            model = M::NAME,
            records = migrated,
            from = stored_version,
            to = M::VERSION,
            "migrated the model's records to its newest version"
        );
    }
    if !rebuild.is_empty() || dropped > 0 {
        let rebuilt: Vec<&str> = rebuild.iter().map(|&i| M::INDEXES[i].name).collect();
        tracing::info!(
            model = M::NAME,
            records = count,
            ?rebuilt,
            dropped,
            "the model's secondary indexes changed: rebuilt them"
        );
    }
    Ok(!rebuild.is_empty() || dropped > 0 || migrated.is_some())
}
