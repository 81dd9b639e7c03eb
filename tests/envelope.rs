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

/// Version 1 and 2 of one model, for the versioned format.
mod note_v1 {
    #[derive(netabase::NetabaseModel, Clone, Debug, PartialEq)]
    #[netabase(name = "VNote")]
    pub struct VNote {
        #[primary_key]
        pub id: u64,
        pub text: String,
    }
}

mod note_v2 {
    #[derive(netabase::NetabaseModel, Clone, Debug, PartialEq)]
    #[netabase(name = "VNote", version = 2, from = super::note_v1::VNote)]
    pub struct VNote {
        #[primary_key]
        pub id: u64,
        pub text: String,
        pub stars: u8,
    }

    impl From<super::note_v1::VNote> for VNote {
        fn from(old: super::note_v1::VNote) -> Self {
            VNote {
                id: old.id,
                text: old.text,
                stars: 0,
            }
        }
    }
}

#[test]
fn a_versioned_model_signs_its_version_and_each_side_reads_what_it_knows() {
    let keypair = Keypair::generate_ed25519();
    let at = Timestamp::new(5_000, 0);
    let old = note_v1::VNote {
        id: 1,
        text: "hi".into(),
    };
    let new = note_v2::VNote {
        id: 1,
        text: "hi".into(),
        stars: 3,
    };
    // Version 1 keeps the format earlier releases read.
    let v1 = Envelope::seal(&keypair, &old, at).unwrap();
    assert_eq!(v1.as_bytes()[0], ENVELOPE_FORMAT);
    assert_eq!(v1.model_version(), 1);
    let v2 = Envelope::seal(&keypair, &new, at).unwrap();
    assert_eq!(v2.as_bytes()[0], ENVELOPE_FORMAT_VERSIONED);
    let v2 = Envelope::from_bytes(v2.as_bytes(), LIMIT).unwrap();
    assert_eq!(v2.model_version(), 2);
    // The newer build reads both, the older one through the chain.
    assert_eq!(v2.open::<note_v2::VNote>().unwrap(), Some(new));
    assert_eq!(
        v1.open::<note_v2::VNote>().unwrap().map(|n| n.stars),
        Some(0)
    );
    // The older build reads its own, and names the version it cannot.
    assert_eq!(v1.open::<note_v1::VNote>().unwrap(), Some(old));
    assert!(matches!(
        v2.open::<note_v1::VNote>(),
        Err(EnvelopeError::NewerVersion {
            model: "VNote",
            version: 2,
            known: 1
        })
    ));
    // A delete reads the same whatever its version.
    let gone =
        Envelope::seal_tombstone::<note_v2::VNote>(&keypair, &note_v2::VNoteKey(1), at).unwrap();
    assert_eq!(gone.open::<note_v1::VNote>().unwrap(), None);
}

#[test]
fn the_signed_version_cannot_be_changed_and_version_0_is_refused() {
    let keypair = Keypair::generate_ed25519();
    let key = 1u64.to_be_bytes();
    let id = netabase::model::ModelId(9);
    let at = Timestamp::new(5_000, 0);
    let v7 = Envelope::seal_raw_at(&keypair, id, &key, vec![1], at, false, 7).unwrap();
    // The version is the byte before the signature's length and bytes.
    let bytes = v7.as_bytes();
    let at_version = bytes.len() - 64 - 1 - 1;
    assert_eq!(bytes[at_version], 7);
    let mut claimed = bytes.to_vec();
    claimed[at_version] = 8;
    assert!(matches!(
        Envelope::from_bytes(&claimed, LIMIT),
        Err(EnvelopeError::BadSignature)
    ));
    let v0 = Envelope::seal_raw_at(&keypair, id, &key, vec![1], at, false, 0).unwrap();
    assert!(matches!(
        Envelope::from_bytes(v0.as_bytes(), LIMIT),
        Err(EnvelopeError::Malformed(_))
    ));
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
