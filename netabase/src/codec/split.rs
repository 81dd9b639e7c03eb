//! An envelope kept in two parts. A node stores every record typed (the
//! payload, under its primary key) and signed (the envelope), and the
//! envelope repeats the payload and the key. So for a record whose typed
//! row holds exactly its payload, the node keeps only the envelope's *rest*:
//! what neither the typed row, the record key nor the reconciliation state
//! hold (the format, the writer's key, the authority and the signature),
//! and joins the parts again when it reads or serves the record.
//!
//! The join re-encodes the fields the rest leaves out, so an envelope is
//! split only when that re-encoding gives back its bytes exactly
//! ([`Envelope::rest`]): a peer's envelope with an unusual but valid
//! encoding stays whole, and no joined envelope ever differs from the
//! signed one.

use super::envelope::{Envelope, CONFIG};

/// The fields before the rest, encoded as the envelope encodes them:
/// format, model id, key, payload, timestamp, and the delete flag (false:
/// deletes have no typed row, so they are never split).
fn head(format: u8, model: u32, key: &[u8], payload: &[u8], timestamp: u64) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(payload.len() + key.len() + 24);
    let fields: (u8, u32, &[u8], &[u8], u64, bool) =
        (format, model, key, payload, timestamp, false);
    bincode::encode_into_std_write(fields, &mut out, CONFIG).ok()?;
    Some(out)
}

impl Envelope {
    /// What to keep of this envelope when its typed row holds its payload,
    /// or `None` if it must be kept whole: a delete, or an envelope whose
    /// fields do not re-encode to its bytes.
    #[cfg_attr(not(feature = "node"), allow(dead_code))]
    pub(crate) fn rest(&self) -> Option<Vec<u8>> {
        if self.is_tombstone() {
            return None;
        }
        let bytes = self.as_bytes();
        let format = *bytes.first()?;
        let head = head(
            format,
            self.model().0,
            self.key(),
            self.payload(),
            self.version().timestamp.0,
        )?;
        if !bytes.starts_with(&head) {
            return None;
        }
        let mut rest = Vec::with_capacity(1 + bytes.len() - head.len());
        rest.push(format);
        rest.extend_from_slice(&bytes[head.len()..]);
        Some(rest)
    }
}

/// Tells the rests of one writer's envelopes from others' without joining
/// them: a rest starts with the format, then the writer's public key as
/// the envelope encodes it.
#[cfg_attr(not(feature = "node"), allow(dead_code))]
pub(crate) struct WrittenBy(Vec<u8>);

#[cfg_attr(not(feature = "node"), allow(dead_code))]
impl WrittenBy {
    /// The writer whose public key (protobuf encoding) is `public_key`.
    pub(crate) fn new(public_key: &[u8]) -> Self {
        let mut encoded = Vec::with_capacity(public_key.len() + 9);
        // Into a Vec, encoding bytes cannot fail; an empty prefix would
        // match nothing below (every rest has a key after its format).
        let _ = bincode::encode_into_std_write(public_key, &mut encoded, CONFIG);
        WrittenBy(encoded)
    }

    /// Whether `rest` is of an envelope this writer signed.
    pub(crate) fn matches(&self, rest: &[u8]) -> bool {
        !self.0.is_empty() && rest.get(1..).is_some_and(|tail| tail.starts_with(&self.0))
    }
}

/// The envelope whose [`rest`](Envelope::rest) is `rest`, for the record
/// `key` of model `model`, with `payload` (its typed row) and `timestamp`.
/// `None` if `rest` is empty.
pub(crate) fn join(
    rest: &[u8],
    model: u32,
    key: &[u8],
    payload: &[u8],
    timestamp: u64,
) -> Option<Vec<u8>> {
    let (&format, tail) = rest.split_first()?;
    let mut out = head(format, model, key, payload, timestamp)?;
    out.extend_from_slice(tail);
    Some(out)
}

#[cfg(test)]
mod tests {
    use libp2p_identity::Keypair;

    use super::*;
    use crate::model::ModelId;
    use crate::sync::Timestamp;

    fn sealed(payload: Vec<u8>, tombstone: bool) -> Envelope {
        let keypair = Keypair::generate_ed25519();
        Envelope::seal_raw(
            &keypair,
            ModelId(7),
            &42u64.to_be_bytes(),
            payload,
            Timestamp(1_700_000_000_000_000_000),
            tombstone,
        )
        .expect("sign")
    }

    #[test]
    fn a_split_envelope_joins_to_its_signed_bytes() {
        for payload in [vec![], vec![1, 2, 3], vec![9; 300], vec![5; 70_000]] {
            let envelope = sealed(payload.clone(), false);
            let rest = envelope.rest().expect("an honest envelope splits");
            assert!(rest.len() + payload.len() < envelope.as_bytes().len());
            let joined = join(
                &rest,
                7,
                &42u64.to_be_bytes(),
                &payload,
                envelope.version().timestamp.0,
            )
            .expect("join");
            assert_eq!(joined, envelope.as_bytes());
            Envelope::from_bytes(&joined, usize::MAX).expect("the joined envelope verifies");
        }
    }

    #[test]
    fn a_versioned_envelope_splits_and_joins_with_its_version() {
        let keypair = Keypair::generate_ed25519();
        let at = Timestamp(1_700_000_000_000_000_000);
        let envelope =
            Envelope::seal_raw_at(&keypair, ModelId(7), &[1], vec![4, 5], at, false, 3).unwrap();
        let rest = envelope.rest().expect("splits");
        let joined = join(&rest, 7, &[1], &[4, 5], at.0).expect("join");
        assert_eq!(joined, envelope.as_bytes());
        let back = Envelope::from_bytes(&joined, usize::MAX).expect("verifies");
        assert_eq!(back.model_version(), 3);
        let writer = envelope.public_key().encode_protobuf();
        assert!(WrittenBy::new(&writer).matches(&rest));
    }

    #[test]
    fn a_rest_tells_its_writer_without_a_join() {
        let envelope = sealed(vec![1, 2, 3], false);
        let rest = envelope.rest().expect("split");
        let writer = envelope.public_key().encode_protobuf();
        assert!(WrittenBy::new(&writer).matches(&rest));
        let other = Keypair::generate_ed25519().public().encode_protobuf();
        assert!(!WrittenBy::new(&other).matches(&rest));
        assert!(!WrittenBy::new(&writer).matches(&[]));
    }

    #[test]
    fn deletes_and_odd_encodings_stay_whole() {
        assert!(sealed(Vec::new(), true).rest().is_none());
        // The same envelope with its model id as a 3-byte varint (251, then
        // a u16), which bincode reads but never writes: the signature covers
        // these bytes, so a join (which writes 1 byte) could not give them back.
        let envelope = sealed(vec![1, 2, 3], false);
        let bytes = envelope.as_bytes();
        let mut odd = vec![bytes[0], 251, 7, 0];
        odd.extend_from_slice(&bytes[2..]);
        let parsed = Envelope::from_trusted_bytes(&odd).expect("bincode reads a long varint");
        assert_eq!(parsed.model(), ModelId(7));
        assert!(parsed.rest().is_none(), "an odd encoding is kept whole");
    }

    #[test]
    fn a_join_with_another_payload_is_another_envelope() {
        let envelope = sealed(vec![1, 2, 3], false);
        let rest = envelope.rest().expect("split");
        let joined = join(
            &rest,
            7,
            &42u64.to_be_bytes(),
            &[1, 2, 4],
            envelope.version().timestamp.0,
        )
        .expect("join");
        assert!(Envelope::from_bytes(&joined, usize::MAX).is_err());
        assert!(join(&[], 7, &[], &[], 0).is_none());
    }
}
