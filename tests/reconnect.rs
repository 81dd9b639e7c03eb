//! Peers find each other again: whichever side of a pair restarts, the two
//! reconnect within seconds, and the side that was away catches up and is
//! told so with `CaughtUp`.

mod common;

use std::time::Duration;

use common::*;
use netabase::node::{Event, Multiaddr, Netabase, NetabaseConfig};
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

/// A configuration tweak listening on one free port of 127.0.0.1, the same
/// at every restart.
fn fixed_port() -> impl Fn(&mut NetabaseConfig) {
    let listen: Multiaddr = format!("/ip4/127.0.0.1/tcp/{}", free_port())
        .parse()
        .unwrap();
    move |c: &mut NetabaseConfig| c.listen_addresses = vec![listen.clone()]
}

/// A on its fixed port, knowing nobody, and B with A as its bootstrap peer,
/// caught up with it.
async fn pair(
    dir: &std::path::Path,
    at_fixed_port: &impl Fn(&mut NetabaseConfig),
) -> (Netabase, Netabase) {
    let (a, _) = start_with(&dir.join("a"), &[], at_fixed_port).await;
    let (b, mut b_events) = start(&dir.join("b"), &[&a]).await;
    caught_up_with(&mut b_events, a.peer_id()).await;
    (a, b)
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
    let at_fixed_port = fixed_port();
    // A knows nobody; B was given A as its bootstrap peer.
    let (a, b) = pair(dir.path(), &at_fixed_port).await;

    // A goes away; B writes meanwhile.
    a.shutdown().await.unwrap();
    drop(a);
    for id in 0..5 {
        b.put_record(user(id, &format!("{id}@away"), 1))
            .await
            .unwrap();
    }
    // A comes back knowing nobody: B redials it, and A catches up.
    let (a, mut a_events) = start_with(&dir.path().join("a"), &[], &at_fixed_port).await;
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

/// Writing while a peer is away does not hold off finding it again: each
/// publish dials the missing peer, and those failures are not the redial
/// schedule's (before, each doubled its backoff, and a peer back after 5 s
/// was found about a minute later).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_during_an_outage_do_not_delay_the_reconnect() {
    const OUTAGE: Duration = Duration::from_secs(5);
    // The schedule redials 1, 3 and 7 s after the disconnect: the last of
    // these finds A 2 s after it is back.
    const FOUND_WITHIN: Duration = Duration::from_secs(8);
    let dir = tempfile::tempdir().unwrap();
    let at_fixed_port = fixed_port();
    let (a, b) = pair(dir.path(), &at_fixed_port).await;

    a.shutdown().await.unwrap();
    drop(a);
    let left = tokio::time::Instant::now();
    // Ten writes over 3 s, each published (and each dialling A).
    for id in 0..10 {
        tokio::time::timeout(
            Duration::from_secs(5),
            b.put_record(user(id, &format!("{id}@away"), 1)),
        )
        .await
        .expect("a put with no peer returns")
        .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep_until(left + OUTAGE).await;
    let (a, mut a_events) = start_with(&dir.path().join("a"), &[], &at_fixed_port).await;
    let peer = b.peer_id();
    tokio::time::timeout(
        FOUND_WITHIN,
        wait_for("B redialling A", &mut a_events, |e| {
            matches!(e, Event::PeerConnected(p) if *p == peer).then_some(())
        }),
    )
    .await
    .expect("B found A within seconds of its return");
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
