//! The node's side of write rules: what a rule may look up (the admins
//! this node's configuration names, the memberships it holds), and the
//! clean-up a revocation calls for: writes a revoked member made after its
//! revocation, accepted before this node learned of it, are dropped.

use std::collections::HashMap;

use libp2p_identity::PeerId;

use super::event::Origin;
use super::{NodeError, Shared};
use crate::codec::{self, Envelope};
use crate::model::{ModelId, NetabaseModel};
use crate::rules::{Context, Membership, MembershipKey};
use crate::sync::Timestamp;
use crate::KeyEncode;

/// The admins named in the configuration, by model id.
pub(crate) fn admins_by_model(
    admins: &std::collections::BTreeMap<String, Vec<PeerId>>,
) -> HashMap<ModelId, Vec<PeerId>> {
    admins
        .iter()
        .map(|(model, peers)| (ModelId::from_name(model), peers.clone()))
        .collect()
}

/// The record key of `member`'s membership of `model`.
pub(crate) fn membership_key(model: ModelId, member: &PeerId) -> Vec<u8> {
    let key = MembershipKey(Membership::id(model, member)).to_key_bytes();
    codec::record_key(Membership::ID, key.as_slice())
}

/// The membership this node holds for `member` of `model`, if any (none if
/// the store cannot be read: a rule then refuses what needs one). From the
/// cache, else one read of the store: blocking.
pub(crate) fn membership(shared: &Shared, model: ModelId, member: &PeerId) -> Option<Membership> {
    let cached = shared.held(&membership_key(model, member)).ok()??;
    Envelope::from_trusted_bytes(&cached.bytes)
        .ok()?
        .open::<Membership>()
        .ok()
        .flatten()
}

/// What rules may look up on this node.
pub(crate) struct NodeContext<'a>(pub(crate) &'a Shared);

impl Context for NodeContext<'_> {
    fn is_member(&self, model: ModelId, peer: &PeerId, at: Timestamp) -> bool {
        membership(self.0, model, peer).is_some_and(|m| m.covers(at))
    }

    fn is_admin(&self, model: ModelId, peer: &PeerId) -> bool {
        self.0
            .admins
            .get(&model)
            .is_some_and(|admins| admins.contains(peer))
    }
}

/// After a membership changed: drops the member's writes of its model that
/// it no longer covers (made after a revocation this node learned of late),
/// unless the member is an admin. Blocking. Returns how many were dropped.
pub(crate) fn drop_uncovered(shared: &Shared, membership: &Membership) -> Result<usize, NodeError> {
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
    let dropped = super::horizon::drop_held(shared, &doomed, Origin::Local, |envelope| {
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
