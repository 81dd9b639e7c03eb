//! Checking envelope signatures, one at a time or in batches.
//!
//! Catch-up receives records by the hundred, and ed25519 batch verification
//! checks a batch for a fraction of the cost of checking each signature on
//! its own. A batch that fails is checked record by record, so one bad record
//! costs the others nothing but the retry. (A writer could craft a signature
//! over its own record that a batch accepts and a lone check refuses; it
//! gains nothing by it, since it can only ever sign as itself.) Decoding a
//! writer's public key is a curve-point decompression; the last writers seen
//! are kept per thread, as a batch usually comes from a handful of them.
//!
//! The batch equation is ed25519-dalek's `verify_batch`, with one change:
//! the terms of signatures by the same writer share one point. Its check is
//! `-(Σ zᵢsᵢ)·B + Σ zᵢ·Rᵢ + Σ (zᵢhᵢ)·Aᵢ = 0` over `2n + 1` points; a batch
//! from one writer has `n + 2` once the `Aᵢ` terms are summed per key,
//! `(Σ zᵢhᵢ)·A`, which is the same sum. Most of a batch check is that
//! multiscalar multiplication, so a catch-up batch (one writer, or a few)
//! costs about a third less a signature. The `zᵢ` are derived, as dalek's
//! are, from a hash of everything in the batch: nobody can choose a batch's
//! records to fit its coefficients.

use std::cell::RefCell;
use std::collections::HashMap;

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use libp2p_identity::{PeerId, PublicKey};
use sha2::{Digest, Sha512};

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
    if checks.len() > 1 && batch_verifies(checks) {
        return vec![true; checks.len()];
    }
    checks
        .iter()
        .map(|check| {
            Signature::from_slice(check.signature)
                .is_ok_and(|s| check.key.verify(check.message, &s).is_ok())
        })
        .collect()
}

/// Whether every signature of `checks` verifies, checked as one batch;
/// `false` if any is malformed or any fails (then check them one by one).
fn batch_verifies(checks: &[Check<'_>]) -> bool {
    let n = checks.len();
    let mut rs: Vec<EdwardsPoint> = Vec::with_capacity(n);
    let mut ss: Vec<Scalar> = Vec::with_capacity(n);
    let mut hrams: Vec<[u8; 64]> = Vec::with_capacity(n);
    for check in checks {
        let Ok(signature) = <&[u8; 64]>::try_from(check.signature) else {
            return false;
        };
        let (r, s) = signature.split_at(32);
        let (Ok(r), Ok(s)) = (<[u8; 32]>::try_from(r), <[u8; 32]>::try_from(s)) else {
            return false;
        };
        // A non-canonical `s` is refused, as dalek refuses it.
        let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s)) else {
            return false;
        };
        let Some(r_point) = CompressedEdwardsY(r).decompress() else {
            return false;
        };
        let mut h = Sha512::new();
        h.update(r);
        h.update(check.key.as_bytes());
        h.update(check.message);
        hrams.push(h.finalize().into());
        rs.push(r_point);
        ss.push(s);
    }
    let zs = coefficients(&hrams, &ss);
    let b_coefficient: Scalar = zs.iter().zip(&ss).map(|(z, s)| z * s).sum();
    // One term per writer: Σ zᵢhᵢ over that writer's signatures. (Found by
    // key, not by a scan: a batch by as many writers as records stays linear.)
    let mut writers: Vec<(&VerifyingKey, Scalar)> = Vec::new();
    let mut slot: HashMap<&[u8; 32], usize> = HashMap::new();
    for ((check, hram), z) in checks.iter().zip(&hrams).zip(&zs) {
        let term = Scalar::from_bytes_mod_order_wide(hram) * z;
        let i = *slot.entry(check.key.as_bytes()).or_insert_with(|| {
            writers.push((check.key, Scalar::ZERO));
            writers.len() - 1
        });
        writers[i].1 += term;
    }
    let scalars = std::iter::once(-b_coefficient)
        .chain(zs.iter().copied())
        .chain(writers.iter().map(|(_, sum)| *sum));
    let points = std::iter::once(ED25519_BASEPOINT_POINT)
        .chain(rs)
        .chain(writers.iter().map(|(key, _)| key.to_edwards()));
    EdwardsPoint::vartime_multiscalar_mul(scalars, points).is_identity()
}

/// The batch's 128-bit coefficients: SHA-512 of every `H(R‖A‖M)` and `s`
/// in the batch, expanded four at a time.
fn coefficients(hrams: &[[u8; 64]], ss: &[Scalar]) -> Vec<Scalar> {
    let mut transcript = Sha512::new();
    transcript.update(b"netabase ed25519 batch");
    transcript.update((hrams.len() as u64).to_le_bytes());
    for hram in hrams {
        transcript.update(hram);
    }
    for s in ss {
        transcript.update(s.as_bytes());
    }
    let seed = transcript.finalize();
    let mut zs = Vec::with_capacity(hrams.len() + 3);
    for block in 0..hrams.len().div_ceil(4) as u64 {
        let out = Sha512::new()
            .chain_update(seed)
            .chain_update(block.to_le_bytes())
            .finalize();
        for chunk in out.chunks_exact(16) {
            let mut z = [0u8; 16];
            z.copy_from_slice(chunk);
            zs.push(Scalar::from(u128::from_le_bytes(z)));
        }
    }
    zs.truncate(hrams.len());
    zs
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn signer(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    /// `n` messages signed by `writers` in turn.
    fn signed(n: usize, writers: &[SigningKey]) -> Vec<(Vec<u8>, [u8; 64], VerifyingKey)> {
        (0..n)
            .map(|i| {
                let key = &writers[i % writers.len()];
                let message = format!("record {i}").into_bytes();
                let signature = key.sign(&message).to_bytes();
                (message, signature, key.verifying_key())
            })
            .collect()
    }

    fn checks(items: &[(Vec<u8>, [u8; 64], VerifyingKey)]) -> Vec<Check<'_>> {
        items
            .iter()
            .map(|(message, signature, key)| Check {
                message,
                signature,
                key,
            })
            .collect()
    }

    #[test]
    fn a_batch_agrees_with_dalek_for_one_writer_and_for_many() {
        for writers in [vec![signer(1)], vec![signer(1), signer(2), signer(3)]] {
            for n in [2, 5, 200, 600] {
                let items = signed(n, &writers);
                assert!(batch_verifies(&checks(&items)), "{n} by {}", writers.len());
                let messages: Vec<&[u8]> = items.iter().map(|i| i.0.as_slice()).collect();
                let signatures: Vec<Signature> =
                    items.iter().map(|i| Signature::from_bytes(&i.1)).collect();
                let keys: Vec<VerifyingKey> = items.iter().map(|i| i.2).collect();
                assert!(ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok());
            }
        }
    }

    #[test]
    fn one_bad_signature_fails_the_batch_and_only_it_is_refused() {
        let writers = [signer(1), signer(2)];
        let mut items = signed(300, &writers);
        // A signature by the right writer over another message.
        items[17].1 = writers[1].sign(b"something else").to_bytes();
        // A flipped bit in a signature's R, and one in its s.
        items[100].1[3] ^= 1;
        items[201].1[40] ^= 1;
        // A valid signature by another writer than the one it names.
        items[250].1 = signer(9).sign(&items[250].0).to_bytes();
        assert!(!batch_verifies(&checks(&items)));
        let verdicts = verify_all(&checks(&items));
        let refused: Vec<usize> = (0..items.len()).filter(|&i| !verdicts[i]).collect();
        assert_eq!(refused, vec![17, 100, 201, 250]);
    }

    #[test]
    fn a_batch_refuses_a_non_canonical_s_and_a_swapped_signature() {
        let writers = [signer(1)];
        let mut items = signed(4, &writers);
        // s + ℓ: the same point equation, refused as dalek refuses it.
        let s = Scalar::from_canonical_bytes(items[1].1[32..].try_into().unwrap()).unwrap();
        let mut wide = s.to_bytes();
        // ℓ = 2^252 + 27742317777372353535851937790883648493, little-endian.
        let mut ell = [0u8; 32];
        ell[..16].copy_from_slice(&[
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14,
        ]);
        ell[31] = 0x10;
        let mut carry = 0u16;
        for i in 0..32 {
            let sum = wide[i] as u16 + ell[i] as u16 + carry;
            wide[i] = sum as u8;
            carry = sum >> 8;
        }
        // s < ℓ < 2^253, so s + ℓ fits in 32 bytes with the top bits clear:
        // only the canonical check refuses it.
        assert!(carry == 0 && wide[31] & 0xe0 == 0);
        assert!(Option::<Scalar>::from(Scalar::from_canonical_bytes(wide)).is_none());
        items[1].1[32..].copy_from_slice(&wide);
        assert!(!batch_verifies(&checks(&items)));
        assert!(!verify_all(&checks(&items))[1]);
        // Two signatures swapped between their messages.
        let mut items = signed(4, &writers);
        let (a, b) = (items[2].1, items[3].1);
        items[2].1 = b;
        items[3].1 = a;
        assert!(!batch_verifies(&checks(&items)));
        assert_eq!(verify_all(&checks(&items)), vec![true, true, false, false]);
        // A truncated signature.
        let message = b"short".to_vec();
        let key = writers[0].verifying_key();
        let short = [0u8; 10];
        let mut bad = checks(&items[..2]);
        bad.push(Check {
            message: &message,
            signature: &short,
            key: &key,
        });
        assert!(!batch_verifies(&bad));
    }
}
