//! Checking envelope signatures, one at a time or in batches.
//!
//! Catch-up receives records by the hundred, and ed25519 batch verification
//! checks a batch for about 40% of the cost of checking each signature on
//! its own. A batch that fails is checked record by record, so one bad record
//! costs the others nothing but the retry. (A writer could craft a signature
//! over its own record that a batch accepts and a lone check refuses; it
//! gains nothing by it, since it can only ever sign as itself.) Decoding a
//! writer's public key is
//! a curve-point decompression; the last writers seen are kept per thread, as
//! a batch usually comes from a handful of them.

use std::cell::RefCell;
use std::collections::HashMap;

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use libp2p_identity::{PeerId, PublicKey};

use super::envelope::EnvelopeError;

/// Writers remembered per thread before the cache starts over.
const WRITER_CACHE: usize = 256;

/// A writer's key in every form a check needs.
#[derive(Clone)]
pub(crate) struct Writer {
    pub(crate) public_key: PublicKey,
    pub(crate) peer_id: PeerId,
    pub(crate) verifying_key: VerifyingKey,
}

thread_local! {
    static WRITERS: RefCell<HashMap<Vec<u8>, Writer>> = RefCell::new(HashMap::new());
}

/// The writer whose libp2p-protobuf-encoded public key this is.
pub(crate) fn writer(encoded: &[u8]) -> Result<Writer, EnvelopeError> {
    if let Some(writer) = WRITERS.with(|cache| cache.borrow().get(encoded).cloned()) {
        return Ok(writer);
    }
    let public_key =
        PublicKey::try_decode_protobuf(encoded).map_err(|_| EnvelopeError::BadPublicKey)?;
    let ed25519 = public_key
        .clone()
        .try_into_ed25519()
        .map_err(|_| EnvelopeError::BadPublicKey)?;
    let verifying_key =
        VerifyingKey::from_bytes(&ed25519.to_bytes()).map_err(|_| EnvelopeError::BadPublicKey)?;
    let writer = Writer {
        peer_id: public_key.to_peer_id(),
        public_key,
        verifying_key,
    };
    WRITERS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.len() >= WRITER_CACHE {
            cache.clear();
        }
        cache.insert(encoded.to_vec(), writer.clone());
    });
    Ok(writer)
}

/// One signature to check: the signed message, the signature bytes, the key.
pub(crate) struct Check<'a> {
    pub(crate) message: &'a [u8],
    pub(crate) signature: &'a [u8],
    pub(crate) key: &'a VerifyingKey,
}

/// Whether each signature verifies, in order.
pub(crate) fn verify_all(checks: &[Check<'_>]) -> Vec<bool> {
    let parsed: Vec<Option<Signature>> = checks
        .iter()
        .map(|c| Signature::from_slice(c.signature).ok())
        .collect();
    if parsed.iter().all(Option::is_some) && checks.len() > 1 {
        let messages: Vec<&[u8]> = checks.iter().map(|c| c.message).collect();
        let signatures: Vec<Signature> = parsed.iter().flatten().copied().collect();
        let keys: Vec<VerifyingKey> = checks.iter().map(|c| *c.key).collect();
        if ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok() {
            return vec![true; checks.len()];
        }
    }
    checks
        .iter()
        .zip(parsed)
        .map(|(check, signature)| {
            signature.is_some_and(|s| check.key.verify(check.message, &s).is_ok())
        })
        .collect()
}
