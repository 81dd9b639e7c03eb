//! Catch-up: a peer that was not there when records were written gets all
//! of them on connecting, validated, typed and indexed. Bounded waits only.

mod common;

use std::time::Duration;

use common::*;
use netabase::node::{CatchUpOutcome, Event, Netabase, NetabaseConfig, Protocol};
use netabase::store::Lookup;
use tokio::sync::broadcast;
use tokio::time::timeout;

async fn start(dir: &std::path::Path, bootstrap: Option<&Netabase>) -> Netabase {
    let mut config = NetabaseConfig::loopback();
    if let Some(peer) = bootstrap {
        let address = peer.listen_addresses()[0]
            .clone()
            .with(Protocol::P2p(peer.peer_id()));
        config.bootstrap_peers = vec![address];
    }
    let node = Netabase::new_with_path(dir, config).unwrap();
    node.register::<User>().unwrap();
    node.register::<Post>().unwrap();
    node.start_swarm().await.unwrap();
    node
}

/// Waits on catch-up progress until `done` holds (checked after each event).
async fn until(
    events: &mut broadcast::Receiver<Event>,
    what: &str,
    mut done: impl FnMut() -> bool,
) {
    until_seeing(events, what, |_| done()).await
}

/// [`until`], showing `done` each event received (`None` before the first).
async fn until_seeing(
    events: &mut broadcast::Receiver<Event>,
    what: &str,
    mut done: impl FnMut(Option<&Event>) -> bool,
) {
    timeout(Duration::from_secs(120), async {
        let mut event = None;
        while !done(event.as_ref()) {
            event = match events.recv().await {
                Ok(event) => Some(event),
                Err(broadcast::error::RecvError::Lagged(_)) => None,
                Err(broadcast::error::RecvError::Closed) => panic!("event stream closed"),
            };
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_receives_every_record_written_before_it_existed() {
    const N: u64 = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let a = start(&dir.path().join("a"), None).await;
    let users: Vec<User> = (0..N)
        .map(|i| user(i, &format!("{i}@example.com"), (i % 90) as u32))
        .collect();
    assert_eq!(a.put_records_locally(users).await.unwrap(), N as usize);
    a.put_records_locally(vec![post("hello", &["intro"], Some("ada"), -1)])
        .await
        .unwrap();

    let b = start(&dir.path().join("b"), Some(&a)).await;
    let mut b_events = b.subscribe_to_broadcasts();
    let b_users = b.store().tree::<User>();
    let mut progress = Vec::new();
    // Each batch is counted after its commit, then announced.
    until_seeing(&mut b_events, "10,001 records accepted on B", |event| {
        if let Some(Event::CatchUp {
            model: "User",
            received,
            outstanding,
            ..
        }) = event
        {
            progress.push((*received, *outstanding));
        }
        b.stats().accepted == N + 1
    })
    .await;
    // A progress bar drawn from the events never runs ahead: keys being
    // stored are still outstanding, so nothing reads as done before it is.
    assert!(progress.len() > 2, "{progress:?}");
    for &(received, outstanding) in &progress {
        assert!(received + outstanding as u64 <= N, "{progress:?}");
        assert!(outstanding > 0 || received == N, "{progress:?}");
    }
    assert_eq!(b_users.len().unwrap(), N);
    assert_eq!(b.store().tree::<Post>().len().unwrap(), 1);

    // Typed, indexed, and every one validated.
    assert_eq!(
        b_users.by_email("4242@example.com").unwrap().map(|u| u.id),
        Some(4242)
    );
    assert_eq!(b_users.by_age(7).unwrap().len(), (N / 90 + 1) as usize);
    assert_eq!(b.store().tree::<Post>().by_tags("intro").unwrap().len(), 1);
    assert_eq!(b.stats().rejected_total(), 0);
    assert_indexes_consistent(&b_users);

    // B goes away, A writes one more record, B comes back: the reconnection
    // brings exactly that record.
    b.stop_swarm().await.unwrap();
    let accepted = b.stats().accepted;
    a.put_record_locally(user(N, "late@example.com", 1))
        .await
        .unwrap();
    b.start_swarm().await.unwrap();
    b.dial(
        a.listen_addresses()[0]
            .clone()
            .with(Protocol::P2p(a.peer_id())),
    )
    .await
    .unwrap();
    until(&mut b_events, "the one new record", || {
        b.stats().accepted == accepted + 1
    })
    .await;
    assert_eq!(b_users.len().unwrap(), N + 1);
    assert_eq!(b.stats().rejected_total(), 0);

    a.stop_swarm().await.unwrap();
    b.stop_swarm().await.unwrap();
}

const WHILE_ONE_RUNS: u64 = 20_000;

/// A holding `WHILE_ONE_RUNS` users, and a fresh B whose catch-up from A
/// has begun storing them when A writes one post locally (nothing is
/// pushed), after it answered B's first comparison.
async fn a_write_during_a_catch_up(
    dir: &std::path::Path,
) -> (Netabase, Netabase, broadcast::Receiver<Event>) {
    let a = start(&dir.join("a"), None).await;
    let users: Vec<User> = (1..=WHILE_ONE_RUNS)
        .map(|i| user(i, &format!("{i}@example.com"), (i % 90) as u32))
        .collect();
    assert_eq!(
        a.put_records_locally(users).await.unwrap(),
        WHILE_ONE_RUNS as usize
    );
    // The tests' config: no periodic catch-up, only the connection's and
    // the one asked for.
    let (b, mut b_events) = start_with(&dir.join("b"), &[&a], |_| {}).await;
    let mut fetching = false;
    until(&mut b_events, "the first catch-up to fetch", || {
        fetching |= b.stats().accepted > 0;
        fetching
    })
    .await;
    a.put_record_locally(post("late", &["late"], Some("ada"), 1))
        .await
        .unwrap();
    (a, b, b_events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catch_up_asked_for_while_one_runs_follows_it() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, mut b_events) = a_write_during_a_catch_up(dir.path()).await;
    assert_eq!(b.catch_up().await.unwrap(), vec![a.peer_id()]);
    let b_posts = b.store().tree::<Post>();
    until(
        &mut b_events,
        "the record written during the first catch-up",
        || b_posts.len().unwrap() == 1,
    )
    .await;
    until(&mut b_events, "all of A's users", || {
        b.stats().accepted == WHILE_ONE_RUNS + 1
    })
    .await;
    a.stop_swarm().await.unwrap();
    b.stop_swarm().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_and_wait_returns_once_all_the_peer_held_at_the_call_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, _) = a_write_during_a_catch_up(dir.path()).await;
    let mut events = b.subscribe_to_broadcasts();
    // Read alongside, so the first report after the call is not lost to lag.
    let (outcomes, first_report) = tokio::join!(
        timeout(NET_WAIT, b.catch_up_and_wait()),
        caught_up_with(&mut events, a.peer_id())
    );
    let outcomes = outcomes.expect("the catch-ups end").unwrap();
    // One report for both exchanges, counting what each stored.
    let all = CatchUpOutcome::CaughtUp {
        received: WHILE_ONE_RUNS + 1,
        refused: 0,
    };
    assert_eq!(outcomes, [(a.peer_id(), all)]);
    assert_eq!(
        first_report,
        WHILE_ONE_RUNS + 1,
        "the first exchange reported apart"
    );
    assert_eq!(b.store().tree::<Post>().len().unwrap(), 1);
    assert_eq!(b.sync_fingerprint().unwrap(), a.sync_fingerprint().unwrap());
    a.stop_swarm().await.unwrap();
    b.stop_swarm().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_and_wait_says_when_no_catch_up_starts() {
    let dir = tempfile::tempdir().unwrap();
    let a = start(&dir.path().join("a"), None).await;
    let (b, mut b_events) = start_with(&dir.path().join("b"), &[&a], |c| c.catch_up = false).await;
    wait_for("B connected to A", &mut b_events, |e| {
        matches!(e, Event::PeerConnected(p) if *p == a.peer_id()).then_some(())
    })
    .await;
    let outcomes = timeout(NET_WAIT, b.catch_up_and_wait())
        .await
        .expect("nothing to wait for")
        .unwrap();
    assert_eq!(outcomes, [(a.peer_id(), CatchUpOutcome::NotStarted)]);
    b.stop_swarm().await.unwrap();
    assert!(matches!(
        b.catch_up_and_wait().await,
        Err(netabase::node::NodeError::NotRunning)
    ));
    a.stop_swarm().await.unwrap();
}
