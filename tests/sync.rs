//! Sync converges: partitions heal to identical stores with the winners the
//! conflict rule names, concurrent writes agree, a restarted catch-up
//! finishes, a fast clock cannot overwrite good data, and deletes collected
//! after the horizon do not come back from a peer that was away.
//!
//! Nodes run on 127.0.0.1 with catch-up on; rounds are started explicitly
//! with `catch_up()` and awaited on `Event::CaughtUp`. Every wait is bounded.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use netabase::codec::Envelope;
use netabase::node::{CatchUpFailure, Event, Netabase, NetabaseConfig, Rejection};
use netabase::store::Lookup;
use netabase::sync::Version;

/// Asserts the nodes hold identical records: same signed versions (the sync
/// fingerprint covers every envelope) and the same typed users, with
/// consistent indexes.
async fn assert_identical(nodes: &[&Netabase]) {
    let first = users(nodes[0]).await;
    for node in nodes {
        if node.sync_fingerprint().unwrap() != nodes[0].sync_fingerprint().unwrap() {
            let mine: Vec<(u64, String)> = users(node)
                .await
                .into_iter()
                .map(|u| (u.id, u.name))
                .collect();
            let theirs: Vec<(u64, String)> = first.iter().map(|u| (u.id, u.name.clone())).collect();
            // Which versions differ, to tell a missing write from a stale one.
            let versions = |n: &Netabase| -> Vec<(u64, Option<netabase::sync::Version>)> {
                (0..300)
                    .map(|id| (id, n.record_version::<User>(&UserKey(id))))
                    .filter(|(_, v)| v.is_some())
                    .collect()
            };
            panic!(
                "fingerprints differ: {} holds {mine:?} at {:?}, {} holds {theirs:?} at {:?}",
                node.peer_id(),
                versions(node),
                nodes[0].peer_id(),
                versions(nodes[0]),
            );
        }
        assert_eq!(users(node).await, first, "typed records differ");
        let store = node.store().clone();
        tokio::task::spawn_blocking(move || {
            let txn = store.begin_read().unwrap();
            assert_indexes_consistent::<User, _>(&txn.open_tree::<User>().unwrap());
        })
        .await
        .unwrap();
    }
}

/// Catch-up rounds between every connected pair until all fingerprints agree.
async fn converge(nodes: &[&Netabase]) {
    for _ in 0..5 {
        for node in nodes {
            for peer in nodes {
                if node.peer_id() != peer.peer_id() {
                    round(node, peer).await;
                }
            }
        }
        let first = nodes[0].sync_fingerprint().unwrap();
        if nodes.iter().all(|n| n.sync_fingerprint().unwrap() == first) {
            return;
        }
    }
    panic!("nodes did not converge in 5 rounds");
}

/// The write the conflict rule names for a key: the greatest version.
fn winner(writes: &[Envelope]) -> &Envelope {
    writes.iter().max_by_key(|e| e.version()).unwrap()
}

/// What every node must hold for a key after its writes sync.
fn expected(writes: &[Envelope]) -> Option<User> {
    winner(writes).open::<User>().unwrap()
}

fn named(id: u64, who: &str) -> User {
    User {
        name: format!("{who} wrote {id}"),
        ..user(id, &format!("{id}-{who}@example.com"), 30)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healed_partition_converges_to_the_winners_the_rule_names() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = three_nodes(dir.path()).await;

    let seed: Vec<User> = (0..20).map(|i| named(i, "seed")).collect();
    a.put_records_locally(seed).await.unwrap();
    // Rounds until all agree: a round may end on the `CaughtUp` of an
    // exchange begun before the seed, while a newer one still applies it.
    converge(&[&a, &b, &c]).await;
    assert_identical(&[&a, &b, &c]).await;

    // Cut c off, then write on both sides, to the same keys too.
    c.stop_swarm().await.unwrap();
    let mut writes: BTreeMap<u64, Vec<Envelope>> = BTreeMap::new();
    let mut log = |id: u64, e: Envelope| writes.entry(id).or_default().push(e);
    log(1, a.put_record_locally(named(1, "a")).await.unwrap());
    log(1, c.put_record_locally(named(1, "c")).await.unwrap());
    log(
        3,
        c.remove_record_locally::<User>(UserKey(3)).await.unwrap(),
    );
    log(3, a.put_record_locally(named(3, "a")).await.unwrap());
    log(
        5,
        b.remove_record_locally::<User>(UserKey(5)).await.unwrap(),
    );
    log(5, c.put_record_locally(named(5, "c")).await.unwrap());
    log(6, c.put_record_locally(named(6, "c")).await.unwrap());
    log(
        6,
        b.remove_record_locally::<User>(UserKey(6)).await.unwrap(),
    );
    log(7, b.put_record_locally(named(7, "b")).await.unwrap());
    log(7, c.put_record_locally(named(7, "c")).await.unwrap());
    log(
        8,
        a.remove_record_locally::<User>(UserKey(8)).await.unwrap(),
    );
    log(
        9,
        c.remove_record_locally::<User>(UserKey(9)).await.unwrap(),
    );
    log(100, a.put_record_locally(named(100, "a")).await.unwrap());
    log(200, c.put_record_locally(named(200, "c")).await.unwrap());
    // The connected side syncs among itself meanwhile.
    round(&b, &a).await;
    round(&a, &b).await;
    assert_ne!(a.sync_fingerprint().unwrap(), c.sync_fingerprint().unwrap());

    // Heal: c dials a again and catches up; then everyone reconciles.
    let mut c_events = c.subscribe_to_broadcasts();
    c.start_swarm().await.unwrap();
    caught_up_with(&mut c_events, a.peer_id()).await;
    converge(&[&a, &b, &c]).await;
    assert_identical(&[&a, &b, &c]).await;

    for (id, key_writes) in &writes {
        let want = expected(key_writes);
        let want_version: Version = winner(key_writes).version();
        for node in [&a, &b, &c] {
            let held = node
                .query_local_records::<User, _, _>({
                    let id = *id;
                    move |t| t.get(&UserKey(id))
                })
                .await
                .unwrap();
            assert_eq!(held, want, "key {id} on {}", node.peer_id());
            assert_eq!(
                node.record_version::<User>(&UserKey(*id)),
                Some(want_version),
                "version of key {id}"
            );
        }
    }
    // Untouched seed records are still there, once.
    assert_eq!(
        users(&a).await.len(),
        20 + 2
            - [3, 5, 6, 7, 8, 9, 1]
                .iter()
                .filter(|id| expected(&writes[id]).is_none())
                .count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_to_one_key_from_three_nodes_agree_on_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = three_nodes(dir.path()).await;

    for id in [7u64, 8, 9] {
        let (wa, wb, wc) = tokio::join!(
            a.put_record_locally(named(id, "a")),
            b.put_record_locally(named(id, "b")),
            c.put_record_locally(named(id, "c")),
        );
        let writes = [wa.unwrap(), wb.unwrap(), wc.unwrap()];
        converge(&[&a, &b, &c]).await;
        for node in [&a, &b, &c] {
            let held = node
                .query_local_records::<User, _, _>(move |t| t.get(&UserKey(id)))
                .await
                .unwrap();
            assert_eq!(held, expected(&writes));
            assert_eq!(
                node.record_version::<User>(&UserKey(id)),
                Some(winner(&writes).version())
            );
        }
    }
    assert_identical(&[&a, &b, &c]).await;
}

/// Both peers fetch from each other at full speed over one connection:
/// each has its fetches and a reconciliation message out and the other's to
/// answer. (With a per-connection stream limit below that, a stream failed
/// with "max sub-streams reached" and the exchange ended incomplete, to be
/// retried only by the next periodic catch-up.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_peers_catch_up_with_each_other_at_once_without_a_failed_request() {
    const EACH: u64 = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let (a, mut a_events) = start(&dir.path().join("a"), &[]).await;
    let b = open(&dir.path().join("b"), config(&[], |_| {})).await;
    for (node, base) in [(&a, 0), (&b, EACH)] {
        for chunk in (base..base + EACH).collect::<Vec<_>>().chunks(3000) {
            let batch = chunk
                .iter()
                .map(|&i| user(i, &format!("{i}@example.com"), (i % 90) as u32))
                .collect();
            node.put_records_locally(batch).await.unwrap();
        }
    }
    let mut b_events = b.subscribe_to_broadcasts();
    b.start_swarm().await.unwrap();
    b.dial(address_of(&a)).await.unwrap();
    // Both sides start their exchange on connect; neither may fail. (Some
    // records also arrive pushed: a node republishes its own at start.)
    for (events, peer, name) in [
        (&mut a_events, b.peer_id(), "A"),
        (&mut b_events, a.peer_id(), "B"),
    ] {
        let outcome = wait_for(&format!("{name}'s catch-up"), events, |e| match e {
            Event::CaughtUp {
                peer: p, received, ..
            } if *p == peer => Some(Ok(*received)),
            Event::CatchUpFailed { peer: p, reason } if *p == peer => Some(Err(*reason)),
            _ => None,
        })
        .await;
        assert!(
            outcome.is_ok_and(|n| n > 0),
            "{name}'s catch-up: {outcome:?}"
        );
    }
    for node in [&a, &b] {
        let stats = node.stats();
        assert_eq!(
            (stats.accepted, stats.catch_ups_failed),
            (EACH, 0),
            "{stats:?}"
        );
    }
    assert_identical(&[&a, &b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_in_the_middle_of_a_catch_up_finishes_it() {
    const N: u64 = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = start(&dir.path().join("a"), &[]).await;
    for chunk in (0..N).collect::<Vec<_>>().chunks(5000) {
        let batch = chunk
            .iter()
            .map(|&i| user(i, &format!("{i}@example.com"), (i % 90) as u32))
            .collect();
        a.put_records_locally(batch).await.unwrap();
    }

    let b_dir = dir.path().join("b");
    let (b, mut events) = start(&b_dir, &[&a]).await;
    let partial = wait_for("the first stored batch", &mut events, |e| match e {
        Event::CatchUp { received, .. } if *received > 0 => Some(*received),
        _ => None,
    })
    .await;
    assert!(partial < N, "caught up before the restart");
    b.stop_swarm().await.unwrap();
    drop(events);
    drop(b);

    let reopened = open(&b_dir, NetabaseConfig::loopback()).await;
    let held_at_restart = users(&reopened).await.len() as u64;
    assert!(held_at_restart < N, "restart came after the catch-up ended");
    drop(reopened);
    let (b, mut events) = start(&b_dir, &[&a]).await;
    let received = caught_up_with(&mut events, a.peer_id()).await;
    assert_eq!(
        received + held_at_restart,
        N,
        "fetched only what was missing"
    );
    assert_identical(&[&a, &b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_whose_clock_runs_ten_minutes_ahead_cannot_overwrite_good_data() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = start(&dir.path().join("a"), &[]).await;
    let good = named(1, "a");
    a.put_record_locally(good.clone()).await.unwrap();
    let good_version = a.record_version::<User>(&UserKey(1)).unwrap();

    let (fast, mut fast_events) = start_with(&dir.path().join("fast"), &[&a], |c| {
        c.clock_skew_ms = 10 * 60 * 1000;
    })
    .await;
    // The fast node receives a's record: it is in its past.
    caught_up_with(&mut fast_events, a.peer_id()).await;
    assert_eq!(users(&fast).await, vec![good.clone()]);

    // Its writes, pushed over Kademlia, are refused; offered in catch-up,
    // they are not even fetched, and a says why its catch-up is not complete.
    fast.put_record(named(1, "fast")).await.ok();
    fast.put_record(named(2, "fast")).await.ok();
    let mut a_events = a.subscribe_to_broadcasts();
    a.catch_up().await.unwrap();
    let (ahead_ms, retry_in_ms) = wait_for(
        "a's catch-up to stop at the future records",
        &mut a_events,
        |e| match e {
            Event::CatchUpFailed {
                peer,
                reason:
                    CatchUpFailure::ClockBehind {
                        ahead_ms,
                        retry_in_ms,
                    },
            } if *peer == fast.peer_id() => Some((*ahead_ms, *retry_in_ms)),
            Event::CaughtUp { peer, .. } if *peer == fast.peer_id() => {
                panic!("a reported CaughtUp while refusing the fast node's records")
            }
            _ => None,
        },
    )
    .await;
    assert!((9 * 60_000..=10 * 60_000).contains(&ahead_ms), "{ahead_ms}");
    assert!(
        (4 * 60_000..=5 * 60_000 + 1000).contains(&retry_in_ms),
        "{retry_in_ms}"
    );
    assert_eq!(a.stats().clock_behind_ms, ahead_ms);
    tokio::time::timeout(NET_WAIT, async {
        while a.stats().rejected(Rejection::FromTheFuture) < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("both pushes refused");
    assert_eq!(users(&a).await, vec![good]);
    assert_eq!(a.record_version::<User>(&UserKey(1)), Some(good_version));
    // a's clock was not dragged ahead: its next write is stamped now.
    let next = a.put_record_locally(named(3, "a")).await.unwrap();
    let ahead = next
        .version()
        .timestamp
        .millis()
        .saturating_sub(good_version.timestamp.millis());
    assert!(ahead < 60_000, "a's clock moved {ahead} ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_collected_after_the_horizon_do_not_come_back_from_a_peer_that_was_away() {
    const HORIZON: Duration = Duration::from_millis(300);
    let horizon = |c: &mut NetabaseConfig| c.tombstone_horizon = Some(HORIZON);
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = start_with(&dir.path().join("a"), &[], horizon).await;
    let (c, mut c_events) = start_with(&dir.path().join("c"), &[&a], horizon).await;
    caught_up_with(&mut c_events, a.peer_id()).await;
    let b_dir = dir.path().join("b");
    let (b, mut b_events) = start_with(&b_dir, &[&a, &c], horizon).await;
    caught_up_with(&mut b_events, a.peer_id()).await;

    let seed: Vec<User> = (1..=4).map(|i| named(i, "seed")).collect();
    a.put_records_locally(seed).await.unwrap();
    b.put_record_locally(named(5, "b")).await.unwrap();
    converge(&[&a, &b, &c]).await;

    // b goes away; meanwhile users 1 and 5 are deleted and the deletes,
    // older than the horizon by a's and c's next catch-up, are collected.
    b.stop_swarm().await.unwrap();
    a.remove_record_locally::<User>(UserKey(1)).await.unwrap();
    a.remove_record_locally::<User>(UserKey(5)).await.unwrap();
    round(&c, &a).await;
    // Time must pass for the deletes to age past the horizon.
    tokio::time::sleep(HORIZON * 2).await;
    round(&c, &a).await;
    round(&a, &c).await;
    // Watchers hear of a collected delete, as the delete once more.
    let mut a_changes = a.watch::<User>().unwrap();
    assert_eq!(a.collect_tombstones().await.unwrap(), 2);
    assert_eq!(deletes_heard(&mut a_changes, 2).await, [1, 5]);
    assert_eq!(c.collect_tombstones().await.unwrap(), 2);
    assert_eq!(a.record_version::<User>(&UserKey(1)), None);
    // And b writes while away: that is new data, not a ghost.
    b.put_record_locally(named(6, "b")).await.unwrap();
    assert_eq!(users(&b).await.len(), 6);

    // b comes back: it republishes user 5 (its own) and offers 1 and 5 in
    // catch-up; both are recognised as deleted, and b drops them.
    let mut b_events = b.subscribe_to_broadcasts();
    let mut b_changes = b.watch::<User>().unwrap();
    b.start_swarm().await.unwrap();
    caught_up_with(&mut b_events, a.peer_id()).await;
    converge(&[&a, &b, &c]).await;
    assert_identical(&[&a, &b, &c]).await;
    let ids: Vec<u64> = users(&a).await.iter().map(|u| u.id).collect();
    assert_eq!(ids, vec![2, 3, 4, 6]);
    assert_eq!(b.stats().ghosts_dropped, 2);
    // Each ghost b dropped reached its watchers as a typed delete.
    assert_eq!(deletes_heard(&mut b_changes, 2).await, [1, 5]);
}

/// The keys of the first `n` deletes a watcher hears of (puts are passed
/// over), sorted; bounded by `NET_WAIT`.
async fn deletes_heard(changes: &mut netabase::node::NodeChanges<User>, n: usize) -> Vec<u64> {
    let mut keys = Vec::new();
    tokio::time::timeout(NET_WAIT, async {
        while keys.len() < n {
            let change = changes.next().await.unwrap();
            if change.record.is_none() {
                keys.push(change.key.0);
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("heard only these deletes: {keys:?}"));
    keys.sort_unstable();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catch_up_watermark_survives_a_restart() {
    const HORIZON: Duration = Duration::from_millis(300);
    let horizon = |c: &mut NetabaseConfig| c.tombstone_horizon = Some(HORIZON);
    let dir = tempfile::tempdir().unwrap();
    let a_dir = dir.path().join("a");
    let (a, _) = start_with(&a_dir, &[], horizon).await;
    let (c, mut c_events) = start_with(&dir.path().join("c"), &[&a], horizon).await;
    caught_up_with(&mut c_events, a.peer_id()).await;
    a.put_record_locally(named(1, "a")).await.unwrap();
    a.remove_record_locally::<User>(UserKey(1)).await.unwrap();
    // Time must pass for the delete to age past the horizon; then a catches
    // up, which moves its watermark past it.
    tokio::time::sleep(HORIZON * 2).await;
    round(&a, &c).await;
    a.stop_swarm().await.unwrap();
    drop(a);

    // Reopened (swarm not started, so nothing new is learned): the
    // watermark came from disk, and the delete is collectable.
    let reopened = open(&a_dir, config(&[], horizon)).await;
    assert!(reopened.record_version::<User>(&UserKey(1)).is_some());
    assert_eq!(reopened.collect_tombstones().await.unwrap(), 1);
    assert_eq!(reopened.record_version::<User>(&UserKey(1)), None);
    assert_eq!(reopened.stats().tombstones_collected, 1);
}
