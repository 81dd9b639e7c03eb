//! What the relay, hole-punching and AutoNAT behaviours report, in the
//! loop's own terms (the behaviours exist natively only: see the
//! platform module).

use libp2p::PeerId;

use crate::node::replica::event::Reachability;

/// One thing a NAT traversal behaviour reported.
#[derive(Debug)]
// A browser has none of these behaviours: nothing builds a notice there.
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) enum Notice {
    /// A relay gave this node a slot.
    Reserved { relay: PeerId },
    /// This node, as a relay, gave a peer a slot.
    ReservationAccepted { peer: PeerId },
    /// A relayed connection became direct.
    HolePunched { peer: PeerId },
    /// Hole punching failed; the connection stays relayed.
    HolePunchFailed { peer: PeerId, reason: String },
    /// AutoNAT's finding changed.
    Reachability(Reachability),
}
