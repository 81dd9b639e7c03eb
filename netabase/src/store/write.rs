//! Write transactions: every write to every tree in one atomic commit, with
//! secondary indexes updated alongside their records.

use std::borrow::Borrow;
use std::marker::PhantomData;
use std::sync::Mutex;
use std::thread::ThreadId;

use redb::{ReadableTable, Table};

use super::changes::{Change, Hub};
use super::durability::Durability;
use super::error::{open_table_error, storage, StoreError};
use super::layout::{self, Checked};
use super::lookup::{self, impl_lookup, TableAccess};
use super::records::Records;
use super::tables::{self, ByteBounds, Bytes, KeyBytes};
use crate::codec;
use crate::key::{KeyBuf, KeyEncode};
use crate::model::{IndexEntries, NetabaseModel};
use tokio::sync::broadcast;

/// A write transaction over any number of trees. Nothing is visible to
/// readers, or durable, until [`commit`](Self::commit); dropping it (or
/// [`abort`](Self::abort)) discards every write.
pub struct WriteTransaction {
    inner: redb::WriteTransaction,
    /// The store's record of which models' layouts are checked.
    checked: std::sync::Arc<Checked>,
    /// Models whose layout this transaction checked: recorded on commit.
    checking: Mutex<Vec<(&'static str, std::any::TypeId)>>,
    /// The store's watchers.
    hub: std::sync::Arc<Hub>,
    /// Changes to send to watchers once the transaction commits.
    pending: Pending,
    _held: Held,
}

/// Which threads hold a write transaction on which store: redb lets one
/// write transaction run at a time, so a thread asking for a second one on
/// the same store would wait for itself forever. It gets an error instead.
static HELD: Mutex<Vec<(u64, ThreadId)>> = Mutex::new(Vec::new());

/// Marks a store's write transaction as held by the thread that began it,
/// until dropped (wherever the transaction went meanwhile).
struct Held {
    store: u64,
    thread: ThreadId,
}

impl Held {
    fn held() -> std::sync::MutexGuard<'static, Vec<(u64, ThreadId)>> {
        // The list stays consistent even if a holder panicked.
        HELD.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut held = Held::held();
        if let Some(i) = held
            .iter()
            .position(|entry| *entry == (self.store, self.thread))
        {
            held.swap_remove(i);
        }
    }
}

/// Fails if the calling thread holds a write transaction on store `store`.
pub(crate) fn check_not_held(store: u64) -> Result<(), StoreError> {
    let me = std::thread::current().id();
    if Held::held().contains(&(store, me)) {
        return Err(StoreError::WriteInProgress);
    }
    Ok(())
}

impl WriteTransaction {
    pub(crate) fn new(
        mut inner: redb::WriteTransaction,
        durability: Durability,
        store: u64,
        checked: std::sync::Arc<Checked>,
        hub: std::sync::Arc<Hub>,
    ) -> Result<Self, StoreError> {
        inner
            .set_durability(durability.to_redb())
            .map_err(storage("set durability"))?;
        let thread = std::thread::current().id();
        Held::held().push((store, thread));
        Ok(WriteTransaction {
            inner,
            checked,
            checking: Mutex::new(Vec::new()),
            hub,
            pending: Mutex::new(Vec::new()),
            _held: Held { store, thread },
        })
    }

    /// Opens the tree of model `M` for writing, creating its tables if needed.
    /// Trees of different models can be open at once; the same model's tree
    /// can be open only once at a time.
    ///
    /// The first time a process opens a model's tree, its secondary indexes
    /// are checked against the ones the file was written with; added or
    /// changed indexes are rebuilt from the records in this transaction
    /// (and logged), removed ones dropped.
    ///
    /// # Errors
    ///
    /// [`StoreError::TreeAlreadyOpen`] if this model's tree is already open in
    /// this transaction; [`StoreError::Storage`] if the database fails; while
    /// rebuilding an index, [`StoreError::Codec`] if a stored record no
    /// longer decodes as `M`, or [`StoreError::UniqueViolation`] if an index
    /// made unique finds a value two records share.
    pub fn open_tree<M: NetabaseModel>(&self) -> Result<WriteTree<'_, M>, StoreError> {
        if !self.checked.contains::<M>() {
            layout::upgrade::<M>(&self.inner)?;
            self.checking
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((M::TABLE, std::any::TypeId::of::<M>()));
        }
        let mut tree = WriteTree::open(&self.inner)?;
        tree.watch = self.hub.sender::<M>().map(|sender| (sender, &self.pending));
        Ok(tree)
    }

    pub(crate) fn raw(&self) -> &redb::WriteTransaction {
        &self.inner
    }

    /// Makes every write of this transaction visible and, with
    /// [`Durability::Immediate`], durable before returning.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the commit fails (for example on a full
    /// disk); nothing of the transaction is then committed.
    pub fn commit(self) -> Result<(), StoreError> {
        self.inner.commit().map_err(storage("commit"))?;
        for (table, model) in self
            .checking
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
        {
            self.checked.insert_type(table, model);
        }
        for send in self.pending.into_inner().unwrap_or_else(|e| e.into_inner()) {
            send();
        }
        Ok(())
    }

    /// Discards every write of this transaction.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails while rolling back.
    pub fn abort(self) -> Result<(), StoreError> {
        self.inner.abort().map_err(storage("abort"))
    }
}

/// The tree of model `M` within a [`WriteTransaction`]: writes plus every read
/// of [`Lookup`](super::Lookup), which sees this transaction's own writes.
pub struct WriteTree<'txn, M: NetabaseModel> {
    records: Table<'txn, KeyBytes, Bytes>,
    indexes: Vec<Table<'txn, KeyBytes, Bytes>>,
    // Reused across puts so a batch allocates only while buffers grow.
    payload: Vec<u8>,
    old_entries: IndexEntries,
    new_entries: IndexEntries,
    /// Where this tree's changes go on commit, if anyone watches `M`.
    watch: Option<(broadcast::Sender<Change<M>>, &'txn Pending)>,
    _model: PhantomData<fn() -> M>,
}

/// Sends to run when a transaction commits.
type Pending = Mutex<Vec<Box<dyn FnOnce() + Send>>>;

impl<'txn, M: NetabaseModel> WriteTree<'txn, M> {
    pub(super) fn open(txn: &'txn redb::WriteTransaction) -> Result<Self, StoreError> {
        let records = txn
            .open_table(tables::records_table::<M>())
            .map_err(open_table_error(M::NAME))?;
        let indexes = M::INDEXES
            .iter()
            .map(|spec| txn.open_table(tables::index_table(spec)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(open_table_error(M::NAME))?;
        Ok(WriteTree {
            records,
            indexes,
            payload: Vec::new(),
            old_entries: IndexEntries::new(),
            new_entries: IndexEntries::new(),
            watch: None,
            _model: PhantomData,
        })
    }

    /// Queues a change for `M`'s watchers, sent if the transaction commits.
    fn changed(&self, key: M::Key, record: Option<M>) {
        if let Some((sender, pending)) = &self.watch {
            let sender = sender.clone();
            let change = Change {
                key,
                record: record.map(std::sync::Arc::new),
            };
            pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Box::new(move || {
                    // Watchers that left are no error.
                    let _ = sender.send(change);
                }));
        }
    }

    /// Records with an entry of index `index` within `bounds`.
    pub(super) fn index_in(
        &self,
        index: usize,
        bounds: &tables::ByteBounds,
    ) -> Result<Vec<M>, StoreError> {
        lookup::index_scan(self, index, bounds)
    }

    /// Fills the (empty) indexes numbered `which` from every record.
    pub(super) fn rebuild_indexes(&mut self, which: &[usize]) -> Result<(), StoreError> {
        let WriteTree {
            records,
            indexes,
            new_entries,
            ..
        } = self;
        for entry in records.iter().map_err(storage("read records"))? {
            let (key, value) = entry.map_err(storage("read records"))?;
            let record = codec::decode::<M>(value.value())?;
            add_entries(indexes, new_entries, key.value(), &record, which)?;
        }
        Ok(())
    }

    /// Rewrites every record as `convert` makes it from its key and stored
    /// bytes, and fills every (empty) index from the results, in one pass:
    /// a migration. Returns how many records it rewrote.
    pub(super) fn rewrite_all(
        &mut self,
        mut convert: impl FnMut(&[u8], &[u8]) -> Result<M, StoreError>,
    ) -> Result<u64, StoreError> {
        // Copied out a chunk at a time: redb writes no table with a range
        // of it open.
        const CHUNK: usize = 1024;
        let all: Vec<usize> = (0..M::INDEXES.len()).collect();
        let mut after: Option<Vec<u8>> = None;
        let mut rewritten = 0;
        loop {
            let lower = match &after {
                Some(key) => std::ops::Bound::Excluded(key.as_slice()),
                None => std::ops::Bound::Unbounded,
            };
            let mut chunk = Vec::with_capacity(CHUNK);
            for entry in self
                .records
                .range::<&[u8]>((lower, std::ops::Bound::Unbounded))
                .map_err(storage("read records"))?
                .take(CHUNK)
            {
                let (key, value) = entry.map_err(storage("read records"))?;
                chunk.push((key.value().to_vec(), value.value().to_vec()));
            }
            let Some((last, _)) = chunk.last() else {
                return Ok(rewritten);
            };
            after = Some(last.clone());
            for (key, bytes) in &chunk {
                let record = convert(key, bytes)?;
                self.payload.clear();
                codec::encode_into(&record, &mut self.payload)?;
                self.records
                    .insert(key.as_slice(), self.payload.as_slice())
                    .map_err(storage("rewrite a record"))?;
                add_entries(&mut self.indexes, &mut self.new_entries, key, &record, &all)?;
                rewritten += 1;
            }
        }
    }
}

/// Adds `record`'s entries (stored under `key`) to the indexes numbered
/// `which`.
fn add_entries<M: NetabaseModel>(
    indexes: &mut [Table<'_, KeyBytes, Bytes>],
    entries: &mut IndexEntries,
    key: &[u8],
    record: &M,
    which: &[usize],
) -> Result<(), StoreError> {
    entries.clear();
    record.index_entries(entries);
    check_indexes::<M>(entries)?;
    for (index, value) in entries.iter() {
        if !which.contains(&index) {
            continue;
        }
        let spec = &M::INDEXES[index];
        tables::check_key_len(M::NAME, value)?;
        let entry = tables::index_entry_key(spec, value, key);
        let previous = indexes[index]
            .insert(entry.as_slice(), tables::index_entry_value(spec, key))
            .map_err(storage("update an index"))?;
        if spec.unique && previous.is_some_and(|owner| owner.value() != key) {
            return Err(StoreError::UniqueViolation {
                model: M::NAME,
                index: spec.name,
            });
        }
    }
    Ok(())
}

impl<M: NetabaseModel> WriteTree<'_, M> {
    /// The bytes the last successful [`put`](Self::put) wrote as the
    /// record's row (empty before the first).
    #[cfg_attr(not(feature = "node"), allow(dead_code))]
    pub(crate) fn encoded(&self) -> &[u8] {
        &self.payload
    }

    /// Inserts `record`, or replaces the record with the same primary key and
    /// moves its index entries to the new values. Returns whether a record was
    /// replaced.
    ///
    /// # Errors
    ///
    /// [`StoreError::UniqueViolation`] if a unique index already maps one of
    /// the new values to another record; [`StoreError::Codec`] if the record
    /// does not encode or is over the size limit, or the record it replaces
    /// does not decode. In these cases the tree is left exactly as it was.
    /// [`StoreError::Storage`] if the database fails: abort the transaction.
    pub fn put(&mut self, record: &M) -> Result<bool, StoreError> {
        let mut key = KeyBuf::new();
        record.encode_key(&mut key);
        tables::check_key_len(M::NAME, key.as_slice())?;
        self.payload.clear();
        codec::encode_into(record, &mut self.payload)?;

        if M::INDEXES.is_empty() {
            let old = self
                .records
                .insert(key.as_slice(), self.payload.as_slice())
                .map_err(storage("write a record"))?;
            let replaced = old.is_some();
            drop(old);
            self.watched_put(record);
            return Ok(replaced);
        }

        // Everything that can refuse the put happens before the first write,
        // so a refused put leaves the transaction as it was.
        self.new_entries.clear();
        record.index_entries(&mut self.new_entries);
        check_indexes::<M>(&self.new_entries)?;
        for (_, value) in self.new_entries.iter() {
            tables::check_key_len(M::NAME, value)?;
        }
        self.old_entries.clear();
        let replaced = match self
            .records
            .get(key.as_slice())
            .map_err(storage("read a record"))?
        {
            Some(old) if old.value() == self.payload.as_slice() => return Ok(true),
            Some(old) => {
                codec::decode::<M>(old.value())?.index_entries(&mut self.old_entries);
                check_indexes::<M>(&self.old_entries)?;
                true
            }
            None => false,
        };
        self.check_unique(key.as_slice())?;

        self.records
            .insert(key.as_slice(), self.payload.as_slice())
            .map_err(storage("write a record"))?;
        for (index, value) in self.old_entries.iter() {
            if !self.new_entries.contains(index, value) {
                let entry = tables::index_entry_key(&M::INDEXES[index], value, key.as_slice());
                self.indexes[index]
                    .remove(entry.as_slice())
                    .map_err(storage("update an index"))?;
            }
        }
        for (index, value) in self.new_entries.iter() {
            if !self.old_entries.contains(index, value) {
                let entry = tables::index_entry_key(&M::INDEXES[index], value, key.as_slice());
                let value = tables::index_entry_value(&M::INDEXES[index], key.as_slice());
                self.indexes[index]
                    .insert(entry.as_slice(), value)
                    .map_err(storage("update an index"))?;
            }
        }
        self.watched_put(record);
        Ok(replaced)
    }

    /// Queues a put for watchers: the record as written, decoded from the
    /// bytes just stored (a model need not be `Clone`).
    fn watched_put(&self, record: &M) {
        if self.watch.is_some() {
            if let Ok(copy) = codec::decode::<M>(&self.payload) {
                self.changed(record.key(), Some(copy));
            }
        }
    }

    /// Fails if a unique value in `new_entries` belongs to a record other than `key`.
    fn check_unique(&self, key: &[u8]) -> Result<(), StoreError> {
        for (index, value) in self.new_entries.iter() {
            let spec = &M::INDEXES[index];
            if !spec.unique || self.old_entries.contains(index, value) {
                continue;
            }
            if let Some(owner) = self.indexes[index]
                .get(value)
                .map_err(storage("read an index"))?
            {
                if owner.value() != key {
                    return Err(StoreError::UniqueViolation {
                        model: M::NAME,
                        index: spec.name,
                    });
                }
            }
        }
        Ok(())
    }

    /// The encoded primary keys of the records, other than `record`'s own,
    /// that hold one of `record`'s unique index values (for a node settling
    /// which of two synced records keeps a unique value).
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    #[doc(hidden)]
    pub fn unique_holders(&mut self, record: &M) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut key = KeyBuf::new();
        record.encode_key(&mut key);
        self.new_entries.clear();
        record.index_entries(&mut self.new_entries);
        check_indexes::<M>(&self.new_entries)?;
        let mut holders: Vec<Vec<u8>> = Vec::new();
        for (index, value) in self.new_entries.iter() {
            if !M::INDEXES[index].unique {
                continue;
            }
            if let Some(owner) = self.indexes[index]
                .get(value)
                .map_err(storage("read an index"))?
            {
                let owner = owner.value();
                if owner != key.as_slice() && !holders.iter().any(|h| h == owner) {
                    holders.push(owner.to_vec());
                }
            }
        }
        Ok(holders)
    }

    /// Puts every record in turn; returns how many there were.
    ///
    /// # Errors
    ///
    /// As [`put`](Self::put), at the first record that fails; earlier records
    /// of the batch stay written in this transaction (abort it to drop them).
    pub fn put_many<I>(&mut self, records: I) -> Result<usize, StoreError>
    where
        I: IntoIterator,
        I::Item: Borrow<M>,
    {
        let mut count = 0;
        for record in records {
            self.put(record.borrow())?;
            count += 1;
        }
        Ok(count)
    }

    /// Removes the record with this primary key and its index entries;
    /// returns it, or `None` if there was none.
    ///
    /// # Errors
    ///
    /// [`StoreError::Codec`] if the stored record does not decode (nothing is
    /// removed then); [`StoreError::Storage`] if the database fails.
    pub fn remove(&mut self, key: &M::Key) -> Result<Option<M>, StoreError> {
        let mut buf = KeyBuf::new();
        key.encode_key(&mut buf);
        self.remove_encoded(buf.as_slice())
    }

    /// [`remove`](Self::remove) by the encoded primary key.
    ///
    /// # Errors
    ///
    /// As [`remove`](Self::remove).
    #[doc(hidden)]
    pub fn remove_encoded(&mut self, key: &[u8]) -> Result<Option<M>, StoreError> {
        let old: M = match self.records.get(key).map_err(storage("read a record"))? {
            Some(value) => codec::decode(value.value())?,
            None => return Ok(None),
        };
        self.old_entries.clear();
        old.index_entries(&mut self.old_entries);
        check_indexes::<M>(&self.old_entries)?;
        self.records
            .remove(key)
            .map_err(storage("remove a record"))?;
        for (index, value) in self.old_entries.iter() {
            let entry = tables::index_entry_key(&M::INDEXES[index], value, key);
            self.indexes[index]
                .remove(entry.as_slice())
                .map_err(storage("update an index"))?;
        }
        self.changed(old.key(), None);
        Ok(Some(old))
    }
}

/// Generated models only emit valid index numbers; a hand-written
/// `index_entries` might not, and that must be an error rather than a panic.
fn check_indexes<M: NetabaseModel>(entries: &IndexEntries) -> Result<(), StoreError> {
    for (index, _) in entries.iter() {
        lookup::spec::<M>(index)?;
    }
    Ok(())
}

impl<'txn, M: NetabaseModel> TableAccess<M> for WriteTree<'txn, M> {
    type Table = Table<'txn, KeyBytes, Bytes>;

    fn records(&self) -> Option<&Self::Table> {
        Some(&self.records)
    }

    fn index(&self, index: usize) -> Result<Option<&Self::Table>, StoreError> {
        lookup::spec::<M>(index)?;
        Ok(self.indexes.get(index))
    }
}

impl_lookup!(WriteTree<'_, M>);
