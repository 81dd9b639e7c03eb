//! Nodes whose clocks are wrong: a restart with the clock set back, a node
//! one hour slow, one four minutes fast, and one record stamped almost five
//! minutes ahead on an honest node. What converges, and what each node says
//! when it cannot.

mod common;

use common::*;
use netabase::node::{CatchUpFailure, Event, Netabase, Rejection};
use netabase::PeerId;
use tokio::sync::broadcast;

const MINUTE: i64 = 60 * 1000;

fn named(id: u64, name: &str) -> User {
    User {
        name: name.into(),
        ..user(id, &format!("{id}-{name}@example.com"), 30)
    }
}

/// Waits for `node`'s catch-up with `peer` to stop at records its clock
/// cannot accept yet; returns (how far ahead, retry in), in milliseconds.
async fn clock_behind(events: &mut broadcast::Receiver<Event>, peer: PeerId) -> (u64, u64) {
    wait_for("a catch-up stopped by the clock", events, |e| match e {
        Event::CatchUpFailed {
            peer: p,
            reason:
                CatchUpFailure::ClockBehind {
                    ahead_ms,
                    retry_in_ms,
                },
        } if *p == peer => Some((*ahead_ms, *retry_in_ms)),
        Event::CaughtUp { peer: p, .. } if *p == peer => {
            panic!("CaughtUp reported while records were refused as from the future")
        }
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_the_clock_set_back_keeps_the_next_update_newer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("n");
    let node = open(&path, config(&[], |_| {})).await;
    node.put_record_locally(named(1, "before")).await.unwrap();
    let before = node.record_version::<User>(&UserKey(1)).unwrap();
    drop(node);
    // The machine's clock was set back an hour while the node was down.
    let node = open(&path, config(&[], |c| c.clock_skew_ms = -60 * MINUTE)).await;
    node.put_record_locally(named(1, "after")).await.unwrap();
    let after = node.record_version::<User>(&UserKey(1)).unwrap();
    assert!(after > before, "{after:?} is not newer than {before:?}");
    assert_eq!(users(&node).await[0].name, "after");
    drop(node);
    // Set back less than the drift bound (5 min): the clock is seeded with
    // the latest write the node made, so writes to other keys order after
    // it too. (Further back, only the same key's order is kept: a seed is
    // never more than the drift ahead of the wall clock.)
    let node = open(&path, config(&[], |c| c.clock_skew_ms = -2 * MINUTE)).await;
    node.put_record_locally(named(2, "other")).await.unwrap();
    let other = node.record_version::<User>(&UserKey(2)).unwrap();
    assert!(other.timestamp > after.timestamp, "{other:?} / {after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_an_hour_slow_says_so_and_never_reports_caught_up() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = start(&dir.path().join("a"), &[]).await;
    a.put_record_locally(named(1, "a")).await.unwrap();
    let slow_dir = dir.path().join("slow");
    let slow = open(&slow_dir, config(&[&a], |c| c.clock_skew_ms = -60 * MINUTE)).await;
    let mut events = slow.subscribe_to_broadcasts();
    slow.put_record_locally(named(2, "slow")).await.unwrap();
    slow.start_swarm().await.unwrap();
    let (ahead_ms, retry_in_ms) = clock_behind(&mut events, a.peer_id()).await;
    assert!(
        (59 * MINUTE as u64..=61 * MINUTE as u64).contains(&ahead_ms),
        "{ahead_ms}"
    );
    // Retried when a's record is no more than the drift (5 min) ahead.
    assert!(
        (54 * MINUTE as u64..=56 * MINUTE as u64).contains(&retry_in_ms),
        "{retry_in_ms}"
    );
    assert_eq!(slow.stats().clock_behind_ms, ahead_ms);
    assert!(users(&slow).await.iter().all(|u| u.id != 1));
    // The other way works: the slow node's record is in a's past.
    round(&a, &slow).await;
    assert!(users(&a).await.iter().any(|u| u.id == 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_four_minutes_fast_converges() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = start(&dir.path().join("a"), &[]).await;
    a.put_record_locally(named(1, "a")).await.unwrap();
    a.put_record_locally(named(3, "a")).await.unwrap();
    let (fast, mut fast_events) = start_with(&dir.path().join("fast"), &[&a], |c| {
        c.clock_skew_ms = 4 * MINUTE;
    })
    .await;
    caught_up_with(&mut fast_events, a.peer_id()).await;
    fast.put_record_locally(named(2, "fast")).await.unwrap();
    fast.put_record_locally(named(3, "fast")).await.unwrap();
    round(&a, &fast).await;
    round(&fast, &a).await;
    assert_eq!(
        a.sync_fingerprint().unwrap(),
        fast.sync_fingerprint().unwrap()
    );
    let names: Vec<String> = users(&a).await.into_iter().map(|u| u.name).collect();
    // The fast node's later write to user 3 wins, as the rule says.
    assert_eq!(names, ["a", "fast", "fast"]);
    assert_eq!(a.stats().rejected(Rejection::FromTheFuture), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_record_almost_five_minutes_ahead_does_not_drag_an_honest_nodes_later_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = start(&dir.path().join("a"), &[]).await;
    // A node 295 s fast writes user 7; a accepts it (within the drift).
    let (ahead, mut ahead_events) = start_with(&dir.path().join("ahead"), &[&a], |c| {
        c.clock_skew_ms = 295 * 1000;
    })
    .await;
    caught_up_with(&mut ahead_events, a.peer_id()).await;
    ahead.put_record_locally(named(7, "ahead")).await.unwrap();
    round(&a, &ahead).await;
    let held = a.record_version::<User>(&UserKey(7)).unwrap();
    // a's next write to another key follows a's own clock...
    let own = a.put_record_locally(named(8, "a")).await.unwrap();
    let lead = own.version().timestamp.millis() as i64 - held.timestamp.millis() as i64;
    assert!(lead < -290_000, "a's clock was dragged: {lead} ms");
    // ...while a's update of user 7 is stamped just past the version it
    // replaces, so it still wins.
    a.put_record_locally(named(7, "a")).await.unwrap();
    assert!(a.record_version::<User>(&UserKey(7)).unwrap() > held);
    // A third node one minute slow takes a's user 8; user 7's versions are
    // six minutes ahead of it, so it waits for them and says so.
    let (slow, mut slow_events) = start_with(&dir.path().join("slow"), &[&a], |c| {
        c.clock_skew_ms = -MINUTE;
    })
    .await;
    let (ahead_ms, _) = clock_behind(&mut slow_events, a.peer_id()).await;
    assert!(
        (5 * MINUTE as u64..=7 * MINUTE as u64).contains(&ahead_ms),
        "{ahead_ms}"
    );
    let held_by_slow: Vec<u64> = users(&slow).await.into_iter().map(|u| u.id).collect();
    assert_eq!(held_by_slow, [8]);
    let _: &Netabase = &ahead;
}
