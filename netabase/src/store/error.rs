//! Errors of the store layer.

use std::fmt;
#[cfg(not(target_arch = "wasm32"))]
use std::path::PathBuf;

use crate::codec::CodecError;

/// Errors of the store layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database file could not be opened or created.
    #[cfg(not(target_arch = "wasm32"))]
    #[error("could not open the database at {}", path.display())]
    Open {
        /// The file that was asked for.
        path: PathBuf,
        /// What the storage engine reported.
        #[source]
        source: EngineError,
    },
    /// A browser refused storage: no origin private file system here (the
    /// page's main thread, or a browser that has none), or it refused the
    /// file. Only in browsers.
    #[error("the browser refused to {op}: {detail}")]
    Browser {
        /// What netabase was doing.
        op: &'static str,
        /// What the browser reported.
        detail: String,
    },
    /// The database is already open, in this process or another.
    #[error("the database is already open elsewhere (another Store or process holds it)")]
    AlreadyOpen,
    /// The storage engine failed: I/O (a full disk, a lost device), corruption,
    /// or a closed database. The transaction in progress is not committed.
    #[error("storage failed while trying to {op}")]
    Storage {
        /// What netabase was doing.
        op: &'static str,
        /// What the storage engine reported.
        #[source]
        source: EngineError,
    },
    /// This thread already holds a write transaction on this store, and
    /// redb runs one at a time: a second one (for example an auto-commit
    /// `Tree::put` inside a `Store::write` closure) would wait for the first
    /// forever. Write through the open transaction, or commit it first.
    #[error("this thread already holds a write transaction on this store; write through it or commit it first")]
    WriteInProgress,
    /// A write through a read-only handle, such as a node's `store()`: a
    /// node's records are
    /// written through the node (`put_record`, `remove_record`, ..), which
    /// signs them and syncs them to peers.
    #[error("this store handle is read-only; write through the node (put_record, remove_record, ..) so the write is signed and synced")]
    ReadOnly,
    /// The store was closed ([`Store::close`](super::Store::close), or the
    /// node's `shutdown`).
    #[error("the store is closed")]
    Closed,
    /// The database is closed: it is being reopened after a storage failure,
    /// or reopening it failed. Try again later.
    #[error("the database is closed while it reopens after a storage failure")]
    Reopening,
    /// A record could not be encoded or a stored record could not be decoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// An encoded primary key or index value is over the key size limit.
    #[error("a `{model}` key is {size} bytes encoded, over the {limit}-byte limit")]
    KeyTooLarge {
        /// The model's name.
        model: &'static str,
        /// The encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A unique index already maps this value to another record. Nothing was
    /// written by the failed call.
    #[error("unique index `{model}.{index}` already holds this value for another record")]
    UniqueViolation {
        /// The model's name.
        model: &'static str,
        /// The indexed field.
        index: &'static str,
    },
    /// The same model's tree was opened twice in one write transaction, or two
    /// models share a table name.
    #[error("the tree of `{model}` is already open in this transaction")]
    TreeAlreadyOpen {
        /// The model's name.
        model: &'static str,
    },
    /// A secondary key named an index the model does not have (only possible
    /// with a hand-written `SecondaryKey`).
    #[error("model `{model}` has no index number {index}")]
    NoSuchIndex {
        /// The model's name.
        model: &'static str,
        /// The index number asked for.
        index: usize,
    },
    /// A synced record's typed row is gone, or no longer holds the payload
    /// its signed envelope was stored against: the database was changed by
    /// something other than its node (a `Store` opened on the node's
    /// file). The envelope cannot be rebuilt, so it is not served.
    #[error("a synced record's typed row no longer matches its signed envelope: the node's file was changed by something other than the node")]
    SyncedRecordChanged,
    /// The file holds a model's records at a newer version than this build
    /// knows (a newer app wrote it): nothing is read or changed. Update the
    /// app.
    #[error("`{model}` is stored at version {stored}, newer than this build's {known}: update the app to read it")]
    NewerVersion {
        /// The model's stored name.
        model: &'static str,
        /// The version in the file.
        stored: u32,
        /// The newest version this build knows.
        known: u32,
    },
    /// Migrating a model's records to its newest version failed on one
    /// record; nothing was changed (the file keeps the old version).
    #[error(
        "migrating `{model}` from version {from} to {to} failed at the record {key}: {reason}"
    )]
    Migration {
        /// The model's stored name.
        model: &'static str,
        /// The version the records are stored at.
        from: u32,
        /// The version they were being migrated to.
        to: u32,
        /// The record's key.
        key: String,
        /// Why it failed.
        reason: String,
    },
    /// An index entry points at a record that does not exist: the database was
    /// changed by something other than netabase.
    #[error("index `{model}.{index}` points at a missing record")]
    DanglingIndex {
        /// The model's name.
        model: &'static str,
        /// The indexed field.
        index: &'static str,
    },
}

impl StoreError {
    /// Whether the store failed on I/O (a full disk, a lost device) and
    /// refuses writes until [`Store::reopen`](super::Store::reopen) succeeds.
    pub fn needs_reopen(&self) -> bool {
        match self {
            StoreError::Storage { source, .. } => source.needs_reopen(),
            StoreError::Reopening => true,
            _ => false,
        }
    }
}

/// An error reported by the storage engine (redb), kept as the source of a
/// [`StoreError`]. Its `Display` says what failed.
pub struct EngineError(redb::Error);

impl EngineError {
    pub(crate) fn new(error: impl Into<redb::Error>) -> Self {
        EngineError(error.into())
    }

    /// Whether the engine failed on I/O (for example a full disk).
    pub fn is_io(&self) -> bool {
        matches!(self.0, redb::Error::Io(_))
    }

    /// Whether the database refuses every write until it is reopened: an I/O
    /// error, or one before it that redb remembers.
    pub fn needs_reopen(&self) -> bool {
        matches!(self.0, redb::Error::Io(_) | redb::Error::PreviousIo)
    }
}

impl fmt::Debug for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for EngineError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Maps a redb error to [`StoreError::Storage`] for the operation `op`.
pub(crate) fn storage<E: Into<redb::Error>>(op: &'static str) -> impl FnOnce(E) -> StoreError {
    move |error| StoreError::Storage {
        op,
        source: EngineError::new(error),
    }
}

/// Maps errors from opening a table; a table already open means the tree is.
pub(crate) fn open_table_error(model: &'static str) -> impl FnOnce(redb::TableError) -> StoreError {
    move |error| match error {
        redb::TableError::TableAlreadyOpen(..) => StoreError::TreeAlreadyOpen { model },
        other => StoreError::Storage {
            op: "open a table",
            source: EngineError::new(other),
        },
    }
}
