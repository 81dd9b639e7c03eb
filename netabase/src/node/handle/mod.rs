//! The handle: [`Netabase`], a cheap clone that opens a node and sends its
//! calls to the replica core (local writes and reads, off the async
//! runtime) and to the network shell (publication, gets, catch-up).

mod sync;

#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;
use std::sync::Arc;

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{broadcast, oneshot};

use super::platform;
use super::replica::event::{Event, Origin};
use super::replica::local::{check_size, commit_local, open_record, refused_error, seal};
use super::replica::stats::NodeStats;
use super::replica::watch::NodeChanges;
use super::replica::{apply, identity, members, promote, registry, Replica, Settings};
use super::shell::Network;
use super::{NetabaseConfig, NodeError};
use crate::codec::{self, Envelope};
use crate::model::NetabaseModel;
use crate::store::{Lookup, ReadTree, Store};
use crate::sync::Version;
use crate::{KeyEncode, Keypair};

/// File names inside a node's data directory.
const DATABASE_FILE: &str = "netabase.redb";
/// How long [`Netabase::shutdown`] waits for storage tasks to finish.
pub const SHUTDOWN_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// What [`Netabase::put_record`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Published {
    /// The version written (see [`Netabase::record_version`]).
    pub version: Version,
    /// Whether the write quorum of peers acknowledged it. `false` only with
    /// [`WriteQuorum::Available`](super::WriteQuorum::Available) when no peer took it (none connected, or
    /// none answered within `query_timeout`): the record is committed
    /// locally and reaches peers through catch-up and republication.
    pub replicated: bool,
}

/// A Netabase node. Cheap to clone: clones share the node.
#[derive(Clone)]
pub struct Netabase {
    replica: Arc<Replica>,
    network: Network,
}

impl std::fmt::Debug for Netabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netabase")
            .field("peer_id", &self.replica.peer_id)
            .finish_non_exhaustive()
    }
}

impl Netabase {
    /// Opens (or creates) a node's data directory: its redb database and its
    /// identity key, so the peer id survives restarts. Does not start the
    /// network: see [`start_swarm`](Self::start_swarm).
    ///
    /// Blocks on disk I/O; from async code, it is quick enough to call
    /// directly at start-up.
    ///
    /// # Errors
    ///
    /// [`NodeError::Config`] if a configuration value is out of range (see
    /// [`NetabaseConfig::validate`]), before anything is opened;
    /// [`NodeError::Io`] if the directory or key cannot be created or read,
    /// [`NodeError::BadIdentity`] for a corrupt key file, [`NodeError::Store`]
    /// if the database cannot be opened (e.g. another process holds it).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_with_path(
        path: impl AsRef<Path>,
        config: NetabaseConfig,
    ) -> Result<Self, NodeError> {
        config.validate()?;
        let dir = path.as_ref();
        let keypair = identity::open_dir(dir)?;
        let store = Store::builder()
            .durability(config.durability)
            .cache_size(config.page_cache_bytes())
            .open(dir.join(DATABASE_FILE))?;
        Self::with_store(&dir.display(), keypair, store, config)
    }

    /// Opens (or creates) a node in the browser's storage `name`: its redb
    /// database and identity key in the origin private file system
    /// (OPFS), so records and peer id survive a page reload. Only in a
    /// dedicated Web Worker, the one place a browser gives synchronous
    /// file access; the page talks to the worker (see the
    /// [browser chapter](crate::guide::browser)).
    ///
    /// The storage is locked while the node has it open: a second tab
    /// opening the same `name` gets [`StoreError::AlreadyOpen`](crate::StoreError::AlreadyOpen)
    /// (give each tab its own name, or share one tab's node).
    ///
    /// # Errors
    ///
    /// [`NodeError::Config`] for an out-of-range configuration (one that
    /// listens, or asks for mDNS: a browser can do neither);
    /// [`NodeError::Store`] with `AlreadyOpen`, or with `Browser` if there
    /// is no OPFS here (the page's main thread) or it refuses the files;
    /// [`NodeError::BadIdentity`] for a corrupt key.
    #[cfg(target_arch = "wasm32")]
    pub async fn open_in_browser(name: &str, config: NetabaseConfig) -> Result<Self, NodeError> {
        config.validate()?;
        let keypair = identity::load_or_create_in_browser(name, identity::IDENTITY_FILE).await?;
        let store = Store::builder()
            .durability(config.durability)
            .cache_size(config.page_cache_bytes())
            .open_in_browser(name, DATABASE_FILE)
            .await?;
        Self::with_store(&format_args!("opfs:{name}"), keypair, store, config)
    }

    /// A node whose records live in memory only, under a new identity:
    /// everything is gone when it is dropped. For tests, caches, and pages
    /// that sync but keep nothing.
    ///
    /// # Errors
    ///
    /// [`NodeError::Config`] for an out-of-range configuration.
    pub fn new_in_memory(config: NetabaseConfig) -> Result<Self, NodeError> {
        config.validate()?;
        let store = Store::builder().durability(config.durability).in_memory()?;
        Self::with_store(&"memory", Keypair::generate_ed25519(), store, config)
    }

    /// Opens a node on a store of the caller's (tests use one on a disk
    /// that fills up), with its identity in `path`.
    ///
    /// # Errors
    ///
    /// As [`new_with_path`](Self::new_with_path).
    #[doc(hidden)]
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_with_store(
        path: impl AsRef<Path>,
        store: Store,
        config: NetabaseConfig,
    ) -> Result<Self, NodeError> {
        config.validate()?;
        let dir = path.as_ref();
        let keypair = identity::open_dir(dir)?;
        Self::with_store(&dir.display(), keypair, store, config)
    }

    fn with_store(
        place: &dyn std::fmt::Display,
        keypair: Keypair,
        store: Store,
        config: NetabaseConfig,
    ) -> Result<Self, NodeError> {
        let settings = Settings {
            max_record_bytes: config.max_record_bytes,
            tombstone_horizon: config.tombstone_horizon,
            catch_up: config.catch_up,
            record_cache_bytes: config.record_cache_bytes(),
            remote_copy_bytes: config.remote_copy_bytes(),
            remote_copy_ttl: config.remote_copy_ttl,
            max_clock_drift: config.max_clock_drift,
            clock_skew_ms: config.clock_skew_ms,
            admins: members::admins_by_model(&config.admins),
        };
        Ok(Netabase {
            replica: Replica::open(place, keypair, store, settings)?,
            network: Network::new(config),
        })
    }

    /// Registers model `M`, so records of it from peers are accepted and land
    /// in its typed tree. Register every model before starting the swarm.
    ///
    /// If `M`'s secondary indexes changed since this directory was last
    /// used, they are rebuilt here, and records stored at an older version
    /// of `M` are migrated (see [`Store::register`]); records held at a
    /// version newer than the one registered before, which `M` reads, enter
    /// its typed tree ([`Event::NewerVersionHeld`]). This blocks on disk
    /// I/O for as long as that takes.
    ///
    /// # Errors
    ///
    /// [`NodeError::ModelIdClash`] if another model is registered under the
    /// same name with other fields (or, rarely, under a colliding id); a
    /// store error if rebuilding an index or migrating fails (`M` is then
    /// not registered).
    pub fn register<M: NetabaseModel>(&self) -> Result<(), NodeError> {
        self.replica.register::<M>()?;
        promote::promote::<M>(&self.replica)
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.replica.peer_id
    }

    /// The node's store, read-only: typed reads, queries and read
    /// transactions of your own (blocking calls: from async code prefer
    /// [`query_local_records`](Self::query_local_records)). Every write
    /// through it fails with [`StoreError::ReadOnly`](crate::StoreError::ReadOnly):
    /// a node's records change only through the node (`put_record`,
    /// `remove_record`, ..), which signs and syncs them, so what peers hold,
    /// what [`get_record`](Self::get_record) answers and what the store
    /// holds never disagree.
    // The read-only handle, not the node's own, on purpose.
    #[allow(clippy::misnamed_getters)]
    pub fn store(&self) -> &Store {
        &self.replica.read_only_store
    }

    /// The addresses the swarm listens on (empty while it is stopped),
    /// without the peer id: see [`addresses`](Self::addresses) for ones to
    /// dial.
    pub fn listen_addresses(&self) -> Vec<Multiaddr> {
        self.network.listen_addresses()
    }

    /// Counters of accepted and refused inbound records.
    pub fn stats(&self) -> NodeStats {
        self.replica
            .counters
            .snapshot(self.replica.health.degraded())
    }

    /// Starts the swarm in its own task: listens on the configured addresses
    /// (returning once the first is bound), dials the bootstrap peers and
    /// republishes this node's own records.
    ///
    /// # Errors
    ///
    /// [`NodeError::AlreadyRunning`], or [`NodeError::Listen`] /
    /// [`NodeError::Transport`] if the network cannot start.
    pub async fn start_swarm(&self) -> Result<(), NodeError> {
        self.network.start(&self.replica).await
    }

    /// Stops the swarm and waits for its task to end. Local data stays; the
    /// swarm can be started again.
    ///
    /// # Errors
    ///
    /// [`NodeError::NotRunning`] if it was not running.
    pub async fn stop_swarm(&self) -> Result<(), NodeError> {
        self.network.stop().await
    }

    /// Stops the swarm if it runs, waits for every storage task of this
    /// node to finish, and closes its database, so the data directory can
    /// be opened again as soon as this returns (dropping a node instead
    /// releases it a little later, once its last task ends). Every later
    /// call on this node, through any clone, fails ([`NodeError::Store`]
    /// with [`StoreError::Closed`](crate::StoreError::Closed), or
    /// [`NodeError::NotRunning`]). Read transactions you still hold keep
    /// the file open until you drop them.
    ///
    /// # Errors
    ///
    /// [`NodeError::Stopped`] if storage tasks were still running after
    /// [`SHUTDOWN_WAIT`] (the database is closed anyway, and released when
    /// they end).
    pub async fn shutdown(&self) -> Result<(), NodeError> {
        match self.stop_swarm().await {
            Ok(()) | Err(NodeError::NotRunning) => {}
            Err(error) => return Err(error),
        }
        // Every handle holds one replica and one network; tasks hold only
        // the replica. Once the counts match, no task is left.
        let deadline = platform::Instant::now() + SHUTDOWN_WAIT;
        let mut idle = false;
        while platform::Instant::now() < deadline {
            if Arc::strong_count(&self.replica) <= self.network.handles() {
                idle = true;
                break;
            }
            platform::sleep(std::time::Duration::from_millis(2)).await;
        }
        // The node's own handle writes: closing it is never refused.
        let _ = self.replica.store.close();
        tracing::debug!(peer_id = %self.replica.peer_id, "node shut down");
        if idle {
            Ok(())
        } else {
            Err(NodeError::Stopped)
        }
    }

    /// Dials a peer at `address` (`/ip4/../tcp/../p2p/<peer id>`, as
    /// [`addresses`](Self::addresses) gives them; through a relay,
    /// `<relay address>/p2p-circuit/p2p/<peer id>`; or `/p2p/<peer id>`
    /// alone, wherever the network knows the peer to be, its relay slot
    /// included) and waits until the connection is up (at most
    /// `query_timeout`). Returns the peer's id. A peer already connected
    /// is not dialled again.
    ///
    /// # Errors
    ///
    /// [`NodeError::NotRunning`] if the swarm is not running;
    /// [`NodeError::Dial`] with the reason if no connection was made
    /// (refused, unreachable, another peer id answered, over the connection
    /// limits, or timed out).
    pub async fn dial(&self, address: Multiaddr) -> Result<PeerId, NodeError> {
        self.network.dial(address).await
    }

    /// Addresses other nodes can dial this one at, each ending in
    /// `/p2p/<peer id>` (empty while the swarm is stopped): pass one to
    /// [`dial`](Self::dial) or to another node's `bootstrap_peers`.
    pub fn addresses(&self) -> Vec<Multiaddr> {
        self.listen_addresses()
            .into_iter()
            .map(|address| address.with(Protocol::P2p(self.replica.peer_id)))
            .collect()
    }

    /// Commits `record` locally and publishes it to the network with the
    /// configured [`write_quorum`](NetabaseConfig::write_quorum); returns
    /// once both are done, with the version written and whether peers took
    /// it (with the default quorum a lone node's write succeeds, locally
    /// only, and says so).
    ///
    /// The record is signed, checked (size, unique indexes) and written into
    /// a local transaction first, so a record this node refuses is never
    /// published. Publishing then runs while that transaction's commit makes
    /// it durable, instead of after it: the two waits overlap.
    ///
    /// # Errors
    ///
    /// [`NodeError::RecordTooLarge`] or a store error such as a unique
    /// violation before anything is written or published;
    /// [`NodeError::NotRunning`] (after the local commit) if the swarm is
    /// stopped; with [`WriteQuorum::AtLeast`](super::WriteQuorum::AtLeast), [`NodeError::Publish`] if too
    /// few peers stored it (it stays committed locally and is republished
    /// later). If the final commit
    /// itself fails (a failing disk), that error is returned; peers may then
    /// hold the record already, and catch-up brings it back here.
    pub async fn put_record<M: NetabaseModel>(&self, record: M) -> Result<Published, NodeError> {
        self.put_record_with(record, None).await
    }

    /// Hands a record of a model under `write = "owner"` to the peer that
    /// signed `acceptance` (from [`accept_ownership`](Self::accept_ownership)
    /// on its node): `record` names that peer as its owner, and is written
    /// and published like [`put_record`](Self::put_record). From then on only
    /// the new owner writes it. A plain `put_record` naming another owner is
    /// refused ([`Refusal::NotAccepted`](crate::rules::Refusal::NotAccepted)):
    /// nobody is made the owner of a record it did not accept.
    ///
    /// # Errors
    ///
    /// As [`put_record`](Self::put_record); [`NodeError::NotAllowed`] if this
    /// node does not own the record, or `acceptance` is not the named
    /// owner's, for this key, from this node, at the record's current
    /// handover count (an acceptance serves one handover).
    pub async fn hand_over<M: NetabaseModel>(
        &self,
        record: M,
        acceptance: crate::rules::Acceptance,
    ) -> Result<Published, NodeError> {
        self.put_record_with(record, Some(acceptance)).await
    }

    /// This node's acceptance of the record of `M` under `key` from its
    /// current owner, for that owner's [`hand_over`](Self::hand_over): send
    /// it there (`Acceptance::to_bytes`). The record is looked up like
    /// [`get_record`](Self::get_record) (local, else from peers), since the
    /// acceptance names its current owner and handover count.
    ///
    /// # Errors
    ///
    /// As [`get_record`](Self::get_record); [`NodeError::NotAllowed`] if the
    /// record names no owner (its model is not under `write = "owner"`).
    pub async fn accept_ownership<M: NetabaseModel>(
        &self,
        key: M::Key,
    ) -> Result<crate::rules::Acceptance, NodeError> {
        use crate::rules::{chain_of, Acceptance, Refusal};
        // The version found, not the cache: a fetched copy is kept in the
        // background and may not be held yet.
        let held = self
            .network
            .find_envelope::<M>(&self.replica, &key)
            .await?
            .ok_or(NodeError::NotFound)?;
        let key_bytes = key.to_key_bytes();
        let refused = |refusal| NodeError::NotAllowed {
            model: M::NAME,
            refusal,
        };
        let record = open_record::<M>(&held)?;
        let chain =
            chain_of(&registry::entry(&held, Some(&record))).ok_or(refused(Refusal::NotOwner))?;
        Acceptance::sign(
            &self.replica.keypair,
            M::ID,
            key_bytes.as_slice(),
            chain.owner(),
            chain.transfers(),
        )
        .map_err(refused)
    }

    async fn put_record_with<M: NetabaseModel>(
        &self,
        record: M,
        consent: Option<crate::rules::Acceptance>,
    ) -> Result<Published, NodeError> {
        self.check_registered::<M>()?;
        let shared = self.replica.clone();
        let (staged_tx, staged) = oneshot::channel();
        let commit = platform::blocking(move || {
            let envelope = seal(
                &shared,
                &record.key(),
                Some(&record),
                consent.as_ref(),
                None,
            )?;
            check_size(&shared, &envelope, M::NAME)?;
            apply::apply_staged(&shared, &envelope, || {
                let _ = staged_tx.send(envelope.clone());
            })
            .map(|_| envelope.version())
            .map_err(refused_error)
        });
        let Ok(envelope) = staged.await else {
            // Refused before the commit, or already held exactly: nothing
            // to publish.
            let version = commit.await.map_err(NodeError::Task)??;
            return Ok(Published {
                version,
                replicated: false,
            });
        };
        let (published, committed) = tokio::join!(self.network.publish(&envelope), commit);
        let version = committed.map_err(NodeError::Task)??;
        Ok(Published {
            version,
            replicated: published?,
        })
    }

    /// Deletes the record of `M` with this primary key: commits a signed
    /// delete (a tombstone) locally, removing the record and its index
    /// entries, then publishes it so peers delete it too. A tombstone loses to
    /// a strictly newer put and beats older ones, like any version.
    ///
    /// Returns whether this node held the record. A delete is written and
    /// published even when it did not (the record may exist on peers this
    /// node has not caught up with), unless the node already holds a delete
    /// of it: then nothing is written and `false` is returned.
    ///
    /// # Errors
    ///
    /// As [`put_record`](Self::put_record).
    pub async fn remove_record<M: NetabaseModel>(&self, key: M::Key) -> Result<bool, NodeError> {
        let record_key = codec::record_key(M::ID, key.to_key_bytes().as_slice());
        let shared = self.replica.clone();
        let held = self
            .blocking(move || Ok(shared.held(&record_key)?))
            .await?
            .map(|c| !c.tombstone);
        if held == Some(false) {
            self.check_registered::<M>()?;
            return Ok(false);
        }
        let envelope = self.remove_record_locally::<M>(key).await?;
        self.network.publish(&envelope).await?;
        Ok(held.unwrap_or(false))
    }

    /// Deletes the record of `M` with this primary key locally only (a
    /// signed tombstone, as [`remove_record`](Self::remove_record) commits);
    /// peers learn of it through catch-up and republication. Works with the
    /// swarm stopped. Returns the signed tombstone.
    ///
    /// # Errors
    ///
    /// [`NodeError::NotRegistered`], or a store error (nothing written).
    pub async fn remove_record_locally<M: NetabaseModel>(
        &self,
        key: M::Key,
    ) -> Result<Envelope, NodeError> {
        self.check_registered::<M>()?;
        let shared = self.replica.clone();
        self.blocking(move || {
            let envelope = seal::<M>(&shared, &key, None, None, None)?;
            commit_local(&shared, &envelope, M::NAME)?;
            Ok(envelope)
        })
        .await
    }

    /// Commits `record` locally only; it reaches peers when they fetch it or
    /// when this node republishes. Returns the signed envelope.
    ///
    /// # Errors
    ///
    /// [`NodeError::NotRegistered`], [`NodeError::RecordTooLarge`] (nothing
    /// written), or a store error (nothing written).
    pub async fn put_record_locally<M: NetabaseModel>(
        &self,
        record: M,
    ) -> Result<Envelope, NodeError> {
        self.check_registered::<M>()?;
        let shared = self.replica.clone();
        self.blocking(move || {
            let envelope = seal(&shared, &record.key(), Some(&record), None, None)?;
            commit_local(&shared, &envelope, M::NAME)?;
            Ok(envelope)
        })
        .await
    }

    /// Commits many records locally in one transaction (one fsync), in the
    /// order given (so a record may take a unique value another record of
    /// the batch gives up before it); peers get them through catch-up,
    /// fetches and republication. The model's write rule judges each record
    /// against the one before it: the version held, or the batch's own
    /// earlier version of that key. Returns how many records the batch
    /// stored: a key written twice counts once, and its last version is the
    /// one held.
    ///
    /// # Errors
    ///
    /// [`NodeError::NotRegistered`], [`NodeError::RecordTooLarge`] for the
    /// first record over the limit, [`NodeError::NotAllowed`] if any step
    /// breaks the write rule, or a store error such as
    /// [`StoreError::UniqueViolation`](crate::StoreError::UniqueViolation)
    /// (two records, or a record and a stored one, sharing a unique value):
    /// in every case nothing is written.
    pub async fn put_records_locally<M: NetabaseModel>(
        &self,
        records: Vec<M>,
    ) -> Result<usize, NodeError> {
        self.check_registered::<M>()?;
        let shared = self.replica.clone();
        self.blocking(move || {
            // A key written twice in the batch: its later version is stamped
            // after the earlier one, even when both follow a held version
            // from a clock that runs ahead of ours.
            let mut stamped = std::collections::HashMap::new();
            let envelopes = records
                .iter()
                .map(|record| {
                    let key = record.key();
                    let before = stamped.get(&key).copied();
                    let envelope = seal(&shared, &key, Some(record), None, before)?;
                    check_size(&shared, &envelope, M::NAME)?;
                    stamped.insert(key, envelope.version().timestamp);
                    Ok(envelope)
                })
                .collect::<Result<Vec<_>, NodeError>>()?;
            apply::apply_batch(&shared, &envelopes, Origin::Local).map(|stored| stored.len())
        })
        .await
    }

    /// The record of model `M` with this primary key: the local copy if there
    /// is one, else fetched from the network. Every copy peers return is
    /// validated; the newest of those in by
    /// [`read_grace`](NetabaseConfig::read_grace) after the first valid one
    /// is returned and stored locally. Later answers are handled in the
    /// background: a newer copy is stored too, so a slow peer never holds up
    /// the answer.
    ///
    /// # Errors
    ///
    /// [`NodeError::NotFound`] if nobody has it, [`NodeError::NotRunning`] if
    /// it is not local and the swarm is stopped.
    pub async fn get_record<M: NetabaseModel>(&self, key: M::Key) -> Result<M, NodeError> {
        match self.network.find_envelope::<M>(&self.replica, &key).await? {
            Some(envelope) => open_record::<M>(&envelope),
            None => {
                // Records written straight into `store()` are local but unsigned.
                let store = self.replica.store.clone();
                self.blocking(move || store.tree::<M>().get(&key)?.ok_or(NodeError::NotFound))
                    .await
            }
        }
    }

    /// The records of `M` whose secondary index holds a value, from this
    /// node and from peers: `query_remote::<User>(UserSecondaryKey::Age(UserAgeKey(30)), 100)`.
    /// For records outside this node's [subscriptions](Self::subscribe), as
    /// `get_record` is for one key.
    ///
    /// Up to four connected peers are asked (on `/netabase/query/1.0.0`;
    /// peers that do not speak it are skipped); each answers with at most
    /// `limit` (and [`MAX_QUERY_RESULTS`](super::MAX_QUERY_RESULTS), 256)
    /// records in at most 1 MiB. The call returns once every peer asked
    /// has answered, or `read_grace` after the first answer, or after
    /// `query_timeout`. Every record is checked as any record from a peer
    /// is, and against the query; per key the newest version returned
    /// wins. Peers answer from their indexes, so a record they moved to
    /// another value (or deleted) is not returned by them; a version this
    /// node holds still answers until it catches up. Records from peers are kept as
    /// `get_record` keeps them: stored if subscribed to, else in memory
    /// for `remote_copy_ttl`. Results are in primary-key order, at most
    /// `limit` of them: with many matches, which ones is up to the peers
    /// (each answers with the first in key order).
    ///
    /// # Errors
    ///
    /// [`NodeError::NotRegistered`] if `M` is not registered; a store
    /// error if this node's store fails. With the swarm stopped it answers
    /// from this node's store.
    pub async fn query_remote<M: NetabaseModel>(
        &self,
        key: M::SecondaryKey,
        limit: usize,
    ) -> Result<Vec<M>, NodeError> {
        self.network
            .query_remote::<M>(&self.replica, key, limit)
            .await
    }

    /// Runs a typed query on the local tree of `M` in a read snapshot, off
    /// the async runtime: `|tree| tree.by_email("a@b.c")`, `|tree| tree.iter()?.collect()`.
    ///
    /// # Errors
    ///
    /// Whatever the query returns, or a store error.
    pub async fn query_local_records<M, T, F>(&self, query: F) -> Result<T, NodeError>
    where
        M: NetabaseModel,
        T: Send + 'static,
        F: FnOnce(&ReadTree<'_, M>) -> Result<T, crate::StoreError> + Send + 'static,
    {
        let store = self.replica.store.clone();
        self.blocking(move || {
            let txn = store.begin_read()?;
            let tree = txn.open_tree::<M>()?;
            Ok(query(&tree)?)
        })
        .await
    }

    /// Records of `M` this node holds but keeps out of its typed tree,
    /// because each claims a unique value an earlier record (by version)
    /// holds: two peers wrote the same value before they met. Every peer
    /// settles such a conflict the same way; each record listed here was
    /// announced with [`Event::UniqueConflict`]. Resolve one by updating or
    /// deleting either record: a listed record takes its value as soon as it
    /// is free.
    ///
    /// # Errors
    ///
    /// A store error if the database fails.
    pub async fn unique_conflicts<M: NetabaseModel>(&self) -> Result<Vec<M>, NodeError> {
        self.check_registered::<M>()?;
        let store = self.replica.store.clone();
        self.blocking(move || {
            let txn = store.begin_read()?;
            let mut out = Vec::new();
            for key in txn.conflicts(&M::ID.0.to_be_bytes(), usize::MAX)? {
                let Some(bytes) = txn.envelope(&key)? else {
                    continue;
                };
                if let Ok(Some(record)) =
                    Envelope::from_trusted_bytes(&bytes).and_then(|e| e.open::<M>())
                {
                    out.push(record);
                }
            }
            Ok(out)
        })
        .await
    }

    /// Grants `member` a membership of `M` (a model under the members
    /// rule) from now on: a [`Membership`](crate::rules::Membership) record
    /// signed by this node, which `config.admins` must name an admin of
    /// `M`, published like any write. A member revoked before gets a new
    /// period; its writes from earlier periods stay valid.
    ///
    /// # Errors
    ///
    /// [`NodeError::NotAllowed`] if this node is not an admin of `M`; as
    /// [`put_record`](Self::put_record) otherwise.
    pub async fn grant<M: NetabaseModel>(&self, member: PeerId) -> Result<Published, NodeError> {
        self.change_membership::<M>(member, true).await
    }

    /// Revokes `member`'s membership of `M` from now on: its writes
    /// stamped from now are refused by every peer, and peers that accepted
    /// some before they learned of the revocation drop them; its earlier
    /// writes stay.
    ///
    /// # Errors
    ///
    /// As [`grant`](Self::grant).
    pub async fn revoke<M: NetabaseModel>(&self, member: PeerId) -> Result<Published, NodeError> {
        self.change_membership::<M>(member, false).await
    }

    /// The peers whose membership of `M` is open now, as this node knows.
    /// Reads the memberships of `M` from the store (a blocking call, like
    /// the store's own reads).
    ///
    /// # Errors
    ///
    /// A store error if the database cannot be read.
    pub fn members<M: NetabaseModel>(&self) -> Result<Vec<PeerId>, NodeError> {
        let prefix = M::ID.0.to_be_bytes();
        let memberships = codec::record_key(<crate::rules::Membership as NetabaseModel>::ID, &[]);
        let mut out = Vec::new();
        self.replica
            .store
            .begin_read()?
            .for_each_envelope_with_prefix(&memberships, |_, bytes| {
                let membership = Envelope::from_trusted_bytes(bytes)
                    .ok()
                    .and_then(|e| e.open::<crate::rules::Membership>().ok().flatten());
                if let Some(m) = membership.filter(|m| m.id.starts_with(&prefix) && m.is_open()) {
                    out.push(m.member);
                }
            })?;
        out.sort();
        out.dedup();
        Ok(out)
    }

    async fn change_membership<M: NetabaseModel>(
        &self,
        member: PeerId,
        open: bool,
    ) -> Result<Published, NodeError> {
        self.check_registered::<M>()?;
        let now = self.replica.clock.now().0;
        let shared = self.replica.clone();
        let mut periods = self
            .blocking(move || Ok(members::membership(&shared, M::ID, &member)))
            .await?
            .map(|m| m.periods)
            .unwrap_or_default();
        match (periods.last_mut(), open) {
            (Some((_, until @ None)), false) => *until = Some(now),
            (Some((_, None)), true) | (None, false) | (Some((_, Some(_))), false) => {}
            (_, true) => periods.push((now, None)),
        }
        self.put_record(crate::rules::Membership {
            id: crate::rules::Membership::id(M::ID, &member),
            model: M::ID.0,
            member,
            periods,
        })
        .await
    }

    /// The version of the record (or delete) this node holds for `key`, if
    /// any: the pair the conflict rule compares. From the node's cache, else
    /// one read of its store (a blocking call, like the store's own reads);
    /// `None` too if the store cannot be read.
    pub fn record_version<M: NetabaseModel>(&self, key: &M::Key) -> Option<Version> {
        let record_key = codec::record_key(M::ID, key.to_key_bytes().as_slice());
        self.replica
            .held(&record_key)
            .ok()
            .flatten()
            .map(|c| c.version)
    }

    /// Every change to the records of `M` from now on, typed: key, record
    /// (`None` for a delete), version and origin, whichever way it came
    /// (a local write, a peer's push, catch-up, a fetched copy, a record a
    /// returning peer showed was deleted, a delete collected past the
    /// horizon, sent as that delete once more). The record is decoded once for
    /// every watcher. A watcher more than 4,096 changes behind is told how
    /// many it missed (see [`NodeChanges::next`]). For a set that stays
    /// current, see the store's live queries (`store().watch_by_..`).
    ///
    /// # Errors
    ///
    /// [`NodeError::NotRegistered`] if `M` is not registered.
    pub fn watch<M: NetabaseModel>(&self) -> Result<NodeChanges<M>, NodeError> {
        let registry = self
            .replica
            .registry
            .read()
            .unwrap_or_else(|e| e.into_inner());
        if !registry.is_registered::<M>() {
            return Err(NodeError::NotRegistered { model: M::NAME });
        }
        registry
            .watch::<M>()
            .map(NodeChanges::new)
            .ok_or(NodeError::NotRegistered { model: M::NAME })
    }

    /// A stream of every change to this node's records, local or remote, and
    /// of peers connecting and disconnecting. A subscriber that falls more
    /// than 4096 events behind gets `RecvError::Lagged` and skips ahead.
    pub fn subscribe_to_broadcasts(&self) -> broadcast::Receiver<Event> {
        self.replica.events.subscribe()
    }

    fn check_registered<M: NetabaseModel>(&self) -> Result<(), NodeError> {
        self.replica.check_registered::<M>()
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, NodeError> + Send + 'static,
    ) -> Result<T, NodeError> {
        // The call holds the node's state while it runs, so `shutdown`
        // waits for it before closing the store: a call made before
        // `shutdown` never meets a closed store.
        let shared = self.replica.clone();
        platform::blocking(move || {
            let _running = shared;
            f()
        })
        .await
        .map_err(NodeError::Task)?
    }
}
