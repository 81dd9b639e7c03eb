//! Two peers give one unique value to two different records before they
//! meet. Every peer ends the same: the earlier record holds the value, the
//! other is kept (so fingerprints converge) but out of the typed tree, is
//! announced and listed as a conflict, and takes the value once it is free.

mod common;

use common::*;
use netabase::node::{Event, Netabase};
use netabase::store::Lookup;
use netabase::KeyEncode;
use tokio::sync::broadcast;

fn email_holder(node: &Netabase, email: &str) -> Option<u64> {
    node.store()
        .tree::<User>()
        .by_email(email)
        .unwrap()
        .map(|u| u.id)
}

async fn conflicts(node: &Netabase) -> Vec<u64> {
    node.unique_conflicts::<User>()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.id)
        .collect()
}

async fn conflict_event(events: &mut broadcast::Receiver<Event>, id: u64) {
    let key = UserKey(id).to_key_bytes().as_slice().to_vec();
    wait_for("a unique conflict", events, |e| match e {
        Event::UniqueConflict { key: k, .. } if *k == key => Some(()),
        _ => None,
    })
    .await;
}

/// a gives `email` to user 1 and b to user 2, before they meet; returns
/// (the earlier of the two, the later), by version (within one millisecond,
/// the writers' ids decide).
async fn one_value_on_two_peers(a: &Netabase, b: &Netabase, email: &str) -> (u64, u64) {
    a.put_record_locally(user(1, email, 1)).await.unwrap();
    b.put_record_locally(user(2, email, 2)).await.unwrap();
    if a.record_version::<User>(&UserKey(1)) < b.record_version::<User>(&UserKey(2)) {
        (1, 2)
    } else {
        (2, 1)
    }
}

/// Catch-up both ways until both hold the same envelopes (bounded).
async fn sync_pair(a: &Netabase, b: &Netabase) {
    for _ in 0..3 {
        round(a, b).await;
        round(b, a).await;
        if a.sync_fingerprint().unwrap() == b.sync_fingerprint().unwrap() {
            return;
        }
    }
    panic!("{} and {} did not converge", a.peer_id(), b.peer_id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_unique_value_written_on_two_peers_ends_the_same_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let (a, mut a_events) = start(&dir.path().join("a"), &[]).await;
    let (b, mut b_events) = start(&dir.path().join("b"), &[]).await;
    // The earlier version keeps the address.
    let (first, second) = one_value_on_two_peers(&a, &b, "same@example.com").await;

    b.dial(address_of(&a)).await.unwrap();
    sync_pair(&a, &b).await;
    conflict_event(&mut a_events, second).await;
    conflict_event(&mut b_events, second).await;
    for node in [&a, &b] {
        assert_eq!(email_holder(node, "same@example.com"), Some(first));
        assert_eq!(
            node.store().tree::<User>().get(&UserKey(second)).unwrap(),
            None
        );
        assert_eq!(conflicts(node).await, [second]);
        assert_eq!(node.stats().unique_conflicts, 1);
        assert_indexes_consistent(&node.store().tree::<User>());
    }

    // A third peer learns them in the other order: the same end.
    let (c, mut c_events) = start(&dir.path().join("c"), &[&b]).await;
    caught_up_with(&mut c_events, b.peer_id()).await;
    assert_eq!(email_holder(&c, "same@example.com"), Some(first));
    c.dial(address_of(&a)).await.unwrap();
    sync_pair(&c, &a).await;
    assert_eq!(email_holder(&c, "same@example.com"), Some(first));
    assert_eq!(conflicts(&c).await, [second]);
    assert_eq!(c.sync_fingerprint().unwrap(), a.sync_fingerprint().unwrap());

    // The earlier record lets go of the value: the other takes it, everywhere.
    a.put_record_locally(user(first, "other@example.com", 1))
        .await
        .unwrap();
    assert_eq!(email_holder(&a, "same@example.com"), Some(second));
    assert!(conflicts(&a).await.is_empty());
    sync_pair(&a, &b).await;
    sync_pair(&c, &a).await;
    for node in [&a, &b, &c] {
        assert_eq!(email_holder(node, "same@example.com"), Some(second));
        assert_eq!(email_holder(node, "other@example.com"), Some(first));
        assert!(conflicts(node).await.is_empty());
        assert_indexes_consistent(&node.store().tree::<User>());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_resolved_by_a_delete_gives_the_value_to_the_other_record() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = start(&dir.path().join("a"), &[]).await;
    let (b, _) = start(&dir.path().join("b"), &[]).await;
    let (first, second) = one_value_on_two_peers(&a, &b, "x@example.com").await;
    b.dial(address_of(&a)).await.unwrap();
    sync_pair(&a, &b).await;
    assert_eq!(conflicts(&b).await, [second]);
    // b restarts: the listed conflict is still there and still settled.
    b.stop_swarm().await.unwrap();
    drop(b);
    let (b, _) = start(&dir.path().join("b"), &[&a]).await;
    assert_eq!(conflicts(&b).await, [second]);
    // b deletes the record holding the value.
    b.remove_record_locally::<User>(UserKey(first))
        .await
        .unwrap();
    assert_eq!(email_holder(&b, "x@example.com"), Some(second));
    sync_pair(&a, &b).await;
    for node in [&a, &b] {
        assert_eq!(email_holder(node, "x@example.com"), Some(second));
        assert!(conflicts(node).await.is_empty());
        assert_eq!(node.store().tree::<User>().len().unwrap(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_moves_a_unique_value_between_records_arrives_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = start(&dir.path().join("a"), &[]).await;
    a.put_records_locally(vec![
        user(1, "x@example.com", 1),
        user(2, "y@example.com", 1),
    ])
    .await
    .unwrap();
    let (b, mut b_events) = start(&dir.path().join("b"), &[&a]).await;
    caught_up_with(&mut b_events, a.peer_id()).await;
    // User 2 gives its address up and user 1 takes it, in one batch. B
    // fetches them in key order: user 1 first, while user 2 still holds it.
    a.put_records_locally(vec![
        user(2, "moved@example.com", 1),
        user(1, "y@example.com", 1),
    ])
    .await
    .unwrap();
    assert_eq!(round(&b, &a).await, 2);
    assert_eq!(b.sync_fingerprint().unwrap(), a.sync_fingerprint().unwrap());
    assert_eq!(email_holder(&b, "y@example.com"), Some(1));
    assert_eq!(email_holder(&b, "moved@example.com"), Some(2));
    assert!(conflicts(&b).await.is_empty());
    assert_eq!(b.stats().unique_conflicts, 0);
    assert_indexes_consistent(&b.store().tree::<User>());
}
