//! The owner rule's chain: who first owned a record, and each handover
//! since, signed by the owner who made it. Every version of the record
//! carries the whole chain, so a peer that holds an old version checks a
//! new one by seeing that the chain it holds is a prefix of the new one,
//! whatever handovers it missed. Checking needs nothing but the two
//! versions: every peer decides the same.
//!
//! A handover needs both owners: the new owner first signs an
//! [`Acceptance`] of that key from the current owner, at the chain's next
//! position; the current owner then writes the record naming the new owner,
//! with a link signed by itself and carrying the acceptance. Nobody is made
//! the owner of a record it did not ask for, and the handover is still one
//! write by the current owner, so no write of its can race it.
//!
//! A record never handed over carries no chain at all (an empty
//! authority): its owner field, or a delete's signer, is the whole chain.
//! That keeps the common case as small and cheap as a record under no rule.

use bincode::{Decode, Encode};
use libp2p_identity::{PeerId, PublicKey};

use super::{Context, Entry, Refusal, WriteRule};
use crate::model::NetabaseModel;
use crate::Keypair;

/// Handovers a record's chain may hold; a record handed over more often
/// than that is refused (write it under a new key).
pub const MAX_TRANSFERS: usize = 32;

/// Domain separation for handover signatures.
const LINK_CONTEXT: &[u8] = b"netabase/owner/v1\0";
/// Domain separation for acceptances (the new owner's side of a handover).
const ACCEPT_CONTEXT: &[u8] = b"netabase/owner/accept/v1\0";

/// A record's owners: the first, then each handover.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    root: PeerId,
    links: Vec<Link>,
}

/// One handover: to whom, when (the timestamp of the write that made it),
/// signed by the owner before it, and accepted by the new owner.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Link {
    to: PeerId,
    at: u64,
    signature: Vec<u8>,
    acceptance: Vec<u8>,
}

/// A link on the wire: recipient, timestamp, owner's signature, acceptance.
type WireLink = (Vec<u8>, u64, Vec<u8>, Vec<u8>);

#[derive(Encode, Decode)]
struct Wire {
    root: Vec<u8>,
    links: Vec<WireLink>,
}

/// A peer's consent to own one record: signed by the new owner (`to`),
/// for the record's key, from its current owner (`from`), at the chain's
/// next position (so it serves that one handover and no later one). Made
/// by `Netabase::accept_ownership` on the new owner's node, carried to the
/// current owner however the application likes ([`to_bytes`](Self::to_bytes),
/// [`from_bytes`](Self::from_bytes)), and used by its `Netabase::hand_over`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acceptance {
    model: u32,
    key: Vec<u8>,
    from: PeerId,
    to: PeerId,
    position: u32,
    signature: Vec<u8>,
}

#[derive(Encode, Decode)]
struct AcceptanceWire {
    model: u32,
    key: Vec<u8>,
    from: Vec<u8>,
    to: Vec<u8>,
    position: u32,
    signature: Vec<u8>,
}

impl Acceptance {
    /// `signer`'s acceptance of the record of model `model` under `key`
    /// from `from`, whose chain holds `position` handovers so far.
    ///
    /// # Errors
    ///
    /// [`Refusal::NotOwner`] if the key cannot sign (not ed25519).
    pub fn sign(
        signer: &Keypair,
        model: crate::model::ModelId,
        key: &[u8],
        from: PeerId,
        position: usize,
    ) -> Result<Self, Refusal> {
        let to = signer.public().to_peer_id();
        let position = u32::try_from(position).map_err(|_| Refusal::NotOwner)?;
        let signature = signer
            .sign(&accept_message(model.0, key, &from, &to, position))
            .map_err(|_| Refusal::NotOwner)?;
        Ok(Acceptance {
            model: model.0,
            key: key.to_vec(),
            from,
            to,
            position,
            signature,
        })
    }

    /// Who accepts the record: its owner once handed over.
    pub fn new_owner(&self) -> PeerId {
        self.to
    }

    /// Who it is accepted from: the owner when it was signed.
    pub fn from(&self) -> PeerId {
        self.from
    }

    /// The acceptance as bytes, to send to the current owner.
    pub fn to_bytes(&self) -> Vec<u8> {
        let wire = AcceptanceWire {
            model: self.model,
            key: self.key.clone(),
            from: self.from.to_bytes(),
            to: self.to.to_bytes(),
            position: self.position,
            signature: self.signature.clone(),
        };
        // Encoding plain bytes and integers cannot fail.
        bincode::encode_to_vec(&wire, bincode::config::standard()).unwrap_or_default()
    }

    /// An acceptance from [`to_bytes`](Self::to_bytes); `None` for bytes
    /// that are not one (its signature is checked when it is used).
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let config = bincode::config::standard().with_limit::<{ 64 * 1024 }>();
        let (wire, read): (AcceptanceWire, usize) =
            bincode::decode_from_slice(bytes, config).ok()?;
        if read != bytes.len() {
            return None;
        }
        Some(Acceptance {
            model: wire.model,
            key: wire.key,
            from: PeerId::from_bytes(&wire.from).ok()?,
            to: PeerId::from_bytes(&wire.to).ok()?,
            position: wire.position,
            signature: wire.signature,
        })
    }

    /// Whether this accepts the handover of `model`'s record under `key`
    /// from `from` to `to` at `position`, signed by `to`.
    fn accepts(&self, model: u32, key: &[u8], from: &PeerId, to: &PeerId, position: usize) -> bool {
        self.model == model
            && self.key == key
            && self.from == *from
            && self.to == *to
            && u32::try_from(position) == Ok(self.position)
            && accepted(model, key, from, to, position, &self.signature)
    }
}

impl Chain {
    /// The owner now: the last handover's recipient, or the first owner.
    pub fn owner(&self) -> PeerId {
        self.links.last().map_or(self.root, |link| link.to)
    }

    /// The owner before the last handover, if there was one.
    fn previous(&self) -> Option<PeerId> {
        match self.links.len() {
            0 => None,
            1 => Some(self.root),
            n => Some(self.links[n - 2].to),
        }
    }

    /// Handovers so far.
    pub fn transfers(&self) -> usize {
        self.links.len()
    }

    fn encode(&self) -> Vec<u8> {
        let wire = Wire {
            root: self.root.to_bytes(),
            links: self
                .links
                .iter()
                .map(|l| {
                    (
                        l.to.to_bytes(),
                        l.at,
                        l.signature.clone(),
                        l.acceptance.clone(),
                    )
                })
                .collect(),
        };
        // Encoding plain bytes and integers cannot fail.
        bincode::encode_to_vec(&wire, bincode::config::standard()).unwrap_or_default()
    }

    /// The chain in an envelope's authority bytes; `None` if they are not one.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let config = bincode::config::standard().with_limit::<{ 64 * 1024 }>();
        let (wire, read): (Wire, usize) = bincode::decode_from_slice(bytes, config).ok()?;
        if read != bytes.len() || wire.links.len() > MAX_TRANSFERS {
            return None;
        }
        let links = wire
            .links
            .into_iter()
            .map(|(to, at, signature, acceptance)| {
                Some(Link {
                    to: PeerId::from_bytes(&to).ok()?,
                    at,
                    signature,
                    acceptance,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Chain {
            root: PeerId::from_bytes(&wire.root).ok()?,
            links,
        })
    }

    /// Whether every handover is signed by the owner before it and
    /// accepted by the owner after it, for this model's record under `key`.
    fn verify(&self, model: u32, key: &[u8]) -> bool {
        let mut from = self.root;
        for (position, link) in self.links.iter().enumerate() {
            let Some(public) = public_key(&from) else {
                return false;
            };
            if !public.verify(&message(model, key, &link.to, link.at), &link.signature)
                || !accepted(model, key, &from, &link.to, position, &link.acceptance)
            {
                return false;
            }
            from = link.to;
        }
        true
    }

    fn extends(&self, held: &Chain) -> bool {
        self.root == held.root
            && self.links.len() >= held.links.len()
            && self.links[..held.links.len()] == held.links[..]
    }
}

/// What a handover signature covers.
fn message(model: u32, key: &[u8], to: &PeerId, at: u64) -> Vec<u8> {
    let mut out = signed_prefix(LINK_CONTEXT, model, key);
    out.extend_from_slice(&to.to_bytes());
    out.extend_from_slice(&at.to_be_bytes());
    out
}

/// What an acceptance signature covers.
fn accept_message(model: u32, key: &[u8], from: &PeerId, to: &PeerId, position: u32) -> Vec<u8> {
    let mut out = signed_prefix(ACCEPT_CONTEXT, model, key);
    out.extend_from_slice(&from.to_bytes());
    out.extend_from_slice(&to.to_bytes());
    out.extend_from_slice(&position.to_be_bytes());
    out
}

/// The start of every owner-chain signature: its domain, then the record
/// it is about (model and length-prefixed key).
fn signed_prefix(context: &[u8], model: u32, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(context.len() + 8 + key.len() + 96);
    out.extend_from_slice(context);
    out.extend_from_slice(&model.to_be_bytes());
    out.extend_from_slice(&(key.len() as u32).to_be_bytes());
    out.extend_from_slice(key);
    out
}

/// Whether `signature` is `to`'s acceptance of the handover from `from`
/// at `position`.
fn accepted(
    model: u32,
    key: &[u8],
    from: &PeerId,
    to: &PeerId,
    position: usize,
    signature: &[u8],
) -> bool {
    let Ok(position) = u32::try_from(position) else {
        return false;
    };
    public_key(to).is_some_and(|public| {
        public.verify(&accept_message(model, key, from, to, position), signature)
    })
}

/// The public key inside an ed25519 peer id: an identity multihash (code
/// 0, then the length, then the protobuf-encoded key). Ids hashing a larger
/// key (RSA) hold no key, and cannot own records.
fn public_key(peer: &PeerId) -> Option<PublicKey> {
    match peer.to_bytes().as_slice() {
        [0, len, digest @ ..] if usize::from(*len) == digest.len() => {
            PublicKey::try_decode_protobuf(digest).ok()
        }
        _ => None,
    }
}

/// The owner named by a version's record.
fn named<M: NetabaseModel>(entry: &Entry<'_, M>) -> Option<PeerId> {
    entry.record.and_then(NetabaseModel::owner)
}

/// The chain a version carries: decoded, or (an empty authority) its
/// owner alone: the record's owner field, or a delete's signer. `None` for
/// bytes that are no chain.
pub(crate) fn chain_of<M: NetabaseModel>(entry: &Entry<'_, M>) -> Option<Chain> {
    if entry.authority.is_empty() {
        // A version this build cannot read is taken to name its signer,
        // as a delete does; the release that reads it checks it again.
        let root = if entry.delete || entry.newer_version.is_some() {
            Some(entry.writer)
        } else {
            named(entry)
        };
        return root.map(|root| Chain {
            root,
            links: Vec::new(),
        });
    }
    Chain::decode(entry.authority)
}

pub(super) fn check<M: NetabaseModel>(
    write: &Entry<'_, M>,
    held: Option<&Entry<'_, M>>,
) -> Result<(), Refusal> {
    let chain = chain_of(write).ok_or(Refusal::NotOwner)?;
    if !chain.verify(write.model.0, write.key) {
        return Err(Refusal::NotOwner);
    }
    let owner = chain.owner();
    if write.delete {
        if write.writer != owner {
            return Err(Refusal::NotOwner);
        }
    } else {
        // A version this build cannot read is taken to name the owner its
        // chain names: the release that reads it checks the field then.
        let names_owner = match write.record {
            Some(_) => named(write) == Some(owner),
            None => write.newer_version.is_some(),
        };
        if !names_owner {
            return Err(Refusal::NotOwner);
        }
        // The owner writes; or the one before hands it over, in the very
        // write stamped with the handover.
        let hands_over = chain.previous() == Some(write.writer)
            && chain.links.last().map(|l| l.at) == Some(write.version.timestamp.0);
        if write.writer != owner && !hands_over {
            return Err(Refusal::NotOwner);
        }
    }
    match held {
        Some(held) => {
            let held_chain = chain_of(held).ok_or(Refusal::NotOwner)?;
            if !chain.extends(&held_chain) {
                return Err(Refusal::NotOwner);
            }
        }
        // Deleting what one does not hold would let anyone claim a key
        // ahead of its owner with a delete.
        None if write.delete => return Err(Refusal::NotOwner),
        None => {}
    }
    Ok(())
}

pub(super) fn authorize<M: NetabaseModel>(
    write: &Entry<'_, M>,
    held: Option<&Entry<'_, M>>,
    signer: &Keypair,
    consent: Option<&Acceptance>,
) -> Result<Vec<u8>, Refusal> {
    let me = signer.public().to_peer_id();
    let chain = match held.and_then(chain_of) {
        None => {
            // A new record is created by its owner; nothing held, nothing
            // to delete.
            if write.delete || named(write) != Some(me) {
                return Err(Refusal::NotOwner);
            }
            Chain {
                root: me,
                links: Vec::new(),
            }
        }
        Some(mut chain) => {
            if chain.owner() != me {
                return Err(Refusal::NotOwner);
            }
            if let Some(to) = named(write).filter(|to| *to != me) {
                if chain.links.len() >= MAX_TRANSFERS {
                    return Err(Refusal::custom(
                        "the record was handed over too often; write it under a new key",
                    ));
                }
                let position = chain.links.len();
                let consent = consent
                    .filter(|c| c.accepts(write.model.0, write.key, &me, &to, position))
                    .ok_or(Refusal::NotAccepted)?;
                let at = write.version.timestamp.0;
                let signature = signer
                    .sign(&message(write.model.0, write.key, &to, at))
                    .map_err(|_| Refusal::NotOwner)?;
                chain.links.push(Link {
                    to,
                    at,
                    signature,
                    acceptance: consent.signature.clone(),
                });
            }
            chain
        }
    };
    // Never handed over: the owner field (or the signer) says it all.
    if chain.links.is_empty() && chain.root == me {
        return Ok(Vec::new());
    }
    Ok(chain.encode())
}
/// Only a record's owner writes it: the `#[owner]` field names the owner,
/// who must sign every version, and a delete. The owner hands the record to
/// another peer that accepted it ([`Acceptance`]) by writing it with the new
/// owner named; each such handover, signed by both, goes into a chain the
/// record carries (at most [`MAX_TRANSFERS`]), so
/// a peer that missed the handover (it was away) still accepts the new
/// owner's writes. A peer holding nothing for a key accepts the first
/// self-consistent owner it is offered.
#[derive(Debug)]
pub struct Owner;

impl<M: NetabaseModel> WriteRule<M> for Owner {
    // The held version's chain is in its authority; its record is read
    // only for a version written before the model had the rule.
    const READS_HELD: bool = false;

    fn check(
        write: &Entry<'_, M>,
        held: Option<&Entry<'_, M>>,
        _: &dyn Context,
    ) -> Result<(), Refusal> {
        check(write, held)
    }

    fn authorize(
        write: &Entry<'_, M>,
        held: Option<&Entry<'_, M>>,
        signer: &Keypair,
        consent: Option<&Acceptance>,
    ) -> Result<Vec<u8>, Refusal> {
        authorize(write, held, signer, consent)
    }
}
