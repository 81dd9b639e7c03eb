//! Who may write a model's records. A rule is declared with the derive,
//! `#[netabase(write = "..")]`, and checked by every peer on every path a
//! record enters (a local write, a Kademlia push, a catch-up batch, a copy
//! answering `get_record`), against the version that peer holds. The same
//! rule on the same two versions gives the same answer on every peer.
//!
//! - [`Anyone`] (the default): any signed write wins by the conflict rule.
//! - [`Owner`]: a record names its owner in an `#[owner]` field; only the
//!   owner writes or deletes it, and only the owner hands it to another.
//! - [`Immutable`]: the first version of a key is the last.
//! - [`Members`]: only peers an admin of the model granted a membership
//!   (a signed, synced [`Membership`] record) write, while it lasts.
//! - Your own: implement [`WriteRule`] and name the type,
//!   `#[netabase(write = MyRule)]`.

mod members;
mod owner;

use std::borrow::Cow;

use crate::model::{ModelId, NetabaseModel};
use crate::sync::{Timestamp, Version};
use crate::Keypair;
use libp2p_identity::PeerId;

pub use members::{Members, Membership, MembershipKey, MembershipRule};
#[cfg(feature = "node")]
pub(crate) use owner::chain_of;
pub use owner::{Acceptance, Chain, Owner, MAX_TRANSFERS};

/// One version of a record as a rule sees it: the new write, or the one
/// held.
#[derive(Debug)]
pub struct Entry<'a, M> {
    /// The model's id (part of what owner chains sign).
    pub model: ModelId,
    /// The encoded primary key.
    pub key: &'a [u8],
    /// The record; `None` for a delete, when the rule said it does not
    /// read records ([`WriteRule::READS_WRITE`], [`WriteRule::READS_HELD`]),
    /// or when it was written at a version of the model this build does
    /// not know ([`newer_version`](Self::newer_version)).
    pub record: Option<&'a M>,
    /// The version of the model the record was written at, when newer than
    /// this build knows: a peer runs a newer release of the app. The record
    /// cannot be read here, so a rule judges such a write by what it can
    /// see (the writer, the authority, the version held). The node reads
    /// the record once the app registers that version, and runs the rule
    /// on it again then, against nothing held.
    pub newer_version: Option<u32>,
    /// Whether this version is a delete.
    pub delete: bool,
    /// Who signed this version.
    pub writer: PeerId,
    /// Its version (timestamp, writer).
    pub version: Version,
    /// What the rule carries with the record beyond it (an owner chain).
    pub authority: &'a [u8],
}

/// Why a rule refused a write.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// Not signed by the record's owner (or not handed over by the owner).
    NotOwner,
    /// The key already holds a record, and the model's records never change.
    Immutable,
    /// The writer holds no membership of the model covering the write's
    /// time (or, for a membership record, is not an admin of its model).
    NotMember,
    /// A handover to a peer that has not accepted the record: get its
    /// [`Acceptance`] and hand the record over with it.
    NotAccepted,
    /// The rule's own reason.
    Custom(Cow<'static, str>),
}

impl Refusal {
    /// A refusal with your own reason, for custom rules.
    pub fn custom(reason: impl Into<Cow<'static, str>>) -> Self {
        Refusal::Custom(reason.into())
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotOwner => f.write_str("not written by the record's owner"),
            Refusal::Immutable => f.write_str("the record exists and never changes"),
            Refusal::NotMember => f.write_str("the writer is not a member of the model"),
            Refusal::NotAccepted => f.write_str(
                "the new owner has not accepted the record (hand it over with its acceptance)",
            ),
            Refusal::Custom(reason) => f.write_str(reason),
        }
    }
}

impl std::error::Error for Refusal {}

/// What a rule may look up beyond the two versions it compares: the
/// memberships this peer holds and the admins its configuration names.
pub trait Context {
    /// Whether an admin of `model` granted `peer` a membership covering
    /// the time `at`.
    fn is_member(&self, model: ModelId, peer: &PeerId, at: Timestamp) -> bool;
    /// Whether this peer's configuration names `peer` an admin of `model`.
    fn is_admin(&self, model: ModelId, peer: &PeerId) -> bool;
}

/// A context with no memberships and no admins (rules that need neither).
#[derive(Debug, Default)]
pub struct NoContext;

impl Context for NoContext {
    fn is_member(&self, _: ModelId, _: &PeerId, _: Timestamp) -> bool {
        false
    }
    fn is_admin(&self, _: ModelId, _: &PeerId) -> bool {
        false
    }
}

/// Who may write records of `M`. `check` must depend only on its arguments
/// (never on the time, the node, or randomness): every peer runs it on the
/// same two versions, and they must agree, or peers diverge.
pub trait WriteRule<M: NetabaseModel>: 'static {
    /// Whether the rule looks at writes at all; `false` (only [`Anyone`])
    /// spares every check.
    const CHECKS: bool = true;
    /// Whether `check` reads the new write's `record` (else it is left
    /// `None`, and decoding it spared).
    const READS_WRITE: bool = true;
    /// Whether `check` reads the held version's `record`.
    const READS_HELD: bool = true;

    /// Whether `write` may replace `held` (the version this peer holds for
    /// the key; `None` if it holds none). Runs only for writes the conflict
    /// rule would let in (newer than what is held).
    ///
    /// # Errors
    ///
    /// The [`Refusal`]: the write is not stored, counted as
    /// `Rejection::NotAllowed` (from a peer) or returned as
    /// `NodeError::NotAllowed` (local).
    fn check(
        write: &Entry<'_, M>,
        held: Option<&Entry<'_, M>>,
        cx: &dyn Context,
    ) -> Result<(), Refusal>;

    /// What a local write by `signer` carries beyond the record (an owner
    /// chain, extended when the owner hands the record over with the new
    /// owner's `consent`). Most rules carry nothing.
    ///
    /// # Errors
    ///
    /// A [`Refusal`] if `signer` may not make this write at all.
    #[doc(hidden)]
    fn authorize(
        write: &Entry<'_, M>,
        held: Option<&Entry<'_, M>>,
        signer: &Keypair,
        consent: Option<&Acceptance>,
    ) -> Result<Vec<u8>, Refusal> {
        let _ = (write, held, signer, consent);
        Ok(Vec::new())
    }
}

/// Anyone may write or delete any record; the conflict rule (newest
/// version wins) decides between writes. Suits data every peer may edit.
/// It protects nothing against a peer that writes on purpose: any peer can
/// overwrite or delete any record with a later timestamp.
#[derive(Debug)]
pub struct Anyone;

impl<M: NetabaseModel> WriteRule<M> for Anyone {
    const CHECKS: bool = false;

    fn check(_: &Entry<'_, M>, _: Option<&Entry<'_, M>>, _: &dyn Context) -> Result<(), Refusal> {
        Ok(())
    }
}

/// The first version of a key is the only one: no later version and no
/// delete is accepted once a peer holds it (receiving the same version
/// again is no error). For append-only logs and content-addressed data.
/// Two different first versions of one key (two writers racing on the same
/// key) split the peers that got each: use keys no two writers share (a
/// hash of the content, or random ids).
#[derive(Debug)]
pub struct Immutable;

impl<M: NetabaseModel> WriteRule<M> for Immutable {
    const READS_WRITE: bool = false;
    const READS_HELD: bool = false;

    fn check(
        write: &Entry<'_, M>,
        held: Option<&Entry<'_, M>>,
        _: &dyn Context,
    ) -> Result<(), Refusal> {
        if held.is_some() || write.delete {
            return Err(Refusal::Immutable);
        }
        Ok(())
    }
}
