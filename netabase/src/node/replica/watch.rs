//! Typed changes of a node's records: what [`Netabase::watch`](crate::node::Netabase::watch)
//! streams. The store's own feed ([`Store::watch`](crate::Store::watch))
//! has the key and record; a node's adds the version and where it came from.

use std::sync::Arc;

use tokio::sync::broadcast;

use super::event::Origin;
use crate::model::NetabaseModel;
use crate::store::WatchError;
use crate::sync::Version;

/// One change to a record of `M` on a node.
#[derive(Debug)]
pub struct NodeChange<M: NetabaseModel> {
    /// The record's primary key.
    pub key: M::Key,
    /// The record as stored; `None` for a delete (or a record a returning
    /// peer showed was deleted).
    pub record: Option<Arc<M>>,
    /// Its version: timestamp and writer (who signed it).
    pub version: Version,
    /// This node, or the peer it came from.
    pub origin: Origin,
}

impl<M: NetabaseModel> Clone for NodeChange<M> {
    fn clone(&self) -> Self {
        NodeChange {
            key: self.key.clone(),
            record: self.record.clone(),
            version: self.version,
            origin: self.origin,
        }
    }
}

/// Typed changes of `M`'s records, from [`Netabase::watch`](crate::node::Netabase::watch).
pub struct NodeChanges<M: NetabaseModel> {
    rx: broadcast::Receiver<NodeChange<M>>,
}

impl<M: NetabaseModel> std::fmt::Debug for NodeChanges<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeChanges")
            .field("model", &M::NAME)
            .finish()
    }
}

impl<M: NetabaseModel> NodeChanges<M> {
    pub(crate) fn new(rx: broadcast::Receiver<NodeChange<M>>) -> Self {
        NodeChanges { rx }
    }

    /// The next change, waiting for one.
    ///
    /// # Errors
    ///
    /// [`WatchError::Missed`] with how many changes this watcher missed by
    /// falling behind (the next call goes on with the oldest still
    /// buffered; re-read what you show from the store), or
    /// [`WatchError::Closed`] if the node is gone.
    pub async fn next(&mut self) -> Result<NodeChange<M>, WatchError> {
        self.rx.recv().await.map_err(|error| match error {
            broadcast::error::RecvError::Lagged(n) => WatchError::Missed(n),
            broadcast::error::RecvError::Closed => WatchError::Closed,
        })
    }
}
