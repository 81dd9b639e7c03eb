//! The embedded store: typed trees in one redb database.
//!
//! ```
//! use netabase::store::{Lookup, Store};
//! use netabase::NetabaseModel;
//!
//! #[derive(NetabaseModel, Clone, Debug, PartialEq)]
//! pub struct User {
//!     #[primary_key]
//!     pub id: u64,
//!     #[secondary_key(unique)]
//!     pub email: String,
//!     #[secondary_key]
//!     pub age: u32,
//! }
//!
//! # fn main() -> Result<(), netabase::Error> {
//! let store = Store::in_memory()?;
//! let users = store.tree::<User>();
//! users.put(&User { id: 1, email: "ada@example.com".into(), age: 36 })?;
//! users.put(&User { id: 2, email: "alan@example.com".into(), age: 41 })?;
//!
//! assert_eq!(users.get(&UserKey(1))?.map(|u| u.age), Some(36));
//! assert_eq!(users.by_email("alan@example.com")?.map(|u| u.id), Some(2));
//! assert_eq!(users.by_age_range(30..40)?.len(), 1);
//! # Ok(())
//! # }
//! ```
//!
//! Each model has a table of records and one table per secondary index; see
//! the crate documentation for the layout and its guarantees.

mod envelopes;
mod error;
mod lookup;
mod read;
mod records;
mod tables;
mod tree;
mod write;

use std::sync::Arc;

pub use error::{EngineError, StoreError};
pub use lookup::Lookup;
pub use read::{ReadTransaction, ReadTree};
pub use records::Records;
pub use tables::MAX_KEY_BYTES;
pub use tree::Tree;
pub use write::{WriteTransaction, WriteTree};

use error::storage;

use crate::model::NetabaseModel;

/// When a commit reaches the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// Every commit is on disk (fsynced) when `commit` returns. The default.
    #[default]
    Immediate,
    /// Commits skip the fsync: much faster, and still atomic and isolated, but
    /// a crash or power loss can lose every commit since the last durable one.
    /// Call [`Store::flush`] to make everything committed so far durable.
    /// A killed process whose OS keeps running loses nothing already
    /// committed only if the OS writes its caches back, which is not promised.
    Eventual,
}

impl Durability {
    fn to_redb(self) -> redb::Durability {
        match self {
            Durability::Immediate => redb::Durability::Immediate,
            Durability::Eventual => redb::Durability::None,
        }
    }
}

/// Options for opening a [`Store`].
#[derive(Clone, Debug, Default)]
pub struct StoreBuilder {
    durability: Durability,
    cache_size: Option<usize>,
}

impl StoreBuilder {
    /// How commits reach the disk; [`Durability::Immediate`] by default.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Bytes of page cache redb may use (redb's default otherwise).
    pub fn cache_size(mut self, bytes: usize) -> Self {
        self.cache_size = Some(bytes);
        self
    }

    fn redb_builder(&self) -> redb::Builder {
        let mut builder = redb::Database::builder();
        if let Some(bytes) = self.cache_size {
            builder.set_cache_size(bytes);
        }
        builder
    }

    /// Opens the database file at `path`, creating it if it does not exist.
    ///
    /// # Errors
    ///
    /// [`StoreError::AlreadyOpen`] if another `Store` or process has the file
    /// open; [`StoreError::Open`] if it cannot be created or read, or is not a
    /// redb database.
    #[cfg(feature = "native")]
    pub fn open(self, path: impl AsRef<std::path::Path>) -> Result<Store, StoreError> {
        let path = path.as_ref();
        let db = self
            .redb_builder()
            .create(path)
            .map_err(|error| match error {
                redb::DatabaseError::DatabaseAlreadyOpen => StoreError::AlreadyOpen,
                other => StoreError::Open {
                    path: path.to_owned(),
                    source: error::EngineError::new(other),
                },
            })?;
        tracing::debug!(path = %path.display(), "opened store");
        Ok(self.finish(db))
    }

    /// Opens a fresh database held in memory; it is gone when the last clone
    /// of the `Store` is dropped.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if redb cannot initialise it.
    pub fn in_memory(self) -> Result<Store, StoreError> {
        self.with_backend(redb::backends::InMemoryBackend::new())
    }

    /// Opens a database on a custom redb storage backend (used by tests to
    /// simulate failing disks).
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if redb cannot initialise the backend.
    #[doc(hidden)]
    pub fn with_backend(self, backend: impl redb::StorageBackend) -> Result<Store, StoreError> {
        let db = self
            .redb_builder()
            .create_with_backend(backend)
            .map_err(storage("create a database"))?;
        Ok(self.finish(db))
    }

    fn finish(self, db: redb::Database) -> Store {
        Store {
            inner: Arc::new(Inner {
                db,
                durability: self.durability,
            }),
        }
    }
}

/// A netabase database: typed trees of any number of models in one redb
/// database. Cheap to clone; clones share the database.
///
/// Reads never block writes and see a consistent snapshot. One write
/// transaction runs at a time; [`begin_write`](Self::begin_write) waits for the
/// previous one. All calls block on I/O: from async code, run them in
/// `spawn_blocking` (the node does this for you).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: redb::Database,
    durability: Durability,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("durability", &self.inner.durability)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Options for opening a store.
    pub fn builder() -> StoreBuilder {
        StoreBuilder::default()
    }

    /// Opens the database file at `path` with default options, creating it if
    /// it does not exist.
    ///
    /// # Errors
    ///
    /// As [`StoreBuilder::open`].
    #[cfg(feature = "native")]
    pub fn open(path: impl AsRef<std::path::Path>) -> Result<Store, StoreError> {
        StoreBuilder::default().open(path)
    }

    /// A fresh in-memory database with default options.
    ///
    /// # Errors
    ///
    /// As [`StoreBuilder::in_memory`].
    pub fn in_memory() -> Result<Store, StoreError> {
        StoreBuilder::default().in_memory()
    }

    /// The durability of this store's commits.
    pub fn durability(&self) -> Durability {
        self.inner.durability
    }

    /// The tree of model `M`, committing each write on its own.
    pub fn tree<M: NetabaseModel>(&self) -> Tree<M> {
        Tree::new(self.clone())
    }

    /// Starts a read transaction: a snapshot of every tree.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    pub fn begin_read(&self) -> Result<ReadTransaction, StoreError> {
        use redb::ReadableDatabase;
        let txn = self
            .inner
            .db
            .begin_read()
            .map_err(storage("begin a read transaction"))?;
        Ok(ReadTransaction::new(txn))
    }

    /// Starts a write transaction with the store's durability, waiting for
    /// any other write transaction to finish first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    pub fn begin_write(&self) -> Result<WriteTransaction, StoreError> {
        let txn = self
            .inner
            .db
            .begin_write()
            .map_err(storage("begin a write transaction"))?;
        WriteTransaction::new(txn, self.inner.durability)
    }

    /// Runs `f` in a write transaction and commits if it returns `Ok`; on
    /// `Err` nothing of it is written.
    ///
    /// # Errors
    ///
    /// Whatever `f` returns, or a [`StoreError`] converted into `E` if the
    /// transaction cannot begin or commit.
    pub fn write<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<T, E>,
    ) -> Result<T, E> {
        let txn = self.begin_write()?;
        let value = f(&txn)?;
        txn.commit()?;
        Ok(value)
    }

    /// Makes every commit so far durable. Needed only with
    /// [`Durability::Eventual`]; cheap otherwise.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database cannot sync.
    pub fn flush(&self) -> Result<(), StoreError> {
        let txn = self
            .inner
            .db
            .begin_write()
            .map_err(storage("begin a write transaction"))?;
        WriteTransaction::new(txn, Durability::Immediate)?.commit()
    }
}
