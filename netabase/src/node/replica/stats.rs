//! Counters of what the node accepted and refused, per reason.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use super::event::Reachability;
use crate::codec::RejectReason;

/// Why an inbound record was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Rejection {
    /// Bigger than `max_record_bytes`.
    TooLarge,
    /// Not an envelope at all.
    Malformed,
    /// An envelope format this version does not read.
    UnsupportedFormat,
    /// The signature does not verify for the stated writer.
    BadSignature,
    /// A model this node has not registered.
    UnknownModel,
    /// The payload does not decode as the model.
    BadPayload,
    /// The key is not the record's own key.
    KeyMismatch,
    /// Not newer than the version already held.
    Stale,
    /// Timestamped further in the future than `max_clock_drift`.
    FromTheFuture,
    /// It would give a unique index value a second owner. Only local writes
    /// are refused for this; a synced record that loses a unique value is
    /// kept as a conflict (`stats().unique_conflicts`).
    UniqueConflict,
    /// The local store failed while applying it.
    StorageFailed,
    /// Too many records were being validated at once; this one was dropped.
    Overloaded,
    /// Older than this node's delete horizon, for a key it does not hold: it
    /// was deleted here and the delete since collected (see the
    /// [sync chapter](crate::guide::sync)).
    Expired,
    /// The model's write rule refuses it: not signed by the record's owner,
    /// a change to an immutable record, or a custom rule's refusal.
    NotAllowed,
    /// A peer answered a remote query with a record of another model, or
    /// one whose index does not hold the value asked for.
    OffQuery,
}

impl From<RejectReason> for Rejection {
    fn from(reason: RejectReason) -> Self {
        match reason {
            RejectReason::TooLarge => Rejection::TooLarge,
            RejectReason::Malformed => Rejection::Malformed,
            RejectReason::UnsupportedFormat => Rejection::UnsupportedFormat,
            RejectReason::BadSignature => Rejection::BadSignature,
            RejectReason::UnknownModel => Rejection::UnknownModel,
            RejectReason::BadPayload => Rejection::BadPayload,
            RejectReason::KeyMismatch => Rejection::KeyMismatch,
        }
    }
}

const ALL: [Rejection; 15] = [
    Rejection::TooLarge,
    Rejection::Malformed,
    Rejection::UnsupportedFormat,
    Rejection::BadSignature,
    Rejection::UnknownModel,
    Rejection::BadPayload,
    Rejection::KeyMismatch,
    Rejection::Stale,
    Rejection::FromTheFuture,
    Rejection::UniqueConflict,
    Rejection::StorageFailed,
    Rejection::Overloaded,
    Rejection::Expired,
    Rejection::NotAllowed,
    Rejection::OffQuery,
];

/// A snapshot of a node's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Inbound records validated and stored.
    pub accepted: u64,
    /// Inbound records that were valid and newer than the version held, but
    /// were replaced by a still newer version of the same record in the same
    /// commit (a peer updating one record faster than this node commits):
    /// each was judged by the write rule, none was stored or shown to
    /// watchers on its own. With `accepted` and `rejected`, this accounts
    /// for every record peers pushed or sent, except copies of a version
    /// this node already held.
    pub superseded: u64,
    /// Inbound records dropped, per reason (reasons never seen are absent).
    pub rejected: BTreeMap<Rejection, u64>,
    /// Deletes collected after the tombstone horizon.
    pub tombstones_collected: u64,
    /// Records dropped because a peer showed they were deleted while this
    /// node was away longer than the horizon.
    pub ghosts_dropped: u64,
    /// Catch-ups this node started that ended without completing
    /// ([`Event::CatchUpFailed`](crate::node::Event::CatchUpFailed)).
    pub catch_ups_failed: u64,
    /// Catch-up messages refused as malformed, oversized or off-protocol.
    pub sync_messages_refused: u64,
    /// Catch-up requests from peers dropped unanswered because that peer, or
    /// all peers together, already had as many in progress as allowed.
    pub sync_requests_dropped: u64,
    /// Peers disconnected and refused for a while for breaking the protocol.
    pub peers_banned: u64,
    /// How far ahead of this node's clock the records its last catch-ups
    /// could not accept yet were, in milliseconds; 0 when none are waiting.
    pub clock_behind_ms: u64,
    /// Synced records that lost a unique value to an earlier record and were
    /// kept out of their typed tree ([`Event::UniqueConflict`](crate::node::Event::UniqueConflict)).
    pub unique_conflicts: u64,
    /// Whether the store has failed on I/O and not yet been reopened: local
    /// writes fail and records from peers are refused meanwhile.
    pub storage_degraded: bool,
    /// Times the store failed on I/O ([`Event::StorageFailed`](crate::node::Event::StorageFailed)).
    pub storage_failures: u64,
    /// Times it was reopened and wrote again afterwards.
    pub storage_recoveries: u64,
    /// Relayed connections upgraded to direct ones by hole punching.
    pub hole_punches: u64,
    /// Hole punching attempts that failed (the connection stayed relayed).
    pub hole_punch_failures: u64,
    /// Records held at a version of their model newer than this build
    /// knows, written by peers on a newer release of the app: kept as
    /// signed, served to peers, and read into the typed tree when the app
    /// registers that version ([`Event::NewerVersionHeld`](crate::node::Event::NewerVersionHeld)).
    pub newer_version_held: u64,
    /// Whether peers can dial this node, as AutoNAT last found.
    pub reachability: super::event::Reachability,
    /// Bytes of catch-up messages this node sent (its own exchanges and its
    /// answers to peers'), length prefixes included, since it opened.
    pub sync_bytes_sent: u64,
    /// Bytes of catch-up messages it received, the same way.
    pub sync_bytes_received: u64,
}

impl NodeStats {
    /// Records dropped for `reason`.
    pub fn rejected(&self, reason: Rejection) -> u64 {
        self.rejected.get(&reason).copied().unwrap_or(0)
    }

    /// Records dropped for any reason.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    accepted: AtomicU64,
    rejected: [AtomicU64; ALL.len()],
    tombstones_collected: AtomicU64,
    ghosts_dropped: AtomicU64,
    pub(crate) catch_ups_failed: AtomicU64,
    pub(crate) sync_messages_refused: AtomicU64,
    pub(crate) sync_requests_dropped: AtomicU64,
    pub(crate) peers_banned: AtomicU64,
    pub(crate) clock_behind_ms: AtomicU64,
    pub(crate) storage_failures: AtomicU64,
    pub(crate) storage_recoveries: AtomicU64,
    pub(crate) unique_conflicts: AtomicU64,
    pub(crate) superseded: AtomicU64,
    pub(crate) hole_punches: AtomicU64,
    pub(crate) hole_punch_failures: AtomicU64,
    /// Records held at a newer version of their model than this build knows.
    pub(crate) newer_held: AtomicU64,
    reachability: std::sync::atomic::AtomicU8,
    /// Bytes of catch-up messages, counted by the protocol's codec.
    pub(crate) traffic: std::sync::Arc<Traffic>,
}

/// Bytes of catch-up messages sent and received (each with its length
/// prefix), both ways: this node's exchanges and its answers to peers'.
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    pub(crate) sent: AtomicU64,
    pub(crate) received: AtomicU64,
}

impl Counters {
    pub(crate) fn accept(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn reject(&self, reason: Rejection) {
        if let Some(i) = ALL.iter().position(|r| *r == reason) {
            self.rejected[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn collected(&self, n: u64) {
        self.tombstones_collected.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds one to `counter`.
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn ghosts(&self, n: u64) {
        self.ghosts_dropped.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self, storage_degraded: bool) -> NodeStats {
        let rejected = ALL
            .iter()
            .zip(&self.rejected)
            .map(|(reason, count)| (*reason, count.load(Ordering::Relaxed)))
            .filter(|(_, count)| *count > 0)
            .collect();
        NodeStats {
            accepted: self.accepted.load(Ordering::Relaxed),
            superseded: self.superseded.load(Ordering::Relaxed),
            rejected,
            tombstones_collected: self.tombstones_collected.load(Ordering::Relaxed),
            ghosts_dropped: self.ghosts_dropped.load(Ordering::Relaxed),
            catch_ups_failed: self.catch_ups_failed.load(Ordering::Relaxed),
            sync_messages_refused: self.sync_messages_refused.load(Ordering::Relaxed),
            sync_requests_dropped: self.sync_requests_dropped.load(Ordering::Relaxed),
            peers_banned: self.peers_banned.load(Ordering::Relaxed),
            clock_behind_ms: self.clock_behind_ms.load(Ordering::Relaxed),
            unique_conflicts: self.unique_conflicts.load(Ordering::Relaxed),
            storage_degraded,
            storage_failures: self.storage_failures.load(Ordering::Relaxed),
            storage_recoveries: self.storage_recoveries.load(Ordering::Relaxed),
            hole_punches: self.hole_punches.load(Ordering::Relaxed),
            hole_punch_failures: self.hole_punch_failures.load(Ordering::Relaxed),
            newer_version_held: self.newer_held.load(Ordering::Relaxed),
            sync_bytes_sent: self.traffic.sent.load(Ordering::Relaxed),
            sync_bytes_received: self.traffic.received.load(Ordering::Relaxed),
            reachability: match self.reachability.load(Ordering::Relaxed) {
                1 => Reachability::Public,
                2 => Reachability::Private,
                _ => Reachability::Unknown,
            },
        }
    }

    /// What AutoNAT found last.
    pub(crate) fn set_reachability(&self, reachability: Reachability) {
        let value = match reachability {
            Reachability::Unknown => 0,
            Reachability::Public => 1,
            Reachability::Private => 2,
        };
        self.reachability.store(value, Ordering::Relaxed);
    }
}
