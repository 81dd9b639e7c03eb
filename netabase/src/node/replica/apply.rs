//! Writing a signed record into the local store: one path for local writes,
//! records pushed by peers and records fetched from them, applying the one
//! conflict rule (the greater version wins).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;

use crate::codec::Envelope;
use crate::model::ModelId;
use crate::store::{Form, StoreError, WriteTransaction};

use super::announce::{tell, tell_conflict};
use super::cache::state_of;
use super::event::{ChangeKind, Origin};
use super::newer::{self, Listed};
use super::order::{precedence, wins};
use super::registry::{ApplyError, ModelHandler, Settled, Written};
use super::state::{Replica, ISSUED};
use super::stats::{Counters, Rejection};
use super::validate::{allowed, Refused};
use super::{revocation, storage};
use crate::node::NodeError;

/// What applying an envelope did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Stored: it was newer than what we held.
    Applied,
    /// We already hold exactly this version.
    Unchanged,
}

/// Commits a locally signed `envelope` if it is newer than the version held,
/// updates the Kademlia view and tells subscribers. Records from peers take
/// the batch path ([`apply_batch`]). Blocking: call from a blocking task.
pub(crate) fn apply(shared: &Replica, envelope: &Envelope) -> Result<Outcome, Refused> {
    apply_staged(shared, envelope, || {})
}

/// [`apply`], calling `staged` once the envelope has passed every check and
/// is written into the transaction, just before the commit makes it durable.
pub(crate) fn apply_staged(
    shared: &Replica,
    envelope: &Envelope,
    staged: impl FnOnce(),
) -> Result<Outcome, Refused> {
    let applied = (|| {
        storage::ready(shared).map_err(|error| Refused {
            reason: Rejection::StorageFailed,
            error: Some(error),
        })?;
        let txn = shared.store.begin_write().map_err(storage)?;
        let (outcome, settled, listed) = apply_in(shared, &txn, envelope)?;
        if outcome == Outcome::Applied {
            staged();
            shared.cache.forget([envelope.record_key().as_slice()]);
            txn.commit().map_err(storage)?;
            if let Some(listed) = &listed {
                newer::tell(shared, listed);
            }
            announce(shared, envelope, Origin::Local);
            let key = envelope.record_key();
            announce_settled(shared, [&settled], &HashSet::from([&key]));
        }
        Ok(outcome)
    })();
    if let Err(Refused {
        error: Some(error), ..
    }) = &applied
    {
        storage::check(shared, error);
    }
    applied
}

/// Commits many validated envelopes in one transaction (one fsync), each
/// under the same rules as [`apply`]; counts what was accepted or refused
/// when it came from a peer (the counters are of inbound records). Tables
/// are opened once per batch, not per record. A local batch is all or
/// nothing: a record it cannot store (a unique conflict) fails the whole
/// batch. Blocking. Returns the model of each record stored.
pub(crate) fn apply_batch(
    shared: &Replica,
    envelopes: &[Envelope],
    origin: Origin,
) -> Result<Vec<ModelId>, NodeError> {
    apply_batch_from(shared, envelopes, |_| origin)
        .map(|applied| applied.stored.into_iter().map(|(_, model)| model).collect())
}

/// What a batch did: the index and model of each record stored, and the
/// index of each record from a peer that was refused (not counting stale
/// ones: then the peer is behind, not refused).
pub(crate) struct Applied {
    pub(crate) stored: Vec<(usize, ModelId)>,
    pub(crate) refused: Vec<usize>,
    /// A membership it stored dropped records its member no longer covers:
    /// the peer may hold the versions before them.
    pub(crate) dropped: bool,
}

/// [`apply_batch`] where each envelope has its own origin (`origin_of(i)`
/// for `envelopes[i]`): records pushed by several peers, committed together.
pub(crate) fn apply_batch_from(
    shared: &Replica,
    envelopes: &[Envelope],
    origin_of: impl Fn(usize) -> Origin,
) -> Result<Applied, NodeError> {
    let local = (0..envelopes.len()).all(|i| origin_of(i) == Origin::Local);
    if local {
        storage::ready(shared)?;
    }
    let refused = std::cell::RefCell::new(Vec::new());
    let reject = |i: usize, reason| {
        if matches!(origin_of(i), Origin::Peer(_)) {
            shared.counters.reject(reason);
            // Stale is no refusal: the peer is behind, and fetches ours.
            if reason != Rejection::Stale {
                refused.borrow_mut().push(i);
            }
        }
    };
    // Each record is judged against the one before it: what is held, or the
    // batch's own earlier version of that key, so every step of the batch
    // passes the conflict rule and the write rule, as if applied one by
    // one. A local batch goes in the order given: it may free a unique value
    // and then give it to another record, as `Tree::put_many` allows.
    // Records from peers go in version order, replaying the writers'
    // history: a write that freed a value comes before a later one that
    // took it.
    let mut order: Vec<usize> = (0..envelopes.len()).collect();
    if !local {
        order.sort_unstable_by(|a, b| precedence(&envelopes[*a], &envelopes[*b]).then(a.cmp(b)));
    }
    let (applied, superseded, settled, listed) = storage::write(shared, |txn| {
        let registry = shared.registry.read().unwrap_or_else(|e| e.into_inner());
        // Record key -> the batch's newest step for it, once judged.
        let mut staged: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut superseded = Vec::new();
        {
            let table = txn.envelope_table()?;
            for &i in &order {
                let envelope = &envelopes[i];
                let Some(handler) = registry.get(envelope.model()) else {
                    reject(i, Rejection::UnknownModel);
                    continue;
                };
                let key = envelope.record_key();
                let stored;
                let held = match staged.get(&key) {
                    Some(&before) => Some(envelopes[before].as_bytes()),
                    None => {
                        stored = table.get(&key)?;
                        stored.as_deref()
                    }
                };
                match judge(held, envelope) {
                    Verdict::Write => {}
                    Verdict::Unchanged => continue,
                    Verdict::Stale => {
                        reject(i, Rejection::Stale);
                        continue;
                    }
                }
                if let Err(refusal) = allowed(shared, Some(handler), envelope, held) {
                    if local {
                        return Err(NodeError::NotAllowed {
                            model: handler.name(),
                            refusal,
                        });
                    }
                    reject(i, Rejection::NotAllowed);
                    tracing::debug!(writer = %envelope.writer(), %refusal, "refused a write the model's rule forbids");
                    continue;
                }
                superseded.extend(staged.insert(key, i));
            }
        }
        // Only each key's last step reaches the tree, in the batch's order:
        // the steps before it were judged, and nobody would see them.
        let mut rank = vec![0; envelopes.len()];
        for (position, &i) in order.iter().enumerate() {
            rank[i] = position;
        }
        let mut last: Vec<(Vec<u8>, usize)> = staged.into_iter().collect();
        last.sort_unstable_by_key(|(_, i)| rank[*i]);
        let mut by_model: BTreeMap<ModelId, Vec<(Vec<u8>, usize)>> = BTreeMap::new();
        for (key, i) in last {
            by_model
                .entry(envelopes[i].model())
                .or_default()
                .push((key, i));
        }
        let mut applied = Vec::new();
        let mut settled = Vec::new();
        let mut listed = Vec::new();
        for (model, group) in by_model {
            let Some(handler) = registry.get(model) else {
                continue;
            };
            let batch: Vec<&Envelope> = group.iter().map(|(_, i)| &envelopes[*i]).collect();
            // (record key, envelope, how it was written)
            let mut stored = Vec::with_capacity(group.len());
            let mut conflicting = Vec::new();
            for ((key, i), result) in group.into_iter().zip(handler.apply_many(txn, &batch)?) {
                match result {
                    Ok(written) => stored.push((key, i, written)),
                    Err(ApplyError::Envelope(error)) => reject(i, error.kind().into()),
                    // A synced record that loses a unique value is still
                    // held (so every peer ends with the same envelopes),
                    // kept out of the typed tree and listed as a conflict.
                    Err(ApplyError::Store(StoreError::UniqueViolation { .. }))
                        if origin_of(i) != Origin::Local =>
                    {
                        conflicting.push(key.clone());
                        stored.push((key, i, Written::Whole));
                    }
                    // The transaction may be half-written: give up on the batch.
                    Err(ApplyError::Store(error)) => return Err(error.into()),
                }
            }
            {
                // In key order: neighbours share the index's buckets, which
                // the table then reads once for the lot.
                let mut in_order: Vec<_> = stored.iter().collect();
                in_order.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                let mut table = txn.envelope_table()?;
                for (key, i, written) in in_order {
                    let envelope = &envelopes[*i];
                    let form = form(handler, written);
                    table.insert(key, envelope.as_bytes(), state_of(envelope), form)?;
                }
                table.flush()?;
            }
            let written = stored.iter().map(|(key, _, w)| (key.as_slice(), w));
            listed.extend(newer::list(shared, txn, written)?);
            // Any write may free a value a listed conflict waits for.
            settled.push(settle(shared, txn, handler, model, &conflicting)?);
            applied.extend(stored.into_iter().map(|(key, i, _)| (key, i)));
        }
        note_issued(shared, txn, applied.iter().map(|(_, i)| &envelopes[*i]))?;
        shared
            .cache
            .forget(applied.iter().map(|(key, _)| key.as_slice()));
        Ok((applied, superseded, settled, listed))
    })?;
    for listed in &listed {
        newer::tell(shared, listed);
    }
    for i in superseded {
        if matches!(origin_of(i), Origin::Peer(_)) {
            Counters::bump(&shared.counters.superseded);
        }
    }
    // What peers sent is not cached (see `remember`). Forgotten once more
    // now that it is committed: a reader that read the version before it
    // between the first forget and the commit must not keep that.
    shared.cache.forget(
        applied
            .iter()
            .filter(|(_, i)| origin_of(*i) != Origin::Local)
            .map(|(key, _)| key.as_slice()),
    );
    let conflicted: HashSet<&Vec<u8>> = settled.iter().flat_map(|s| &s.conflicted).collect();
    let mut dropped = false;
    for (key, i) in &applied {
        let origin = origin_of(*i);
        if matches!(origin, Origin::Peer(_)) {
            shared.counters.accept();
        }
        if conflicted.contains(key) {
            remember(shared, &envelopes[*i], origin);
        } else {
            dropped |= announce(shared, &envelopes[*i], origin);
        }
    }
    let fresh: HashSet<&Vec<u8>> = applied.iter().map(|(k, _)| k).collect();
    announce_settled(shared, &settled, &fresh);
    Ok(Applied {
        stored: applied
            .iter()
            .map(|(_, i)| (*i, envelopes[*i].model()))
            .collect(),
        refused: refused.into_inner(),
        dropped,
    })
}

/// How to store an envelope `apply_many` wrote so.
pub(crate) fn form<'a>(handler: &dyn ModelHandler, written: &'a Written) -> Form<'a> {
    match written {
        Written::Split(rest) => Form::Split {
            table: handler.table(),
            rest,
        },
        Written::Whole | Written::Newer(_) => Form::Whole,
    }
}

fn storage(error: StoreError) -> Refused {
    Refused {
        reason: match error {
            StoreError::UniqueViolation { .. } => Rejection::UniqueConflict,
            _ => Rejection::StorageFailed,
        },
        error: Some(NodeError::Store(error)),
    }
}

/// What the conflict rule says of an envelope against the one held.
enum Verdict {
    Write,
    Unchanged,
    Stale,
}

fn judge(held: Option<&[u8]>, envelope: &Envelope) -> Verdict {
    let Some(held) = held else {
        return Verdict::Write;
    };
    if held == envelope.as_bytes() {
        return Verdict::Unchanged;
    }
    // Stored envelopes were verified on the way in; only the version is needed.
    match Envelope::from_trusted_bytes(held) {
        Ok(held) if !wins(envelope, &held) => Verdict::Stale,
        _ => Verdict::Write,
    }
}

/// Writes `envelope` into `txn` if it is newer than what `txn` holds.
fn apply_in(
    shared: &Replica,
    txn: &WriteTransaction,
    envelope: &Envelope,
) -> Result<(Outcome, Settled, Option<Listed>), Refused> {
    let registry = shared.registry.read().unwrap_or_else(|e| e.into_inner());
    let handler = registry
        .get(envelope.model())
        .ok_or_else(|| Refused::new(Rejection::UnknownModel))?;
    let record_key = envelope.record_key();
    let mut table = txn.envelope_table().map_err(storage)?;
    let held = table.get(&record_key).map_err(storage)?;
    match judge(held.as_deref(), envelope) {
        Verdict::Write => {}
        Verdict::Unchanged => return Ok((Outcome::Unchanged, Settled::default(), None)),
        Verdict::Stale => return Err(Refused::new(Rejection::Stale)),
    }
    allowed(shared, Some(handler), envelope, held.as_deref()).map_err(|refusal| Refused {
        reason: Rejection::NotAllowed,
        error: Some(NodeError::NotAllowed {
            model: handler.name(),
            refusal,
        }),
    })?;
    let written = handler
        .apply_many(txn, &[envelope])
        .map_err(storage)?
        .pop()
        .unwrap_or(Ok(Written::Whole));
    let written = written.map_err(|error| match error {
        ApplyError::Envelope(error) => Refused::new(error.kind().into()),
        ApplyError::Store(error) => storage(error),
    })?;
    table
        .insert(
            &record_key,
            envelope.as_bytes(),
            state_of(envelope),
            form(handler, &written),
        )
        .map_err(storage)?;
    table.flush().map_err(storage)?;
    drop(table);
    let listed = newer::list(shared, txn, [(record_key.as_slice(), &written)]).map_err(storage)?;
    note_issued(shared, txn, [envelope]).map_err(storage)?;
    // The write may free a value a listed conflict waits for.
    let settled = settle(shared, txn, handler, envelope.model(), &[]).map_err(storage)?;
    Ok((Outcome::Applied, settled, listed))
}

/// Records in `txn` the latest timestamp among `written` that this node
/// signed, if later than the one recorded.
fn note_issued<'a>(
    shared: &Replica,
    txn: &WriteTransaction,
    written: impl IntoIterator<Item = &'a Envelope>,
) -> Result<(), StoreError> {
    let latest = written
        .into_iter()
        .filter(|e| e.writer() == shared.peer_id)
        .map(|e| e.version().timestamp.0)
        .max();
    let Some(latest) = latest else {
        return Ok(());
    };
    if txn.sync_meta(ISSUED)?.is_none_or(|issued| issued < latest) {
        txn.set_sync_meta(ISSUED, latest)?;
    }
    Ok(())
}

/// Settles `model`'s unique conflicts in `txn` if any are listed or
/// `conflicting` names new ones (see [`ModelHandler::resolve`]).
pub(crate) fn settle(
    shared: &Replica,
    txn: &WriteTransaction,
    handler: &dyn ModelHandler,
    model: ModelId,
    conflicting: &[Vec<u8>],
) -> Result<Settled, StoreError> {
    // Most nodes never list a conflict: then a write costs no table lookup.
    if conflicting.is_empty() && !shared.conflicts_listed.load(Ordering::Acquire) {
        return Ok(Settled::default());
    }
    let listed = !txn
        .conflict_table()?
        .with_prefix(&model.0.to_be_bytes(), 1)?
        .is_empty();
    if !listed && conflicting.is_empty() {
        return Ok(Settled::default());
    }
    let settled = handler.resolve(txn, conflicting)?;
    if !settled.conflicted.is_empty() {
        shared.conflicts_listed.store(true, Ordering::Release);
    }
    Ok(settled)
}

/// After a commit: tells subscribers of records that lost their unique
/// value, and of listed records that took one (unless `fresh`: announced
/// already as written).
pub(crate) fn announce_settled<'a>(
    shared: &Replica,
    settled: impl IntoIterator<Item = &'a Settled>,
    fresh: &HashSet<&Vec<u8>>,
) {
    for settled in settled {
        for key in &settled.conflicted {
            Counters::bump(&shared.counters.unique_conflicts);
            tell_conflict(shared, key);
        }
        for key in settled.promoted.iter().filter(|k| !fresh.contains(k)) {
            if let Ok(Some(cached)) = shared.held(key) {
                if let Ok(envelope) = Envelope::from_trusted_bytes(&cached.bytes) {
                    tell(shared, &envelope, ChangeKind::Put, Origin::Local);
                }
            }
        }
    }
}

/// After a commit: updates the Kademlia view and tells subscribers. A
/// changed membership may leave writes its member made uncovered: those go,
/// and every peer is asked again for what came before them. Returns whether
/// any went.
fn announce(shared: &Replica, envelope: &Envelope, origin: Origin) -> bool {
    remember(shared, envelope, origin);
    let mut dropped = false;
    if envelope.model() == <crate::rules::Membership as crate::NetabaseModel>::ID {
        if let Ok(Some(membership)) = envelope.open::<crate::rules::Membership>() {
            match revocation::drop_uncovered(shared, &membership) {
                Ok(0) => {}
                Ok(_) => {
                    dropped = true;
                    shared.resync.notify_one();
                }
                Err(error) => {
                    tracing::warn!(%error, "could not drop writes a revocation no longer covers")
                }
            }
        }
    }
    let kind = if envelope.is_tombstone() {
        ChangeKind::Delete
    } else {
        ChangeKind::Put
    };
    tell(shared, envelope, kind, origin);
    dropped
}

/// After a commit: keeps a local write in the cache (the app is likely to
/// read what it wrote). What peers send is not cached: a catch-up of
/// thousands of records would push out what this node's own reads keep
/// there; it was forgotten before the commit, and is read from the store
/// when asked for.
fn remember(shared: &Replica, envelope: &Envelope, origin: Origin) {
    if origin == Origin::Local {
        shared.cache.insert(envelope);
    }
}
