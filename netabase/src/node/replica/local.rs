//! Local writes: stamping, signing under the model's write rule, and
//! committing through the one apply path. Blocking.

use super::apply;
use super::registry;
use super::state::Replica;
use super::validate::Refused;
use crate::codec::{self, Envelope};
use crate::model::NetabaseModel;
use crate::node::NodeError;
use crate::sync::{Timestamp, Version};
use crate::KeyEncode;

/// The timestamp for a local write to `key` of `M`: past the version this
/// node holds for it and past `after` (an earlier write of a batch), so the
/// write always replaces both.
pub(crate) fn stamp<M: NetabaseModel>(
    shared: &Replica,
    key: &M::Key,
    after: Option<Timestamp>,
) -> Result<Timestamp, NodeError> {
    let record_key = codec::record_key(M::ID, key.to_key_bytes().as_slice());
    let held = shared.held(&record_key)?.map(|c| c.version.timestamp);
    Ok(shared.clock.now_after(held.max(after)))
}

/// Signs a local write of `record` (`None`: a delete) under `key`, with
/// what the model's write rule needs it to carry (the owner chain, extended
/// when the owner hands the record over), stamped past `after` if given.
/// Blocking-safe.
pub(crate) fn seal<M: NetabaseModel>(
    shared: &Replica,
    key: &M::Key,
    record: Option<&M>,
    consent: Option<&crate::rules::Acceptance>,
    after: Option<Timestamp>,
) -> Result<Envelope, NodeError> {
    use crate::rules::{Entry, WriteRule};
    let timestamp = stamp::<M>(shared, key, after)?;
    if !<M::Rule as WriteRule<M>>::CHECKS {
        return Ok(match record {
            Some(record) => Envelope::seal(&shared.keypair, record, timestamp)?,
            None => Envelope::seal_tombstone::<M>(&shared.keypair, key, timestamp)?,
        });
    }
    let key_bytes = key.to_key_bytes();
    let record_key = codec::record_key(M::ID, key_bytes.as_slice());
    let held = shared
        .held(&record_key)?
        .and_then(|cached| Envelope::from_trusted_bytes(&cached.bytes).ok());
    let held_record = held.as_ref().and_then(|e| e.open::<M>().ok().flatten());
    let write = Entry {
        model: M::ID,
        key: key_bytes.as_slice(),
        record,
        delete: record.is_none(),
        writer: shared.peer_id,
        version: Version {
            timestamp,
            writer: shared.peer_id,
        },
        authority: &[],
        newer_version: None,
    };
    let held = held
        .as_ref()
        .map(|envelope| registry::entry(envelope, held_record.as_ref()));
    let authority =
        <M::Rule as WriteRule<M>>::authorize(&write, held.as_ref(), &shared.keypair, consent)
            .map_err(|refusal| NodeError::NotAllowed {
                model: M::NAME,
                refusal,
            })?;
    Ok(Envelope::seal_with_authority(
        &shared.keypair,
        key,
        record,
        timestamp,
        authority,
    )?)
}

/// Commits a locally signed envelope, refusing it up front if it is over the
/// record limit. Blocking.
pub(crate) fn commit_local(
    shared: &Replica,
    envelope: &Envelope,
    model: &'static str,
) -> Result<(), NodeError> {
    check_size(shared, envelope, model)?;
    apply::apply(shared, envelope)
        .map(drop)
        .map_err(refused_error)
}

pub(crate) fn refused_error(refused: Refused) -> NodeError {
    match refused.error {
        Some(error) => error,
        None => NodeError::Refused(refused.reason),
    }
}

pub(crate) fn check_size(
    shared: &Replica,
    envelope: &Envelope,
    model: &'static str,
) -> Result<(), NodeError> {
    let size = envelope.as_bytes().len();
    if size > shared.settings.max_record_bytes {
        return Err(NodeError::RecordTooLarge {
            model,
            size,
            limit: shared.settings.max_record_bytes,
        });
    }
    Ok(())
}

/// The typed record in an envelope; a delete reads as not found.
pub(crate) fn open_record<M: NetabaseModel>(envelope: &Envelope) -> Result<M, NodeError> {
    match envelope.open::<M>() {
        Ok(record) => record.ok_or(NodeError::NotFound),
        Err(crate::codec::EnvelopeError::NewerVersion {
            model,
            version,
            known,
        }) => Err(NodeError::NewerVersion {
            model,
            version,
            known,
        }),
        Err(_) => Err(NodeError::NotFound),
    }
}
