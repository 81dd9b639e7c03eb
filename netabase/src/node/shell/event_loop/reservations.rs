//! The slots this node holds on relays (`NetabaseConfig::relays`): one
//! listener each, reserved again after a backoff when it closes.

use std::time::Duration;

use libp2p::core::transport::ListenerId;
use libp2p::Multiaddr;

use crate::node::platform::Instant;

/// The first wait before reserving a lost slot again; it doubles up to
/// [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(60);

#[derive(Default)]
pub(super) struct Reservations {
    /// Each relay's circuit address (`<relay>/p2p-circuit`), its listener
    /// while one is open, and when to try again otherwise.
    relays: Vec<Slot>,
}

struct Slot {
    circuit: Multiaddr,
    listener: Option<ListenerId>,
    retry_at: Instant,
    backoff: Duration,
}

impl Reservations {
    /// Keeps a slot on the relay at `circuit`, to be reserved now.
    pub(super) fn add(&mut self, circuit: Multiaddr, now: Instant) {
        self.relays.push(Slot {
            circuit,
            listener: None,
            retry_at: now,
            backoff: FIRST_RETRY,
        });
    }

    /// The circuits to listen on now.
    pub(super) fn due(&self, now: Instant) -> Vec<Multiaddr> {
        self.relays
            .iter()
            .filter(|slot| slot.listener.is_none() && slot.retry_at <= now)
            .map(|slot| slot.circuit.clone())
            .collect()
    }

    /// A listener was opened for `circuit`.
    pub(super) fn listening(&mut self, circuit: &Multiaddr, listener: ListenerId) {
        if let Some(slot) = self.relays.iter_mut().find(|s| s.circuit == *circuit) {
            slot.listener = Some(listener);
        }
    }

    /// Listening on `circuit` could not start: try again later.
    pub(super) fn not_started(&mut self, circuit: &Multiaddr, now: Instant) {
        if let Some(slot) = self.relays.iter_mut().find(|s| s.circuit == *circuit) {
            slot.retry_at = now + slot.backoff;
            slot.backoff = (slot.backoff * 2).min(MAX_RETRY);
        }
    }

    /// A relay accepted the slot: the next loss is retried soon again.
    pub(super) fn reserved(&mut self, listener_of: impl Fn(&Multiaddr) -> bool) {
        for slot in self.relays.iter_mut().filter(|s| listener_of(&s.circuit)) {
            slot.backoff = FIRST_RETRY;
        }
    }

    /// The listener closed (the slot was refused or lost): the circuit it
    /// was for, now waiting for its retry.
    pub(super) fn closed(&mut self, listener: ListenerId, now: Instant) -> Option<Multiaddr> {
        let slot = self
            .relays
            .iter_mut()
            .find(|s| s.listener == Some(listener))?;
        slot.listener = None;
        slot.retry_at = now + slot.backoff;
        slot.backoff = (slot.backoff * 2).min(MAX_RETRY);
        Some(slot.circuit.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_slot_is_retried_with_a_growing_backoff() {
        let mut slots = Reservations::default();
        let now = Instant::now();
        let circuit: Multiaddr = "/ip4/10.0.0.1/tcp/4001/p2p/12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq/p2p-circuit"
            .parse()
            .unwrap();
        slots.add(circuit.clone(), now);
        assert_eq!(slots.due(now), vec![circuit.clone()]);
        let listener = ListenerId::next();
        slots.listening(&circuit, listener);
        assert!(slots.due(now).is_empty());
        assert_eq!(slots.closed(listener, now), Some(circuit.clone()));
        assert!(slots.due(now).is_empty());
        assert_eq!(slots.due(now + FIRST_RETRY), vec![circuit.clone()]);
        let second = ListenerId::next();
        slots.listening(&circuit, second);
        slots.closed(second, now);
        assert!(slots.due(now + FIRST_RETRY).is_empty());
        assert_eq!(slots.due(now + 2 * FIRST_RETRY), vec![circuit]);
    }
}
