//! The signed envelope a record travels in between peers.
//!
//! Wire layout (bincode 2, standard configuration), in this order:
//! format version (`u8`), model id (`u32`), encoded primary key (bytes),
//! payload (bytes; empty for a tombstone), timestamp (`u64`), tombstone flag,
//! the writer's public key (libp2p protobuf encoding), the authority
//! (bytes; from format 2), the model's version the payload is encoded at
//! (`u32`; format 3 only, written for models above version 1), and last the
//! signature.
//! The signature is the writer's identity key (ed25519) over a context string
//! followed by every byte before it, exactly as received, so nothing in the
//! envelope can be changed or re-encoded without breaking it. Kademlia's own
//! `publisher` field is never trusted: the writer is the signer.

use bincode::config::{self, Configuration, Limit, LittleEndian, Varint};
use bincode::{Decode, Encode};
use libp2p_identity::{Keypair, PeerId, PublicKey};

use super::{signature, CodecError};
use crate::key::{KeyBuf, KeyEncode};
use crate::model::{ModelId, NetabaseModel};
use crate::sync::{Timestamp, Version};

/// The envelope format this version writes for version-1 models (it also
/// reads format 1, which has no authority field).
pub const ENVELOPE_FORMAT: u8 = 2;
/// The format written for models above version 1: format 2 plus the model
/// version the payload is encoded at, so a peer on another version of the
/// model knows how to read it. Version-1 records keep format 2, which
/// releases before this one read.
pub const ENVELOPE_FORMAT_VERSIONED: u8 = 3;
/// The first format: no authority field.
const FORMAT_1: u8 = 1;

/// Domain separation: a signature over a netabase envelope is never valid as
/// a signature over anything else the key signs (e.g. libp2p handshakes).
const SIGNING_CONTEXT: &[u8] = b"netabase/envelope/v1\0";

/// Largest envelope (signed record) netabase signs, sends or decodes at
/// all, 1 MiB; a node's own limit, `NetabaseConfig::max_record_bytes`, is
/// at most this. Records are small by design: a catch-up answer holds
/// several, and a hostile peer's half-sent records are what each connection
/// can make a node hold. Keep larger content elsewhere (a file, a blob
/// store) and a reference or hash to it in the record.
pub const MAX_ENVELOPE_BYTES: usize = 1024 * 1024;
const HARD_LIMIT: usize = MAX_ENVELOPE_BYTES;

type WireConfig = Configuration<LittleEndian, Varint, Limit<HARD_LIMIT>>;
pub(super) const CONFIG: WireConfig = config::standard().with_limit::<HARD_LIMIT>();

/// Everything the signature covers.
#[derive(Encode, Decode)]
struct Signed {
    format: u8,
    model: u32,
    key: Vec<u8>,
    payload: Vec<u8>,
    timestamp: u64,
    tombstone: bool,
    public_key: Vec<u8>,
}

/// The same fields, borrowed, for encoding without copies; then, from
/// format 2, the authority the model's write rule reads (an owner chain).
#[derive(Encode)]
struct SignedRef<'a> {
    format: u8,
    model: u32,
    key: &'a [u8],
    payload: &'a [u8],
    timestamp: u64,
    tombstone: bool,
    public_key: &'a [u8],
    authority: &'a [u8],
}

/// Where the signature is in a parsed envelope, and the key to check it with.
struct Unverified {
    signed_len: usize,
    signature: std::ops::Range<usize>,
    verifying_key: ed25519_dalek::VerifyingKey,
}

/// Why an envelope was refused. [`kind`](Self::kind) gives the reason as a
/// plain value, for counting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The envelope is larger than allowed.
    #[error("record is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The bytes are not an envelope.
    #[error("bytes are not a netabase record envelope")]
    Malformed(#[source] bincode::error::DecodeError),
    /// The envelope decodes but leaves bytes unread.
    #[error("record envelope has {0} trailing bytes")]
    TrailingBytes(usize),
    /// An envelope format this version does not know.
    #[error("record envelope format {0} is not supported (this version reads 1 to {ENVELOPE_FORMAT_VERSIONED})")]
    UnsupportedFormat(u8),
    /// The writer's public key does not decode.
    #[error("record carries an invalid public key")]
    BadPublicKey,
    /// The signature does not verify for the stated writer.
    #[error("record signature does not verify")]
    BadSignature,
    /// The envelope is for another model than the one asked for.
    #[error("record is for model {found:?}, expected {expected:?}")]
    WrongModel {
        /// The model asked for.
        expected: ModelId,
        /// The model in the envelope.
        found: ModelId,
    },
    /// The record was written at a version of the model newer than this
    /// build knows: a peer runs a newer release of the app. A node holds
    /// such records as they are (see the guide's "Changing a model").
    #[error("record is `{model}` version {version}, newer than this build's version {known}")]
    NewerVersion {
        /// The model's stored name.
        model: &'static str,
        /// The version the record was written at.
        version: u32,
        /// The newest version this build knows.
        known: u32,
    },
    /// An older version's payload that does not read through the chain of
    /// versions: it does not decode as that version, the chain does not
    /// reach back that far, or a conversion (`TryFrom`) refused it.
    #[error("record payload cannot be read as this version of its model")]
    Version(#[source] crate::model::VersionError),
    /// The payload does not decode as the model.
    #[error("record payload is not a valid `{model}`")]
    Payload {
        /// The model's name.
        model: &'static str,
        /// Why.
        #[source]
        source: CodecError,
    },
    /// The key in the envelope is not the key of the record in it.
    #[error("record key does not match the key of its value")]
    KeyMismatch,
    /// The Kademlia record key is not the one the envelope names.
    #[error("record is stored under a key other than its own")]
    RecordKeyMismatch,
    /// A tombstone that carries a value.
    #[error("a delete record carries a value")]
    TombstoneWithPayload,
}

/// The reason an envelope was refused, as a plain value for counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RejectReason {
    /// [`EnvelopeError::TooLarge`].
    TooLarge,
    /// [`EnvelopeError::Malformed`] or [`EnvelopeError::TrailingBytes`].
    Malformed,
    /// [`EnvelopeError::UnsupportedFormat`].
    UnsupportedFormat,
    /// [`EnvelopeError::BadPublicKey`] or [`EnvelopeError::BadSignature`].
    BadSignature,
    /// [`EnvelopeError::WrongModel`]: a model this node does not have.
    UnknownModel,
    /// [`EnvelopeError::Payload`] or [`EnvelopeError::TombstoneWithPayload`].
    BadPayload,
    /// [`EnvelopeError::KeyMismatch`] or [`EnvelopeError::RecordKeyMismatch`].
    KeyMismatch,
}

impl EnvelopeError {
    /// The reason, for counting.
    pub fn kind(&self) -> RejectReason {
        match self {
            EnvelopeError::TooLarge { .. } => RejectReason::TooLarge,
            EnvelopeError::Malformed(_) | EnvelopeError::TrailingBytes(_) => {
                RejectReason::Malformed
            }
            EnvelopeError::UnsupportedFormat(_) => RejectReason::UnsupportedFormat,
            EnvelopeError::BadPublicKey | EnvelopeError::BadSignature => RejectReason::BadSignature,
            EnvelopeError::WrongModel { .. } => RejectReason::UnknownModel,
            // A newer version is held, not refused: never counted as this.
            EnvelopeError::Payload { .. }
            | EnvelopeError::Version(_)
            | EnvelopeError::NewerVersion { .. }
            | EnvelopeError::TombstoneWithPayload => RejectReason::BadPayload,
            EnvelopeError::KeyMismatch | EnvelopeError::RecordKeyMismatch => {
                RejectReason::KeyMismatch
            }
        }
    }
}

/// A record (or a delete) signed by its writer; what peers exchange.
///
/// An `Envelope` only exists with a verified signature: [`seal`](Self::seal)
/// signs, [`from_bytes`](Self::from_bytes) verifies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    model: ModelId,
    key: Vec<u8>,
    payload: Vec<u8>,
    timestamp: Timestamp,
    tombstone: bool,
    public_key: PublicKey,
    writer: PeerId,
    authority: Vec<u8>,
    /// The model version the payload is encoded at (1 before format 3).
    model_version: u32,
    bytes: Vec<u8>,
}

impl Envelope {
    /// Signs `record` as written at `timestamp` by `keypair`'s owner.
    ///
    /// # Errors
    ///
    /// [`CodecError`] if the record does not encode or is too large.
    pub fn seal<M: NetabaseModel>(
        keypair: &Keypair,
        record: &M,
        timestamp: Timestamp,
    ) -> Result<Self, CodecError> {
        let mut key = KeyBuf::new();
        record.encode_key(&mut key);
        let payload = super::encode(record)?;
        Self::sign(
            keypair,
            M::ID,
            key.as_slice(),
            payload,
            timestamp,
            false,
            Vec::new(),
            M::VERSION,
        )
    }

    /// [`seal`](Self::seal) (or, with `None`, [`seal_tombstone`](Self::seal_tombstone))
    /// carrying `authority`: what the model's write rule needs beyond the
    /// record (an owner chain).
    ///
    /// # Errors
    ///
    /// [`CodecError`] if the record does not encode or signing fails.
    #[doc(hidden)]
    pub fn seal_with_authority<M: NetabaseModel>(
        keypair: &Keypair,
        key: &M::Key,
        record: Option<&M>,
        timestamp: Timestamp,
        authority: Vec<u8>,
    ) -> Result<Self, CodecError> {
        let key = key.to_key_bytes();
        let (payload, tombstone) = match record {
            Some(record) => (super::encode(record)?, false),
            None => (Vec::new(), true),
        };
        Self::sign(
            keypair,
            M::ID,
            key.as_slice(),
            payload,
            timestamp,
            tombstone,
            authority,
            M::VERSION,
        )
    }

    /// Signs a delete of the record with `key`, made at `timestamp`.
    ///
    /// # Errors
    ///
    /// [`CodecError`] if signing fails.
    pub fn seal_tombstone<M: NetabaseModel>(
        keypair: &Keypair,
        key: &M::Key,
        timestamp: Timestamp,
    ) -> Result<Self, CodecError> {
        let key = key.to_key_bytes();
        Self::sign(
            keypair,
            M::ID,
            key.as_slice(),
            Vec::new(),
            timestamp,
            true,
            Vec::new(),
            M::VERSION,
        )
    }

    /// Signs arbitrary parts without checking that they agree (the key need
    /// not be the payload's key). For tests that play a hostile peer.
    ///
    /// # Errors
    ///
    /// [`CodecError`] if signing fails.
    #[doc(hidden)]
    pub fn seal_raw(
        keypair: &Keypair,
        model: ModelId,
        key: &[u8],
        payload: Vec<u8>,
        timestamp: Timestamp,
        tombstone: bool,
    ) -> Result<Self, CodecError> {
        Self::seal_raw_at(keypair, model, key, payload, timestamp, tombstone, 1)
    }

    /// [`seal_raw`](Self::seal_raw), claiming the payload is encoded at
    /// `model_version` of the model. For tests that play a peer on another
    /// version of the app, or a hostile one.
    ///
    /// # Errors
    ///
    /// [`CodecError`] if signing fails.
    #[doc(hidden)]
    pub fn seal_raw_at(
        keypair: &Keypair,
        model: ModelId,
        key: &[u8],
        payload: Vec<u8>,
        timestamp: Timestamp,
        tombstone: bool,
        model_version: u32,
    ) -> Result<Self, CodecError> {
        Self::sign(
            keypair,
            model,
            key,
            payload,
            timestamp,
            tombstone,
            Vec::new(),
            model_version,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn sign(
        keypair: &Keypair,
        model: ModelId,
        key: &[u8],
        payload: Vec<u8>,
        timestamp: Timestamp,
        tombstone: bool,
        authority: Vec<u8>,
        model_version: u32,
    ) -> Result<Self, CodecError> {
        let public_key = keypair.public();
        let encoded_key = public_key.encode_protobuf();
        // Version-1 records keep the format releases before versions read.
        let format = if model_version == 1 {
            ENVELOPE_FORMAT
        } else {
            ENVELOPE_FORMAT_VERSIONED
        };
        let signed = SignedRef {
            format,
            model: model.0,
            key,
            payload: &payload,
            timestamp: timestamp.0,
            tombstone,
            public_key: &encoded_key,
            authority: &authority,
        };
        let encode_error = |source| CodecError::Encode {
            model: "envelope",
            source,
        };
        let mut bytes = bincode::encode_to_vec(&signed, CONFIG).map_err(encode_error)?;
        if format == ENVELOPE_FORMAT_VERSIONED {
            bincode::encode_into_std_write(model_version, &mut bytes, CONFIG)
                .map_err(encode_error)?;
        }
        let signature = keypair
            .sign(&signing_message(&bytes))
            .map_err(|_| CodecError::Signing)?;
        bincode::encode_into_std_write(&signature, &mut bytes, CONFIG).map_err(encode_error)?;
        Ok(Envelope {
            model,
            key: key.to_vec(),
            payload,
            timestamp,
            tombstone,
            writer: public_key.to_peer_id(),
            public_key,
            authority,
            model_version,
            bytes,
        })
    }

    /// Decodes and verifies an envelope of at most `max_size` bytes.
    ///
    /// # Errors
    ///
    /// An [`EnvelopeError`] naming the first check that failed; never panics,
    /// whatever the bytes.
    pub fn from_bytes(bytes: &[u8], max_size: usize) -> Result<Self, EnvelopeError> {
        Self::from_bytes_many([bytes], max_size)
            .pop()
            .unwrap_or(Err(EnvelopeError::BadSignature))
    }

    /// Decodes and verifies many envelopes, checking their signatures as one
    /// batch (cheaper a record than [`from_bytes`](Self::from_bytes) on each);
    /// one result per input, in order, exactly as `from_bytes` would give.
    pub fn from_bytes_many<'a>(
        items: impl IntoIterator<Item = &'a [u8]>,
        max_size: usize,
    ) -> Vec<Result<Self, EnvelopeError>> {
        let parsed: Vec<Result<(Envelope, Unverified), EnvelopeError>> = items
            .into_iter()
            .map(|bytes| Self::parse(bytes, max_size))
            .collect();
        let messages: Vec<Vec<u8>> = parsed
            .iter()
            .flatten()
            .map(|(envelope, unverified)| signing_message(&envelope.bytes[..unverified.signed_len]))
            .collect();
        let checks: Vec<signature::Check<'_>> = parsed
            .iter()
            .flatten()
            .zip(&messages)
            .map(|((envelope, unverified), message)| signature::Check {
                message,
                signature: &envelope.bytes[unverified.signature.clone()],
                key: &unverified.verifying_key,
            })
            .collect();
        let mut verdicts = signature::verify_all(&checks).into_iter();
        parsed
            .into_iter()
            .map(|parsed| {
                let (envelope, _) = parsed?;
                if !verdicts.next().unwrap_or(false) {
                    return Err(EnvelopeError::BadSignature);
                }
                envelope.check_shape()
            })
            .collect()
    }

    /// Decodes an envelope this node verified before it stored it, without
    /// checking the signature again.
    ///
    /// # Errors
    ///
    /// As [`from_bytes`](Self::from_bytes), minus the signature check.
    #[doc(hidden)]
    pub fn from_trusted_bytes(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        Self::parse(bytes, HARD_LIMIT)?.0.check_shape()
    }

    /// Checks the signature does not cover: only that a delete carries no value.
    fn check_shape(self) -> Result<Self, EnvelopeError> {
        if self.tombstone && !self.payload.is_empty() {
            return Err(EnvelopeError::TombstoneWithPayload);
        }
        Ok(self)
    }

    /// Decodes the layout, leaving the signature to check.
    fn parse(bytes: &[u8], max_size: usize) -> Result<(Self, Unverified), EnvelopeError> {
        let limit = max_size.min(HARD_LIMIT);
        if bytes.len() > limit {
            return Err(EnvelopeError::TooLarge {
                size: bytes.len(),
                limit,
            });
        }
        // Refuse unknown formats before trusting the layout that follows.
        let format = match bytes.first() {
            Some(&format @ (FORMAT_1 | ENVELOPE_FORMAT | ENVELOPE_FORMAT_VERSIONED)) => format,
            Some(&other) => return Err(EnvelopeError::UnsupportedFormat(other)),
            None => {
                return Err(EnvelopeError::Malformed(
                    bincode::error::DecodeError::UnexpectedEnd { additional: 1 },
                ))
            }
        };
        let (signed, mut signed_len): (Signed, usize) =
            bincode::decode_from_slice(bytes, CONFIG).map_err(EnvelopeError::Malformed)?;
        let authority = if format == FORMAT_1 {
            Vec::new()
        } else {
            let (authority, len): (Vec<u8>, usize) =
                bincode::decode_from_slice(&bytes[signed_len..], CONFIG)
                    .map_err(EnvelopeError::Malformed)?;
            signed_len += len;
            authority
        };
        let model_version = if format == ENVELOPE_FORMAT_VERSIONED {
            let (version, len): (u32, usize) =
                bincode::decode_from_slice(&bytes[signed_len..], CONFIG)
                    .map_err(EnvelopeError::Malformed)?;
            signed_len += len;
            // Versions start at 1 (the derive refuses 0).
            if version == 0 {
                return Err(EnvelopeError::Malformed(
                    bincode::error::DecodeError::Other("model version 0"),
                ));
            }
            version
        } else {
            1
        };
        let (signature, signature_len): (&[u8], usize) =
            bincode::borrow_decode_from_slice(&bytes[signed_len..], CONFIG)
                .map_err(EnvelopeError::Malformed)?;
        let extra = bytes.len() - signed_len - signature_len;
        if extra != 0 {
            return Err(EnvelopeError::TrailingBytes(extra));
        }
        // The signature is the last `signature.len()` bytes.
        let signature = bytes.len() - signature.len()..bytes.len();
        let writer = signature::writer(&signed.public_key)?;
        Ok((
            Envelope {
                model: ModelId(signed.model),
                key: signed.key,
                payload: signed.payload,
                timestamp: Timestamp(signed.timestamp),
                tombstone: signed.tombstone,
                writer: writer.peer_id,
                public_key: writer.public_key,
                authority,
                model_version,
                bytes: bytes.to_vec(),
            },
            Unverified {
                signed_len,
                signature,
                verifying_key: writer.verifying_key,
            },
        ))
    }

    /// The envelope's bytes, as sent and stored.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The model the record belongs to.
    pub fn model(&self) -> ModelId {
        self.model
    }

    /// The record's encoded primary key.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The record's payload (empty for a delete).
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Whether this is a delete.
    pub fn is_tombstone(&self) -> bool {
        self.tombstone
    }

    /// The writer: the peer whose key signed this envelope.
    pub fn writer(&self) -> PeerId {
        self.writer
    }

    /// The writer's public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    /// What the model's write rule reads beyond the record (an owner
    /// chain); empty for most rules. Covered by the signature.
    pub fn authority(&self) -> &[u8] {
        &self.authority
    }

    /// The version of the model the payload is encoded at, as its writer
    /// declared it (1 for records of unversioned models).
    pub fn model_version(&self) -> u32 {
        self.model_version
    }

    /// The version that decides conflicts.
    pub fn version(&self) -> Version {
        Version {
            timestamp: self.timestamp,
            writer: self.writer,
        }
    }

    /// The Kademlia record key: model id (big-endian) then the encoded primary key.
    pub fn record_key(&self) -> Vec<u8> {
        record_key(self.model, &self.key)
    }

    /// Checks that the envelope was stored under its own record key.
    ///
    /// # Errors
    ///
    /// [`EnvelopeError::RecordKeyMismatch`] otherwise.
    pub fn check_record_key(&self, record_key: &[u8]) -> Result<(), EnvelopeError> {
        let (model, key) = record_key
            .split_first_chunk::<4>()
            .ok_or(EnvelopeError::RecordKeyMismatch)?;
        if u32::from_be_bytes(*model) != self.model.0 || key != self.key.as_slice() {
            return Err(EnvelopeError::RecordKeyMismatch);
        }
        Ok(())
    }

    /// The record inside, typed: `None` for a delete. Checks the model, that
    /// the payload decodes (a record of an older version of `M` through
    /// its chain of versions), and that the key is the record's own key.
    ///
    /// # Errors
    ///
    /// [`EnvelopeError::WrongModel`], [`EnvelopeError::Payload`],
    /// [`EnvelopeError::NewerVersion`], [`EnvelopeError::Version`] or
    /// [`EnvelopeError::KeyMismatch`].
    pub fn open<M: NetabaseModel>(&self) -> Result<Option<M>, EnvelopeError> {
        if self.model != M::ID {
            return Err(EnvelopeError::WrongModel {
                expected: M::ID,
                found: self.model,
            });
        }
        if self.tombstone {
            return Ok(None);
        }
        let record: M = match self.model_version {
            version if version == M::VERSION => {
                super::decode(&self.payload).map_err(|source| EnvelopeError::Payload {
                    model: M::NAME,
                    source,
                })?
            }
            version if version > M::VERSION => {
                return Err(EnvelopeError::NewerVersion {
                    model: M::NAME,
                    version,
                    known: M::VERSION,
                })
            }
            version => M::decode_version(version, &self.payload).map_err(EnvelopeError::Version)?,
        };
        let mut key = KeyBuf::new();
        record.encode_key(&mut key);
        if key.as_slice() != self.key.as_slice() {
            return Err(EnvelopeError::KeyMismatch);
        }
        Ok(Some(record))
    }
}

/// The Kademlia record key of a model's record: model id (big-endian) then
/// the encoded primary key.
pub fn record_key(model: ModelId, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + key.len());
    out.extend_from_slice(&model.0.to_be_bytes());
    out.extend_from_slice(key);
    out
}

fn signing_message(signed: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNING_CONTEXT.len() + signed.len());
    message.extend_from_slice(SIGNING_CONTEXT);
    message.extend_from_slice(signed);
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Format 1, as the previous release wrote it: no authority field.
    #[derive(Encode)]
    struct Format1<'a> {
        format: u8,
        model: u32,
        key: &'a [u8],
        payload: &'a [u8],
        timestamp: u64,
        tombstone: bool,
        public_key: &'a [u8],
    }

    #[test]
    fn envelopes_of_the_first_format_still_verify() {
        let keypair = Keypair::generate_ed25519();
        let public = keypair.public().encode_protobuf();
        let signed = Format1 {
            format: FORMAT_1,
            model: 7,
            key: b"k\0\0",
            payload: b"",
            timestamp: 42,
            tombstone: true,
            public_key: &public,
        };
        let mut bytes = bincode::encode_to_vec(&signed, CONFIG).unwrap();
        let signature = keypair.sign(&signing_message(&bytes)).unwrap();
        bincode::encode_into_std_write(&signature, &mut bytes, CONFIG).unwrap();
        let envelope = Envelope::from_bytes(&bytes, HARD_LIMIT).unwrap();
        assert_eq!(envelope.model(), ModelId(7));
        assert!(envelope.is_tombstone() && envelope.authority().is_empty());
        assert_eq!(envelope.version().timestamp, Timestamp(42));
        // A byte flipped in the signed part fails, as for format 2.
        bytes[3] ^= 1;
        assert!(Envelope::from_bytes(&bytes, HARD_LIMIT).is_err());
    }
}
