//! The signed record envelope: round trips, and every way a hostile or broken
//! peer's bytes are refused.

mod common;

use common::*;
use netabase::codec::{
    record_key, Envelope, EnvelopeError, RejectReason, ENVELOPE_FORMAT, ENVELOPE_FORMAT_VERSIONED,
};
use netabase::sync::Timestamp;
use netabase::{KeyEncode, Keypair, NetabaseModel};
use proptest::prelude::*;

const LIMIT: usize = 64 * 1024;

fn sealed(keypair: &Keypair) -> Envelope {
    Envelope::seal(keypair, &user(7, "a@x", 30), Timestamp::new(1_000, 2)).unwrap()
}

#[test]
fn round_trip_keeps_record_version_and_writer() {
    let keypair = Keypair::generate_ed25519();
    let envelope = sealed(&keypair);
    let decoded = Envelope::from_bytes(envelope.as_bytes(), LIMIT).unwrap();
    assert_eq!(decoded, envelope);
    assert_eq!(decoded.open::<User>().unwrap(), Some(user(7, "a@x", 30)));
    assert_eq!(decoded.writer(), keypair.public().to_peer_id());
    assert_eq!(decoded.version().timestamp, Timestamp::new(1_000, 2));
    assert_eq!(decoded.model(), User::ID);
    assert_eq!(decoded.as_bytes()[0], ENVELOPE_FORMAT);
    let key = UserKey(7).to_key_bytes();
    assert_eq!(decoded.record_key(), record_key(User::ID, key.as_slice()));
    decoded.check_record_key(&decoded.record_key()).unwrap();
}

#[test]
fn tombstones_round_trip_without_a_value() {
    let keypair = Keypair::generate_ed25519();
    let envelope =
        Envelope::seal_tombstone::<User>(&keypair, &UserKey(7), Timestamp::new(5, 0)).unwrap();
    let decoded = Envelope::from_bytes(envelope.as_bytes(), LIMIT).unwrap();
    assert!(decoded.is_tombstone());
    assert_eq!(decoded.open::<User>().unwrap(), None);
    assert_eq!(decoded.record_key(), sealed(&keypair).record_key());
}

#[test]
fn every_flipped_byte_is_refused() {
    let envelope = sealed(&Keypair::generate_ed25519());
    let bytes = envelope.as_bytes();
    for i in 0..bytes.len() {
        let mut bad = bytes.to_vec();
        bad[i] ^= 0x01;
        assert!(
            Envelope::from_bytes(&bad, LIMIT).is_err(),
            "flip at {i} accepted"
        );
    }
    for len in 0..bytes.len() {
        assert!(
            Envelope::from_bytes(&bytes[..len], LIMIT).is_err(),
            "truncated to {len}"
        );
    }
}

#[test]
fn another_writers_key_does_not_verify() {
    // A forged writer: same signature, someone else's public key.
    let victim = Keypair::generate_ed25519();
    let forger = Keypair::generate_ed25519();
    let genuine = sealed(&victim);
    let claimed = Envelope::seal(&forger, &user(7, "a@x", 30), Timestamp::new(1_000, 2)).unwrap();
    let sig_at = |e: &Envelope| e.as_bytes().len() - 65; // varint length 64 + 64 bytes
    let mut forged = claimed.as_bytes()[..sig_at(&claimed)].to_vec();
    forged.extend_from_slice(&genuine.as_bytes()[sig_at(&genuine)..]);
    let err = Envelope::from_bytes(&forged, LIMIT).unwrap_err();
    assert!(matches!(err, EnvelopeError::BadSignature), "{err:?}");
    assert_eq!(err.kind(), RejectReason::BadSignature);
}

#[test]
fn key_that_is_not_the_records_own_is_refused() {
    let hostile = Keypair::generate_ed25519();
    let payload = netabase::codec::encode(&user(7, "a@x", 30)).unwrap();
    let other_key = UserKey(8).to_key_bytes();
    let envelope = Envelope::seal_raw(
        &hostile,
        User::ID,
        other_key.as_slice(),
        payload,
        Timestamp::new(1, 0),
        false,
    )
    .unwrap();
    let decoded = Envelope::from_bytes(envelope.as_bytes(), LIMIT).unwrap();
    let err = decoded.open::<User>().unwrap_err();
    assert!(matches!(err, EnvelopeError::KeyMismatch), "{err:?}");
    assert_eq!(err.kind(), RejectReason::KeyMismatch);
}

#[test]
fn garbage_payload_wrong_model_and_wrong_record_key_are_refused() {
    let keypair = Keypair::generate_ed25519();
    let garbage = Envelope::seal_raw(
        &keypair,
        User::ID,
        b"k",
        vec![0xff; 40],
        Timestamp::new(1, 0),
        false,
    )
    .unwrap();
    let err = Envelope::from_bytes(garbage.as_bytes(), LIMIT)
        .unwrap()
        .open::<User>()
        .unwrap_err();
    assert_eq!(err.kind(), RejectReason::BadPayload, "{err:?}");

    let envelope = sealed(&keypair);
    let err = envelope.open::<Post>().unwrap_err();
    assert!(matches!(err, EnvelopeError::WrongModel { .. }), "{err:?}");
    assert_eq!(err.kind(), RejectReason::UnknownModel);

    let wrong = record_key(User::ID, UserKey(8).to_key_bytes().as_slice());
    assert!(matches!(
        envelope.check_record_key(&wrong),
        Err(EnvelopeError::RecordKeyMismatch)
    ));
    assert!(envelope.check_record_key(b"ab").is_err());
}

#[test]
fn size_format_and_tombstone_rules() {
    let keypair = Keypair::generate_ed25519();
    let envelope = sealed(&keypair);
    let err = Envelope::from_bytes(envelope.as_bytes(), 10).unwrap_err();
    assert!(
        matches!(err, EnvelopeError::TooLarge { limit: 10, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("10-byte limit"), "{err}");

    let mut future = envelope.as_bytes().to_vec();
    future[0] = ENVELOPE_FORMAT_VERSIONED + 1;
    assert!(matches!(
        Envelope::from_bytes(&future, LIMIT),
        Err(EnvelopeError::UnsupportedFormat(f)) if f == ENVELOPE_FORMAT_VERSIONED + 1
    ));

    let mut trailing = envelope.as_bytes().to_vec();
    trailing.push(0);
    assert!(matches!(
        Envelope::from_bytes(&trailing, LIMIT),
        Err(EnvelopeError::TrailingBytes(1))
    ));

    let bad = Envelope::seal_raw(
        &keypair,
        User::ID,
        b"k",
        vec![1, 2, 3],
        Timestamp::new(1, 0),
        true,
    )
    .unwrap();
    assert!(matches!(
        Envelope::from_bytes(bad.as_bytes(), LIMIT),
        Err(EnvelopeError::TombstoneWithPayload)
    ));
    assert!(Envelope::from_bytes(&[], LIMIT).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Arbitrary bytes are refused, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..512), format_byte in any::<bool>()) {
        if format_byte && !bytes.is_empty() {
            bytes[0] = ENVELOPE_FORMAT;
        }
        prop_assert!(Envelope::from_bytes(&bytes, LIMIT).is_err());
    }

    /// Any change to a valid envelope is caught.
    #[test]
    fn mutations_of_a_valid_envelope_are_caught(at in any::<prop::sample::Index>(), with in 1u8..=255) {
        let envelope = sealed(&Keypair::generate_ed25519());
        let mut bytes = envelope.as_bytes().to_vec();
        let i = at.index(bytes.len());
        bytes[i] ^= with;
        prop_assert!(Envelope::from_bytes(&bytes, LIMIT).is_err());
    }
}
