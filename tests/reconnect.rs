//! Peers find each other again: whichever side of a pair restarts, the two
//! reconnect within seconds, and the side that was away catches up and is
//! told so with `CaughtUp`.

mod common;

use std::time::Duration;

use common::*;
use netabase::node::{Event, Multiaddr, Netabase};
use tokio::sync::broadcast;

/// Bound on a reconnection: the first redial comes a second after the
/// disconnect, later ones back off.
const RECONNECT_WAIT: Duration = Duration::from_secs(20);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn connected_to(events: &mut broadcast::Receiver<Event>, peer: &Netabase) {
    let peer = peer.peer_id();
    tokio::time::timeout(
        RECONNECT_WAIT,
        wait_for("a reconnection", events, |e| {
            matches!(e, Event::PeerConnected(p) if *p == peer).then_some(())
        }),
    )
    .await
    .expect("reconnected within the bound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn either_side_restarting_reconnects_and_the_one_away_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let listen: Multiaddr = format!("/ip4/127.0.0.1/tcp/{}", free_port())
        .parse()
        .unwrap();
    let at_fixed_port = |c: &mut netabase::node::NetabaseConfig| {
        c.listen_addresses = vec![listen.clone()];
    };
    // A knows nobody; B was given A as its bootstrap peer.
    let (a, _) = start_with(&dir.path().join("a"), &[], at_fixed_port).await;
    let (b, mut b_events) = start(&dir.path().join("b"), &[&a]).await;
    caught_up_with(&mut b_events, a.peer_id()).await;

    // A goes away; B writes meanwhile.
    a.shutdown().await.unwrap();
    drop(a);
    for id in 0..5 {
        b.put_record(user(id, &format!("{id}@away"), 1))
            .await
            .unwrap();
    }
    // A comes back knowing nobody: B redials it, and A catches up.
    let (a, mut a_events) = start_with(&dir.path().join("a"), &[], at_fixed_port).await;
    connected_to(&mut a_events, &b).await;
    let received = wait_for("A's catch-up with B", &mut a_events, |e| match e {
        Event::CaughtUp {
            peer,
            received,
            refused,
        } if *peer == b.peer_id() => {
            assert_eq!(*refused, 0);
            Some(*received)
        }
        _ => None,
    })
    .await;
    assert_eq!(received, 5);
    assert_eq!(users(&a).await.len(), 5);

    // Now B restarts: it dials A again (A is its bootstrap peer).
    b.shutdown().await.unwrap();
    drop(b);
    let (b, _) = start(&dir.path().join("b"), &[&a]).await;
    connected_to(&mut a_events, &b).await;
    // And they sync as before.
    assert!(a.put_record(user(9, "9@back", 1)).await.unwrap().replicated);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
