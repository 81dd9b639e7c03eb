//! The store itself: one redb database, opened, reopened and closed, and
//! the transactions begun on it.

use std::sync::{Arc, RwLock};

use super::changes::Hub;
use super::durability::Durability;
use super::error::{storage, StoreError};
use super::layout;
use super::open::{self, IntegrityCheck};
#[cfg(all(target_arch = "wasm32", feature = "node"))]
use super::opfs::OpfsFile;
use super::rows;
use super::write::{self, WriteTransaction};
use crate::model::NetabaseModel;

/// Options for opening a [`Store`].
#[derive(Clone, Debug, Default)]
pub struct StoreBuilder {
    durability: Durability,
    cache_size: Option<usize>,
    integrity_check: IntegrityCheck,
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

    /// When [`open`](Self::open) reads the whole file to check every page
    /// against its checksum: by default only after an unclean shutdown
    /// ([`IntegrityCheck::AfterUncleanShutdown`]), when pages get damaged.
    /// A cleanly closed file opens without reading its pages, so a file
    /// damaged on disk while closed is caught only with
    /// [`IntegrityCheck::EveryOpen`]; see [`IntegrityCheck`] for the
    /// trade-off.
    pub fn integrity_check(mut self, check: IntegrityCheck) -> Self {
        self.integrity_check = check;
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
    /// open; [`StoreError::Open`] if it cannot be created or read, is not a
    /// redb database, or is found damaged (a page fails its checksum; see
    /// [`integrity_check`](Self::integrity_check) for when every page is
    /// checked). A file left by an unclean shutdown (a killed process) is
    /// not damaged: redb checks every page and repairs its allocator state
    /// on open, as after any crash, and that is logged.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(self, path: impl AsRef<std::path::Path>) -> Result<Store, StoreError> {
        let path = path.as_ref().to_owned();
        let room = {
            let path = path.clone();
            move || open::room_beside(&path)
        };
        let open = {
            let builder = self.clone();
            move || open::file(builder.redb_builder(), builder.integrity_check, &path)
        };
        let opened = open()?;
        Ok(self.finish(
            opened,
            Some(Reopen {
                open: Box::new(open),
                room: Box::new(room),
            }),
        ))
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

    /// Opens (or creates) the database `file` in the browser's origin
    /// private file system, under the directory `name`; only in a
    /// dedicated Web Worker (see [`OpfsFile`]).
    ///
    /// # Errors
    ///
    /// As [`OpfsFile::open`]; [`StoreError::Storage`] if the file is not a
    /// redb database.
    #[cfg(all(target_arch = "wasm32", feature = "node"))]
    pub async fn open_in_browser(self, name: &str, file: &str) -> Result<Store, StoreError> {
        let file = OpfsFile::open(name, file).await?;
        self.with_backend(file)
    }

    /// Opens a database on a custom redb storage backend (used by tests to
    /// simulate failing disks).
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if redb cannot initialise the backend.
    #[doc(hidden)]
    pub fn with_backend(self, backend: impl redb::StorageBackend) -> Result<Store, StoreError> {
        let opened = open::backend(self.redb_builder(), self.integrity_check, backend)?;
        Ok(self.finish(opened, None))
    }

    /// Opens a database on backends made by `backend`: one now, and one
    /// each time [`Store::reopen`] opens the database again (used by tests
    /// to simulate a disk that fills up and is freed).
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if redb cannot initialise the backend.
    #[doc(hidden)]
    pub fn with_reopenable_backend<B: redb::StorageBackend>(
        self,
        backend: impl Fn() -> B + Send + Sync + 'static,
    ) -> Result<Store, StoreError> {
        let backend = Arc::new(backend);
        let room = {
            let backend = backend.clone();
            // A backend says no more than that it takes a write: resizing
            // to its own length is one, and changes nothing.
            move || {
                let probe = backend();
                probe.set_len(probe.len()?)
            }
        };
        let open = {
            let builder = self.clone();
            move || open::backend(builder.redb_builder(), builder.integrity_check, backend())
        };
        let opened = open()?;
        Ok(self.finish(
            opened,
            Some(Reopen {
                open: Box::new(open),
                room: Box::new(room),
            }),
        ))
    }

    fn finish(self, opened: open::Opened, reopen: Option<Reopen>) -> Store {
        Store {
            inner: Arc::new(Inner {
                id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                db: RwLock::new(Some(Arc::new(opened.db))),
                checked_at_open: std::sync::atomic::AtomicBool::new(opened.checked),
                durability: self.durability,
                reopen,
                checked: Arc::new(layout::Checked::default()),
                closed: std::sync::atomic::AtomicBool::new(false),
                hub: Arc::new(Hub::default()),
                model_tables: rows::ModelTables::default(),
            }),
            read_only: false,
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
    pub(super) inner: Arc<Inner>,
    /// Writes are refused through this handle (a node's view of its store).
    read_only: bool,
}

/// Opens the database again, the way it was first opened.
struct Reopen {
    open: Box<dyn Fn() -> Result<open::Opened, StoreError> + Send + Sync>,
    /// Whether the disk takes writes again. Asked before the database is
    /// closed: closed, it serves no reads either until it opens again,
    /// which redb cannot do on a full disk.
    room: Box<dyn Fn() -> std::io::Result<()> + Send + Sync>,
}

pub(super) struct Inner {
    /// Tells this store from others, for the check that a thread does not
    /// begin a second write transaction on it.
    id: u64,
    /// The open database; `None` only while [`Store::reopen`] swaps it.
    db: RwLock<Option<Arc<redb::Database>>>,
    /// The last open (or reopen) checked every page (see [`IntegrityCheck`]).
    checked_at_open: std::sync::atomic::AtomicBool,
    durability: Durability,
    /// `None` for in-memory databases, which have no disk to fail.
    reopen: Option<Reopen>,
    /// Models whose index layout was checked against the file.
    pub(super) checked: Arc<layout::Checked>,
    /// Set by [`Store::close`]: the database stays closed.
    closed: std::sync::atomic::AtomicBool,
    /// Watchers of each model's changes.
    pub(super) hub: Arc<Hub>,
    /// Which typed table each model id's split envelopes join with, as
    /// committed (see [`rows`](super::rows)): a few entries, one a model.
    pub(super) model_tables: rows::ModelTables,
}

/// The next store's id.
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How long [`Store::reopen`] waits for calls still using the old database.
const REOPEN_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("durability", &self.inner.durability)
            .field("read_only", &self.read_only)
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
    #[cfg(not(target_arch = "wasm32"))]
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

    /// Whether the last open (or [`reopen`](Self::reopen)) of this store
    /// read every page to check it (see [`IntegrityCheck`]); for tests.
    #[doc(hidden)]
    pub fn checked_at_open(&self) -> bool {
        self.inner
            .checked_at_open
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The durability of this store's commits.
    pub fn durability(&self) -> Durability {
        self.inner.durability
    }

    /// A handle to this database that reads only: every write through it
    /// (and through its trees and transactions) fails with
    /// [`StoreError::ReadOnly`]. A node hands these out, so no write goes
    /// around its signing and sync.
    pub fn read_only(&self) -> Store {
        Store {
            inner: self.inner.clone(),
            read_only: true,
        }
    }

    /// Whether writes through this handle are refused.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Starts a write transaction with the store's durability, waiting for
    /// any other write transaction to finish first.
    ///
    /// # Errors
    ///
    /// [`StoreError::ReadOnly`] through a [read-only](Self::read_only)
    /// handle; [`StoreError::WriteInProgress`] if this thread already holds a write
    /// transaction on this store (waiting for it would wait forever: write
    /// through it, or commit it first; a transaction counts as held by the
    /// thread that began it, even once moved); [`StoreError::Storage`] if
    /// the database fails.
    pub fn begin_write(&self) -> Result<WriteTransaction, StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        self.begin_upkeep()
    }

    /// Runs `f` holding the write lock (a write transaction, even through a
    /// read-only handle) and drops the transaction: `f` reads with every
    /// earlier writer committed and no later one begun.
    pub(super) fn with_write_lock<T>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        f(&self.begin_upkeep()?)
    }

    /// A write transaction even through a read-only handle, for the store's
    /// own upkeep (never a write of the caller's records).
    fn begin_upkeep(&self) -> Result<WriteTransaction, StoreError> {
        write::check_not_held(self.inner.id)?;
        let txn = self
            .db()?
            .begin_write()
            .map_err(storage("begin a write transaction"))?;
        WriteTransaction::new(
            txn,
            self.inner.durability,
            self.inner.id,
            self.inner.checked.clone(),
            self.inner.hub.clone(),
        )
    }

    /// Checks model `M`'s secondary indexes against the ones this file was
    /// written with, and rebuilds added or changed ones now (and drops
    /// removed ones), in one transaction, logging what it did; a model with
    /// no records yet has its layout stored, so the next process finds it
    /// current. Otherwise this happens the first time the process opens
    /// `M`'s tree; call it at start-up to pay for a rebuild there. Cheap
    /// once done, and a model whose indexes did not change is never
    /// rebuilt.
    ///
    /// Through a [read-only](Self::read_only) handle too: keeping indexes
    /// in line with their records is upkeep, not a write of yours, and
    /// reads need it.
    ///
    /// # Errors
    ///
    /// As [`WriteTransaction::open_tree`]: notably [`StoreError::Codec`] if a
    /// stored record no longer decodes as `M`; nothing changes then.
    pub fn register<M: NetabaseModel>(&self) -> Result<(), StoreError> {
        if self.inner.checked.contains::<M>() {
            return Ok(());
        }
        match layout::stored::<M>(self.begin_read()?.raw())? {
            layout::Stored::Current => {
                self.inner.checked.insert::<M>();
                Ok(())
            }
            // Left for the first write, which stores it: nothing else may
            // write through this handle.
            layout::Stored::Unwritten if self.read_only => Ok(()),
            layout::Stored::Unwritten | layout::Stored::Stale => {
                let txn = self.begin_upkeep()?;
                txn.open_tree::<M>()?;
                txn.commit()
            }
        }
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

    /// The open database. The lock is held only to clone the handle, never
    /// across a redb call, so a reopen waits for no transaction.
    pub(super) fn db(&self) -> Result<Arc<redb::Database>, StoreError> {
        let db = self
            .inner
            .db
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        db.ok_or_else(|| {
            if self.inner.closed.load(std::sync::atomic::Ordering::Acquire) {
                StoreError::Closed
            } else {
                StoreError::Reopening
            }
        })
    }

    /// Closes the database and opens it again. After a storage I/O error
    /// (a full disk) redb refuses every later write until then; once the
    /// cause is gone, this brings the store back without a restart.
    /// Everything committed before the error is there; the failed commit is
    /// not. Transactions still open on the old database fail from then on.
    /// An in-memory store has no disk to fail: this does nothing.
    ///
    /// It first writes 1 MiB beside the database file and syncs it: while
    /// that fails (the disk is still full), the database is not closed and
    /// keeps serving reads.
    ///
    /// # Errors
    ///
    /// [`StoreError::ReadOnly`] through a read-only handle;
    /// [`StoreError::Storage`] (`needs_reopen()`) while the disk takes no
    /// writes: nothing was closed;
    /// [`StoreError::Reopening`] if a write transaction stayed open on the
    /// old database (the store keeps it; try again), or the error opening
    /// the database again (the store is then closed until a reopen
    /// succeeds).
    pub fn reopen(&self) -> Result<(), StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        if self.inner.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let Some(reopen) = &self.inner.reopen else {
            return Ok(());
        };
        // While the disk is still full, the failed database keeps serving
        // reads of what it committed (redb refuses only its writes).
        (reopen.room)().map_err(storage("find room to write"))?;
        let mut slot = self.inner.db.write().unwrap_or_else(|e| e.into_inner());
        if let Some(mut old) = slot.take() {
            // Calls that cloned the handle just before are still in begin_*.
            let deadline = std::time::Instant::now() + REOPEN_WAIT;
            let db = loop {
                match Arc::try_unwrap(old) {
                    Ok(db) => break db,
                    Err(shared) if std::time::Instant::now() < deadline => {
                        old = shared;
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    Err(shared) => {
                        *slot = Some(shared);
                        return Err(StoreError::Reopening);
                    }
                }
            };
            if let Err(error) = db.close() {
                // A write transaction is still open: its end closes the file.
                tracing::debug!(%error, "closing the database before reopening it");
                if matches!(error, redb::DatabaseError::TransactionInProgress) {
                    return Err(StoreError::Reopening);
                }
            }
        }
        let opened = (reopen.open)()?;
        self.inner
            .checked_at_open
            .store(opened.checked, std::sync::atomic::Ordering::Relaxed);
        *slot = Some(Arc::new(opened.db));
        tracing::info!("reopened the store");
        Ok(())
    }

    /// Closes the database for every clone of this store: later calls fail
    /// with [`StoreError::Closed`]. The file is released once transactions
    /// still open on it end. A closed store cannot be reopened; open the
    /// file again instead.
    ///
    /// # Errors
    ///
    /// [`StoreError::ReadOnly`] through a [read-only](Self::read_only)
    /// handle: the database is not its to close (a node's store handle
    /// would otherwise close the node's own database).
    pub fn close(&self) -> Result<(), StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        self.inner
            .closed
            .store(true, std::sync::atomic::Ordering::Release);
        let db = self
            .inner
            .db
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        drop(db);
        Ok(())
    }

    /// Makes every commit so far durable. Needed only with
    /// [`Durability::Eventual`]; cheap otherwise.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database cannot sync.
    pub fn flush(&self) -> Result<(), StoreError> {
        write::check_not_held(self.inner.id)?;
        let txn = self
            .db()?
            .begin_write()
            .map_err(storage("begin a write transaction"))?;
        WriteTransaction::new(
            txn,
            Durability::Immediate,
            self.inner.id,
            self.inner.checked.clone(),
            self.inner.hub.clone(),
        )?
        .commit()
    }
}
