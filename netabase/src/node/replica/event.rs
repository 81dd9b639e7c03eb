//! What a node tells its subscribers: every change to its records, local or
//! remote, and peers coming and going.

use libp2p_identity::PeerId;

use crate::model::{ModelId, NetabaseModel};

/// Where a change came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// This node wrote it.
    Local,
    /// It arrived from this peer (the peer that sent it, which may differ
    /// from the writer who signed it).
    Peer(PeerId),
}

/// What happened to a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// Inserted or replaced.
    Put,
    /// Deleted.
    Delete,
}

/// Why a catch-up ended without completing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CatchUpFailure {
    /// The peer disconnected, or the swarm stopped, during the exchange.
    Disconnected,
    /// A request to the peer failed or timed out.
    RequestFailed,
    /// The peer broke the protocol: a malformed or oversized message, an
    /// answer of the wrong kind, or fetch answers it cut short. Counted in
    /// `stats().sync_messages_refused`; a peer that keeps doing it is
    /// disconnected and refused for a while.
    OffProtocol,
    /// The exchange went on for more messages than a catch-up may take; the
    /// next one resumes where it stopped.
    TooManyRounds,
    /// Some records could not be fetched or stored (or more differed than
    /// one catch-up fetches); the next catch-up resumes.
    Incomplete,
    /// The peer holds records stamped later than this node's clock accepts
    /// (`max_clock_drift` past its own time): this node's clock is behind, or
    /// the peer's records are from the future. They are not fetched; the
    /// catch-up is retried on its own once the earliest of them becomes
    /// acceptable, `retry_in_ms` from now.
    ClockBehind {
        /// How far ahead of this node's clock the earliest such record is.
        ahead_ms: u64,
        /// When the catch-up is retried.
        retry_in_ms: u64,
    },
}

/// How one peer's catch-up ended, as
/// [`Netabase::catch_up_and_wait`](crate::node::Netabase::catch_up_and_wait) reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CatchUpOutcome {
    /// It completed, as [`Event::CaughtUp`] says.
    CaughtUp {
        /// Records received and stored.
        received: u64,
        /// Records the peer holds that this node did not take.
        refused: u64,
    },
    /// It ended without completing, as [`Event::CatchUpFailed`] says.
    Failed(CatchUpFailure),
    /// None started: catch-up is off in the config, the store is failing
    /// (see [`Event::StorageFailed`]), or the peer is refused for breaking
    /// the protocol.
    NotStarted,
}

/// One event on [`Netabase::subscribe_to_broadcasts`](crate::node::Netabase::subscribe_to_broadcasts).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A record changed in the local store.
    Record {
        /// The model's name.
        model: &'static str,
        /// The model's id.
        model_id: ModelId,
        /// The record's encoded primary key.
        key: Vec<u8>,
        /// Put or delete.
        kind: ChangeKind,
        /// Local or from a peer.
        origin: Origin,
        /// Who signed the change.
        writer: PeerId,
    },
    /// A synced record claims a unique value that an earlier record (by
    /// version) holds. It is kept, so every peer holds the same records, but
    /// out of its typed tree and its indexes; list such records with
    /// [`Netabase::unique_conflicts`](crate::node::Netabase::unique_conflicts). If
    /// the earlier record lets go of the value, this one takes it (an
    /// [`Event::Record`]). Every peer settles a conflict the same way.
    UniqueConflict {
        /// The model's name.
        model: &'static str,
        /// The model's id.
        model_id: ModelId,
        /// The record's encoded primary key.
        key: Vec<u8>,
        /// Who signed it.
        writer: PeerId,
    },
    /// Records of a model written at a version newer than this build knows
    /// arrived (peers run a newer release of the app). They are held as
    /// signed, without a typed row or index entries, and served to peers;
    /// they replace the older versions they follow, which leave the typed
    /// tree. When the app registers a version that reads them, they enter
    /// the typed tree. Also counted in `stats().newer_version_held`.
    NewerVersionHeld {
        /// The model's name.
        model: &'static str,
        /// The model's id.
        model_id: ModelId,
        /// Records of this model held at a newer version now.
        held: u64,
    },
    /// Progress of catching up with a peer, for one model: records of it
    /// received and stored so far in this exchange, and keys still to fetch.
    CatchUp {
        /// The peer records come from.
        peer: PeerId,
        /// The model's name.
        model: &'static str,
        /// Records of this model received and stored so far.
        received: u64,
        /// Keys of this model still to fetch from it, or fetched and not
        /// yet stored: a progress bar of `received / (received +
        /// outstanding)` reaches the end only when the records are stored.
        /// Keys reconciliation has not named yet are not counted, so the
        /// sum may grow as a large catch-up goes on.
        outstanding: usize,
    },
    /// A catch-up this node started with a peer is complete: the two record
    /// sets were compared to the end and everything missing here was fetched
    /// (or refused). Sent after every exchange, even one that found nothing.
    CaughtUp {
        /// The peer.
        peer: PeerId,
        /// Records received and stored during the exchange.
        received: u64,
        /// Records the peer holds that this node did not take: refused on
        /// arrival (invalid, over `max_record_bytes`; see
        /// [`NodeStats`](crate::node::NodeStats) for the reasons). Only the
        /// models registered here, and of each the key ranges this node
        /// [subscribes](crate::node::Subscription) to, are compared. With
        /// 0, both nodes now hold the same versions of every record there.
        refused: u64,
    },
    /// A catch-up this node started with a peer ended without completing.
    /// Records stored before it ended stay stored; the next catch-up (on
    /// connect, every `catch_up_interval`, or sooner where `reason` says so)
    /// fetches only what is still missing.
    CatchUpFailed {
        /// The peer.
        peer: PeerId,
        /// Why it ended.
        reason: CatchUpFailure,
    },
    /// The local store failed on I/O (a full disk, a lost device). Until
    /// [`Event::StorageRecovered`], local writes fail and the node takes no
    /// records from peers (it stops acknowledging them); reads still work.
    StorageFailed {
        /// The error and its whole chain of causes.
        error: String,
    },
    /// The store writes again after [`Event::StorageFailed`]: it was
    /// reopened, and the node catches up with its peers for what it missed.
    StorageRecovered,
    /// A connection to a peer was opened (its first one).
    PeerConnected(PeerId),
    /// The last connection to a peer closed.
    PeerDisconnected(PeerId),
    /// A connection to a peer was opened: through a relay, or direct
    /// (dialled, accepted, or made by hole punching).
    ConnectionOpened {
        /// The peer.
        peer: PeerId,
        /// Whether it runs through a relay.
        relayed: bool,
    },
    /// This node holds a slot on this relay (one of `relays`): peers
    /// reach it through the relay.
    RelayReserved {
        /// The relay.
        relay: PeerId,
    },
    /// A slot on this relay could not be reserved, or was lost; it is
    /// tried again.
    RelayReservationFailed {
        /// The relay.
        relay: PeerId,
        /// Why.
        reason: String,
    },
    /// This node, serving as a relay, gave this peer a slot.
    RelayReservationAccepted {
        /// The peer.
        peer: PeerId,
    },
    /// A relayed connection to this peer was upgraded to a direct one by
    /// hole punching.
    HolePunched {
        /// The peer.
        peer: PeerId,
    },
    /// Hole punching to this peer failed (after three attempts): the
    /// connection stays relayed.
    HolePunchFailed {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: String,
    },
    /// Whether peers can dial this node changed, as peers that tried to
    /// dial it back found.
    ReachabilityChanged(Reachability),
}

/// Whether peers can dial this node, as AutoNAT found: peers it is
/// connected to dial it back at the addresses it announces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reachability {
    /// Not known yet (no peer has tried, or the answers disagree).
    #[default]
    Unknown,
    /// Peers reached this node: it can be dialled.
    Public,
    /// Peers could not reach this node (behind NAT or a firewall): it needs
    /// a relay (`NetabaseConfig::relays`) to be reached.
    Private,
}

impl Event {
    /// The typed primary key of the record this event is about, if it is a
    /// [`Record`](Event::Record) or [`UniqueConflict`](Event::UniqueConflict)
    /// event of model `M` (`None` for other models and other events):
    /// `event.key::<User>()` gives `Some(UserKey(7))`.
    pub fn key<M: NetabaseModel>(&self) -> Option<M::Key> {
        match self {
            Event::Record { model_id, key, .. } | Event::UniqueConflict { model_id, key, .. }
                if *model_id == M::ID =>
            {
                M::key_from_bytes(key)
            }
            _ => None,
        }
    }
}
