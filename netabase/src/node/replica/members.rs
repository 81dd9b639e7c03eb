//! The node's side of write rules: what a rule may look up (the admins
//! this node's configuration names, the memberships it holds), and the
//! clean-up a revocation calls for: writes a revoked member made after its
//! revocation, accepted before this node learned of it, are dropped.

use std::collections::HashMap;

use libp2p_identity::PeerId;

use super::state::Replica;
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
pub(crate) fn membership(shared: &Replica, model: ModelId, member: &PeerId) -> Option<Membership> {
    let cached = shared.held(&membership_key(model, member)).ok()??;
    Envelope::from_trusted_bytes(&cached.bytes)
        .ok()?
        .open::<Membership>()
        .ok()
        .flatten()
}

/// What rules may look up on this node.
pub(crate) struct NodeContext<'a>(pub(crate) &'a Replica);

impl Context for NodeContext<'_> {
    fn is_member(&self, model: ModelId, peer: &PeerId, at: Timestamp) -> bool {
        membership(self.0, model, peer).is_some_and(|m| m.covers(at))
    }

    fn is_admin(&self, model: ModelId, peer: &PeerId) -> bool {
        self.0
            .settings
            .admins
            .get(&model)
            .is_some_and(|admins| admins.contains(peer))
    }
}
