//! Records written at a version of their model newer than this build
//! knows: a peer runs a newer release of the app. A node cannot read them,
//! and re-encoding them would break their writers' signatures, so it holds
//! them as they came: the signed envelope (which keeps sync fingerprints
//! equal across versions, so catch-up never fetches them again), no typed
//! row, no index entries. It serves them to peers, counts them, and reads
//! them into the typed tree when the app registers a version that knows
//! them (`promote`), without fetching anything. This file keeps the list
//! in step with each write.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use crate::model::ModelId;
use crate::store::rows::model_of;
use crate::store::{StoreError, WriteTransaction};

use super::event::Event;
use super::registry::Written;
use super::state::Replica;

/// What a transaction changed in the list of newer records.
#[derive(Debug)]
pub(crate) struct Listed {
    /// Records of every model listed after it.
    total: u64,
    /// The models it listed records of that were not listed before, each
    /// with how many of its records are listed after it.
    grew: Vec<(ModelId, u64)>,
}

/// Keeps the list of newer records in `txn` in step with what `written`
/// (record keys and how each was written) stored. Costs no lookup while
/// nothing is listed and nothing newer comes. Returns what to tell after
/// the commit, if the list changed.
pub(crate) fn list<'a>(
    shared: &Replica,
    txn: &WriteTransaction,
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
    let mut changed = false;
    let mut grew = BTreeSet::new();
    for (key, written) in written {
        match written {
            Written::Newer(version) => {
                if table.insert(key, *version)? {
                    changed = true;
                    grew.extend(model_of(key).map(|id| ModelId(u32::from_be_bytes(id))));
                }
            }
            _ => changed |= table.remove(key)?,
        }
    }
    if !changed {
        return Ok(None);
    }
    let grew = grew
        .into_iter()
        .map(|model| Ok((model, table.count(model.0)?)))
        .collect::<Result<_, StoreError>>()?;
    Ok(Some(Listed {
        total: table.total()?,
        grew,
    }))
}

/// After the commit that changed the list: the counter, and an event per
/// model of which records of a newer version arrived.
pub(crate) fn tell(shared: &Replica, listed: &Listed) {
    shared
        .counters
        .newer_held
        .store(listed.total, Ordering::Relaxed);
    if listed.grew.is_empty() {
        return;
    }
    shared.newer_listed.store(true, Ordering::Release);
    let registry = shared.registry.read().unwrap_or_else(|e| e.into_inner());
    for &(model_id, held) in &listed.grew {
        let Some(model) = registry.get(model_id).map(|handler| handler.name()) else {
            continue;
        };
        tracing::info!(
            model,
            held,
            "holding records of a newer version of the model than this build knows"
        );
        let _ = shared.events.send(Event::NewerVersionHeld {
            model,
            model_id,
            held,
        });
    }
}
