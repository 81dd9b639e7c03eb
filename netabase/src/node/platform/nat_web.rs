//! A browser traverses no NAT itself yet: it dials native nodes over
//! WebSocket. The behaviours are placeholders that do nothing.

use std::convert::Infallible;

use libp2p::swarm::dummy;
use libp2p::PeerId;

use crate::node::shell::nat::Notice;
use crate::node::RelayLimits;

pub(crate) type RelayClient = dummy::Behaviour;
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

pub(crate) fn relay_client_notice(event: Infallible) -> Option<Notice> {
    match event {}
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
