//! Nodes on 127.0.0.1: records published on one arrive, typed and indexed, on
//! the others; restarts keep data and identity. Every wait is bounded.

mod common;

use std::time::Duration;

use common::*;
use netabase::node::{ChangeKind, Event, Netabase, NetabaseConfig, NodeError, Origin};
use netabase::store::Lookup;
use netabase::{KeyEncode, PeerId, StoreError};
use tokio::sync::broadcast;

/// These tests exercise Kademlia's push and fetch, so catch-up (tested in
/// `catch_up.rs`) is off: it would deliver records by another path.
async fn node(dir: &std::path::Path, bootstrap: &[&Netabase]) -> Netabase {
    node_with(dir, bootstrap, NetabaseConfig::loopback()).await
}

async fn node_with(
    dir: &std::path::Path,
    bootstrap: &[&Netabase],
    config: NetabaseConfig,
) -> Netabase {
    let config = NetabaseConfig {
        bootstrap_peers: bootstrap.iter().map(|n| address_of(n)).collect(),
        catch_up: false,
        ..config
    };
    let node = Netabase::new_with_path(dir, config).unwrap();
    node.register::<User>().unwrap();
    node.register::<Post>().unwrap();
    node.start_swarm().await.unwrap();
    node
}

async fn wait_connected(events: &mut broadcast::Receiver<Event>, peers: &[PeerId]) {
    let mut missing: Vec<PeerId> = peers.to_vec();
    while !missing.is_empty() {
        let peer = wait_for("a connection", events, |e| match e {
            Event::PeerConnected(p) => Some(*p),
            _ => None,
        })
        .await;
        missing.retain(|p| *p != peer);
    }
}

/// Two nodes, B bootstrapped to A, once A has seen B connect.
async fn connected_pair(
    dir: &std::path::Path,
) -> (
    Netabase,
    broadcast::Receiver<Event>,
    Netabase,
    broadcast::Receiver<Event>,
) {
    let a = node(&dir.join("a"), &[]).await;
    let mut a_events = a.subscribe_to_broadcasts();
    let b = node(&dir.join("b"), &[&a]).await;
    let b_events = b.subscribe_to_broadcasts();
    wait_connected(&mut a_events, &[b.peer_id()]).await;
    (a, a_events, b, b_events)
}

/// Publishes, retrying while the publisher's routing table is still filling
/// (Identify runs just after a connection opens). Bounded.
async fn publish(node: &Netabase, record: User) {
    for _ in 0..100 {
        match node.put_record(record.clone()).await {
            Ok(published) if published.replicated => return,
            Ok(_) | Err(NodeError::Publish { .. }) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(other) => panic!("put_record failed: {other}"),
        }
    }
    panic!("put_record never reached a peer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_on_one_node_reaches_the_others_typed_and_indexed() {
    let dir = tempfile::tempdir().unwrap();
    // A quorum of 2 in a 3-node network: the put succeeds once both others hold it.
    let quorum_two = NetabaseConfig {
        write_quorum: netabase::node::WriteQuorum::AtLeast(std::num::NonZeroUsize::new(2).unwrap()),
        ..NetabaseConfig::loopback()
    };
    let a = node_with(&dir.path().join("a"), &[], quorum_two).await;
    let mut a_events = a.subscribe_to_broadcasts();
    let b = node(&dir.path().join("b"), &[&a]).await;
    let mut b_events = b.subscribe_to_broadcasts();
    let c = node(&dir.path().join("c"), &[&a]).await;
    let mut c_events = c.subscribe_to_broadcasts();
    wait_connected(&mut a_events, &[b.peer_id(), c.peer_id()]).await;

    let ada = user(1, "ada@example.com", 36);
    publish(&a, ada.clone()).await;

    for events in [&mut b_events, &mut c_events] {
        let (origin, writer, kind) = wait_for("the record on B and C", events, |e| match e {
            Event::Record {
                model: "User",
                origin,
                writer,
                kind,
                ..
            } => Some((*origin, *writer, *kind)),
            _ => None,
        })
        .await;
        assert_eq!(origin, Origin::Peer(a.peer_id()));
        assert_eq!(writer, a.peer_id());
        assert_eq!(kind, ChangeKind::Put);
    }
    for other in [&b, &c] {
        let users = other.store().tree::<User>();
        assert_eq!(users.get(&UserKey(1)).unwrap(), Some(ada.clone()));
        assert_eq!(
            users.by_email("ada@example.com").unwrap(),
            Some(ada.clone())
        );
        assert_eq!(users.by_age(36).unwrap(), vec![ada.clone()]);
        let found = other
            .query_local_records::<User, _, _>(|tree| tree.by_email("ada@example.com"))
            .await
            .unwrap();
        assert_eq!(found, Some(ada.clone()));
    }
    // The local write was an event on A too.
    let origin = wait_for("the local event on A", &mut a_events, |e| match e {
        Event::Record { origin, .. } => Some(*origin),
        _ => None,
    })
    .await;
    assert_eq!(origin, Origin::Local);

    // A record only A holds is fetched by C over the network, typed.
    a.put_record_locally(user(2, "alan@example.com", 41))
        .await
        .unwrap();
    assert!(c.store().tree::<User>().get(&UserKey(2)).unwrap().is_none());
    let fetched = c.get_record::<User>(UserKey(2)).await.unwrap();
    assert_eq!(fetched, user(2, "alan@example.com", 41));
    // The fetched copy is stored (after the answer) and announced.
    wait_for("the fetched copy stored on C", &mut c_events, |e| match e {
        Event::Record { key, .. } if *key == UserKey(2).to_key_bytes().as_slice() => Some(()),
        _ => None,
    })
    .await;
    assert_eq!(
        c.store()
            .tree::<User>()
            .by_email("alan@example.com")
            .unwrap(),
        Some(fetched)
    );
    assert!(matches!(
        c.get_record::<User>(UserKey(99)).await,
        Err(NodeError::NotFound)
    ));
    assert_eq!(b.stats().rejected_total(), 0);

    for n in [&a, &b, &c] {
        n.stop_swarm().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_data_and_identity_and_serves_records() {
    let dir = tempfile::tempdir().unwrap();
    let a_dir = dir.path().join("a");
    let (a_id, ada) = {
        let a = node(&a_dir, &[]).await;
        let ada = user(7, "ada@example.com", 36);
        a.put_record_locally(ada.clone()).await.unwrap();
        a.stop_swarm().await.unwrap();
        // stop/start works on the same handle.
        a.start_swarm().await.unwrap();
        assert!(matches!(
            a.start_swarm().await,
            Err(NodeError::AlreadyRunning)
        ));
        a.stop_swarm().await.unwrap();
        assert!(matches!(a.stop_swarm().await, Err(NodeError::NotRunning)));
        let id = a.peer_id();
        // A dropped node releases its directory a moment later; this waits.
        a.shutdown().await.unwrap();
        (id, ada)
    };

    let a = node(&a_dir, &[]).await;
    assert_eq!(a.peer_id(), a_id, "peer id survives a restart");
    assert_eq!(
        a.store().tree::<User>().get(&UserKey(7)).unwrap(),
        Some(ada.clone())
    );

    let b = node(&dir.path().join("b"), &[&a]).await;
    let fetched = b.get_record::<User>(UserKey(7)).await.unwrap();
    assert_eq!(fetched, ada);
    a.stop_swarm().await.unwrap();
    b.stop_swarm().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_unregistered_records_are_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let config = NetabaseConfig {
        max_record_bytes: 1024,
        ..NetabaseConfig::loopback()
    };
    let a = Netabase::new_with_path(dir.path(), config).unwrap();
    assert!(matches!(
        a.put_record_locally(user(1, "a@x", 1)).await,
        Err(NodeError::NotRegistered { model: "User" })
    ));
    a.register::<User>().unwrap();
    let mut big = user(1, "a@x", 1);
    big.name = "x".repeat(2000);
    let err = a.put_record_locally(big).await.unwrap_err();
    assert!(
        matches!(err, NodeError::RecordTooLarge { limit: 1024, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("1024-byte limit"), "{err}");
    assert!(a.store().tree::<User>().is_empty().unwrap());
    // Without a swarm, local writes work and publishing says why it cannot.
    a.put_record_locally(user(1, "a@x", 1)).await.unwrap();
    assert!(matches!(
        a.put_record(user(2, "b@x", 1)).await,
        Err(NodeError::NotRunning)
    ));
    assert_eq!(
        a.store().tree::<User>().len().unwrap(),
        2,
        "committed before publishing"
    );
    // A local batch is all or nothing: a unique conflict inside it, or with
    // a stored record, writes none of it.
    for batch in [
        vec![user(3, "c@x", 1), user(4, "c@x", 1)],
        vec![user(5, "e@x", 1), user(6, "a@x", 1)],
    ] {
        let err = a.put_records_locally(batch).await.unwrap_err();
        assert!(
            matches!(
                err,
                NodeError::Store(netabase::StoreError::UniqueViolation { .. })
            ),
            "{err:?}"
        );
        assert_eq!(a.store().tree::<User>().len().unwrap(), 2);
    }
    assert_eq!(
        a.put_records_locally(vec![user(3, "c@x", 1), user(4, "d@x", 1)])
            .await
            .unwrap(),
        2
    );
    // A batch applies in the order given: it may free a unique value and
    // then give it to another record, as `Tree::put_many` allows. (Applied
    // in hash order, each round fails about half the time.)
    let mut held = "c@x".to_string();
    for round in 0..10u64 {
        let mut batch: Vec<User> = (0..30)
            .map(|i| user(200 + round * 30 + i, &format!("{round}-{i}@x"), 1))
            .collect();
        let freed = std::mem::replace(&mut held, format!("z{round}@x"));
        batch.insert(10, user(3, &held, 1));
        batch.insert(20, user(100 + round, &freed, 1));
        assert_eq!(a.put_records_locally(batch).await.unwrap(), 32);
        let users = a.store().tree::<User>();
        assert_eq!(
            users.by_email(&freed).unwrap().map(|u| u.id),
            Some(100 + round)
        );
        assert_eq!(users.by_email(&held).unwrap().map(|u| u.id), Some(3));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_travel_as_signed_tombstones() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _a_events, b, mut b_events) = connected_pair(dir.path()).await;

    publish(&a, user(5, "gone@example.com", 50)).await;
    wait_for("the put on B", &mut b_events, |e| match e {
        Event::Record {
            kind: ChangeKind::Put,
            ..
        } => Some(()),
        _ => None,
    })
    .await;
    assert!(b
        .store()
        .tree::<User>()
        .by_email("gone@example.com")
        .unwrap()
        .is_some());

    a.remove_record::<User>(UserKey(5)).await.unwrap();
    let origin = wait_for("the delete on B", &mut b_events, |e| match e {
        Event::Record {
            kind: ChangeKind::Delete,
            origin,
            ..
        } => Some(*origin),
        _ => None,
    })
    .await;
    assert_eq!(origin, Origin::Peer(a.peer_id()));
    let users = b.store().tree::<User>();
    assert_eq!(users.get(&UserKey(5)).unwrap(), None);
    assert!(users.by_email("gone@example.com").unwrap().is_none());
    assert!(users.by_age(50).unwrap().is_empty());
    // The tombstone is newer than any copy of the put: the record stays gone.
    assert!(matches!(
        b.get_record::<User>(UserKey(5)).await,
        Err(NodeError::NotFound)
    ));
    a.stop_swarm().await.unwrap();
    b.stop_swarm().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_republishes_its_own_records_when_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let a_dir = dir.path().join("a");
    {
        let a = node(&a_dir, &[]).await;
        a.put_record_locally(user(11, "kept@example.com", 11))
            .await
            .unwrap();
        a.stop_swarm().await.unwrap();
    }
    let b = node(&dir.path().join("b"), &[]).await;
    let mut b_events = b.subscribe_to_broadcasts();
    // A comes back knowing B: its records go out as it starts.
    let a = node(&a_dir, &[&b]).await;
    let (origin, writer) = wait_for("the republished record on B", &mut b_events, |e| match e {
        Event::Record { origin, writer, .. } => Some((*origin, *writer)),
        _ => None,
    })
    .await;
    assert_eq!((origin, writer), (Origin::Peer(a.peer_id()), a.peer_id()));
    assert_eq!(
        b.store()
            .tree::<User>()
            .by_email("kept@example.com")
            .unwrap()
            .map(|u| u.id),
        Some(11)
    );
    a.stop_swarm().await.unwrap();
    b.stop_swarm().await.unwrap();
}

/// A record held only by A is found by C, which is connected only to B
/// (which does not hold it): B has no copy, so C asks Kademlia for the
/// peers closest to the key, learns of A from B, and asks A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_record_finds_a_record_held_two_hops_away() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _a_events, b, mut b_events) = connected_pair(dir.path()).await;
    a.put_record_locally(user(3, "far@example.com", 3))
        .await
        .unwrap();
    let c = node(&dir.path().join("c"), &[&b]).await;
    wait_connected(&mut b_events, &[c.peer_id()]).await;

    let fetched = tokio::time::timeout(Duration::from_secs(10), c.get_record::<User>(UserKey(3)))
        .await
        .expect("get_record ended")
        .unwrap();
    assert_eq!(fetched.email, "far@example.com");
    assert!(
        b.store().tree::<User>().get(&UserKey(3)).unwrap().is_none(),
        "B never held it: the copy came from A"
    );
    for n in [&a, &b, &c] {
        n.stop_swarm().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_record_takes_the_newest_copy_and_repairs_stale_peers() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _a_events, b, mut b_events) = connected_pair(dir.path()).await;
    publish(&a, user(1, "old@example.com", 1)).await;
    wait_for("v1 on B", &mut b_events, |e| {
        matches!(e, Event::Record { .. }).then_some(())
    })
    .await;
    // A moves on; B still holds the old version.
    a.put_record_locally(user(1, "new@example.com", 2))
        .await
        .unwrap();

    let c = node(&dir.path().join("c"), &[&a, &b]).await;
    let fetched = c.get_record::<User>(UserKey(1)).await.unwrap();
    assert_eq!(fetched.email, "new@example.com", "the newest version wins");
    // B was sent the newest version back.
    let (origin, writer) = wait_for("the repair on B", &mut b_events, |e| match e {
        Event::Record { origin, writer, .. } => Some((*origin, *writer)),
        _ => None,
    })
    .await;
    assert_eq!((origin, writer), (Origin::Peer(c.peer_id()), a.peer_id()));
    assert_eq!(
        b.store()
            .tree::<User>()
            .get(&UserKey(1))
            .unwrap()
            .map(|u| u.email),
        Some("new@example.com".to_string())
    );
    for n in [&a, &b, &c] {
        n.stop_swarm().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_over_kademlias_default_packet_size_travel() {
    // Kademlia's default packet limit is 16 KiB; the node raises it to fit
    // `max_record_bytes` (60 KiB by default).
    let dir = tempfile::tempdir().unwrap();
    let (a, _a_events, b, mut b_events) = connected_pair(dir.path()).await;

    let mut big = user(9, "big@example.com", 9);
    big.name = "n".repeat(40 * 1024);
    publish(&a, big.clone()).await;
    wait_for("the 40 KiB record on B", &mut b_events, |e| {
        matches!(e, Event::Record { .. }).then_some(())
    })
    .await;
    assert_eq!(
        b.store().tree::<User>().get(&UserKey(9)).unwrap(),
        Some(big.clone())
    );
    // And fetched, not only pushed.
    let mut bigger = user(10, "bigger@example.com", 10);
    bigger.name = "m".repeat(50 * 1024);
    a.put_record_locally(bigger.clone()).await.unwrap();
    assert_eq!(b.get_record::<User>(UserKey(10)).await.unwrap(), bigger);
    a.stop_swarm().await.unwrap();
    b.stop_swarm().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_refused_locally_is_never_published() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _a_events, b, mut b_events) = connected_pair(dir.path()).await;
    publish(&a, user(1, "taken@example.com", 1)).await;
    let err = a
        .put_record(user(2, "taken@example.com", 2))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            NodeError::Store(netabase::StoreError::UniqueViolation { .. })
        ),
        "{err:?}"
    );
    // A later put from A arrives at B; the refused one never did.
    publish(&a, user(3, "free@example.com", 3)).await;
    wait_for("user 3 on B", &mut b_events, |e| match e {
        Event::Record { key, .. } if *key == UserKey(3).to_key_bytes().as_slice() => Some(()),
        _ => None,
    })
    .await;
    let ids: Vec<u64> = b
        .query_local_records::<User, _, _>(|t| t.iter()?.map(|u| u.map(|u| u.id)).collect())
        .await
        .unwrap();
    assert_eq!(ids, vec![1, 3]);
    assert_eq!(a.store().tree::<User>().len().unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dialled_side_publishes_as_soon_as_the_peer_connects() {
    // The side that was dialled learns the peer's listen address only from
    // Identify; publishing must not wait for it.
    for round in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let (a, mut a_events) = common::start(&dir.path().join("a"), &[]).await;
        let (b, _) = common::start(&dir.path().join("b"), &[&a]).await;
        common::wait_for("B connecting to A", &mut a_events, |e| {
            matches!(e, Event::PeerConnected(p) if *p == b.peer_id()).then_some(())
        })
        .await;
        let published = a
            .put_record(user(round, "first@x", 1))
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert!(published.replicated, "round {round}: not replicated");
        a.stop_swarm().await.unwrap();
        b.stop_swarm().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nodes_store_handle_reads_and_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let node = common::open(dir.path(), NetabaseConfig::loopback()).await;
    node.put_record_locally(user(1, "a@x", 1)).await.unwrap();
    let store = node.store().clone();
    assert!(store.is_read_only());
    let written = tokio::task::spawn_blocking(move || {
        let users = store.tree::<User>();
        assert_eq!(users.get(&UserKey(1)).unwrap().map(|u| u.age), Some(1));
        assert!(users.by_email("a@x").unwrap().is_some());
        (
            users.put(&user(1, "b@x", 2)),
            users.remove(&UserKey(1)),
            store.begin_write().map(drop),
            store.close(),
        )
    })
    .await
    .unwrap();
    assert!(
        matches!(written.0, Err(StoreError::ReadOnly)),
        "{written:?}"
    );
    assert!(matches!(written.1, Err(StoreError::ReadOnly)));
    assert!(matches!(written.2, Err(StoreError::ReadOnly)));
    // Nor may it close the node's database.
    assert!(matches!(written.3, Err(StoreError::ReadOnly)));
    // The node, the store and the record's version still agree.
    assert_eq!(
        node.get_record::<User>(UserKey(1)).await.unwrap(),
        user(1, "a@x", 1)
    );
    assert_eq!(users(&node).await, vec![user(1, "a@x", 1)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dial_waits_for_the_connection_or_says_why_not() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = common::start(&dir.path().join("a"), &[]).await;
    let (b, _) = common::start(&dir.path().join("b"), &[]).await;
    let address = a.addresses()[0].clone();
    assert!(address
        .to_string()
        .ends_with(&format!("/p2p/{}", a.peer_id())));
    // Connected when it returns: publishing works at once.
    assert_eq!(b.dial(address.clone()).await.unwrap(), a.peer_id());
    assert!(b.put_record(user(1, "d@x", 1)).await.unwrap().replicated);
    // Dialling a connected peer again is no error.
    assert_eq!(b.dial(address.clone()).await.unwrap(), a.peer_id());
    // Nobody listening: the reason comes back.
    a.stop_swarm().await.unwrap();
    assert!(a.listen_addresses().is_empty() && a.addresses().is_empty());
    let (c, _) = common::start(&dir.path().join("c"), &[]).await;
    let error = c.dial(address.clone()).await.unwrap_err();
    assert!(matches!(error, NodeError::Dial { .. }), "{error:?}");
    // Another peer id answering at an address is refused too.
    let wrong = b.listen_addresses()[0]
        .clone()
        .with(netabase::node::Protocol::P2p(a.peer_id()));
    let error = c.dial(wrong).await.unwrap_err();
    assert!(matches!(error, NodeError::Dial { .. }), "{error:?}");
    b.stop_swarm().await.unwrap();
    c.stop_swarm().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_report_their_version_and_whether_a_delete_found_a_record() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = common::start(&dir.path().join("a"), &[]).await;
    let (b, mut b_events) = common::start(&dir.path().join("b"), &[&a]).await;
    common::caught_up_with(&mut b_events, a.peer_id()).await;
    let first = a.put_record(user(1, "v@x", 1)).await.unwrap().version;
    assert_eq!(a.record_version::<User>(&UserKey(1)), Some(first));
    let second = a.put_record(user(1, "v@x", 2)).await.unwrap().version;
    assert!(second > first);
    assert!(a.remove_record::<User>(UserKey(1)).await.unwrap());
    // Already deleted here: nothing written, nothing published.
    let deleted = a.record_version::<User>(&UserKey(1));
    assert!(!a.remove_record::<User>(UserKey(1)).await.unwrap());
    assert_eq!(a.record_version::<User>(&UserKey(1)), deleted);
    // Never held here: the delete still goes out (peers may hold it).
    assert!(!a.remove_record::<User>(UserKey(2)).await.unwrap());
    assert!(a.record_version::<User>(&UserKey(2)).is_some());
    a.stop_swarm().await.unwrap();
    b.stop_swarm().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_node_writes_locally_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (alone, _) = common::start(dir.path(), &[]).await;
    let published = alone.put_record(user(1, "alone@x", 1)).await.unwrap();
    assert!(!published.replicated);
    assert_eq!(
        alone.record_version::<User>(&UserKey(1)),
        Some(published.version)
    );
    assert!(!alone.remove_record::<User>(UserKey(2)).await.unwrap());
    // Asking for peers that do not exist is an error that says what happened.
    let strict = tempfile::tempdir().unwrap();
    let (node, _) = common::start_with(strict.path(), &[], |c| {
        c.write_quorum = netabase::node::WriteQuorum::AtLeast(std::num::NonZeroUsize::MIN);
    })
    .await;
    let error = node.put_record(user(1, "a@x", 1)).await.unwrap_err();
    assert!(matches!(
        error,
        NodeError::Publish {
            stored: 0,
            required: 1,
            ..
        }
    ));
    assert!(
        error.to_string().starts_with("committed locally"),
        "{error}"
    );
    assert_eq!(users(&node).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_releases_the_directory_before_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3u64 {
        let node = Netabase::new_with_path(dir.path(), NetabaseConfig::loopback()).unwrap();
        node.register::<User>().unwrap();
        node.start_swarm().await.unwrap();
        node.put_record_locally(user(round, &format!("{round}@x"), 1))
            .await
            .unwrap();
        let clone = node.clone();
        node.shutdown().await.unwrap();
        // Every clone sees it closed.
        assert!(matches!(
            clone.put_record_locally(user(9, "t@x", 1)).await,
            Err(NodeError::Store(StoreError::Closed))
        ));
        assert!(matches!(clone.catch_up().await, Err(NodeError::NotRunning)));
        drop((node, clone));
    }
    // Reopened at once each time, nothing lost.
    let node = Netabase::new_with_path(dir.path(), NetabaseConfig::loopback()).unwrap();
    node.register::<User>().unwrap();
    assert_eq!(users(&node).await.len(), 3);
}

/// A local call made before `shutdown` finishes against the open store:
/// `shutdown` waits for it (a query running when it was called used to
/// meet a closed store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_local_calls_already_running() {
    let dir = tempfile::tempdir().unwrap();
    let node = Netabase::new_with_path(dir.path(), NetabaseConfig::loopback()).unwrap();
    node.register::<User>().unwrap();
    node.put_record_locally(user(1, "a@x", 1)).await.unwrap();
    let (running, started) = std::sync::mpsc::channel();
    let (release, go) = std::sync::mpsc::channel::<()>();
    let query = {
        let node = node.clone();
        tokio::spawn(async move {
            node.query_local_records::<User, _, _>(move |users| {
                running.send(()).unwrap();
                // Held open until `shutdown` has been called.
                go.recv().unwrap();
                users.len()
            })
            .await
        })
    };
    tokio::task::spawn_blocking(move || started.recv().unwrap())
        .await
        .unwrap();
    let shutting = {
        let node = node.clone();
        tokio::spawn(async move { node.shutdown().await })
    };
    // `shutdown` is under way and must not close the store under the query.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(
        !shutting.is_finished(),
        "shutdown returned while a call ran"
    );
    release.send(()).unwrap();
    assert_eq!(query.await.unwrap().unwrap(), 1);
    shutting.await.unwrap().unwrap();
}

/// `get_record` looks in the node's own store on the caller's thread where
/// the runtime can hand its other tasks over, and on the blocking pool
/// where it cannot: it answers the same on a current-thread runtime, in a
/// multi-thread runtime's `block_on`, in a spawned task, and from a
/// blocking thread bridging back into the runtime.
#[test]
fn get_record_answers_from_every_kind_of_runtime_thread() {
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let node = multi.block_on(async {
        let node = Netabase::new_with_path(dir.path(), NetabaseConfig::loopback()).unwrap();
        node.register::<User>().unwrap();
        node.start_swarm().await.unwrap();
        node.put_record_locally(user(1, "ada@example.com", 36))
            .await
            .unwrap();
        node
    });
    // Key 2 is held nowhere: the node looks in its store, then asks the
    // network (no peers), and says so.
    let ask = |node: Netabase| async move { node.get_record::<User>(UserKey(2)).await };
    let missing = |answer: Result<User, NodeError>| matches!(answer, Err(NodeError::NotFound));
    assert!(missing(multi.block_on(ask(node.clone()))));
    assert!(missing(
        multi.block_on(multi.spawn(ask(node.clone()))).unwrap()
    ));
    let handle = multi.handle().clone();
    let bridged = node.clone();
    assert!(missing(
        multi
            .block_on(multi.spawn_blocking(move || handle.block_on(ask(bridged))))
            .unwrap()
    ));
    assert!(missing(current.block_on(ask(node.clone()))));
    // And a held record, from the current-thread runtime.
    let ada = current.block_on(node.get_record::<User>(UserKey(1)));
    assert_eq!(ada.unwrap().email, "ada@example.com");
    multi.block_on(node.shutdown()).unwrap();
}
