//! The replica core on its own: no swarm, no network types. What a peer
//! sends is handed in as bytes, the way the shell hands it over.

use std::sync::Arc;
use std::time::Duration;

use libp2p_identity::Keypair;

use super::event::{ChangeKind, Event, Origin};
use super::stats::Rejection;
use super::{apply, inbound, intake, local, Replica, Settings};
use crate::codec::Envelope;
use crate::store::{Lookup, Store};
use crate::sync::Timestamp;
use crate::NetabaseModel;

#[derive(crate::NetabaseModel, Clone, Debug, PartialEq)]
struct Note {
    #[primary_key]
    id: u64,
    #[secondary_key]
    topic: String,
}

fn settings() -> Settings {
    Settings {
        max_record_bytes: 64 * 1024,
        tombstone_horizon: Some(Duration::from_secs(3600)),
        catch_up: true,
        record_cache_bytes: 1 << 20,
        max_clock_drift: Duration::from_secs(60),
        clock_skew_ms: 0,
        admins: Default::default(),
    }
}

fn replica() -> Arc<Replica> {
    let store = Store::builder().in_memory().expect("store");
    let replica = Replica::open(&"test", Keypair::generate_ed25519(), store, settings())
        .expect("open replica");
    replica.register::<Note>().expect("register");
    replica
}

fn note(id: u64, topic: &str) -> Note {
    Note {
        id,
        topic: topic.into(),
    }
}

/// A peer's write, as the shell would receive it: its record key and bytes.
fn from_peer(peer: &Keypair, record: &Note, at: Timestamp) -> (Vec<u8>, Vec<u8>) {
    let envelope = Envelope::seal(peer, record, at).expect("seal");
    (envelope.record_key(), envelope.as_bytes().to_vec())
}

/// Everything queued for `replica` from `peer`, stored the way the shell's
/// storage worker stores it.
fn push(replica: &Replica, peer: &Keypair, records: Vec<(Vec<u8>, Vec<u8>)>) {
    let peer_id = peer.public().to_peer_id();
    for (key, bytes) in records {
        assert_ne!(
            replica.pushed.push(peer_id, key, bytes),
            inbound::Pushed::Full
        );
    }
    intake::drain(replica);
}

fn stored(replica: &Replica, id: u64) -> Option<Note> {
    replica
        .store
        .tree::<Note>()
        .get(&NoteKey(id))
        .expect("read")
}

#[test]
fn a_local_write_is_committed_cached_and_announced() {
    let replica = replica();
    let mut events = replica.events.subscribe();
    let envelope =
        local::seal(&replica, &NoteKey(1), Some(&note(1, "a")), None, None).expect("seal");
    local::commit_local(&replica, &envelope, Note::NAME).expect("commit");
    assert_eq!(stored(&replica, 1), Some(note(1, "a")));
    assert!(replica.cache.cached(&envelope.record_key()).is_some());
    match events.try_recv().expect("an event") {
        Event::Record { kind, origin, .. } => {
            assert_eq!(kind, ChangeKind::Put);
            assert_eq!(origin, Origin::Local);
        }
        other => panic!("unexpected event {other:?}"),
    }
}

#[test]
fn a_peers_newer_write_wins_and_an_older_one_is_refused_as_stale() {
    let replica = replica();
    let local_envelope =
        local::seal(&replica, &NoteKey(7), Some(&note(7, "mine")), None, None).expect("seal");
    local::commit_local(&replica, &local_envelope, Note::NAME).expect("commit");
    let held = local_envelope.version().timestamp;
    let peer = Keypair::generate_ed25519();

    let older = Timestamp(held.0 - 1);
    push(
        &replica,
        &peer,
        vec![from_peer(&peer, &note(7, "old"), older)],
    );
    assert_eq!(stored(&replica, 7), Some(note(7, "mine")));

    let newer = Timestamp(held.0 + 1);
    push(
        &replica,
        &peer,
        vec![from_peer(&peer, &note(7, "new"), newer)],
    );
    assert_eq!(stored(&replica, 7), Some(note(7, "new")));
    assert_eq!(replica.counters.snapshot(false).accepted, 1);
}

#[test]
fn hostile_bytes_are_refused_and_counted_and_nothing_is_stored() {
    let replica = replica();
    let peer = Keypair::generate_ed25519();
    let now = replica.clock.now();
    let (key, mut forged) = from_peer(&peer, &note(3, "x"), now);
    let last = forged.len() - 1;
    forged[last] ^= 1;
    // A valid envelope, sent under another record's key.
    let (_, misplaced) = from_peer(&peer, &note(4, "y"), now);
    // A current format byte, then bytes cut short.
    let garbage = (b"garbage".to_vec(), vec![crate::codec::ENVELOPE_FORMAT, 1]);
    push(
        &replica,
        &peer,
        vec![(key.clone(), forged), (key, misplaced), garbage],
    );
    let stats = replica.counters.snapshot(false);
    assert_eq!(stats.accepted, 0);
    assert_eq!(stats.rejected(Rejection::BadSignature), 1);
    assert_eq!(stats.rejected(Rejection::KeyMismatch), 1);
    assert_eq!(stats.rejected(Rejection::Malformed), 1);
    assert_eq!(stored(&replica, 3), None);
    assert_eq!(stored(&replica, 4), None);
}

#[test]
fn a_record_from_too_far_in_the_future_is_refused() {
    let replica = replica();
    let peer = Keypair::generate_ed25519();
    let ahead = Timestamp::new(replica.clock.wall_millis() + 3_600_000, 0);
    push(
        &replica,
        &peer,
        vec![from_peer(&peer, &note(5, "z"), ahead)],
    );
    assert_eq!(
        replica
            .counters
            .snapshot(false)
            .rejected(Rejection::FromTheFuture),
        1
    );
    assert_eq!(stored(&replica, 5), None);
}

#[test]
fn a_batch_from_a_peer_lands_in_one_commit_with_its_index_entries() {
    let replica = replica();
    let peer = Keypair::generate_ed25519();
    let now = replica.clock.now();
    let records: Vec<_> = (0..100)
        .map(|i| {
            from_peer(
                &peer,
                &note(i, if i % 2 == 0 { "even" } else { "odd" }),
                now,
            )
        })
        .collect();
    let envelopes: Vec<Envelope> = records
        .iter()
        .map(|(_, bytes)| Envelope::from_bytes(bytes, 64 * 1024).expect("valid"))
        .collect();
    let stored_models = apply::apply_batch(
        &replica,
        &envelopes,
        Origin::Peer(peer.public().to_peer_id()),
    )
    .expect("apply");
    assert_eq!(stored_models.len(), 100);
    let even = replica
        .store
        .tree::<Note>()
        .by_topic("even")
        .expect("query");
    assert_eq!(even.len(), 50);
    // Peers' records are not cached: the app's hot keys stay.
    assert!(replica.cache.cached(&records[0].0).is_none());
    let fingerprint = replica
        .store
        .begin_read()
        .expect("read")
        .sync_index()
        .expect("index")
        .len()
        .expect("len");
    assert_eq!(fingerprint, 100);
}
