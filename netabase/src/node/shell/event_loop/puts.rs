//! `put_record`'s network path. The record goes to the peers closest to
//! its key among those this node knows (connected, or in the routing
//! table: those are dialled), each in a query of its own, so every peer's
//! answer is seen as it comes: the caller returns once its quorum is met
//! (or, with `WriteQuorum::Available`, once the peers it waits for have
//! answered or a grace period has passed), and a frozen peer never sets
//! the time of a write. Peers that let a request time out lately are sent
//! the record but not waited for ([`slow`](super::slow)).
//!
//! When the node knows as many peers as Kademlia's replication factor, the
//! closest it knows may not be the closest there are: a Kademlia put (its
//! lookup, then the closest peers it finds) also runs, in the background.

use std::collections::HashMap;

use libp2p::kad::QueryId;
use libp2p::PeerId;
use tokio::sync::mpsc;

/// What a put tells its caller, as it happens. The channel closes when
/// every peer asked has answered or failed.
#[derive(Debug)]
pub(crate) enum PutAnswer {
    /// The peers asked that the caller waits for (the others are slow).
    Asked(Vec<PeerId>),
    /// This peer stored the record.
    Stored(PeerId),
    /// This peer refused it, could not be reached, or did not answer in
    /// time.
    Failed(PeerId),
}

/// Where a put sends its answers.
pub(crate) type PutsSender = mpsc::UnboundedSender<PutAnswer>;

/// The puts' queries in flight, one a peer.
#[derive(Default)]
pub(super) struct Puts {
    pub(super) queries: HashMap<QueryId, (PeerId, PutsSender)>,
}
