//! Typed changes and live queries: on a store alone, and on a node whose
//! records change locally and from peers.

mod common;

use std::time::Duration;

use common::*;
use netabase::node::{Origin, WriteQuorum};
use netabase::store::{LiveChange, WatchError, WATCH_BUFFER};
use netabase::{Store, StoreError};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_store_sends_typed_changes_when_transactions_commit() {
    let store = Store::in_memory().unwrap();
    let mut changes = store.watch::<User>();
    let users = store.tree::<User>();
    users.put(&user(1, "a@x", 30)).unwrap();
    users.put(&user(1, "a@x", 31)).unwrap();
    users.remove(&UserKey(1)).unwrap();
    // An aborted transaction sends nothing; a committed one sends all.
    {
        let txn = store.begin_write().unwrap();
        txn.open_tree::<User>()
            .unwrap()
            .put(&user(2, "b@x", 1))
            .unwrap();
    }
    store
        .write(|txn| {
            let mut tree = txn.open_tree::<User>()?;
            tree.put(&user(3, "c@x", 1))?;
            tree.put(&user(4, "d@x", 1))?;
            Ok::<_, StoreError>(())
        })
        .unwrap();
    let mut seen = Vec::new();
    while let Some(change) = changes.try_next().unwrap() {
        seen.push((change.key.0, change.record.map(|u| u.age)));
    }
    assert_eq!(
        seen,
        vec![
            (1, Some(30)),
            (1, Some(31)),
            (1, None),
            (3, Some(1)),
            (4, Some(1))
        ]
    );
}

#[tokio::test]
async fn a_live_query_follows_records_into_and_out_of_its_set() {
    let store = Store::in_memory().unwrap();
    let users = store.tree::<User>();
    users.put(&user(1, "a@x", 17)).unwrap();
    users.put(&user(2, "b@x", 40)).unwrap();
    let mut adults = store.watch_by_age_range(18..).unwrap();
    let ids = |q: &netabase::store::LiveQuery<User>| q.records().map(|u| u.id).collect::<Vec<_>>();
    assert_eq!(ids(&adults), vec![2]);

    users.put(&user(1, "a@x", 18)).unwrap(); // enters
    users.put(&user(3, "c@x", 5)).unwrap(); // stays out: no event
    users.put(&user(2, "b@x", 41)).unwrap(); // changes within
    users.put(&user(1, "a@x", 10)).unwrap(); // leaves
    users.remove(&UserKey(2)).unwrap(); // deleted: leaves
    let mut events = Vec::new();
    for _ in 0..4 {
        let change = tokio::time::timeout(WAIT, adults.next())
            .await
            .unwrap()
            .unwrap();
        events.push(match change {
            LiveChange::Entered(u) => format!("+{}", u.id),
            LiveChange::Changed(u) => format!("~{}", u.id),
            LiveChange::Left(k) => format!("-{}", k.0),
            LiveChange::Resynced => "resynced".into(),
        });
    }
    assert_eq!(events, ["+1", "~2", "-1", "-2"]);
    assert!(adults.is_empty());
    // The set is what the same query reads.
    users.put(&user(4, "d@x", 50)).unwrap();
    tokio::time::timeout(WAIT, adults.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ids(&adults), vec![4]);
    assert_eq!(
        users
            .by_age_range(18..)
            .unwrap()
            .iter()
            .map(|u| u.id)
            .collect::<Vec<_>>(),
        ids(&adults)
    );
    // Exact values and multi-valued indexes work the same way.
    let mut tagged = store.watch_by_tags("rust").unwrap();
    store
        .tree::<Post>()
        .put(&post("intro", &["rust", "db"], None, 1))
        .unwrap();
    let change = tokio::time::timeout(WAIT, tagged.next())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(change, LiveChange::Entered(p) if p.slug == "intro"));
}

#[tokio::test]
async fn a_watcher_that_falls_behind_is_told_and_a_live_query_resyncs() {
    let store = Store::in_memory().unwrap();
    let mut changes = store.watch::<User>();
    let mut everyone = store.watch_all::<User>().unwrap();
    let users = store.tree::<User>();
    let count = WATCH_BUFFER as u64 + 10;
    users
        .put_many((0..count).map(|i| user(i, &format!("{i}@x"), 1)))
        .unwrap();
    // The raw feed says how many it missed, then goes on.
    assert!(matches!(changes.next().await, Err(WatchError::Missed(10))));
    assert_eq!(changes.next().await.unwrap().key.0, 10);
    // The live query re-reads: nothing lost.
    assert!(matches!(
        everyone.next().await.unwrap(),
        LiveChange::Resynced
    ));
    assert_eq!(everyone.len() as u64, count);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_sends_typed_changes_from_every_path() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = start(&dir.path().join("a"), &[]).await;
    let mut a_changes = a.watch::<User>().unwrap();
    a.put_record_locally(user(1, "one@x", 20)).await.unwrap();
    let change = a_changes.next().await.unwrap();
    assert_eq!(
        (change.key.clone(), change.origin, change.version.writer),
        (UserKey(1), Origin::Local, a.peer_id())
    );
    assert_eq!(change.record.unwrap().email, "one@x");

    // B catches up, with a live query of adults open before it starts.
    let b = open(
        &dir.path().join("b"),
        config(&[&a], |c| {
            c.write_quorum = WriteQuorum::Available;
        }),
    )
    .await;
    let mut b_changes = b.watch::<User>().unwrap();
    let mut adults = b.store().watch_by_age_range(18..).unwrap();
    b.start_swarm().await.unwrap();
    let change = tokio::time::timeout(WAIT, b_changes.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (change.key, change.origin, change.version.writer),
        (UserKey(1), Origin::Peer(a.peer_id()), a.peer_id())
    );
    let entered = tokio::time::timeout(WAIT, adults.next())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(entered, LiveChange::Entered(u) if u.id == 1));

    // A push, then a delete, from A.
    a.put_record(user(2, "two@x", 30)).await.unwrap();
    let change = tokio::time::timeout(WAIT, b_changes.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (change.key, change.origin),
        (UserKey(2), Origin::Peer(a.peer_id()))
    );
    a.remove_record::<User>(UserKey(1)).await.unwrap();
    let change = tokio::time::timeout(WAIT, b_changes.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((change.key, change.record.is_none()), (UserKey(1), true));
    // The live query saw 2 enter and 1 leave.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match tokio::time::timeout(WAIT, adults.next())
            .await
            .unwrap()
            .unwrap()
        {
            LiveChange::Entered(u) => seen.push(format!("+{}", u.id)),
            LiveChange::Left(k) => seen.push(format!("-{}", k.0)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(seen, ["+2", "-1"]);
    assert_eq!(adults.records().map(|u| u.id).collect::<Vec<_>>(), vec![2]);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetched_copy_is_a_typed_change_too() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = start(&dir.path().join("a"), &[]).await;
    a.put_record_locally(user(7, "seven@x", 70)).await.unwrap();
    // C syncs only through the DHT: what it fetches is kept, and announced.
    let (c, _) = start_with(&dir.path().join("c"), &[&a], |c| c.catch_up = false).await;
    let mut changes = c.watch::<User>().unwrap();
    let mut live = c.store().watch_all::<User>().unwrap();
    assert_eq!(c.get_record::<User>(UserKey(7)).await.unwrap().age, 70);
    let change = tokio::time::timeout(WAIT, changes.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (change.key, change.origin, change.version.writer),
        (UserKey(7), Origin::Peer(a.peer_id()), a.peer_id())
    );
    let entered = tokio::time::timeout(WAIT, live.next())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(entered, LiveChange::Entered(u) if u.id == 7));
    a.shutdown().await.unwrap();
    c.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_watcher_that_falls_behind_is_told_how_many_it_missed() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path(), netabase::node::NetabaseConfig::loopback()).await;
    let mut changes = node.watch::<User>().unwrap();
    let count = WATCH_BUFFER as u64 + 25;
    node.put_records_locally((0..count).map(|i| user(i, &format!("{i}@x"), 1)).collect())
        .await
        .unwrap();
    assert!(matches!(changes.next().await, Err(WatchError::Missed(25))));
    // Then it goes on with the oldest still buffered, in order.
    assert_eq!(changes.next().await.unwrap().key.0, 25);
    assert_eq!(changes.next().await.unwrap().key.0, 26);
    node.shutdown().await.unwrap();
}

/// A peer updating one record faster than this node commits: pushes of one
/// key that arrive together are stored as one commit, whose newest version
/// a watcher sees; the versions it replaced are counted as superseded, so
/// `stats()` adds up to what the peer sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_updates_of_one_key_coalesce_and_are_counted() {
    const UPDATES: u32 = 200;
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = start(&dir.path().join("a"), &[]).await;
    let (b, mut b_events) = start(&dir.path().join("b"), &[&a]).await;
    caught_up_with(&mut b_events, a.peer_id()).await;
    let mut changes = b.watch::<User>().unwrap();
    for age in 1..=UPDATES {
        a.put_record(user(1, "one@x", age)).await.unwrap();
    }
    let newest = a.record_version::<User>(&UserKey(1)).unwrap();
    wait_until(
        "B holds A's last version",
        &mut b_events,
        || b.record_version::<User>(&UserKey(1)) == Some(newest),
        || b.stats(),
    )
    .await;
    // Every change seen is newer than the one before, and the last is A's.
    let mut seen = Vec::new();
    while let Ok(Ok(change)) =
        tokio::time::timeout(Duration::from_millis(200), changes.next()).await
    {
        seen.push(change.record.map(|u| u.age));
    }
    let stats = b.stats();
    assert_eq!(seen.last(), Some(&Some(UPDATES)));
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    // One change per version stored; what was replaced before its commit
    // is counted, not lost.
    assert_eq!(seen.len() as u64, stats.accepted, "{stats:?}");
    assert_eq!(
        stats.accepted + stats.superseded,
        u64::from(UPDATES),
        "{stats:?}"
    );
    assert_eq!(stats.rejected_total(), 0, "{stats:?}");
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
