//! What subscribers and watchers are told after a commit.

use super::event::{ChangeKind, Event, Origin};
use super::state::Replica;
use crate::codec::Envelope;
use crate::model::ModelId;

/// Tells subscribers that the record under `record_key` lost a unique value
/// to another record: it is held, but out of its typed tree.
pub(crate) fn tell_conflict(shared: &Replica, record_key: &[u8]) {
    let Ok(Some(cached)) = shared.held(record_key) else {
        return;
    };
    let Ok(envelope) = Envelope::from_trusted_bytes(&cached.bytes) else {
        return;
    };
    let model = model_name(shared, envelope.model()).unwrap_or("?");
    tracing::info!(
        model,
        "a synced record lost a unique value to an earlier one"
    );
    let _ = shared.events.send(Event::UniqueConflict {
        model,
        model_id: envelope.model(),
        key: envelope.key().to_vec(),
        writer: envelope.writer(),
    });
}

/// The name of a registered model, for events.
pub(crate) fn model_name(shared: &Replica, model: ModelId) -> Option<&'static str> {
    let registry = shared.registry.read().unwrap_or_else(|e| e.into_inner());
    registry.get(model).map(|h| h.name())
}

/// Tells subscribers that the record in `envelope` changed.
pub(crate) fn tell(shared: &Replica, envelope: &Envelope, kind: ChangeKind, origin: Origin) {
    let model = {
        let registry = shared.registry.read().unwrap_or_else(|e| e.into_inner());
        let handler = registry.get(envelope.model());
        if let Some(handler) = handler {
            handler.announce(envelope, kind, origin);
        }
        handler.map_or("?", |h| h.name())
    };
    // Nobody listening is fine: events are best-effort by design.
    let _ = shared.events.send(Event::Record {
        model,
        model_id: envelope.model(),
        key: envelope.key().to_vec(),
        kind,
        origin,
        writer: envelope.writer(),
    });
}
