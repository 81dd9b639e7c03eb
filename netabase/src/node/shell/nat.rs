//! What the relay, hole-punching and AutoNAT behaviours report, in the
//! loop's own terms. The relay client runs on every platform; the relay
//! server, hole punching and AutoNAT natively only (see the platform
//! module).

use libp2p::{relay, PeerId};

use crate::node::replica::event::Reachability;

/// The relay client, on every platform: both natively and in a browser.
pub(crate) type RelayClient = relay::client::Behaviour;

/// What the relay client reported, if the loop acts on it.
pub(crate) fn relay_client_notice(event: relay::client::Event) -> Option<Notice> {
    match event {
        relay::client::Event::ReservationReqAccepted { relay_peer_id, .. } => {
            Some(Notice::Reserved {
                relay: relay_peer_id,
            })
        }
        _ => None,
    }
}

/// One thing a NAT traversal behaviour reported.
#[derive(Debug)]
// A browser has only the relay client: the other notices are not built there.
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
