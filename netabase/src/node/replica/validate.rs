//! Every check a record from a peer passes before it may touch the store:
//! size, format, signature, model, key, write rule and horizon. Pure CPU:
//! these run on async threads and never read the store.

use super::members::NodeContext;
use super::registry::ModelHandler;
use super::state::Replica;
use super::stats::Rejection;
use super::watermarks;
use crate::codec::Envelope;
use crate::node::NodeError;

/// Every check an inbound record passes before it may touch the store.
/// `held` is what this node holds under `record_key` (looked up by the
/// caller, so that this never reads the store: it runs on async threads).
pub(crate) fn validate_remote(
    shared: &Replica,
    record_key: &[u8],
    bytes: &[u8],
    held: Option<&[u8]>,
) -> Result<Envelope, Refused> {
    let envelope = Envelope::from_bytes(bytes, shared.settings.max_record_bytes)
        .map_err(|e| Refused::new(e.kind().into()))?;
    check_remote(shared, record_key, envelope, Some(held))
}

/// [`validate_remote`] for bytes whose record key is not known in advance
/// (a query's answer): the key is the envelope's own, and the rule judges
/// it against the version this node holds, read here. Blocking.
pub(crate) fn validate_unkeyed(shared: &Replica, bytes: &[u8]) -> Result<Envelope, Refused> {
    let envelope = Envelope::from_bytes(bytes, shared.settings.max_record_bytes)
        .map_err(|e| Refused::new(e.kind().into()))?;
    let record_key = envelope.record_key();
    let held = shared
        .held(&record_key)
        .map_err(|_| Refused::new(Rejection::StorageFailed))?;
    check_remote(
        shared,
        &record_key,
        envelope,
        Some(held.as_ref().map(|held| &held.bytes[..])),
    )
}

/// [`validate_remote`] for a batch of `(record key, bytes)`: signatures are
/// checked as one batch, and payloads are left for [`apply_batch`] to decode
/// (it decodes them anyway, and refuses the same records for the same
/// reasons). One result per input, in order.
pub(crate) fn validate_batch(
    shared: &Replica,
    records: &[(Vec<u8>, Vec<u8>)],
) -> Vec<Result<Envelope, Refused>> {
    Envelope::from_bytes_many(
        records.iter().map(|(_, bytes)| bytes.as_slice()),
        shared.settings.max_record_bytes,
    )
    .into_iter()
    .zip(records)
    .map(|(envelope, (record_key, _))| {
        let envelope = envelope.map_err(|e| Refused::new(e.kind().into()))?;
        check_remote(shared, record_key, envelope, None)
    })
    .collect()
}

/// The checks after the signature: record key, model, payload and write
/// rule against `decode`'s held envelope (if `decode` is given: else the
/// batch path decodes later and the held version is read here, blocking),
/// clock, horizon. The same on every path (Kademlia pushes, catch-up
/// fetches, `get_record`), so what one path refuses no other lets in.
fn check_remote(
    shared: &Replica,
    record_key: &[u8],
    envelope: Envelope,
    decode: Option<Option<&[u8]>>,
) -> Result<Envelope, Refused> {
    envelope
        .check_record_key(record_key)
        .map_err(|e| Refused::new(e.kind().into()))?;
    {
        let registry = shared.registry.read().unwrap_or_else(|e| e.into_inner());
        let handler = registry
            .get(envelope.model())
            .ok_or_else(|| Refused::new(Rejection::UnknownModel))?;
        if let Some(held) = decode {
            handler
                .check(&envelope)
                .map_err(|e| Refused::new(e.kind().into()))?;
            // A copy answering `get_record` is judged by the rule too,
            // against what this node holds, before anyone sees it.
            allowed(shared, Some(handler), &envelope, held)
                .map_err(|_| Refused::new(Rejection::NotAllowed))?;
        }
    }
    shared
        .clock
        .check(envelope.version().timestamp)
        .map_err(|_| Refused::new(Rejection::FromTheFuture))?;
    // A record older than our floor, for a key we do not hold, was deleted
    // here and the delete since collected: whoever offers it, and however.
    if envelope.version().timestamp.0 < watermarks::floor_of(shared, envelope.model()) {
        let held = match decode {
            Some(held) => held.is_some(),
            // Unreadable: let the batch path meet the failure and report it.
            None => shared.held(record_key).map_or(true, |held| held.is_some()),
        };
        if held {
            return Ok(envelope);
        }
        return Err(Refused::new(Rejection::Expired));
    }
    Ok(envelope)
}

/// Why an envelope was not stored.
#[derive(Debug)]
pub(crate) struct Refused {
    pub(crate) reason: Rejection,
    pub(crate) error: Option<NodeError>,
}

impl Refused {
    pub(crate) fn new(reason: Rejection) -> Self {
        Refused {
            reason,
            error: None,
        }
    }
}

/// Whether the model's write rule lets `envelope` replace `held` (stored
/// bytes, verified when they came in). Unregistered models are refused
/// elsewhere.
pub(crate) fn allowed(
    shared: &Replica,
    handler: Option<&dyn ModelHandler>,
    envelope: &Envelope,
    held: Option<&[u8]>,
) -> Result<(), crate::rules::Refusal> {
    let Some(handler) = handler else {
        return Ok(());
    };
    let held = held.and_then(|bytes| Envelope::from_trusted_bytes(bytes).ok());
    handler.allow(envelope, held.as_ref(), &NodeContext(shared))
}

/// Whether the model's write rule refuses `envelope` replacing `held`.
pub(crate) fn rule_refuses(shared: &Replica, envelope: &Envelope, held: &Envelope) -> bool {
    let registry = shared.registry.read().unwrap_or_else(|e| e.into_inner());
    registry.get(envelope.model()).is_some_and(|handler| {
        handler
            .allow(envelope, Some(held), &NodeContext(shared))
            .is_err()
    })
}
