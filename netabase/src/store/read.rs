//! Read transactions: a consistent snapshot of every tree.

use std::cell::OnceCell;
use std::marker::PhantomData;
use std::ops::RangeBounds;
use std::sync::Arc;

use redb::ReadOnlyTable;

use super::database::Store;
use super::error::{open_table_error, storage, StoreError};
use super::layout;
use super::lookup::{self, impl_lookup, TableAccess};
use super::records::Records;
use super::tables::{self, ByteBounds, Bytes, KeyBytes, ReadTable};
use crate::key::KeyEncode;
use crate::model::NetabaseModel;

/// A read-only snapshot of the store. Trees opened from it see the data as of
/// [`Store::begin_read`](Store::begin_read), whatever is committed later.
pub struct ReadTransaction {
    inner: Arc<redb::ReadTransaction>,
    store: Store,
}

impl ReadTransaction {
    pub(crate) fn new(inner: redb::ReadTransaction, store: Store) -> Self {
        ReadTransaction {
            inner: Arc::new(inner),
            store,
        }
    }

    pub(crate) fn raw(&self) -> &redb::ReadTransaction {
        &self.inner
    }

    /// The store's memory of which typed table each model's rows are in.
    pub(crate) fn model_tables(&self) -> &super::rows::ModelTables {
        &self.store.inner.model_tables
    }

    /// Opens the tree of model `M`. Cheap: index tables are opened on their
    /// first lookup, and each table at most once per tree.
    ///
    /// If the model's secondary indexes changed since the file was written
    /// and no write has rebuilt them yet, they are rebuilt first (a write
    /// transaction of its own), and this tree reads a snapshot taken after
    /// that.
    ///
    /// # Errors
    ///
    /// Fails if the database cannot be read, or as
    /// [`WriteTransaction::open_tree`](super::WriteTransaction::open_tree)
    /// if a rebuild fails ([`StoreError::WriteInProgress`] if this thread
    /// holds the write transaction it needs).
    pub fn open_tree<M: NetabaseModel>(&self) -> Result<ReadTree<'_, M>, StoreError> {
        let mut txn = self.inner.clone();
        if !self.store.inner.checked.contains::<M>() {
            match layout::stored::<M>(&self.inner)? {
                layout::Stored::Current => self.store.inner.checked.insert::<M>(),
                // An empty tree reads the same under any layout; the first
                // write stores it.
                layout::Stored::Unwritten => {}
                layout::Stored::Stale => {
                    self.store.register::<M>()?;
                    txn = self.store.begin_read()?.inner;
                }
            }
        }
        Ok(ReadTree {
            records: open_optional(&txn, tables::records_table::<M>(), M::NAME)?,
            txn,
            indexes: OnceCell::new(),
            _model: PhantomData,
        })
    }
}

/// Opens a table in a read transaction; a table that was never created is an
/// empty tree, not an error.
fn open_optional(
    txn: &redb::ReadTransaction,
    definition: redb::TableDefinition<'static, KeyBytes, Bytes>,
    model: &'static str,
) -> Result<Option<ReadOnlyTable<KeyBytes, Bytes>>, StoreError> {
    match txn.open_table(definition) {
        Ok(table) => Ok(Some(table)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(error) => Err(open_table_error(model)(error)),
    }
}

/// The tree of model `M` within a [`ReadTransaction`]. Reads through
/// [`Lookup`](super::Lookup) and the generated `<Model>Queries` trait.
pub struct ReadTree<'txn, M> {
    txn: Arc<redb::ReadTransaction>,
    records: Option<ReadOnlyTable<KeyBytes, Bytes>>,
    indexes: OnceCell<Box<[OnceCell<Option<ReadTable>>]>>,
    _model: PhantomData<fn(&'txn ()) -> M>,
}

impl<M: NetabaseModel> ReadTree<'_, M> {
    /// Every record in primary-key order; the iterator keeps the snapshot
    /// alive on its own, so it may outlive the tree.
    ///
    /// # Errors
    ///
    /// Fails if the database cannot be read.
    pub fn into_iter_owned(self) -> Result<Records<'static, M>, StoreError> {
        self.into_range_owned(..)
    }

    /// The records whose primary key lies in `range`, as an iterator that
    /// keeps the snapshot alive on its own.
    ///
    /// # Errors
    ///
    /// Fails if the database cannot be read.
    pub fn into_range_owned<R: RangeBounds<M::Key>>(
        self,
        range: R,
    ) -> Result<Records<'static, M>, StoreError> {
        self.into_key_range_owned(range)
    }

    /// [`into_range_owned`](Self::into_range_owned) with the key in any
    /// form that encodes as it does (`&str` for a `String` key).
    pub(crate) fn into_key_range_owned<K: KeyEncode, R: RangeBounds<K>>(
        self,
        range: R,
    ) -> Result<Records<'static, M>, StoreError> {
        let bounds = ByteBounds::new(range.start_bound(), range.end_bound());
        match (&self.records, bounds.as_range()) {
            (Some(records), Some(range)) => {
                // The inherent `range` of a read-only table owns its snapshot.
                let range = records
                    .range::<&[u8]>(range)
                    .map_err(storage("read records"))?;
                Ok(Records::new(Some(range)))
            }
            _ => Ok(Records::new(None)),
        }
    }
}

impl<M: NetabaseModel> TableAccess<M> for ReadTree<'_, M> {
    type Table = ReadOnlyTable<KeyBytes, Bytes>;

    fn records(&self) -> Option<&Self::Table> {
        self.records.as_ref()
    }

    fn index(&self, index: usize) -> Result<Option<&Self::Table>, StoreError> {
        let spec = lookup::spec::<M>(index)?;
        let cells = self
            .indexes
            .get_or_init(|| M::INDEXES.iter().map(|_| OnceCell::new()).collect());
        if let Some(table) = cells[index].get() {
            return Ok(table.as_ref());
        }
        let table = open_optional(&self.txn, tables::index_table(spec), M::NAME)?;
        Ok(cells[index].get_or_init(|| table).as_ref())
    }
}

impl_lookup!(ReadTree<'_, M>);

impl Store {
    /// Starts a read transaction: a snapshot of every tree.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    pub fn begin_read(&self) -> Result<ReadTransaction, StoreError> {
        use redb::ReadableDatabase;
        let txn = self
            .db()?
            .begin_read()
            .map_err(storage("begin a read transaction"))?;
        Ok(ReadTransaction::new(txn, self.clone()))
    }
}
