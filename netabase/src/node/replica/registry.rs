//! The models a node syncs, behind one object-safe interface so records from
//! peers reach the right typed tree.

use std::collections::{BTreeMap, HashMap};

use crate::codec::{self, Envelope, EnvelopeError};
use crate::model::{ModelId, NetabaseModel};
use crate::rules::{Context, Entry, Refusal, WriteRule};
use crate::store::{Form, StoreError, WriteTransaction};

use super::cache::state_of;
use super::event::{ChangeKind, Origin};
use super::order;
use super::watch::NodeChange;
use crate::node::NodeError;

/// One registered model, type-erased.
pub(crate) trait ModelHandler: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// The model's typed table ([`NetabaseModel::TABLE`]).
    fn table(&self) -> &'static str;
    /// The model's schema hash ([`NetabaseModel::SCHEMA`]).
    fn schema(&self) -> u64;
    /// Checks that the envelope holds a valid record of this model.
    fn check(&self, envelope: &Envelope) -> Result<(), EnvelopeError>;
    /// Sends a committed change to this model's typed watchers, if any.
    /// `kind` is what happened to the record: a `Delete` of a put's
    /// envelope (a ghost or a revoked write dropped) sends no record.
    fn announce(&self, envelope: &Envelope, kind: ChangeKind, origin: Origin);
    /// The handler itself, to reach its typed parts.
    fn as_any(&self) -> &dyn std::any::Any;
    /// Whether the model's write rule lets `write` replace `held` (the
    /// envelope held for its key, if any).
    fn allow(
        &self,
        write: &Envelope,
        held: Option<&Envelope>,
        cx: &dyn Context,
    ) -> Result<(), Refusal>;
    /// Writes many envelopes' records (or deletes) of this model, opening its
    /// tree once; one result per envelope, in order (see [`Written`]). A
    /// refused record leaves the tree as it was.
    fn apply_many(
        &self,
        txn: &WriteTransaction,
        envelopes: &[&Envelope],
    ) -> Result<Vec<Applied>, StoreError>;
    /// Removes the record with this encoded primary key from the typed tree.
    fn remove(&self, txn: &WriteTransaction, key: &[u8]) -> Result<(), StoreError>;
    /// Settles unique-value conflicts of this model: among the records in
    /// `incoming` (whose envelopes are already in the envelope table), the
    /// records listed as conflicts, and the records holding their unique
    /// values, each unique value goes to the earliest version claiming it
    /// (ties by envelope digest), in that order; the others are kept out of
    /// the typed tree and listed as conflicts. Depends only on which
    /// envelopes are held, so every peer holding them settles the same.
    fn resolve(&self, txn: &WriteTransaction, incoming: &[Vec<u8>]) -> Result<Settled, StoreError>;
    /// The encoded primary keys of up to `limit` records in the typed tree
    /// whose index `index` holds exactly the encoded `value` (none for an
    /// index the model does not have).
    fn index_primaries(
        &self,
        read: &crate::store::ReadTransaction,
        index: usize,
        value: &[u8],
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError>;
}

/// What settling conflicts changed.
#[derive(Debug, Default)]
pub(crate) struct Settled {
    /// Record keys now listed as conflicts that were not before.
    pub(crate) conflicted: Vec<Vec<u8>>,
    /// Record keys listed as conflicts before and now in the typed tree.
    pub(crate) promoted: Vec<Vec<u8>>,
}

/// Conflicts of one model considered in one settling, at most: a flood of
/// conflicting records costs each batch a bounded amount of work; the rest
/// are settled by later batches.
const MAX_SETTLED: usize = 1024;

/// What [`ModelHandler::apply_many`] did with one envelope, or why it was
/// refused.
pub(crate) type Applied = Result<Written, ApplyError>;

/// How an envelope's record went into its typed tree.
#[derive(Debug)]
pub(crate) enum Written {
    /// Its typed row holds its payload byte for byte: it can be stored
    /// split, keeping this rest.
    Split(Vec<u8>),
    /// Stored whole: a delete, or a payload its typed row does not repeat
    /// (an older version read through the chain, an unusual encoding).
    Whole,
    /// Written at this version of the model, newer than this build knows:
    /// no typed row (the one before it is removed), stored whole and listed
    /// until the app registers a version that reads it.
    Newer(u32),
}

pub(crate) enum ApplyError {
    Envelope(EnvelopeError),
    Store(StoreError),
}

struct Handler<M: NetabaseModel> {
    /// Typed changes for [`Netabase::watch`](crate::node::Netabase::watch).
    changes: tokio::sync::broadcast::Sender<NodeChange<M>>,
}

impl<M: NetabaseModel> ModelHandler for Handler<M> {
    fn name(&self) -> &'static str {
        M::NAME
    }

    fn index_primaries(
        &self,
        read: &crate::store::ReadTransaction,
        index: usize,
        value: &[u8],
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        if index >= M::INDEXES.len() {
            return Ok(Vec::new());
        }
        let tree = read.open_tree::<M>()?;
        crate::store::lookup::index_primaries(&tree, index, value, limit)
    }

    fn table(&self) -> &'static str {
        M::TABLE
    }

    fn schema(&self) -> u64 {
        M::SCHEMA
    }

    fn check(&self, envelope: &Envelope) -> Result<(), EnvelopeError> {
        match envelope.open::<M>() {
            // Held as it is, not refused (see `Written::Newer`).
            Err(EnvelopeError::NewerVersion { .. }) => Ok(()),
            opened => opened.map(drop),
        }
    }

    fn announce(&self, envelope: &Envelope, kind: ChangeKind, origin: Origin) {
        if self.changes.receiver_count() == 0 {
            return;
        }
        // Stored envelopes decode; the record once, shared by every watcher.
        let record = match kind {
            ChangeKind::Put => match envelope.open::<M>() {
                Ok(record) => record,
                Err(_) => return,
            },
            ChangeKind::Delete => None,
        };
        let key = match &record {
            Some(record) => Some(record.key()),
            None => M::key_from_bytes(envelope.key()),
        };
        let Some(key) = key else {
            tracing::debug!(
                model = M::NAME,
                "a delete's key does not decode: not sent to typed watchers"
            );
            return;
        };
        let _ = self.changes.send(NodeChange {
            key,
            record: record.map(std::sync::Arc::new),
            version: envelope.version(),
            origin,
        });
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn allow(
        &self,
        write: &Envelope,
        held: Option<&Envelope>,
        cx: &dyn Context,
    ) -> Result<(), Refusal> {
        if !<M::Rule as WriteRule<M>>::CHECKS {
            return Ok(());
        }
        // Both were verified and decode (checked on the way in); each is
        // decoded only if the rule reads it.
        // A newer version than this build knows is judged unread.
        let record = if <M::Rule as WriteRule<M>>::READS_WRITE {
            match write.open::<M>() {
                Err(EnvelopeError::NewerVersion { .. }) => None,
                opened => opened.map_err(|e| Refusal::custom(e.to_string()))?,
            }
        } else {
            None
        };
        let held_record = match held {
            Some(held) if <M::Rule as WriteRule<M>>::READS_HELD || held.authority().is_empty() => {
                held.open::<M>().ok().flatten()
            }
            _ => None,
        };
        let held = held.map(|held| entry(held, held_record.as_ref()));
        <M::Rule as WriteRule<M>>::check(&entry(write, record.as_ref()), held.as_ref(), cx)
    }

    fn apply_many(
        &self,
        txn: &WriteTransaction,
        envelopes: &[&Envelope],
    ) -> Result<Vec<Applied>, StoreError> {
        let mut tree = txn.open_tree::<M>()?;
        Ok(envelopes
            .iter()
            .map(|envelope| match envelope.open::<M>() {
                Ok(Some(record)) => {
                    tree.put(&record).map_err(ApplyError::Store)?;
                    // A peer's payload may decode and re-encode to other
                    // bytes (or be an older version's): then the typed row
                    // is not the signed payload.
                    let split = (tree.encoded() == envelope.payload())
                        .then(|| envelope.rest())
                        .flatten();
                    Ok(split.map_or(Written::Whole, Written::Split))
                }
                Ok(None) => tree
                    .remove_encoded(envelope.key())
                    .map(|_| Written::Whole)
                    .map_err(ApplyError::Store),
                Err(EnvelopeError::NewerVersion { version, .. }) => tree
                    .remove_encoded(envelope.key())
                    .map(|_| Written::Newer(version))
                    .map_err(ApplyError::Store),
                Err(error) => Err(ApplyError::Envelope(error)),
            })
            .collect())
    }

    fn remove(&self, txn: &WriteTransaction, key: &[u8]) -> Result<(), StoreError> {
        txn.open_tree::<M>()?.remove_encoded(key).map(drop)
    }

    fn resolve(&self, txn: &WriteTransaction, incoming: &[Vec<u8>]) -> Result<Settled, StoreError> {
        let prefix = M::ID.0.to_be_bytes();
        let mut conflicts = txn.conflict_table()?;
        let mut table = txn.envelope_table()?;
        let listed = conflicts.with_prefix(&prefix, MAX_SETTLED)?;
        // Candidates: record key -> (envelope, record; None for a delete).
        let mut candidates: BTreeMap<Vec<u8>, (Envelope, Option<M>)> = BTreeMap::new();
        let load = |key: &[u8],
                    candidates: &mut BTreeMap<Vec<u8>, (Envelope, Option<M>)>|
         -> Result<bool, StoreError> {
            if candidates.contains_key(key) {
                return Ok(true);
            }
            let Some(bytes) = table.get(key)? else {
                return Ok(false);
            };
            // Stored envelopes were checked on the way in.
            let Ok(envelope) = Envelope::from_trusted_bytes(&bytes) else {
                return Ok(false);
            };
            let record = envelope.open::<M>().ok().flatten();
            candidates.insert(key.to_vec(), (envelope, record));
            Ok(true)
        };
        for key in incoming.iter().chain(&listed) {
            if !load(key, &mut candidates)? {
                // Listed, but its envelope is gone (dropped as a ghost).
                conflicts.remove(key)?;
            }
        }
        // The records holding the candidates' unique values compete too.
        // The tree is closed again before their envelopes are read: a split
        // one reads its typed row from the tree's table.
        let mut holders = Vec::new();
        {
            let mut tree = txn.open_tree::<M>()?;
            for (_, record) in candidates.values() {
                if let Some(record) = record {
                    holders.extend(tree.unique_holders(record)?);
                }
            }
        }
        for pk in holders {
            // One in the tree with no envelope was written straight into the
            // store, not synced: it is no candidate and keeps its value.
            load(&codec::record_key(M::ID, &pk), &mut candidates)?;
        }
        // Take them all out, then put them back, earliest first.
        let mut tree = txn.open_tree::<M>()?;
        for (envelope, _) in candidates.values() {
            tree.remove_encoded(envelope.key())?;
        }
        let mut order: Vec<_> = candidates.iter().collect();
        order.sort_by(|a, b| order::precedence(&a.1 .0, &b.1 .0));
        let mut settled = Settled::default();
        for (key, (envelope, record)) in order {
            let Some(record) = record else {
                conflicts.remove(key)?;
                continue;
            };
            match tree.put(record) {
                Ok(_) => {
                    if conflicts.remove(key)? {
                        settled.promoted.push(key.clone());
                    }
                }
                Err(StoreError::UniqueViolation { .. }) => {
                    // Out of the tree, its payload is no typed row: the
                    // envelope is kept whole from now on.
                    table.insert(key, envelope.as_bytes(), state_of(envelope), Form::Whole)?;
                    if conflicts.insert(key)? {
                        settled.conflicted.push(key.clone());
                    }
                }
                Err(error) => return Err(error),
            }
        }
        table.flush()?;
        Ok(settled)
    }
}

/// A verified envelope as a write rule sees it.
pub(crate) fn entry<'a, M: NetabaseModel>(
    envelope: &'a Envelope,
    record: Option<&'a M>,
) -> Entry<'a, M> {
    let version = envelope.model_version();
    Entry {
        newer_version: (version > M::VERSION && !envelope.is_tombstone()).then_some(version),
        model: envelope.model(),
        key: envelope.key(),
        record,
        delete: envelope.is_tombstone(),
        writer: envelope.writer(),
        version: envelope.version(),
        authority: envelope.authority(),
    }
}

/// Registered models by id.
#[derive(Default)]
pub(crate) struct Registry {
    models: HashMap<ModelId, Box<dyn ModelHandler>>,
}

impl Registry {
    /// Fails if `M` cannot be registered beside the models already here.
    pub(crate) fn check<M: NetabaseModel>(&self) -> Result<(), NodeError> {
        match self.models.get(&M::ID) {
            // The same type, or another with the same name and fields (a
            // copy of the model): both read and write the same records.
            Some(existing) if existing.name() != M::NAME || existing.schema() != M::SCHEMA => {
                Err(NodeError::ModelIdClash {
                    first: existing.name(),
                    second: M::NAME,
                })
            }
            _ => Ok(()),
        }
    }

    pub(crate) fn register<M: NetabaseModel>(&mut self) -> Result<(), NodeError> {
        self.check::<M>()?;
        if self.models.contains_key(&M::ID) {
            return Ok(());
        }
        self.models.insert(
            M::ID,
            Box::new(Handler::<M> {
                changes: tokio::sync::broadcast::channel(crate::store::WATCH_BUFFER).0,
            }),
        );
        Ok(())
    }

    /// A receiver of `M`'s typed changes, if `M` is registered.
    pub(crate) fn watch<M: NetabaseModel>(
        &self,
    ) -> Option<tokio::sync::broadcast::Receiver<NodeChange<M>>> {
        let handler = self
            .models
            .get(&M::ID)?
            .as_any()
            .downcast_ref::<Handler<M>>()?;
        Some(handler.changes.subscribe())
    }

    /// The ids of the models registered, in order.
    pub(crate) fn ids(&self) -> Vec<ModelId> {
        let mut ids: Vec<ModelId> = self.models.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    pub(crate) fn get(&self, id: ModelId) -> Option<&dyn ModelHandler> {
        self.models.get(&id).map(|h| h.as_ref())
    }

    /// Whether `M` itself (or a copy: same name and fields) is registered.
    pub(crate) fn is_registered<M: NetabaseModel>(&self) -> bool {
        self.models
            .get(&M::ID)
            .is_some_and(|h| h.name() == M::NAME && h.schema() == M::SCHEMA)
    }
}
