//! Typed change feeds: every committed write to a model's tree, by
//! whatever path, is sent to the model's watchers when its transaction
//! commits. A model nobody watches costs nothing.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::model::NetabaseModel;

/// Changes buffered per watcher before a slow one starts missing them.
pub const WATCH_BUFFER: usize = 4096;

/// One committed change to a record of `M`.
#[derive(Debug)]
pub struct Change<M: NetabaseModel> {
    /// The record's primary key.
    pub key: M::Key,
    /// The record as committed; `None` if it left the tree (deleted).
    pub record: Option<Arc<M>>,
}

impl<M: NetabaseModel> Clone for Change<M> {
    fn clone(&self) -> Self {
        Change {
            key: self.key.clone(),
            record: self.record.clone(),
        }
    }
}

/// Why a watcher got no change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError {
    /// The watcher fell more than [`WATCH_BUFFER`] changes behind and
    /// missed this many; it continues with the oldest still buffered.
    /// Resynchronise from the store (a [`LiveQuery`](super::LiveQuery) does so itself).
    #[error("the watcher fell behind and missed {0} changes")]
    Missed(u64),
    /// The store is gone.
    #[error("the store was dropped")]
    Closed,
}

/// The store's senders, one per watched model.
#[derive(Default)]
pub(crate) struct Hub {
    senders: Mutex<HashMap<TypeId, Box<dyn Any + Send + Sync>>>,
}

impl Hub {
    /// The sender of `M`'s changes, if anyone watches `M`.
    pub(crate) fn sender<M: NetabaseModel>(&self) -> Option<broadcast::Sender<Change<M>>> {
        let senders = self.senders.lock().unwrap_or_else(|e| e.into_inner());
        let sender = senders
            .get(&TypeId::of::<M>())?
            .downcast_ref::<broadcast::Sender<Change<M>>>()?;
        (sender.receiver_count() > 0).then(|| sender.clone())
    }

    pub(super) fn subscribe<M: NetabaseModel>(&self) -> broadcast::Receiver<Change<M>> {
        let mut senders = self.senders.lock().unwrap_or_else(|e| e.into_inner());
        let entry = senders
            .entry(TypeId::of::<M>())
            .or_insert_with(|| Box::new(broadcast::channel::<Change<M>>(WATCH_BUFFER).0));
        match entry.downcast_ref::<broadcast::Sender<Change<M>>>() {
            Some(sender) => sender.subscribe(),
            // Keyed by the type: the entry is always this type's sender.
            None => broadcast::channel(1).1,
        }
    }
}

/// Changes to the records of `M`, from [`Store::watch`](super::Store::watch).
pub struct Changes<M: NetabaseModel> {
    pub(super) rx: broadcast::Receiver<Change<M>>,
}

impl<M: NetabaseModel> std::fmt::Debug for Changes<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Changes").field("model", &M::NAME).finish()
    }
}

impl<M: NetabaseModel> Changes<M> {
    /// The next change, waiting for one.
    ///
    /// # Errors
    ///
    /// [`WatchError::Missed`] if this watcher fell behind (the next call
    /// goes on with the oldest change still buffered), [`WatchError::Closed`]
    /// if the store is gone.
    pub async fn next(&mut self) -> Result<Change<M>, WatchError> {
        self.rx.recv().await.map_err(|error| match error {
            broadcast::error::RecvError::Lagged(n) => WatchError::Missed(n),
            broadcast::error::RecvError::Closed => WatchError::Closed,
        })
    }

    /// The next change if one is waiting.
    ///
    /// # Errors
    ///
    /// As [`next`](Self::next); `Ok(None)` if none is waiting.
    pub fn try_next(&mut self) -> Result<Option<Change<M>>, WatchError> {
        match self.rx.try_recv() {
            Ok(change) => Ok(Some(change)),
            Err(broadcast::error::TryRecvError::Empty) => Ok(None),
            Err(broadcast::error::TryRecvError::Lagged(n)) => Err(WatchError::Missed(n)),
            Err(broadcast::error::TryRecvError::Closed) => Err(WatchError::Closed),
        }
    }
}
