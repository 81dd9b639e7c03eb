//! The clean-up a revocation calls for: writes a revoked member made after
//! its revocation, accepted before this node learned of it, are dropped.

use super::event::Origin;
use super::horizon;
use super::members::NodeContext;
use super::state::Replica;
use crate::codec::Envelope;
use crate::model::ModelId;
use crate::node::NodeError;
use crate::rules::Context;
use crate::rules::Membership;

/// After a membership changed: drops the member's writes of its model that
/// it no longer covers (made after a revocation this node learned of late),
/// unless the member is an admin. Blocking. Returns how many were dropped.
pub(crate) fn drop_uncovered(
    shared: &Replica,
    membership: &Membership,
) -> Result<usize, NodeError> {
    let model = ModelId(membership.model);
    let cx = NodeContext(shared);
    if cx.is_admin(model, &membership.member) {
        return Ok(0);
    }
    // The model's records, read from the store one at a time.
    let prefix = model.0.to_be_bytes();
    let mut doomed: Vec<Vec<u8>> = Vec::new();
    shared
        .store
        .begin_read()?
        .for_each_envelope_with_prefix(&prefix, |key, bytes| {
            let uncovered = Envelope::from_trusted_bytes(bytes).is_ok_and(|e| {
                e.writer() == membership.member && !membership.covers(e.version().timestamp)
            });
            if uncovered {
                doomed.push(key.to_vec());
            }
        })?;

    if doomed.is_empty() {
        return Ok(0);
    }
    let dropped = horizon::drop_held(shared, &doomed, Origin::Local, |envelope| {
        envelope.writer() == membership.member && !membership.covers(envelope.version().timestamp)
    })?;
    if !dropped.is_empty() {
        tracing::info!(
            member = %membership.member,
            dropped = dropped.len(),
            "dropped writes a revoked member made after its revocation"
        );
    }
    Ok(dropped.len())
}
