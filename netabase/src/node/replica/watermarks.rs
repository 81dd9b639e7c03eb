//! Where the delete horizon stands: this node's watermarks (its last
//! completed catch-up and the floor below which deletes may be collected),
//! and a peer's, bounded by ours.

use std::sync::atomic::Ordering;

use super::state::Replica;
use crate::sync::reconcile::Watermarks;
use crate::sync::Timestamp;

fn horizon_ms(shared: &Replica) -> Option<u64> {
    shared
        .settings
        .tombstone_horizon
        .map(|h| u64::try_from(h.as_millis()).unwrap_or(u64::MAX))
}

/// `at` minus the horizon, as a timestamp; 0 when there is no horizon or
/// nothing to count back from.
fn minus_horizon(shared: &Replica, at_millis: u64) -> u64 {
    match horizon_ms(shared) {
        Some(h) if at_millis > 0 => Timestamp::new(at_millis.saturating_sub(h), 0).0,
        _ => 0,
    }
}

/// What this node states about itself when reconciling.
pub(crate) fn watermarks(shared: &Replica) -> Watermarks {
    with_synced(shared, shared.synced_at.load(Ordering::Acquire))
}

/// What this node states in a catch-up that compares `models`: its own
/// watermarks, lowered to the least caught-up of those models'
/// subscriptions (a range subscribed lately has no catch-up behind it).
pub(crate) fn for_models(shared: &Replica, models: &[crate::model::ModelId]) -> Watermarks {
    let node = shared.synced_at.load(Ordering::Acquire);
    let synced = shared.subscriptions.synced_all(models, node);
    with_synced(shared, synced)
}

/// The floor below which this node refuses records of `model` it lacks:
/// from that model's own watermark (see [`for_models`]).
pub(crate) fn floor_of(shared: &Replica, model: crate::model::ModelId) -> u64 {
    let node = shared.synced_at.load(Ordering::Acquire);
    with_synced(shared, shared.subscriptions.synced(model, node)).floor
}

fn with_synced(shared: &Replica, synced: u64) -> Watermarks {
    Watermarks {
        synced,
        floor: if shared.settings.catch_up {
            minus_horizon(shared, Timestamp(synced).millis())
        } else {
            0
        },
    }
}

/// Deletes stamped before this are collected.
pub(crate) fn gc_cutoff(shared: &Replica) -> u64 {
    if shared.settings.catch_up {
        watermarks(shared).floor
    } else {
        // Without catch-up nothing reconciles ghosts anyway: count from now.
        minus_horizon(shared, shared.clock.wall_millis())
    }
}

/// A peer's watermarks, bounded by what this node's own horizon allows: a
/// peer claiming a floor later than "now minus our horizon" could otherwise
/// make us drop recent records.
pub(crate) fn bound_theirs(shared: &Replica, theirs: Watermarks) -> Watermarks {
    let cap = minus_horizon(shared, shared.clock.wall_millis());
    Watermarks {
        synced: theirs.synced,
        floor: theirs.floor.min(cap),
    }
}

/// Records in memory that this node completed a catch-up that started at
/// `started`; true if that moved its watermark (then [`persist_synced`]).
pub(crate) fn caught_up(shared: &Replica, started: Timestamp) -> bool {
    shared.synced_at.fetch_max(started.0, Ordering::AcqRel) < started.0
}
