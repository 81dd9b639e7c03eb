//! The handle's sync calls: what this node keeps in sync of each model
//! (subscriptions), catching up with peers now, and the delete horizon.

use libp2p::PeerId;

use super::Netabase;
use crate::model::NetabaseModel;
use crate::node::replica::event::CatchUpOutcome;
use crate::node::replica::subscriptions::{Subscription, MAX_SUBSCRIBED_RANGES};
use crate::node::replica::{horizon, subscribe};
use crate::node::NodeError;
use crate::sync::reconcile::{Fingerprint, KeyRange};

impl Netabase {
    /// Says what this node keeps in sync of model `M` (registered): catch-up
    /// reconciles only those records with peers. The default is
    /// [`Subscription::all`]. Stored in the node's file, so it holds across
    /// restarts: call it after `register` and before `start_swarm`, and the
    /// first catch-up already fetches only what it covers.
    ///
    /// - Records it no longer covers are dropped from this node's store
    ///   (not deleted: peers keep them, and no delete is sent), except this
    ///   node's own writes, which it always keeps. Watchers hear each one
    ///   as a [`ChangeKind::Delete`](crate::node::ChangeKind::Delete) from
    ///   [`Origin::Local`](crate::node::Origin::Local).
    /// - Records outside it stay one [`get_record`](Self::get_record) away:
    ///   fetched from peers, checked as any record is, and kept in memory
    ///   for [`NetabaseConfig::remote_copy_ttl`](crate::node::NetabaseConfig::remote_copy_ttl)
    ///   (within a share of `cache_bytes`), not stored. A subscription that
    ///   later covers such a copy stores it without fetching it again.
    /// - Keys it newly covers are caught up with every connected peer at
    ///   once, including records older than the delete horizon (the
    ///   subscription keeps its own catch-up watermark).
    /// - Records peers push to this node (it is among the closest to their
    ///   key) and its own writes are stored whatever it subscribes to.
    ///
    /// # Errors
    ///
    /// [`NodeError::NotRegistered`] if `M` is not registered;
    /// [`NodeError::TooManyRanges`] if it names more than
    /// [`MAX_SUBSCRIBED_RANGES`](crate::node::MAX_SUBSCRIBED_RANGES) key ranges;
    /// a store error if the change cannot be stored (nothing changed then).
    pub async fn subscribe<M: NetabaseModel>(
        &self,
        subscription: Subscription<M>,
    ) -> Result<(), NodeError> {
        self.check_registered::<M>()?;
        let ranges = subscription.record_ranges();
        if ranges.len() > MAX_SUBSCRIBED_RANGES {
            return Err(NodeError::TooManyRanges {
                model: M::NAME,
                ranges: ranges.len(),
                max: MAX_SUBSCRIBED_RANGES,
            });
        }
        let replica = self.replica.clone();
        let subscribed = self
            .blocking(move || subscribe::subscribe(&replica, M::ID, ranges))
            .await?;
        if subscribed.widened {
            // A stopped swarm (`NotRunning`) catches up when it starts.
            let _ = self.network.catch_up().await;
        }
        Ok(())
    }

    /// What this node keeps in sync of model `M` (see
    /// [`subscribe`](Self::subscribe)).
    pub fn subscription<M: NetabaseModel>(&self) -> Subscription<M> {
        Subscription::from_record_ranges(self.replica.subscriptions.ranges(M::ID))
    }

    /// A fingerprint of every signed record and delete this node holds (what
    /// catch-up compares): two nodes with equal fingerprints hold the same
    /// versions of the same records. A few reads of the store's persistent
    /// index (a blocking call), whatever the number of records.
    ///
    /// # Errors
    ///
    /// A store error if the database cannot be read.
    pub fn sync_fingerprint(&self) -> Result<Fingerprint, NodeError> {
        let read = self.replica.store.begin_read()?;
        Ok(read.sync_index()?.try_fingerprint(&KeyRange::all())?)
    }

    /// Reconciles with every connected peer now, as happens on connect and
    /// every `catch_up_interval`. Returns at once, with the peers it
    /// reconciles with (none: no peer is connected); progress arrives as
    /// [`Event::CatchUp`](crate::node::Event::CatchUp) and each finished exchange as [`Event::CaughtUp`](crate::node::Event::CaughtUp).
    /// With a peer whose catch-up is already running (it may have compared
    /// before the change that prompted this call), another follows it, and
    /// only the follow-up reports, with the records both received. To wait
    /// for the ends, use [`catch_up_and_wait`](Self::catch_up_and_wait).
    ///
    /// # Errors
    ///
    /// [`NodeError::NotRunning`] if the swarm is not running.
    pub async fn catch_up(&self) -> Result<Vec<PeerId>, NodeError> {
        self.network.catch_up().await
    }

    /// [`catch_up`](Self::catch_up), then waits until each of those peers'
    /// catch-ups has ended, and says how. A completed one covers every
    /// record the peer held when this was called: one already running is
    /// followed by another, and only the follow-up reports (with the records
    /// both received). Bound the wait with `tokio::time::timeout`; a peer
    /// that disconnects ends its catch-up as
    /// [`CatchUpFailure::Disconnected`](crate::node::CatchUpFailure::Disconnected).
    ///
    /// # Errors
    ///
    /// [`NodeError::NotRunning`] if the swarm is not running;
    /// [`NodeError::Stopped`] if it stops before every catch-up ended.
    pub async fn catch_up_and_wait(&self) -> Result<Vec<(PeerId, CatchUpOutcome)>, NodeError> {
        self.network.catch_up_and_wait().await
    }

    /// Collects deletes older than the tombstone horizon now (the node also
    /// does this every hour and when the swarm starts). Returns how many
    /// were collected.
    ///
    /// # Errors
    ///
    /// A store error if the database fails (nothing is collected then).
    pub async fn collect_tombstones(&self) -> Result<usize, NodeError> {
        let shared = self.replica.clone();
        self.blocking(move || horizon::collect_tombstones(&shared))
            .await
    }
}
