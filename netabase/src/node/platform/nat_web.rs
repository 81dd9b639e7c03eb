//! A browser reserves slots on relays and dials peers through them (the
//! relay client, which both platforms have), over WebSocket. It cannot be
//! a relay, and it cannot hole punch (it opens no socket of its own), nor
//! be dialled back for AutoNAT: those behaviours are placeholders that do
//! nothing.

use std::convert::Infallible;

use libp2p::swarm::dummy;
use libp2p::PeerId;

use crate::node::shell::nat::Notice;
use crate::node::RelayLimits;

/// Whether this node can hole punch: a browser cannot, so a peer reached
/// through a relay is caught up with at once.
pub(crate) const HOLE_PUNCHING: bool = false;

pub(crate) type RelayServer = dummy::Behaviour;
pub(crate) type Dcutr = dummy::Behaviour;
pub(crate) type Autonat = dummy::Behaviour;

pub(crate) fn relay_server(_local: PeerId, _limits: &RelayLimits) -> RelayServer {
    dummy::Behaviour
}

pub(crate) fn dcutr(_local: PeerId) -> Dcutr {
    dummy::Behaviour
}

pub(crate) fn autonat(_local: PeerId) -> Autonat {
    dummy::Behaviour
}

pub(crate) fn relay_server_notice(event: Infallible) -> Option<Notice> {
    match event {}
}

pub(crate) fn dcutr_notice(event: Infallible) -> Notice {
    match event {}
}

pub(crate) fn autonat_notice(event: Infallible) -> Option<Notice> {
    match event {}
}
