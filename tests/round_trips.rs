//! What a request costs in round trips on a slow link. A node talks to
//! peers on streams that settle their protocol lazily: the protocol's name
//! goes out with the request, so a `get_record` of a record a connected
//! peer holds, or a `put_record` to it, takes one round trip, not two
//! (libp2p's default waits for the peer to confirm the protocol before
//! sending anything: 409-413 ms each here, against 204-209 ms).
//!
//! The link is a relay on 127.0.0.1 that holds every byte for `ONE_WAY`
//! each way; round trips are counted with a wide margin (one is 200 ms,
//! the bound is 300 ms), so machine noise does not decide the outcome.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use netabase::node::{Event, Multiaddr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The delay the relay adds each way.
const ONE_WAY: Duration = Duration::from_millis(100);

/// A TCP relay from a port of its own on 127.0.0.1 to `target` that delays
/// every byte by `delay` each way (and does not limit throughput).
async fn slow_link(target: SocketAddr, delay: Duration) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let Ok(outbound) = TcpStream::connect(target).await else {
                continue;
            };
            let _ = (inbound.set_nodelay(true), outbound.set_nodelay(true));
            let (in_read, in_write) = inbound.into_split();
            let (out_read, out_write) = outbound.into_split();
            tokio::spawn(pump(in_read, out_write, delay));
            tokio::spawn(pump(out_read, in_write, delay));
        }
    });
    (address, task)
}

/// Copies `from` to `to`, each chunk `delay` after it was read, in order.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
    });
    let mut buffer = vec![0u8; 64 * 1024];
    while let Ok(n @ 1..) = from.read(&mut buffer).await {
        if tx
            .send((Instant::now() + delay, buffer[..n].to_vec()))
            .is_err()
        {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// The TCP socket address of a `/ip4/../tcp/../p2p/..` address.
fn socket_of(address: &Multiaddr) -> SocketAddr {
    use libp2p::multiaddr::Protocol;
    let mut ip = None;
    let mut port = None;
    for part in address.iter() {
        match part {
            Protocol::Ip4(a) => ip = Some(a),
            Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    SocketAddr::from((ip.expect("an ip4 address"), port.expect("a tcp port")))
}

/// Checks that calls which each `took` crossed the relay once: every one
/// at least a round trip, the fastest under one and a half (two would be
/// 400 ms).
fn one_round_trip(what: &str, took: &[Duration]) {
    let round_trip = 2 * ONE_WAY;
    println!("{what}s over a {round_trip:?} round trip took {took:?}");
    assert!(took.iter().all(|t| *t >= round_trip), "{took:?}");
    let fastest = took.iter().min().copied().unwrap();
    assert!(
        fastest < round_trip * 3 / 2,
        "a {what} took {fastest:?}, over one round trip of {round_trip:?}: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_or_a_put_with_a_connected_peer_takes_one_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = start(&dir.path().join("a"), &[]).await;
    let (relay, relay_task) = slow_link(socket_of(&address_of(&a)), ONE_WAY).await;
    let through_relay: Multiaddr =
        format!("/ip4/127.0.0.1/tcp/{}/p2p/{}", relay.port(), a.peer_id())
            .parse()
            .unwrap();
    // C reaches A only through the relay: it listens nowhere (A cannot
    // dial it directly), and does not catch up (it would copy A's records).
    let (c, mut events) = start_with(&dir.path().join("c"), &[], |config| {
        config.bootstrap_peers = vec![through_relay];
        config.listen_addresses = Vec::new();
        config.catch_up = false;
    })
    .await;
    wait_for("C to connect to A", &mut events, |event| match event {
        Event::PeerConnected(peer) if *peer == a.peer_id() => Some(()),
        _ => None,
    })
    .await;

    let mut took = Vec::new();
    for id in 1..=3 {
        let user = user(id, &format!("{id}@example.com"), 30);
        a.put_record_locally(user.clone()).await.unwrap();
        let start = Instant::now();
        let fetched = tokio::time::timeout(NET_WAIT, c.get_record::<User>(UserKey(id)))
            .await
            .expect("the get ends")
            .unwrap();
        took.push(start.elapsed());
        assert_eq!(fetched, user);
    }
    one_round_trip("get", &took);

    // A put to the same peer: one round trip as well (its Kademlia stream
    // settles its protocol the same way), plus the peer's durable commit.
    let mut took = Vec::new();
    for id in 11..=13 {
        let start = Instant::now();
        tokio::time::timeout(
            NET_WAIT,
            c.put_record(user(id, &format!("{id}@example.com"), 30)),
        )
        .await
        .expect("the put ends")
        .unwrap();
        took.push(start.elapsed());
    }
    one_round_trip("put", &took);
    relay_task.abort();
    c.shutdown().await.unwrap();
    a.shutdown().await.unwrap();
}
