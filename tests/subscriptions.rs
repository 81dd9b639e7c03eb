//! Subscriptions: a node keeps in sync only the records it subscribes to,
//! reads the rest on demand, and changing a subscription fetches, takes in
//! or drops accordingly, without losing its own writes or anyone else's.
//! Bounded waits only.

mod common;

use std::time::Duration;

use common::*;
use netabase::node::{Netabase, NodeError, Subscription, MAX_SUBSCRIBED_RANGES};
use netabase::store::Lookup;

fn user(id: u64) -> User {
    User {
        id,
        name: format!("user {id}"),
        email: format!("u{id}@example.com"),
        age: (id % 90) as u32,
        address: None,
    }
}

async fn ids(node: &Netabase) -> Vec<u64> {
    users(node).await.into_iter().map(|u| u.id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_keeps_in_sync_only_what_it_subscribes_to() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = start(&dir.path().join("a"), &[]).await;
    a.put_records_locally((0..100).map(user).collect())
        .await
        .unwrap();

    // B subscribes before it starts: its first catch-up is already partial.
    let b = open(&dir.path().join("b"), config(&[&a], |_| {})).await;
    b.subscribe(Subscription::<User>::keys(UserKey(10)..UserKey(20)))
        .await
        .unwrap();
    // Its own write, outside the subscription, is stored all the same.
    b.put_record_locally(user(500)).await.unwrap();
    b.start_swarm().await.unwrap();
    assert_eq!(round(&b, &a).await, 10);
    let mut expected: Vec<u64> = (10..20).chain([500]).collect();
    assert_eq!(ids(&b).await, expected);
    // A subscribes to everything and takes B's write (at connect, or now).
    round(&a, &b).await;
    assert_eq!(ids(&a).await.len(), 101);

    // Outside the subscription: one get away, not stored.
    let fetched = b.get_record::<User>(UserKey(50)).await.unwrap();
    assert_eq!(fetched, user(50));
    assert_eq!(
        ids(&b).await,
        expected,
        "a record read on demand is not stored"
    );
    assert!(b
        .store()
        .tree::<User>()
        .get(&UserKey(50))
        .unwrap()
        .is_none());
    // Nothing differs where B subscribes: no fetch.
    assert_eq!(round(&b, &a).await, 0);

    // Widening fetches what it adds.
    b.subscribe(
        Subscription::<User>::keys(UserKey(10)..UserKey(20)).or_keys(UserKey(50)..=UserKey(60)),
    )
    .await
    .unwrap();
    round(&b, &a).await;
    expected = (10..20).chain(50..=60).chain([500]).collect();
    assert_eq!(ids(&b).await, expected);
    assert_eq!(
        b.subscription::<User>(),
        Subscription::<User>::keys(UserKey(10)..UserKey(20)).or_keys(UserKey(50)..=UserKey(60))
    );

    // Narrowing to nothing drops what others wrote, never this node's own
    // writes, and sends no delete: A keeps everything.
    b.subscribe(Subscription::<User>::nothing()).await.unwrap();
    assert_eq!(ids(&b).await, vec![500]);
    assert_eq!(round(&a, &b).await, 0);
    assert_eq!(ids(&a).await.len(), 101);
    // Other models are untouched: B still syncs posts whole.
    assert!(b.subscription::<Post>().is_all());

    // The subscription is kept across a restart, and nothing is fetched back.
    b.shutdown().await.unwrap();
    drop(b);
    let b = open(&dir.path().join("b"), config(&[&a], |_| {})).await;
    assert!(b.subscription::<User>().is_nothing());
    b.start_swarm().await.unwrap();
    assert_eq!(round(&b, &a).await, 0);
    assert_eq!(ids(&b).await, vec![500]);
    // Everything again: the rest arrives.
    b.subscribe(Subscription::<User>::all()).await.unwrap();
    round(&b, &a).await;
    assert_eq!(ids(&b).await.len(), 101);
    assert_eq!(b.sync_fingerprint().unwrap(), a.sync_fingerprint().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_subscription_takes_records_older_than_the_delete_horizon() {
    let dir = tempfile::tempdir().unwrap();
    // A's records are stamped two minutes ago; B forgets deletes after ten
    // seconds, counted back from its last catch-up.
    let (a, _) = start_with(&dir.path().join("a"), &[], |c| c.clock_skew_ms = -120_000).await;
    a.put_records_locally((0..50).map(user).collect())
        .await
        .unwrap();
    let b = open(
        &dir.path().join("b"),
        config(&[&a], |c| {
            c.tombstone_horizon = Some(Duration::from_secs(10))
        }),
    )
    .await;
    b.subscribe(Subscription::<User>::nothing()).await.unwrap();
    b.start_swarm().await.unwrap();
    // A completed catch-up: B's floor is now ten seconds ago, after A's records.
    assert_eq!(round(&b, &a).await, 0);
    // A range B never subscribed to has no catch-up behind it: a record
    // there older than the floor is no delete B may have forgotten.
    b.subscribe(Subscription::<User>::all()).await.unwrap();
    round(&b, &a).await;
    assert_eq!(ids(&b).await.len(), 50);
    assert_eq!(b.stats().rejected(netabase::node::Rejection::Expired), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_subscribes_to_less_never_makes_others_drop_records() {
    let dir = tempfile::tempdir().unwrap();
    // Deletes are forgotten a second after a node's last catch-up.
    let horizon =
        |c: &mut netabase::node::NetabaseConfig| c.tombstone_horizon = Some(Duration::from_secs(1));
    // A takes 30 users stamped two minutes ago (by D) in its one catch-up.
    let (d, _) = start_with(&dir.path().join("d"), &[], |c| c.clock_skew_ms = -120_000).await;
    d.put_records_locally((0..30).map(user).collect())
        .await
        .unwrap();
    let (a, _) = start_with(&dir.path().join("a"), &[&d], horizon).await;
    round(&a, &d).await;
    assert_eq!(ids(&a).await.len(), 30);
    d.shutdown().await.unwrap();
    // Past A's horizon, B (which keeps no user) catches up with C.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (c, _) = start_with(&dir.path().join("c"), &[], horizon).await;
    let b = open(&dir.path().join("b"), config(&[&c], horizon)).await;
    b.subscribe(Subscription::<User>::nothing()).await.unwrap();
    b.start_swarm().await.unwrap();
    round(&b, &c).await;
    // To A, B lacking A's users would read as "deleted while A was away"
    // (A last caught up before B's floor, and they are older than it) if B
    // claimed its floor over keys it does not keep.
    a.dial(address_of(&b)).await.unwrap();
    round(&a, &b).await;
    assert_eq!(ids(&a).await.len(), 30, "A dropped records B does not keep");
    assert_eq!(a.stats().ghosts_dropped, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_read_on_demand_answers_for_its_time_to_live_only() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = start(&dir.path().join("a"), &[]).await;
    a.put_records_locally((0..5).map(user).collect())
        .await
        .unwrap();
    let (b, _) = start_with(&dir.path().join("b"), &[&a], |_| {}).await;
    b.subscribe(Subscription::<User>::nothing()).await.unwrap();
    let (c, _) = start_with(&dir.path().join("c"), &[&a], |c| {
        c.remote_copy_ttl = Duration::ZERO
    })
    .await;
    c.subscribe(Subscription::<User>::nothing()).await.unwrap();
    round(&b, &a).await;
    round(&c, &a).await;
    assert_eq!(b.get_record::<User>(UserKey(3)).await.unwrap(), user(3));
    assert_eq!(c.get_record::<User>(UserKey(3)).await.unwrap(), user(3));
    // A goes away: B still answers from its copy; C, which keeps none,
    // finds no one to ask.
    a.shutdown().await.unwrap();
    assert_eq!(b.get_record::<User>(UserKey(3)).await.unwrap(), user(3));
    assert!(matches!(
        c.get_record::<User>(UserKey(3)).await,
        Err(NodeError::NotFound)
    ));
    assert!(users(&b).await.is_empty() && users(&c).await.is_empty());
    // A subscription that covers B's copy stores it, with no one to fetch
    // it from.
    b.subscribe(Subscription::<User>::keys(UserKey(0)..UserKey(4)))
        .await
        .unwrap();
    assert_eq!(ids(&b).await, vec![3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_checked_before_anything_changes() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path(), config(&[], |_| {})).await;
    let mut many = Subscription::<User>::nothing();
    for i in 0..=MAX_SUBSCRIBED_RANGES as u64 {
        many = many.or_keys(UserKey(i * 10)..UserKey(i * 10 + 5));
    }
    assert!(matches!(
        node.subscribe(many).await,
        Err(NodeError::TooManyRanges { model: "User", .. })
    ));
    assert!(node.subscription::<User>().is_all());
    // Touching ranges merge into one.
    let merged = Subscription::<User>::keys(UserKey(0)..UserKey(5)).or_keys(UserKey(5)..UserKey(9));
    assert_eq!(merged, Subscription::<User>::keys(UserKey(0)..UserKey(9)));
    assert!(merged.contains(&UserKey(8)) && !merged.contains(&UserKey(9)));
    // A model not registered is refused.
    let other = Netabase::new_with_path(dir.path().join("other"), config(&[], |_| {})).unwrap();
    assert!(matches!(
        other.subscribe(Subscription::<User>::nothing()).await,
        Err(NodeError::NotRegistered { .. })
    ));
}

/// A node with `Note` registered too, started.
async fn start_with_notes(
    dir: &std::path::Path,
    bootstrap: &[&Netabase],
    subscription: Option<Subscription<Note>>,
) -> Netabase {
    let node = open(dir, config(bootstrap, |_| {})).await;
    node.register::<Note>().unwrap();
    if let Some(subscription) = subscription {
        node.subscribe(subscription).await.unwrap();
    }
    node.start_swarm().await.unwrap();
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_keeps_its_users_records_alone_by_key_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let a = start_with_notes(&dir.path().join("a"), &[], None).await;
    let mut all = Vec::new();
    for owner in ["ann", "bob", "bobby", "cy"] {
        all.extend((0..20).map(|n| note(owner, n, "inbox")));
    }
    a.put_records_locally(all).await.unwrap();
    // Bob's new device: his notes only ("bobby" shares no key prefix with
    // "bob": key parts are prefix-free).
    let b = start_with_notes(
        &dir.path().join("b"),
        &[&a],
        Some(Subscription::<Note>::key_prefix("bob")),
    )
    .await;
    assert_eq!(round(&b, &a).await, 20);
    let held: Vec<Note> = b
        .query_local_records::<Note, _, _>(|t| t.iter()?.collect())
        .await
        .unwrap();
    assert_eq!(
        held,
        (0..20).map(|n| note("bob", n, "inbox")).collect::<Vec<_>>()
    );
    // The secondary indexes answer for what is held.
    let inbox = b
        .query_local_records::<Note, _, _>(|t| Ok(t.by_list("inbox")?.len()))
        .await
        .unwrap();
    assert_eq!(inbox, 20);
    // Everyone else's are a get away.
    let other = b
        .get_record::<Note>(NoteKey(("cy".to_string(), 3)))
        .await
        .unwrap();
    assert_eq!(other, note("cy", 3, "inbox"));
    // A note Bob writes elsewhere reaches his device at its next catch-up.
    a.put_record_locally(note("bob", 99, "work")).await.unwrap();
    a.put_record_locally(note("ann", 99, "work")).await.unwrap();
    assert_eq!(round(&b, &a).await, 1);
    assert!(Subscription::<Note>::key_prefix("bob").contains(&NoteKey(("bob".to_string(), 99))));
    assert!(!Subscription::<Note>::key_prefix("bob").contains(&NoteKey(("bobby".to_string(), 1))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_catch_up_moves_what_the_subscription_covers() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = start(&dir.path().join("a"), &[]).await;
    a.put_records_locally((0..400).map(user).collect())
        .await
        .unwrap();
    let full = open(&dir.path().join("full"), config(&[&a], |_| {})).await;
    full.start_swarm().await.unwrap();
    let part = open(&dir.path().join("part"), config(&[&a], |_| {})).await;
    part.subscribe(Subscription::<User>::keys(UserKey(0)..UserKey(20)))
        .await
        .unwrap();
    part.start_swarm().await.unwrap();
    // At connect, or in this round.
    round(&full, &a).await;
    round(&part, &a).await;
    assert_eq!(users(&full).await.len(), 400);
    assert_eq!(users(&part).await.len(), 20);
    // Received: the reconciliation and the records, counted by the protocol.
    let full_bytes = full.stats().sync_bytes_received;
    let part_bytes = part.stats().sync_bytes_received;
    assert!(part_bytes > 0);
    assert!(
        part_bytes * 10 < full_bytes,
        "a 20-record subscription received {part_bytes} bytes, the whole model {full_bytes}"
    );
    // A's side counts what it sent both.
    assert!(a.stats().sync_bytes_sent >= full_bytes + part_bytes - 4096);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_reaches_the_nodes_that_subscribe_to_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = start(&dir.path().join("a"), &[]).await;
    a.put_records_locally((0..40).map(user).collect())
        .await
        .unwrap();
    let b = open(&dir.path().join("b"), config(&[&a], |_| {})).await;
    b.subscribe(Subscription::<User>::keys(UserKey(0)..UserKey(10)))
        .await
        .unwrap();
    b.start_swarm().await.unwrap();
    round(&b, &a).await;
    assert_eq!(ids(&b).await, (0..10).collect::<Vec<_>>());
    // Deleted on A only (no publication): B learns it by catching up.
    a.remove_record_locally::<User>(UserKey(3)).await.unwrap();
    a.remove_record_locally::<User>(UserKey(30)).await.unwrap();
    round(&b, &a).await;
    let expected: Vec<u64> = (0..10).filter(|id| *id != 3).collect();
    assert_eq!(ids(&b).await, expected);
    // The delete outside B's subscription is not fetched, and B's view of
    // what it subscribes to matches A's.
    assert!(b.record_version::<User>(&UserKey(30)).is_none());
    assert!(
        b.record_version::<User>(&UserKey(3)).is_some(),
        "the delete is held"
    );
}
