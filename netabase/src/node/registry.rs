//! The models a node syncs, behind one object-safe interface so records from
//! peers reach the right typed tree.

use std::collections::HashMap;
use std::marker::PhantomData;

use crate::codec::{Envelope, EnvelopeError};
use crate::model::{ModelId, NetabaseModel};
use crate::store::{StoreError, WriteTransaction};

use super::NodeError;

/// One registered model, type-erased.
pub(crate) trait ModelHandler: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Checks that the envelope holds a valid record of this model.
    fn check(&self, envelope: &Envelope) -> Result<(), EnvelopeError>;
    /// Writes many envelopes' records (or deletes) of this model, opening its
    /// tree once; one result per envelope, in order. A refused record leaves
    /// the tree as it was.
    fn apply_many(
        &self,
        txn: &WriteTransaction,
        envelopes: &[&Envelope],
    ) -> Result<Vec<Result<(), ApplyError>>, StoreError>;
    /// Removes the record with this encoded primary key from the typed tree.
    fn remove(&self, txn: &WriteTransaction, key: &[u8]) -> Result<(), StoreError>;
}

pub(crate) enum ApplyError {
    Envelope(EnvelopeError),
    Store(StoreError),
}

struct Handler<M>(PhantomData<fn() -> M>);

impl<M: NetabaseModel> ModelHandler for Handler<M> {
    fn name(&self) -> &'static str {
        M::NAME
    }

    fn check(&self, envelope: &Envelope) -> Result<(), EnvelopeError> {
        envelope.open::<M>().map(drop)
    }

    fn apply_many(
        &self,
        txn: &WriteTransaction,
        envelopes: &[&Envelope],
    ) -> Result<Vec<Result<(), ApplyError>>, StoreError> {
        let mut tree = txn.open_tree::<M>()?;
        Ok(envelopes
            .iter()
            .map(|envelope| {
                match envelope.open::<M>().map_err(ApplyError::Envelope)? {
                    Some(record) => tree.put(&record).map(drop),
                    None => tree.remove_encoded(envelope.key()).map(drop),
                }
                .map_err(ApplyError::Store)
            })
            .collect())
    }

    fn remove(&self, txn: &WriteTransaction, key: &[u8]) -> Result<(), StoreError> {
        txn.open_tree::<M>()?.remove_encoded(key).map(drop)
    }
}

/// Registered models by id.
#[derive(Default)]
pub(crate) struct Registry {
    models: HashMap<ModelId, Box<dyn ModelHandler>>,
}

impl Registry {
    pub(crate) fn register<M: NetabaseModel>(&mut self) -> Result<(), NodeError> {
        if let Some(existing) = self.models.get(&M::ID) {
            if existing.name() == M::NAME {
                return Ok(());
            }
            return Err(NodeError::ModelIdClash {
                first: existing.name(),
                second: M::NAME,
            });
        }
        self.models
            .insert(M::ID, Box::new(Handler::<M>(PhantomData)));
        Ok(())
    }

    pub(crate) fn get(&self, id: ModelId) -> Option<&dyn ModelHandler> {
        self.models.get(&id).map(|h| h.as_ref())
    }

    pub(crate) fn contains(&self, id: ModelId) -> bool {
        self.models.contains_key(&id)
    }
}
