//! The replica core on its own: no swarm, no network types. What a peer
//! sends is handed in as bytes, the way the shell hands it over.

use std::sync::Arc;
use std::time::Duration;

use libp2p_identity::Keypair;

use super::event::{ChangeKind, Event, Origin};
use super::stats::Rejection;
use super::{apply, inbound, intake, local, Replica, Settings};
use crate::codec::Envelope;
use crate::key::KeyEncode;
use crate::store::{Lookup, Store};
use crate::sync::Timestamp;
use crate::NetabaseModel;

#[derive(crate::NetabaseModel, Clone, Debug, PartialEq)]
pub(crate) struct Note {
    #[primary_key]
    pub(crate) id: u64,
    #[secondary_key]
    pub(crate) topic: String,
}

fn settings() -> Settings {
    Settings {
        max_record_bytes: 64 * 1024,
        tombstone_horizon: Some(Duration::from_secs(3600)),
        catch_up: true,
        record_cache_bytes: 1 << 20,
        remote_copy_bytes: 1 << 16,
        remote_copy_ttl: std::time::Duration::from_secs(60),
        max_clock_drift: Duration::from_secs(60),
        clock_skew_ms: 0,
        admins: Default::default(),
    }
}

/// A replica on an in-memory store, with `Note` registered.
pub(crate) fn replica() -> Arc<Replica> {
    let store = Store::builder().in_memory().expect("store");
    let replica = Replica::open(&"test", Keypair::generate_ed25519(), store, settings())
        .expect("open replica");
    replica.register::<Note>().expect("register");
    replica
}

pub(crate) fn note(id: u64, topic: &str) -> Note {
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

/// The row the store keeps for `record_key`.
fn row_of(replica: &Replica, record_key: &[u8]) -> Vec<u8> {
    let txn = replica.store.begin_read().expect("read");
    let table = txn
        .raw()
        .open_table(crate::store::fingerprints::RECORDS)
        .expect("the records table");
    let row = table.get(record_key).expect("read a row").expect("held");
    row.value().to_vec()
}

fn is_split(row: &[u8]) -> bool {
    use crate::store::fingerprints::STATE_BYTES;
    row[STATE_BYTES - 1] & crate::store::rows::SPLIT_FLAG != 0
}

#[test]
fn a_record_is_stored_once_and_served_as_signed() {
    use crate::store::fingerprints::STATE_BYTES;
    let replica = replica();
    let envelope =
        local::seal(&replica, &NoteKey(1), Some(&note(1, "a")), None, None).expect("seal");
    local::commit_local(&replica, &envelope, Note::NAME).expect("commit");
    let peer = Keypair::generate_ed25519();
    let at = Timestamp(envelope.version().timestamp.0 + 1);
    let (peer_key, peer_bytes) = from_peer(&peer, &note(2, "b"), at);
    push(
        &replica,
        &peer,
        vec![(peer_key.clone(), peer_bytes.clone())],
    );
    for (key, bytes) in [
        (envelope.record_key(), envelope.as_bytes().to_vec()),
        (peer_key, peer_bytes),
    ] {
        let row = row_of(&replica, &key);
        let held = Envelope::from_bytes(&bytes, usize::MAX).expect("valid");
        // The payload lives in the typed row only.
        assert!(is_split(&row));
        assert_eq!(row.len(), STATE_BYTES + held.rest().expect("splits").len());
        assert!(row.len() + held.payload().len() < STATE_BYTES + bytes.len());
        let read = replica.store.begin_read().expect("read");
        assert_eq!(read.envelope(&key).expect("join"), Some(bytes.clone()));
        assert_eq!(
            read.envelopes_of([&key[..]]).expect("join"),
            vec![Some(bytes.clone())]
        );
        let streamed = read.envelopes_after(None, 10).expect("stream");
        assert!(streamed.contains(&(key.clone(), bytes.clone())));
    }
    // A delete has no typed row: kept whole.
    let delete = local::seal::<Note>(&replica, &NoteKey(1), None, None, None).expect("seal");
    local::commit_local(&replica, &delete, Note::NAME).expect("commit");
    assert!(!is_split(&row_of(&replica, &delete.record_key())));
    assert_eq!(
        replica
            .store
            .begin_read()
            .unwrap()
            .envelope(&delete.record_key())
            .unwrap(),
        Some(delete.as_bytes().to_vec())
    );
}

#[test]
fn a_payload_in_an_unusual_encoding_is_kept_whole_and_served_as_signed() {
    let replica = replica();
    let now = local::seal(&replica, &NoteKey(9), Some(&note(9, "x")), None, None)
        .expect("seal")
        .version()
        .timestamp;
    let peer = Keypair::generate_ed25519();
    // Note { id: 1, topic: "a" } with its id as a 3-byte varint (251, then
    // a u16): it decodes, but the typed row holds the usual 1-byte form,
    // which is not what the peer signed.
    let odd = vec![251, 1, 0, 1, b'a'];
    assert_eq!(
        crate::codec::decode::<Note>(&odd).expect("decodes"),
        note(1, "a")
    );
    let envelope = Envelope::seal_raw(
        &peer,
        Note::ID,
        NoteKey(1).to_key_bytes().as_slice(),
        odd,
        now,
        false,
    )
    .expect("seal");
    let key = envelope.record_key();
    push(
        &replica,
        &peer,
        vec![(key.clone(), envelope.as_bytes().to_vec())],
    );
    assert_eq!(stored(&replica, 1), Some(note(1, "a")));
    assert!(!is_split(&row_of(&replica, &key)));
    let served = replica.store.begin_read().unwrap().envelope(&key).unwrap();
    assert_eq!(served.as_deref(), Some(envelope.as_bytes()));
    Envelope::from_bytes(envelope.as_bytes(), usize::MAX).expect("still verifies");
}

#[test]
fn a_typed_row_changed_behind_the_node_is_reported_not_served() {
    let replica = replica();
    let envelope =
        local::seal(&replica, &NoteKey(1), Some(&note(1, "a")), None, None).expect("seal");
    local::commit_local(&replica, &envelope, Note::NAME).expect("commit");
    let key = envelope.record_key();
    // Another program rewrites the typed row.
    let txn = replica.store.begin_write().expect("write");
    {
        let mut table = txn
            .raw()
            .open_table(
                redb::TableDefinition::<crate::store::tables::KeyBytes, &[u8]>::new(Note::TABLE),
            )
            .expect("the typed table");
        let other = crate::codec::encode(&note(1, "b")).expect("encode");
        table
            .insert(NoteKey(1).to_key_bytes().as_slice(), &other[..])
            .expect("rewrite");
    }
    txn.commit().expect("commit");
    replica.cache.forget([key.as_slice()]);
    let read = replica.store.begin_read().unwrap();
    assert!(matches!(
        read.envelope(&key),
        Err(crate::store::StoreError::SyncedRecordChanged)
    ));
    assert_eq!(read.envelopes_of([&key[..]]).unwrap(), vec![None]);
    assert!(read.envelopes_after(None, 10).unwrap().is_empty());
}

#[derive(crate::NetabaseModel, Clone, Debug, PartialEq)]
struct Handle {
    #[primary_key]
    id: u64,
    #[secondary_key(unique)]
    name: String,
}

#[test]
fn a_record_that_loses_its_unique_value_keeps_its_whole_envelope() {
    let replica = replica();
    replica.register::<Handle>().expect("register");
    let mine = Handle {
        id: 1,
        name: "x".into(),
    };
    let envelope = local::seal(&replica, &HandleKey(1), Some(&mine), None, None).expect("seal");
    local::commit_local(&replica, &envelope, Handle::NAME).expect("commit");
    let key = envelope.record_key();
    assert!(is_split(&row_of(&replica, &key)));
    // A peer claimed the same name earlier: its record takes the value,
    // and mine leaves the typed tree, listed as a conflict.
    let peer = Keypair::generate_ed25519();
    let theirs = Handle {
        id: 2,
        name: "x".into(),
    };
    let earlier = Timestamp(envelope.version().timestamp.0 - 1);
    let sealed = Envelope::seal(&peer, &theirs, earlier).expect("seal");
    push(
        &replica,
        &peer,
        vec![(sealed.record_key(), sealed.as_bytes().to_vec())],
    );
    let tree = replica.store.tree::<Handle>();
    assert_eq!(tree.get(&HandleKey(2)).expect("read"), Some(theirs));
    assert_eq!(tree.get(&HandleKey(1)).expect("read"), None);
    assert!(
        !is_split(&row_of(&replica, &key)),
        "kept whole, out of the tree"
    );
    replica.cache.forget([key.as_slice()]);
    let read = replica.store.begin_read().unwrap();
    assert_eq!(
        read.envelope(&key).unwrap().as_deref(),
        Some(envelope.as_bytes())
    );
}

#[test]
fn own_records_are_found_without_joining_others() {
    use crate::codec::split::WrittenBy;
    let replica = replica();
    let mine = local::seal(&replica, &NoteKey(1), Some(&note(1, "a")), None, None).expect("seal");
    local::commit_local(&replica, &mine, Note::NAME).expect("commit");
    let peer = Keypair::generate_ed25519();
    let at = Timestamp(mine.version().timestamp.0 + 1);
    let theirs: Vec<_> = (2..40)
        .map(|id| from_peer(&peer, &note(id, "b"), at))
        .collect();
    push(&replica, &peer, theirs);
    let own = WrittenBy::new(&replica.keypair.public().encode_protobuf());
    let read = replica.store.begin_read().unwrap();
    // Pages of 16 rows: the last key scanned carries the scan on.
    let mut after = None;
    let mut found = Vec::new();
    let mut pages = 0;
    loop {
        let (page, last) = read
            .envelopes_after_where(after.as_deref(), 16, |rest| own.matches(rest))
            .unwrap();
        found.extend(page);
        pages += 1;
        match last {
            Some(last) => after = Some(last),
            None => break,
        }
    }
    assert_eq!(pages, 3, "39 rows, 16 a page");
    assert_eq!(found, vec![(mine.record_key(), mine.as_bytes().to_vec())]);
}

/// A peer's record of a version of `Note` newer than this build knows is
/// held whole and listed, replaces the typed row it follows, and leaves the
/// list (and the count) when it is dropped or replaced again.
#[test]
fn a_newer_version_is_held_listed_and_unlisted_when_it_goes() {
    use std::sync::atomic::Ordering;
    let replica = replica();
    let peer = Keypair::generate_ed25519();
    let base = Timestamp::new(crate::sync::Clock::system(0).wall_millis(), 0);
    push(&replica, &peer, vec![from_peer(&peer, &note(1, "a"), base)]);
    assert_eq!(stored(&replica, 1), Some(note(1, "a")));
    let key = NoteKey(1).to_key_bytes();
    let newer = |at: u64| {
        let envelope = Envelope::seal_raw_at(
            &peer,
            Note::ID,
            key.as_slice(),
            vec![0xAB; 12],
            Timestamp(base.0 + at),
            false,
            2,
        )
        .expect("seal");
        (envelope.record_key(), envelope.as_bytes().to_vec())
    };
    let held = || replica.counters.newer_held.load(Ordering::Relaxed);
    let mut events = replica.events.subscribe();
    push(&replica, &peer, vec![newer(1 << 20)]);
    assert_eq!(held(), 1);
    assert_eq!(stored(&replica, 1), None, "the older typed row is gone");
    let told = std::iter::from_fn(|| events.try_recv().ok())
        .any(|e| matches!(e, Event::NewerVersionHeld { held: 1, .. }));
    assert!(told, "the app is told");
    let record_key = crate::codec::record_key(Note::ID, key.as_slice());
    let bytes = replica.held(&record_key).expect("read").expect("held");
    assert_eq!(
        Envelope::from_trusted_bytes(&bytes.bytes)
            .unwrap()
            .model_version(),
        2
    );
    // Dropped (as a ghost or a revoked write would be): unlisted.
    let dropped = super::horizon::drop_held(
        &replica,
        std::slice::from_ref(&record_key),
        Origin::Local,
        |_| true,
    )
    .expect("drop");
    assert_eq!(dropped.len(), 1);
    assert_eq!(held(), 0);
    // Held again, then replaced by a readable version: unlisted again.
    push(&replica, &peer, vec![newer(2 << 20)]);
    assert_eq!(held(), 1);
    push(
        &replica,
        &peer,
        vec![from_peer(
            &peer,
            &note(1, "b"),
            Timestamp(base.0 + (3 << 20)),
        )],
    );
    assert_eq!(held(), 0);
    assert_eq!(stored(&replica, 1), Some(note(1, "b")));
    let read = replica.store.begin_read().expect("read");
    assert_eq!(read.newer_total().expect("total"), 0);
}
