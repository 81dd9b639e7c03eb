//! Models and checks shared by the integration tests.
#![allow(dead_code)]

pub mod disk;
pub mod freezable;
pub mod raw;

use std::collections::BTreeSet;
use std::fmt::Debug;

use std::time::Duration;

use netabase::model::IndexEntries;
use std::path::Path;

use netabase::node::{CatchUpOutcome, Event, Multiaddr, Netabase, NetabaseConfig, NodeError};
use netabase::store::Lookup;
use netabase::{KeyEncode, NetabaseModel};
use netabase::{PeerId, StoreError};
pub use netabase_workspace::models::*;
use tokio::sync::broadcast;

/// Checks that every secondary index holds exactly the entries derived from
/// the records, in index order: nothing missing, nothing stale.
pub fn assert_indexes_consistent<M, T>(tree: &T)
where
    M: NetabaseModel + Debug + PartialEq,
    T: Lookup<M>,
{
    let records: Vec<M> = tree.iter().unwrap().collect::<Result<_, _>>().unwrap();
    for (index, spec) in M::INDEXES.iter().enumerate() {
        let mut expected = BTreeSet::new();
        for record in &records {
            let mut entries = IndexEntries::new();
            record.index_entries(&mut entries);
            let key = record.key().to_key_bytes().as_slice().to_vec();
            for (i, value) in entries.iter() {
                if i == index {
                    expected.insert((value.to_vec(), key.clone()));
                }
            }
        }
        let expected_keys: Vec<Vec<u8>> = expected.into_iter().map(|(_, k)| k).collect();
        let found: Vec<Vec<u8>> = tree
            .index_range::<u8, _>(index, ..)
            .unwrap()
            .iter()
            .map(|r| r.key().to_key_bytes().as_slice().to_vec())
            .collect();
        assert_eq!(found, expected_keys, "index `{}` out of step", spec.name);
    }
}

/// A timestamp for now, by the system clock.
pub fn now() -> netabase::sync::Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    netabase::sync::Timestamp::new(ms, 0)
}

/// Bound on every wait for a network event.
pub const NET_WAIT: Duration = Duration::from_secs(60);

/// A started node's dialable address, `/ip4/../tcp/../p2p/<id>`.
pub fn address_of(node: &Netabase) -> Multiaddr {
    node.addresses()[0].clone()
}

/// Waits (bounded by [`NET_WAIT`]) for the first event that `pick` accepts.
pub async fn wait_for<T>(
    what: &str,
    events: &mut broadcast::Receiver<Event>,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> T {
    tokio::time::timeout(NET_WAIT, async {
        loop {
            match events.recv().await {
                Ok(event) => {
                    if let Some(found) = pick(&event) {
                        return found;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => panic!("event stream closed"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Waits (bounded by [`NET_WAIT`]) until `done` holds, checking it after
/// every event and at least every 20 ms: some outcomes, such as a refusal
/// counted in `stats()`, emit no event of their own. On time-out, panics
/// with `what` and `explain()`.
pub async fn wait_until<D: Debug>(
    what: &str,
    events: &mut broadcast::Receiver<Event>,
    mut done: impl FnMut() -> bool,
    explain: impl FnOnce() -> D,
) {
    // What arrived meanwhile, for the failure message.
    let mut seen = Vec::new();
    let waited = tokio::time::timeout(NET_WAIT, async {
        while !done() {
            tokio::select! {
                event = events.recv() => seen.extend(event.ok()),
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    })
    .await;
    if waited.is_err() {
        panic!(
            "timed out waiting for {what}: {:?}; events meanwhile: {seen:#?}",
            explain()
        );
    }
}

/// The tests' configuration: loopback, these bootstrap peers, catch-up only
/// when asked (or on connect), then `tweak`.
pub fn config(bootstrap: &[&Netabase], tweak: impl FnOnce(&mut NetabaseConfig)) -> NetabaseConfig {
    let mut config = NetabaseConfig {
        bootstrap_peers: bootstrap.iter().map(|n| address_of(n)).collect(),
        catch_up_interval: None,
        ..NetabaseConfig::loopback()
    };
    tweak(&mut config);
    config
}

/// Opens the node at `dir` with the models registered. A node just dropped
/// there may hold the database for a moment (its storage tasks finish
/// first): that alone is retried, bounded.
pub async fn open(dir: &Path, config: NetabaseConfig) -> Netabase {
    let node = tokio::time::timeout(NET_WAIT, async {
        loop {
            match Netabase::new_with_path(dir, config.clone()) {
                Err(NodeError::Store(StoreError::AlreadyOpen)) => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                opened => return opened.unwrap(),
            }
        }
    })
    .await
    .expect("the database is released");
    node.register::<User>().unwrap();
    node.register::<Post>().unwrap();
    node
}

/// Opens a node, subscribes, then starts it (so no event is missed).
pub async fn start_with(
    dir: &Path,
    bootstrap: &[&Netabase],
    tweak: impl FnOnce(&mut NetabaseConfig),
) -> (Netabase, broadcast::Receiver<Event>) {
    let node = open(dir, config(bootstrap, tweak)).await;
    let events = node.subscribe_to_broadcasts();
    node.start_swarm().await.unwrap();
    (node, events)
}

/// Three connected nodes, each caught up with the first.
pub async fn three_nodes(dir: &Path) -> (Netabase, Netabase, Netabase) {
    let (a, _) = start(&dir.join("a"), &[]).await;
    let (b, mut b_events) = start(&dir.join("b"), &[&a]).await;
    caught_up_with(&mut b_events, a.peer_id()).await;
    let (c, mut c_events) = start(&dir.join("c"), &[&a, &b]).await;
    caught_up_with(&mut c_events, a.peer_id()).await;
    (a, b, c)
}

pub async fn start(dir: &Path, bootstrap: &[&Netabase]) -> (Netabase, broadcast::Receiver<Event>) {
    start_with(dir, bootstrap, |_| {}).await
}

pub async fn caught_up_with(events: &mut broadcast::Receiver<Event>, peer: PeerId) -> u64 {
    wait_for(
        &format!("a finished catch-up with {peer}"),
        events,
        |e| match e {
            Event::CaughtUp {
                peer: p, received, ..
            } if *p == peer => Some(*received),
            _ => None,
        },
    )
    .await
}

/// One full catch-up of `node` from `peer`, covering all `peer` held at the
/// call: returns the records received. Waits for `node` to see the
/// connection first, if it has not yet (a dial returns on the dialler's side).
pub async fn round(node: &Netabase, peer: &Netabase) -> u64 {
    let peer = peer.peer_id();
    let mut events = node.subscribe_to_broadcasts();
    let outcomes = tokio::time::timeout(NET_WAIT, async {
        loop {
            let outcomes = node.catch_up_and_wait().await.unwrap();
            if outcomes.iter().any(|(p, _)| *p == peer) {
                return outcomes;
            }
            // Subscribed before the call: a connection after it is seen here.
            wait_for("the peer to connect", &mut events, |e| {
                matches!(e, Event::PeerConnected(p) if *p == peer).then_some(())
            })
            .await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for a catch-up with {peer}"));
    match outcomes.iter().find(|(p, _)| *p == peer) {
        Some((_, CatchUpOutcome::CaughtUp { received, .. })) => *received,
        other => panic!("the catch-up with {peer} ended as {other:?}"),
    }
}

pub async fn users(node: &Netabase) -> Vec<User> {
    node.query_local_records::<User, _, _>(|t| t.iter()?.collect())
        .await
        .unwrap()
}

/// A child process's stdout, line by line, read on a thread of its own;
/// the channel closes when the process closes its stdout.
pub fn stdout_lines(
    stdout: std::process::ChildStdout,
) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    use std::io::BufRead;
    let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    lines
}
