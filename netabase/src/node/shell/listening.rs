//! Where the swarm listens, as its task learns it, and the peer id an
//! address names.

use std::sync::Mutex;

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::Notify;

/// The addresses the swarm listens on, as its task learns them.
#[derive(Default)]
pub(crate) struct Listening {
    addresses: Mutex<Vec<Multiaddr>>,
    changed: Notify,
}

impl Listening {
    /// The addresses now.
    pub(crate) fn addresses(&self) -> Vec<Multiaddr> {
        self.lock().clone()
    }

    /// The swarm listens on `address` too.
    pub(crate) fn add(&self, address: Multiaddr) {
        self.lock().push(address);
        self.changed.notify_waiters();
    }

    /// Completes when an address is added.
    pub(crate) fn added(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    /// The swarm stopped: it listens nowhere.
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Multiaddr>> {
        self.addresses.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The peer id at the end of a `/p2p/<id>` address: the last one, the
/// target of an address through a relay (`/p2p/<relay>/p2p-circuit/p2p/<id>`).
pub(crate) fn peer_of(address: &Multiaddr) -> Option<PeerId> {
    address
        .iter()
        .filter_map(|p| match p {
            Protocol::P2p(peer) => Some(peer),
            _ => None,
        })
        .last()
}
