//! The loop's side of NAT traversal: slots on the configured relays (kept,
//! and reserved again when lost), the addresses a relay announces, and
//! what the relay, hole-punching and AutoNAT behaviours report.

use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::oneshot;

use super::EventLoop;
use crate::node::platform;
use crate::node::replica::event::Event;
use crate::node::replica::stats::Counters;
use crate::node::shell::listening::peer_of;
use crate::node::shell::nat::Notice;
use crate::node::NodeError;

impl EventLoop {
    /// At start: the configured external addresses are announced, and a
    /// slot is kept on every configured relay.
    pub(super) fn start_nat(&mut self) {
        for address in self.config.external_addresses.clone() {
            self.swarm.add_external_address(address);
        }
        // The relay reaches the routing table through Identify once the
        // reservation has connected: added now, Kademlia would dial it a
        // second time, and that connection, from another port, would give
        // hole punching a wrong address to try.
        let now = platform::Instant::now();
        for relay in self.config.relays.clone() {
            self.reservations.add(relay.with(Protocol::P2pCircuit), now);
        }
    }

    /// Listens on every relay circuit due: reserving a slot there. Not
    /// before this node listens itself: its connection to the relay then
    /// leaves from its listening port, which is what hole punching needs
    /// the relay to see.
    pub(super) fn reserve_due(&mut self) {
        if !self.config.listen_addresses.is_empty() && self.listening.addresses().is_empty() {
            return;
        }
        let now = platform::Instant::now();
        for circuit in self.reservations.due(now) {
            match self.swarm.listen_on(circuit.clone()) {
                Ok(listener) => self.reservations.listening(&circuit, listener),
                Err(error) => {
                    tracing::warn!(%circuit, %error, "could not reserve a slot on a relay");
                    self.reservations.not_started(&circuit, now);
                }
            }
        }
    }

    /// A listener closed: if it held a relay slot, that is retried later.
    pub(super) fn listener_closed(&mut self, listener: ListenerId, reason: String) {
        if let Some(circuit) = self.reservations.closed(listener, platform::Instant::now()) {
            tracing::info!(%circuit, %reason, "lost or refused a relay slot; trying again later");
            if let Some(relay) = peer_of(&circuit) {
                let _ = self
                    .shared
                    .events
                    .send(Event::RelayReservationFailed { relay, reason });
            }
        }
    }

    /// A new listen address: a relay with no configured external address
    /// announces the addresses it listens on (a reservation carries only
    /// announced ones, and a slot without an address is refused).
    pub(super) fn announce_if_relay(&mut self, address: &Multiaddr) {
        let relayed = address.iter().any(|p| p == Protocol::P2pCircuit);
        if self.config.relay.is_some() && self.config.external_addresses.is_empty() && !relayed {
            self.swarm.add_external_address(address.clone());
        }
    }

    /// Dials `peer` (its `/p2p/<id>` is `address`) at the addresses the
    /// routing table has for it, looking them up first if it has none (a
    /// peer behind NAT is found at its relay slot).
    pub(super) fn dial_by_id(
        &mut self,
        peer: PeerId,
        address: Multiaddr,
        reply: oneshot::Sender<Result<PeerId, NodeError>>,
    ) {
        let known = self
            .swarm
            .behaviour_mut()
            .kad
            .kbucket(peer)
            .is_some_and(|bucket| {
                bucket
                    .iter()
                    .any(|entry| *entry.node.key.preimage() == peer)
            });
        if known {
            self.looked_up(address, reply);
        } else {
            let query = self.swarm.behaviour_mut().kad.get_closest_peers(peer);
            self.lookups.insert(query, (address, reply));
        }
    }

    /// Dials the peer of `address` (`/p2p/<id>`) at what the routing table
    /// now knows.
    pub(super) fn looked_up(
        &mut self,
        address: Multiaddr,
        reply: oneshot::Sender<Result<PeerId, NodeError>>,
    ) {
        let Some(peer) = peer_of(&address) else {
            return;
        };
        let opts = DialOpts::peer_id(peer)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        let connection = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => {
                self.dials.insert(connection, (address, reply));
            }
            Err(error) => {
                let _ = reply.send(Err(NodeError::Dial {
                    address,
                    reason: format!("no address known for this peer, nor found ({error})"),
                }));
            }
        }
    }

    /// A connection to `peer` opened: a relayed one is remembered, and a
    /// direct one closes the relayed ones (the path through the relay is
    /// no longer needed, and its bandwidth is the relay operator's).
    pub(super) fn track_path(&mut self, peer: PeerId, connection: ConnectionId, relayed: bool) {
        if relayed {
            self.relayed.entry(peer).or_default().push(connection);
            return;
        }
        for relayed in self.relayed.remove(&peer).unwrap_or_default() {
            tracing::debug!(%peer, "a direct connection opened: closing the relayed one");
            self.swarm.close_connection(relayed);
        }
    }

    /// A connection to `peer` closed.
    pub(super) fn path_closed(&mut self, peer: PeerId, connection: ConnectionId) {
        if let Some(open) = self.relayed.get_mut(&peer) {
            open.retain(|c| *c != connection);
            if open.is_empty() {
                self.relayed.remove(&peer);
            }
        }
    }

    pub(super) fn on_nat(&mut self, notice: Notice) {
        let event = match notice {
            Notice::Reserved { relay } => {
                tracing::info!(%relay, "holding a slot on a relay");
                self.reservations
                    .reserved(|circuit| peer_of(circuit) == Some(relay));
                Event::RelayReserved { relay }
            }
            Notice::ReservationAccepted { peer } => {
                tracing::debug!(%peer, "gave a peer a relay slot");
                Event::RelayReservationAccepted { peer }
            }
            Notice::HolePunched { peer } => {
                tracing::info!(%peer, "hole punching made a relayed connection direct");
                Counters::bump(&self.shared.counters.hole_punches);
                Event::HolePunched { peer }
            }
            Notice::HolePunchFailed { peer, reason } => {
                tracing::info!(%peer, %reason, "hole punching failed; the connection stays relayed");
                Counters::bump(&self.shared.counters.hole_punch_failures);
                // Nothing left to wait for (a browser, a symmetric NAT):
                // the catch-up runs through the relay now.
                if self.relayed.contains_key(&peer) {
                    self.start_reconcile(peer);
                }
                Event::HolePunchFailed { peer, reason }
            }
            Notice::Reachability(reachability) => {
                tracing::info!(?reachability, "reachability changed");
                self.shared.counters.set_reachability(reachability);
                Event::ReachabilityChanged(reachability)
            }
        };
        let _ = self.shared.events.send(event);
    }
}
