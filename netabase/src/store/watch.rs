//! Typed change feeds and live queries. Every committed write to a model's
//! tree, by whatever path (a `Tree` call, a transaction, a node applying
//! records from peers), is sent, typed, to the model's watchers when its
//! transaction commits; nothing is sent for a transaction that does not
//! commit. A model nobody watches costs nothing: trees look for a watcher
//! when they open.
//!
//! A [`LiveQuery`] holds the records matching a query (all of a model's
//! records, or those whose index value equals or lies in a range), kept up
//! to date from the feed: each change costs one index-entry check and one
//! map update, O(log n), never a re-query.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::changes::{Change, Changes, WatchError};
use super::database::Store;
use super::error::StoreError;
use super::lookup::Lookup;
use super::tables::ByteBounds;
use crate::key::{KeyBuf, KeyEncode};
use crate::model::{IndexEntries, NetabaseModel};

/// Which records a live query holds.
#[derive(Clone)]
enum Filter {
    All,
    /// Records with an entry of index `index` within `bounds`.
    Index {
        index: usize,
        bounds: Arc<ByteBounds>,
    },
}

impl Filter {
    fn matches<M: NetabaseModel>(&self, record: &M, entries: &mut IndexEntries) -> bool {
        match self {
            Filter::All => true,
            Filter::Index { index, bounds } => {
                entries.clear();
                record.index_entries(entries);
                entries
                    .iter()
                    .any(|(i, value)| i == *index && bounds.contains(value))
            }
        }
    }
}

/// What changed in a live query's set.
#[derive(Debug)]
pub enum LiveChange<M: NetabaseModel> {
    /// A record entered the set.
    Entered(Arc<M>),
    /// A record in the set changed, and is still in it.
    Changed(Arc<M>),
    /// A record left the set (deleted, or no longer matching).
    Left(M::Key),
    /// The query fell behind its feed and re-read the set from the store:
    /// [`records`](LiveQuery::records) is current again; changes in between
    /// were not reported one by one.
    Resynced,
}

/// The records of `M` matching a query, kept current as changes commit.
/// Start one with [`Store::watch_all`] or the generated
/// `watch_by_<field>(..)` / `watch_by_<field>_range(..)`; read the set with
/// [`records`](Self::records), and wait for what changes with
/// [`next`](Self::next).
pub struct LiveQuery<M: NetabaseModel> {
    store: Store,
    filter: Filter,
    set: BTreeMap<Vec<u8>, Arc<M>>,
    changes: Changes<M>,
    entries: IndexEntries,
}

impl<M: NetabaseModel> std::fmt::Debug for LiveQuery<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveQuery")
            .field("model", &M::NAME)
            .field("len", &self.set.len())
            .finish()
    }
}

impl<M: NetabaseModel> LiveQuery<M> {
    fn start(store: &Store, filter: Filter) -> Result<Self, StoreError> {
        let mut query = LiveQuery {
            store: store.clone(),
            filter,
            set: BTreeMap::new(),
            changes: Changes {
                rx: store.inner.hub.subscribe::<M>(),
            },
            entries: IndexEntries::new(),
        };
        query.reload()?;
        Ok(query)
    }

    /// Reads the matching set. Inside the write lock, after subscribing: a
    /// writer that committed before is in the set, one that commits after
    /// found this watcher when it opened its tree. Changes both read and
    /// delivered are applied twice, harmlessly.
    fn reload(&mut self) -> Result<(), StoreError> {
        let records = self.store.with_write_lock(|txn| {
            let tree = txn.open_tree::<M>()?;
            match &self.filter {
                Filter::All => tree.iter()?.collect::<Result<Vec<M>, _>>(),
                Filter::Index { index, bounds } => tree.index_in(*index, bounds),
            }
        })?;
        self.set = records
            .into_iter()
            .map(|record| {
                let mut key = KeyBuf::new();
                record.encode_key(&mut key);
                (key.as_slice().to_vec(), Arc::new(record))
            })
            .collect();
        Ok(())
    }

    /// The records in the set now, in primary-key order.
    pub fn records(&self) -> impl Iterator<Item = &M> + '_ {
        self.set.values().map(|r| r.as_ref())
    }

    /// How many records the set holds.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// Waits for the set to change, and says how. Changes to records
    /// outside the set that keep them outside are skipped.
    ///
    /// # Errors
    ///
    /// [`WatchError::Closed`] if the store is gone; a store error while
    /// re-reading after falling behind is reported as a `StoreError` inside
    /// [`LiveError::Store`].
    pub async fn next(&mut self) -> Result<LiveChange<M>, LiveError> {
        loop {
            let change = match self.changes.next().await {
                Ok(change) => change,
                Err(WatchError::Missed(_)) => {
                    self.reload().map_err(LiveError::Store)?;
                    return Ok(LiveChange::Resynced);
                }
                Err(WatchError::Closed) => return Err(LiveError::Closed),
            };
            if let Some(change) = self.apply(change) {
                return Ok(change);
            }
        }
    }

    /// Applies one change to the set; what it did to the set, if anything.
    fn apply(&mut self, change: Change<M>) -> Option<LiveChange<M>> {
        let key = change.key.to_key_bytes().as_slice().to_vec();
        let matching = change
            .record
            .filter(|record| self.filter.matches(record.as_ref(), &mut self.entries));
        match (matching, self.set.contains_key(&key)) {
            (Some(record), true) => {
                self.set.insert(key, record.clone());
                Some(LiveChange::Changed(record))
            }
            (Some(record), false) => {
                self.set.insert(key, record.clone());
                Some(LiveChange::Entered(record))
            }
            (None, true) => {
                self.set.remove(&key);
                Some(LiveChange::Left(change.key))
            }
            (None, false) => None,
        }
    }
}

/// Why a live query could not go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LiveError {
    /// The store is gone.
    #[error("the store was dropped")]
    Closed,
    /// Re-reading the set after falling behind failed.
    #[error(transparent)]
    Store(StoreError),
}

impl Store {
    /// Every committed change to the records of `M`, typed, from now on.
    pub fn watch<M: NetabaseModel>(&self) -> Changes<M> {
        Changes {
            rx: self.inner.hub.subscribe::<M>(),
        }
    }

    /// A live query of every record of `M`.
    ///
    /// # Errors
    ///
    /// A store error if the first read fails.
    pub fn watch_all<M: NetabaseModel>(&self) -> Result<LiveQuery<M>, StoreError> {
        LiveQuery::start(self, Filter::All)
    }

    /// A live query of the records of `M` with a value of index `index`
    /// in `bounds`. Used by the generated `watch_by_*`.
    ///
    /// # Errors
    ///
    /// A store error if the first read fails.
    #[doc(hidden)]
    pub fn watch_index<M: NetabaseModel, K: KeyEncode + ?Sized>(
        &self,
        index: usize,
        start: std::ops::Bound<&K>,
        end: std::ops::Bound<&K>,
    ) -> Result<LiveQuery<M>, StoreError> {
        super::lookup::spec::<M>(index)?;
        LiveQuery::start(
            self,
            Filter::Index {
                index,
                bounds: Arc::new(ByteBounds::new(start, end)),
            },
        )
    }
}
