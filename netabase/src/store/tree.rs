//! `Tree`: a model's tree with one transaction per call, for code that does
//! not need to group operations.

use std::borrow::Borrow;
use std::marker::PhantomData;
use std::ops::RangeBounds;

use super::database::Store;
use super::error::StoreError;
use super::lookup::Lookup;
use super::records::Records;
use crate::key::KeyEncode;
use crate::model::NetabaseModel;

/// The tree of model `M`, from [`Store::tree`]. Each write commits its own
/// transaction (with the store's durability); each read runs in its own
/// snapshot. Group operations with [`Store::begin_write`] /
/// [`Store::begin_read`] instead when they must be atomic or fast in bulk.
pub struct Tree<M> {
    store: Store,
    _model: PhantomData<fn() -> M>,
}

impl<M> Clone for Tree<M> {
    fn clone(&self) -> Self {
        Tree {
            store: self.store.clone(),
            _model: PhantomData,
        }
    }
}

impl<M: NetabaseModel> Tree<M> {
    pub(crate) fn new(store: Store) -> Self {
        Tree {
            store,
            _model: PhantomData,
        }
    }

    /// Inserts or replaces `record` and commits. Returns whether a record was
    /// replaced.
    ///
    /// # Errors
    ///
    /// As [`WriteTree::put`](super::WriteTree::put), plus commit failures; on
    /// any error nothing is written.
    pub fn put(&self, record: &M) -> Result<bool, StoreError> {
        self.write(|tree| tree.put(record))
    }

    /// Puts every record in one transaction: all of them are written, or on
    /// error none.
    ///
    /// # Errors
    ///
    /// As [`put`](Self::put) for the first record that fails.
    pub fn put_many<I>(&self, records: I) -> Result<usize, StoreError>
    where
        I: IntoIterator,
        I::Item: Borrow<M>,
    {
        self.write(|tree| tree.put_many(records))
    }

    /// Removes the record with this primary key and commits; returns it.
    ///
    /// # Errors
    ///
    /// As [`WriteTree::remove`](super::WriteTree::remove), plus commit failures.
    pub fn remove(&self, key: &M::Key) -> Result<Option<M>, StoreError> {
        self.write(|tree| tree.remove(key))
    }

    fn write<T>(
        &self,
        f: impl FnOnce(&mut super::WriteTree<'_, M>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let txn = self.store.begin_write()?;
        let value = {
            let mut tree = txn.open_tree::<M>()?;
            f(&mut tree)?
        };
        txn.commit()?;
        Ok(value)
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&super::ReadTree<'_, M>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let txn = self.store.begin_read()?;
        let tree = txn.open_tree::<M>()?;
        f(&tree)
    }
}

impl<M: NetabaseModel> Lookup<M> for Tree<M> {
    fn get(&self, key: &M::Key) -> Result<Option<M>, StoreError> {
        self.read(|tree| tree.get(key))
    }

    fn contains(&self, key: &M::Key) -> Result<bool, StoreError> {
        self.read(|tree| tree.contains(key))
    }

    fn len(&self) -> Result<u64, StoreError> {
        self.read(|tree| tree.len())
    }

    fn iter(&self) -> Result<Records<'_, M>, StoreError> {
        let txn = self.store.begin_read()?;
        txn.open_tree::<M>()?.into_iter_owned()
    }

    fn range<R: RangeBounds<M::Key>>(&self, range: R) -> Result<Records<'_, M>, StoreError> {
        let txn = self.store.begin_read()?;
        txn.open_tree::<M>()?.into_range_owned(range)
    }

    fn get_by<K: KeyEncode + ?Sized>(&self, key: &K) -> Result<Option<M>, StoreError> {
        self.read(|tree| tree.get_by(key))
    }

    fn key_range<K: KeyEncode, R: RangeBounds<K>>(
        &self,
        range: R,
    ) -> Result<Records<'_, M>, StoreError> {
        let txn = self.store.begin_read()?;
        txn.open_tree::<M>()?.into_key_range_owned(range)
    }

    fn index_get<K: KeyEncode + ?Sized>(
        &self,
        index: usize,
        value: &K,
    ) -> Result<Vec<M>, StoreError> {
        self.read(|tree| tree.index_get(index, value))
    }

    fn index_get_unique<K: KeyEncode + ?Sized>(
        &self,
        index: usize,
        value: &K,
    ) -> Result<Option<M>, StoreError> {
        self.read(|tree| tree.index_get_unique(index, value))
    }

    fn index_range<K: KeyEncode, R: RangeBounds<K>>(
        &self,
        index: usize,
        range: R,
    ) -> Result<Vec<M>, StoreError> {
        self.read(|tree| tree.index_range(index, range))
    }
}

impl Store {
    /// The tree of model `M`, committing each write on its own.
    pub fn tree<M: NetabaseModel>(&self) -> Tree<M> {
        Tree::new(self.clone())
    }
}
