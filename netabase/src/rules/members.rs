//! The members rule: a model's writers are the peers an admin granted a
//! membership. A membership is itself a record ([`Membership`]), signed by
//! an admin and synced like any other, so every peer learns the same
//! grants and revocations. Admins are named in each node's configuration
//! (`NetabaseConfig::admins`): give every peer the same ones.

use libp2p_identity::PeerId;

use super::{Context, Entry, Refusal, WriteRule};
use crate::model::{ModelId, NetabaseModel};
use crate::sync::Timestamp;

/// Writes are accepted from members only: peers holding a [`Membership`]
/// of the model that covers the write's timestamp, or the model's admins.
/// A revocation refuses the member's writes stamped at or after it and
/// keeps the earlier ones; a peer that accepted later ones before it
/// learned of the revocation drops them then. A write that arrives before
/// its membership is refused, and fetched again by the next catch-up.
/// A revoked member can still sign writes stamped before its revocation:
/// they win only over versions older than that.
#[derive(Debug)]
pub struct Members;

impl<M: NetabaseModel> WriteRule<M> for Members {
    const READS_WRITE: bool = false;
    const READS_HELD: bool = false;

    fn check(
        write: &Entry<'_, M>,
        _: Option<&Entry<'_, M>>,
        cx: &dyn Context,
    ) -> Result<(), Refusal> {
        if cx.is_admin(write.model, &write.writer)
            || cx.is_member(write.model, &write.writer, write.version.timestamp)
        {
            Ok(())
        } else {
            Err(Refusal::NotMember)
        }
    }
}

/// A peer's membership of a model: when it may write. Written by an admin
/// of that model (see [`Netabase::grant`](crate::node::Netabase::grant)),
/// synced to every peer.
#[derive(crate::NetabaseModel, Clone, Debug, PartialEq, Eq)]
#[netabase(name = "netabase::Membership", write = MembershipRule)]
pub struct Membership {
    /// The model's id, then the member's peer id (see [`Membership::id`]).
    #[primary_key]
    pub id: Vec<u8>,
    /// The model's id ([`ModelId`]'s number).
    pub model: u32,
    /// The member.
    pub member: PeerId,
    /// When it may write: `[from, until)` timestamps, `until` open while
    /// the membership lasts. Each grant after a revocation adds a period,
    /// so writes made during earlier ones stay valid.
    pub periods: Vec<(u64, Option<u64>)>,
}

impl Membership {
    /// The primary key of `member`'s membership of `model`.
    pub fn id(model: ModelId, member: &PeerId) -> Vec<u8> {
        let mut id = model.0.to_be_bytes().to_vec();
        id.extend_from_slice(&member.to_bytes());
        id
    }

    /// Whether it covers a write stamped `at`.
    pub fn covers(&self, at: Timestamp) -> bool {
        self.periods
            .iter()
            .any(|&(from, until)| from <= at.0 && until.is_none_or(|until| at.0 < until))
    }

    /// Whether it lets the member write now (its last period is open).
    pub fn is_open(&self) -> bool {
        self.periods
            .last()
            .is_some_and(|(_, until)| until.is_none())
    }
}

/// Only an admin of a membership's model writes or deletes it, and a
/// membership is stored under its own id.
#[derive(Debug)]
pub struct MembershipRule;

impl WriteRule<Membership> for MembershipRule {
    fn check(
        write: &Entry<'_, Membership>,
        held: Option<&Entry<'_, Membership>>,
        cx: &dyn Context,
    ) -> Result<(), Refusal> {
        let model = match (write.record, held.and_then(|h| h.record)) {
            (Some(m), _) => {
                if m.id != Membership::id(ModelId(m.model), &m.member) {
                    return Err(Refusal::custom(
                        "a membership's id names its model and member",
                    ));
                }
                ModelId(m.model)
            }
            (None, Some(held)) => ModelId(held.model),
            (None, None) => return Err(Refusal::NotMember),
        };
        if cx.is_admin(model, &write.writer) {
            Ok(())
        } else {
            Err(Refusal::NotMember)
        }
    }
}
