//! Records written at a version of their model newer than this build
//! knows: a peer runs a newer release of the app. A node cannot read them,
//! and re-encoding them would break their writers' signatures, so it holds
//! them as they came: the signed envelope (which keeps sync fingerprints
//! equal across versions, so catch-up never fetches them again), no typed
//! row, no index entries. It serves them to peers, counts them, and reads
//! them into the typed tree when the app registers a version that knows
//! them (`promote`), without fetching anything. This file keeps the list
//! in step with each write.

use std::sync::atomic::Ordering;

use crate::model::ModelId;
use crate::store::{StoreError, WriteTransaction};

use super::event::Event;
use super::registry::Written;
use super::state::Replica;

/// What a transaction changed in the list of a model's newer records.
#[derive(Debug)]
pub(crate) struct Listed {
    model: ModelId,
    /// Records of the model listed after it.
    count: u64,
    /// Records of every model listed after it.
    total: u64,
    /// Whether it listed a record that was not listed before.
    grew: bool,
}

/// Keeps the list of newer records in `txn` in step with what `written`
/// (record keys of `model` and how each was written) stored. Costs no
/// lookup while nothing is listed and nothing newer comes. Returns what to
/// tell after the commit, if the list changed.
pub(crate) fn list<'a>(
    shared: &Replica,
    txn: &WriteTransaction,
    model: ModelId,
    written: impl IntoIterator<Item = (&'a [u8], &'a Written)> + Clone,
) -> Result<Option<Listed>, StoreError> {
    let newer = written
        .clone()
        .into_iter()
        .any(|(_, w)| matches!(w, Written::Newer(_)));
    if !newer && !shared.newer_listed.load(Ordering::Acquire) {
        return Ok(None);
    }
    let mut table = txn.newer_table()?;
    let (mut changed, mut grew) = (false, false);
    for (key, written) in written {
        match written {
            Written::Newer(version) => {
                let added = table.insert(key, *version)?;
                changed |= added;
                grew |= added;
            }
            _ => changed |= table.remove(key)?,
        }
    }
    if !changed {
        return Ok(None);
    }
    Ok(Some(Listed {
        model,
        count: table.count(model.0)?,
        total: table.total()?,
        grew,
    }))
}

/// After the commit that changed the list: the counter, and an event if
/// records of a newer version arrived.
pub(crate) fn tell(shared: &Replica, listed: &Listed) {
    shared
        .counters
        .newer_held
        .store(listed.total, Ordering::Relaxed);
    if !listed.grew {
        return;
    }
    shared.newer_listed.store(true, Ordering::Release);
    let name = {
        let registry = shared.registry.read().unwrap_or_else(|e| e.into_inner());
        registry.get(listed.model).map(|handler| handler.name())
    };
    let Some(model) = name else {
        return;
    };
    tracing::info!(
        model,
        held = listed.count,
        "holding records of a newer version of the model than this build knows"
    );
    let _ = shared.events.send(Event::NewerVersionHeld {
        model,
        model_id: listed.model,
        held: listed.count,
    });
}
