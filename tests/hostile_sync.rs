//! A raw catch-up peer (`/netabase/sync/1.0.0`) sends a node the costliest
//! messages the protocol allows, messages it does not allow, and
//! reconciliations the node never asked for, and opens more connections
//! than it may. The node's local work never waits long behind it, it fetches
//! nothing it did not ask for, and one peer holds at most four connections.

mod common;

use std::time::{Duration, Instant};

use common::raw::{self, SyncRequest, SyncResponse, SyncSwarm};
use common::*;
use futures::StreamExt;
use libp2p::request_response::{self, Message};
use libp2p::swarm::SwarmEvent;
use netabase::codec::record_key;
use netabase::node::{Event, Netabase, NetabaseConfig};
use netabase::store::Durability;
use netabase::store::Lookup;
use netabase::sync::reconcile::{Fingerprint, Item, ItemState, KeyRange, Part, Watermarks};
use netabase::{KeyEncode, NetabaseModel};

const RECORDS: u64 = 20_000;

fn key(id: u64) -> Vec<u8> {
    record_key(User::ID, UserKey(id).to_key_bytes().as_slice())
}

async fn node_with_records(dir: &std::path::Path, records: u64) -> Netabase {
    let config = NetabaseConfig {
        // The disk is not the point: no fsync noise in the latencies.
        durability: Durability::Eventual,
        ..NetabaseConfig::loopback()
    };
    let node = Netabase::new_with_path(dir, config).unwrap();
    node.register::<User>().unwrap();
    node.start_swarm().await.unwrap();
    let users: Vec<User> = (0..records)
        .map(|i| user(i, &format!("{i}@example.com"), (i % 90) as u32))
        .collect();
    node.put_records_locally(users).await.unwrap();
    node
}

/// The costliest well-formed message: the most parts a message may have,
/// each a disjoint range over the node's records that differs from what it
/// holds, alternating fingerprints and listings that ask for the node's own.
fn costliest() -> Vec<Part> {
    let parts = netabase::sync::reconcile::MAX_PARTS as u64;
    let step = RECORDS / parts;
    (0..parts)
        .map(|i| {
            let range = KeyRange {
                lower: key(i * step),
                upper: Some(key((i + 1) * step)),
            };
            if i % 2 == 0 {
                Part::Fingerprint {
                    range,
                    fingerprint: Fingerprint { xor: 7, count: 7 },
                }
            } else {
                Part::Items {
                    range,
                    items: Vec::new(),
                    reply: true,
                }
            }
        })
        .collect()
}

/// Drives the raw peer: answers the node's own requests with "nothing
/// here", counts responses to ours and the fetches the node sends us.
#[derive(Default)]
struct Seen {
    answers: usize,
    failures: usize,
    fetches: usize,
}

fn on_event(
    swarm: &mut SyncSwarm,
    event: SwarmEvent<request_response::Event<SyncRequest, SyncResponse>>,
    seen: &mut Seen,
) {
    match event {
        SwarmEvent::Behaviour(request_response::Event::Message {
            message: Message::Request {
                request, channel, ..
            },
            ..
        }) => {
            if matches!(request, SyncRequest::Fetch(_)) {
                seen.fetches += 1;
            }
            let _ = swarm.behaviour_mut().send_response(
                channel,
                SyncResponse::Reconcile(Watermarks::default(), Vec::new()),
            );
        }
        SwarmEvent::Behaviour(request_response::Event::Message {
            message: Message::Response { .. },
            ..
        }) => seen.answers += 1,
        SwarmEvent::Behaviour(request_response::Event::OutboundFailure { .. }) => {
            seen.failures += 1
        }
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_costliest_messages_never_hold_up_local_writes_or_reads() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_with_records(&dir.path().join("node"), RECORDS).await;
    let mut peer = raw::sync_swarm(true, Duration::from_secs(60));
    raw::sync_connect(&mut peer, &node).await;
    let target = node.peer_id();

    // The 12 KB message that froze a node for 2.4 s: 2,000 copies of one
    // part over the whole key space. Refused before any work, and counted.
    let copies = vec![
        Part::Fingerprint {
            range: KeyRange::all(),
            fingerprint: Fingerprint { xor: 1, count: 1 },
        };
        2000
    ];
    peer.behaviour_mut().send_request(
        &target,
        SyncRequest::Reconcile(Watermarks::default(), copies),
    );

    // Local writes and reads, timed, while the peer keeps 10 of the
    // costliest messages in flight, 200 in all.
    let writer = {
        let node = node.clone();
        tokio::spawn(async move {
            let mut worst = (Duration::ZERO, Duration::ZERO);
            for i in 0..200u64 {
                let started = Instant::now();
                node.put_record_locally(user(RECORDS + i, &format!("new{i}@x"), 1))
                    .await
                    .unwrap();
                worst.0 = worst.0.max(started.elapsed());
                let started = Instant::now();
                let _ = node.sync_fingerprint().unwrap();
                worst.1 = worst.1.max(started.elapsed());
            }
            worst
        })
    };
    let message = costliest();
    let mut seen = Seen::default();
    let mut sent = 0;
    tokio::time::timeout(NET_WAIT, async {
        while !writer.is_finished() || seen.answers + seen.failures < sent {
            while sent < 200 && sent - (seen.answers + seen.failures) < 10 {
                peer.behaviour_mut().send_request(
                    &target,
                    SyncRequest::Reconcile(Watermarks::default(), message.clone()),
                );
                sent += 1;
            }
            tokio::select! {
                event = peer.select_next_some() => on_event(&mut peer, event, &mut seen),
                _ = tokio::time::sleep(Duration::from_millis(5)) => {}
            }
        }
    })
    .await
    .expect("the raw peer's requests end");
    let (put, fingerprint) = writer.await.unwrap();
    println!(
        "worst local put {put:?}, worst sync_fingerprint {fingerprint:?}; {} answers, {} refused of {sent}",
        seen.answers, seen.failures
    );
    assert!(
        put < Duration::from_millis(50),
        "a local put waited {put:?}"
    );
    assert!(
        fingerprint < Duration::from_millis(50),
        "sync_fingerprint waited {fingerprint:?}"
    );
    assert!(
        seen.answers > 0,
        "the node answered none of the valid messages"
    );
    let stats = node.stats();
    assert_eq!(stats.sync_messages_refused, 1, "{stats:?}");
    assert_eq!(stats.peers_banned, 0, "{stats:?}");
    assert_eq!(node.store().tree::<User>().len().unwrap(), RECORDS + 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliations_the_node_never_asked_for_make_it_fetch_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_with_records(&dir.path().join("node"), 100).await;
    let mut events = node.subscribe_to_broadcasts();
    let mut peer = raw::sync_swarm(true, Duration::from_secs(60));
    let me = *peer.local_peer_id();
    raw::sync_connect(&mut peer, &node).await;
    let target = node.peer_id();
    // Five messages, each advertising 10,000 keys the node lacks, newer
    // versions of keys it holds, and the same keys again.
    for round in 0..5u64 {
        let mut items: Vec<Item> = (0..10_000u64)
            .map(|i| Item {
                key: key(1_000_000 + (i % 5_000) + round),
                state: ItemState {
                    digest: u128::from(i + 1),
                    timestamp: u64::MAX / 2,
                },
            })
            .chain((0..100).map(|i| Item {
                key: key(i),
                state: ItemState {
                    digest: 9,
                    timestamp: u64::MAX / 2,
                },
            }))
            .collect();
        items.sort_by(|a, b| a.key.cmp(&b.key));
        items.dedup_by(|a, b| a.key == b.key);
        peer.behaviour_mut().send_request(
            &target,
            SyncRequest::Reconcile(
                Watermarks::default(),
                vec![Part::Items {
                    range: KeyRange::all(),
                    items,
                    reply: true,
                }],
            ),
        );
    }
    // The node's own exchange with us (started on connect) is answered
    // "nothing here" and ends; by then the unasked messages were answered.
    let mut seen = Seen::default();
    let mut caught_up = false;
    tokio::time::timeout(NET_WAIT, async {
        while !(caught_up && seen.answers + seen.failures == 5) {
            tokio::select! {
                event = peer.select_next_some() => on_event(&mut peer, event, &mut seen),
                event = events.recv() => {
                    if matches!(event, Ok(Event::CaughtUp { peer, .. }) if peer == me) {
                        caught_up = true;
                    }
                }
            }
        }
    })
    .await
    .expect("the exchanges end");
    assert_eq!(
        seen.fetches, 0,
        "the node fetched what it never asked about"
    );
    assert!(seen.answers > 0);
    assert_eq!(node.store().tree::<User>().len().unwrap(), 100);
    assert_eq!(node.stats().sync_messages_refused, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_peer_holds_at_most_two_connections() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_with_records(&dir.path().join("node"), 1).await;
    let mut peer = raw::sync_swarm(true, Duration::from_secs(60));
    let address = address_of(&node);
    const DIALS: usize = 8;
    for _ in 0..DIALS {
        // Each dial is its own connection attempt.
        peer.dial(
            libp2p::swarm::dial_opts::DialOpts::peer_id(node.peer_id())
                .addresses(vec![address.clone()])
                .condition(libp2p::swarm::dial_opts::PeerCondition::Always)
                .build(),
        )
        .unwrap();
    }
    let mut seen = Seen::default();
    let mut outcomes = 0;
    tokio::time::timeout(NET_WAIT, async {
        loop {
            let open = peer.network_info().connection_counters().num_established();
            if outcomes >= DIALS && open <= 4 {
                return;
            }
            match peer.select_next_some().await {
                SwarmEvent::ConnectionEstablished { .. }
                | SwarmEvent::OutgoingConnectionError { .. } => outcomes += 1,
                event => on_event(&mut peer, event, &mut seen),
            }
        }
    })
    .await
    .expect("the node keeps at most four connections from one peer");
    assert!(peer.is_connected(&node.peer_id()));
}

/// A peer answering a get's fetch of one key with more than one record is
/// breaking the protocol: counted like any other violation, and its answer
/// is no copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_answered_with_more_records_than_asked_for_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (h, mut h_events) = start_with(&dir.path().join("h"), &[], |c| c.catch_up = false).await;
    let mut peer = raw::sync_swarm(true, Duration::from_secs(60));
    raw::sync_connect(&mut peer, &h).await;
    let id = *peer.local_peer_id();
    wait_for("H to see the raw peer", &mut h_events, |e| {
        matches!(e, Event::PeerConnected(p) if *p == id).then_some(())
    })
    .await;
    let forged = user(1, "one@x", 1);
    let envelope =
        netabase::codec::Envelope::seal(&netabase::Keypair::generate_ed25519(), &forged, now())
            .unwrap()
            .as_bytes()
            .to_vec();

    let reader = h.clone();
    let get = tokio::spawn(async move { reader.get_record::<User>(UserKey(1)).await });
    let answered = tokio::time::timeout(NET_WAIT, async {
        loop {
            if let SwarmEvent::Behaviour(request_response::Event::Message {
                message:
                    Message::Request {
                        request: SyncRequest::Fetch(keys),
                        channel,
                        ..
                    },
                ..
            }) = peer.select_next_some().await
            {
                assert_eq!(keys, vec![key(1)], "a get asks for its one key");
                let twice = SyncResponse::Records(vec![envelope.clone(), envelope.clone()]);
                let _ = peer.behaviour_mut().send_response(channel, twice);
                return;
            }
        }
    })
    .await;
    assert!(answered.is_ok(), "the node asked the connected peer");
    // The peer stays polled while the get ends (its routing asks it too).
    let result = tokio::time::timeout(NET_WAIT, async {
        tokio::pin!(get);
        loop {
            tokio::select! {
                result = &mut get => return result.unwrap(),
                _ = peer.select_next_some() => {}
            }
        }
    })
    .await
    .expect("the get ends");
    assert!(
        matches!(result, Err(netabase::node::NodeError::NotFound)),
        "{result:?}"
    );
    assert_eq!(h.stats().sync_messages_refused, 1);
    h.shutdown().await.unwrap();
}
