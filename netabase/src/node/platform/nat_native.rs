//! Native NAT traversal beyond the relay client (which both platforms
//! have): a relay server when configured, DCUtR hole punching and AutoNAT.

use std::time::Duration;

use libp2p::{autonat, dcutr, relay, PeerId};

use crate::node::replica::event::Reachability;
use crate::node::shell::nat::Notice;
use crate::node::RelayLimits;

/// Whether this node can hole punch, so a peer first reached through a
/// relay is worth waiting for before catching up (see the event loop).
pub(crate) const HOLE_PUNCHING: bool = true;
pub(crate) type RelayServer = relay::Behaviour;
pub(crate) type Dcutr = dcutr::Behaviour;
pub(crate) type Autonat = autonat::Behaviour;

/// A relay within `limits`. Its rate limits are off: the limits on slots
/// and circuits bound it, and peers behind one NAT share an address.
pub(crate) fn relay_server(local: PeerId, limits: &RelayLimits) -> RelayServer {
    relay::Behaviour::new(
        local,
        relay::Config {
            max_reservations: limits.max_reservations,
            max_reservations_per_peer: 4,
            reservation_duration: limits.reservation_duration,
            reservation_rate_limiters: Vec::new(),
            max_circuits: limits.max_circuits,
            max_circuits_per_peer: limits.max_circuits_per_peer,
            max_circuit_duration: limits.max_circuit_duration,
            max_circuit_bytes: limits.max_circuit_bytes,
            circuit_src_rate_limiters: Vec::new(),
        },
    )
}

pub(crate) fn dcutr(local: PeerId) -> Dcutr {
    dcutr::Behaviour::new(local)
}

/// AutoNAT, asking connected peers to dial back. Private addresses count
/// (`only_global_ips` off): on a LAN, or between containers, what matters
/// is whether these peers reach the node.
pub(crate) fn autonat(local: PeerId) -> Autonat {
    autonat::Behaviour::new(
        local,
        autonat::Config {
            only_global_ips: false,
            boot_delay: Duration::from_secs(5),
            retry_interval: Duration::from_secs(60),
            throttle_server_period: Duration::from_secs(30),
            ..autonat::Config::default()
        },
    )
}

pub(crate) fn relay_server_notice(event: relay::Event) -> Option<Notice> {
    match event {
        relay::Event::ReservationReqAccepted { src_peer_id, .. } => {
            Some(Notice::ReservationAccepted { peer: src_peer_id })
        }
        _ => None,
    }
}

pub(crate) fn dcutr_notice(event: dcutr::Event) -> Notice {
    match event.result {
        Ok(_) => Notice::HolePunched {
            peer: event.remote_peer_id,
        },
        Err(error) => Notice::HolePunchFailed {
            peer: event.remote_peer_id,
            reason: error.to_string(),
        },
    }
}

pub(crate) fn autonat_notice(event: autonat::Event) -> Option<Notice> {
    match event {
        autonat::Event::StatusChanged { new, .. } => Some(Notice::Reachability(match new {
            autonat::NatStatus::Public(_) => Reachability::Public,
            autonat::NatStatus::Private => Reachability::Private,
            autonat::NatStatus::Unknown => Reachability::Unknown,
        })),
        _ => None,
    }
}
