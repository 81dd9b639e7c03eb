//! The binary encoding of model payloads (bincode 2, standard configuration,
//! with a decode limit so hostile or corrupt bytes cannot make us allocate
//! without bound) and the signed [`Envelope`] records travel in.

mod envelope;
#[doc(hidden)]
pub mod field;
mod signature;
pub(crate) mod split;

pub use envelope::{
    record_key, Envelope, EnvelopeError, RejectReason, ENVELOPE_FORMAT, ENVELOPE_FORMAT_VERSIONED,
    MAX_ENVELOPE_BYTES,
};

use bincode::config::{self, Configuration, Limit, LittleEndian, Varint};

use crate::model::NetabaseModel;

/// Largest payload the store encodes or decodes (64 MiB). Larger values are
/// refused on write, so everything stored can be read back. Records a node
/// syncs are far smaller: see [`MAX_ENVELOPE_BYTES`].
pub const MAX_PAYLOAD_BYTES: usize = crate::model::PAYLOAD_LIMIT;

type PayloadConfig = Configuration<LittleEndian, Varint, Limit<MAX_PAYLOAD_BYTES>>;

const CONFIG: PayloadConfig = config::standard().with_limit::<MAX_PAYLOAD_BYTES>();

/// Errors of the codec layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The value could not be encoded.
    #[error("could not encode a `{model}` record")]
    Encode {
        /// The model's name.
        model: &'static str,
        /// What bincode reported.
        #[source]
        source: bincode::error::EncodeError,
    },
    /// The bytes are not a valid encoding of the model: corrupt, of another
    /// model, or written while the model had other fields (a field added,
    /// removed or retyped since reads this way, whatever the change).
    #[error("bytes are not a valid `{model}` record (corrupt, or written while the model had other fields)")]
    Decode {
        /// The model's name.
        model: &'static str,
        /// What bincode reported.
        #[source]
        source: bincode::error::DecodeError,
    },
    /// The identity key refused to sign.
    #[error("could not sign a record with the node's identity key")]
    Signing,
    /// The encoded value is over [`MAX_PAYLOAD_BYTES`].
    #[error("`{model}` record is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// The model's name.
        model: &'static str,
        /// The encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

/// Appends the payload encoding of `model` to `out`.
///
/// # Errors
///
/// [`CodecError::Encode`] if a field refuses to encode, [`CodecError::TooLarge`]
/// if the result is over [`MAX_PAYLOAD_BYTES`] (`out` is then left as it was).
pub fn encode_into<M: NetabaseModel>(model: &M, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let start = out.len();
    bincode::encode_into_std_write(model, out, CONFIG).map_err(|source| CodecError::Encode {
        model: M::NAME,
        source,
    })?;
    let size = out.len() - start;
    if size > MAX_PAYLOAD_BYTES {
        out.truncate(start);
        return Err(CodecError::TooLarge {
            model: M::NAME,
            size,
            limit: MAX_PAYLOAD_BYTES,
        });
    }
    Ok(())
}

/// The payload encoding of `model`.
///
/// # Errors
///
/// As [`encode_into`].
pub fn encode<M: NetabaseModel>(model: &M) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    encode_into(model, &mut out)?;
    Ok(out)
}

/// Decodes a payload; every byte must be consumed.
///
/// # Errors
///
/// [`CodecError::Decode`] for bytes that are not a `M`, including a valid
/// `M` followed by more bytes. Never panics, whatever the bytes.
pub fn decode<M: NetabaseModel>(bytes: &[u8]) -> Result<M, CodecError> {
    let (model, read) =
        bincode::decode_from_slice::<M, _>(bytes, CONFIG).map_err(|source| CodecError::Decode {
            model: M::NAME,
            source,
        })?;
    if read != bytes.len() {
        return Err(CodecError::Decode {
            model: M::NAME,
            source: bincode::error::DecodeError::OtherString(format!(
                "{} bytes left over after the record",
                bytes.len() - read
            )),
        });
    }
    Ok(model)
}
