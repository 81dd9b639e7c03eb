//! Relays on 127.0.0.1: a node holds a slot on a relay, a peer reaches it
//! through the relay (by its circuit address, or by its peer id alone) and
//! catches up over that connection, and AutoNAT finds nodes on loopback
//! reachable. What NAT does to this (hole punching, a symmetric NAT) is in
//! `tests/nat.rs`, in network namespaces.

mod common;

use common::*;
use netabase::node::{Event, Multiaddr, Netabase, Protocol, Reachability, RelayLimits};
use netabase::PeerId;
use tokio::sync::broadcast;

/// A relay R and a node B holding a slot on it; B's events.
async fn relay_and_reserved(
    dir: &std::path::Path,
) -> (Netabase, Netabase, broadcast::Receiver<Event>) {
    let (r, _) = start_with(&dir.join("r"), &[], |c| {
        c.relay = Some(RelayLimits::default())
    })
    .await;
    let relay_address = address_of(&r);
    let (b, mut b_events) =
        start_with(&dir.join("b"), &[], |c| c.relays = vec![relay_address]).await;
    let relay = r.peer_id();
    wait_for("B to hold a slot on R", &mut b_events, |e| {
        matches!(e, Event::RelayReserved { relay: r } if *r == relay).then_some(())
    })
    .await;
    (r, b, b_events)
}

fn circuit(relay: &Netabase, target: PeerId) -> Multiaddr {
    address_of(relay)
        .with(Protocol::P2pCircuit)
        .with(Protocol::P2p(target))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_reaches_a_node_through_its_relay_and_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let (r, b, _) = relay_and_reserved(dir.path()).await;
    // B announces its slot: an address through R (it follows the
    // reservation's event).
    let announced = tokio::time::timeout(NET_WAIT, async {
        while !b
            .addresses()
            .iter()
            .any(|a| a.iter().any(|p| p == Protocol::P2pCircuit))
        {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(announced.is_ok(), "{:?}", b.addresses());
    for id in 0..200 {
        b.put_record_locally(user(id, &format!("{id}@x"), 1))
            .await
            .unwrap();
    }
    // A knows only R's address and B's id.
    let (a, mut a_events) = start_with(&dir.path().join("a"), &[], |c| {
        c.catch_up_interval = None;
    })
    .await;
    // Connection setup, printed: directly to R, then to B through R (over
    // the connection to R just made).
    let started = std::time::Instant::now();
    assert_eq!(a.dial(address_of(&r)).await.unwrap(), r.peer_id());
    let direct = started.elapsed();
    let started = std::time::Instant::now();
    assert_eq!(a.dial(circuit(&r, b.peer_id())).await.unwrap(), b.peer_id());
    let target = b.peer_id();
    wait_for("A's relayed connection to B", &mut a_events, |e| {
        matches!(e, Event::ConnectionOpened { peer, relayed: true } if *peer == target)
            .then_some(())
    })
    .await;
    eprintln!(
        "connection setup on 127.0.0.1: direct {direct:?}, through the relay {:?}",
        started.elapsed()
    );
    // Hole punching may replace the relayed connection meanwhile (on
    // loopback it succeeds): a catch-up cut short is run again.
    let synced = tokio::time::timeout(NET_WAIT, async {
        while users(&a).await.len() < 200 {
            let _ = a.catch_up_and_wait().await;
        }
    })
    .await;
    assert!(synced.is_ok(), "A holds {} of 200", users(&a).await.len());
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    r.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_a_relay_is_dialled_by_its_peer_id_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (r, b, _) = relay_and_reserved(dir.path()).await;
    // C knows R (its bootstrap peer), and of B only its id: R's routing
    // table has B's relay slot.
    let (c, _) = start(&dir.path().join("c"), &[&r]).await;
    let by_id = Multiaddr::empty().with(Protocol::P2p(b.peer_id()));
    let reached = tokio::time::timeout(NET_WAIT, async {
        loop {
            match c.dial(by_id.clone()).await {
                Ok(peer) => return peer,
                // C may not have reached R yet.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
            }
        }
    })
    .await
    .expect("C dialled B by its id");
    assert_eq!(reached, b.peer_id());
    c.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    r.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autonat_finds_a_node_on_loopback_reachable() {
    let dir = tempfile::tempdir().unwrap();
    let (r, _) = start(&dir.path().join("r"), &[]).await;
    let (b, mut b_events) = start(&dir.path().join("b"), &[&r]).await;
    let found = wait_for("B's reachability", &mut b_events, |e| match e {
        Event::ReachabilityChanged(found) => Some(*found),
        _ => None,
    })
    .await;
    assert_eq!(found, Reachability::Public);
    assert_eq!(b.stats().reachability, Reachability::Public);
    b.shutdown().await.unwrap();
    r.shutdown().await.unwrap();
}

#[tokio::test]
async fn relay_settings_out_of_range_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let unnamed = config(&[], |c| {
        c.relays = vec!["/ip4/127.0.0.1/tcp/4001".parse().unwrap()];
    });
    let error = Netabase::new_with_path(dir.path(), unnamed).unwrap_err();
    assert!(error.to_string().contains("relays"), "{error}");
    let zero = config(&[], |c| {
        let mut limits = RelayLimits::default();
        limits.max_circuit_duration = std::time::Duration::ZERO;
        c.relay = Some(limits);
    });
    let error = Netabase::new_with_path(dir.path(), zero).unwrap_err();
    assert!(error.to_string().contains("relay"), "{error}");
}
