//! Remote queries: a node reads the records a secondary index holds a
//! value for from its peers, checked and bounded, without storing what it
//! does not subscribe to. Bounded waits only.

mod common;

use std::time::Duration;

use common::raw::{query_swarm, QueryResponse};
use common::*;
use futures::StreamExt;
use libp2p::request_response;
use libp2p::swarm::SwarmEvent;
use netabase::codec::Envelope;
use netabase::node::{Event, Netabase, Rejection, Subscription};
use netabase::store::Lookup;
use netabase::Keypair;

/// A node with `Note` registered, subscribed as given, started.
async fn node(
    dir: &std::path::Path,
    bootstrap: &[&Netabase],
    notes: Subscription<Note>,
) -> Netabase {
    let node = open(dir, config(bootstrap, |_| {})).await;
    node.register::<Note>().unwrap();
    node.subscribe(notes).await.unwrap();
    node.start_swarm().await.unwrap();
    node
}

fn work() -> NoteSecondaryKey {
    NoteSecondaryKey::List(NoteListKey("work".into()))
}

/// Ann's and Bob's notes 0..20: even ones at work, odd ones at home.
fn notes() -> Vec<Note> {
    ["ann", "bob"]
        .iter()
        .flat_map(|owner| {
            (0..20).map(move |n| note(owner, n, if n % 2 == 0 { "work" } else { "home" }))
        })
        .collect()
}

async fn held(node: &Netabase) -> Vec<Note> {
    node.query_local_records::<Note, _, _>(|t| t.iter()?.collect())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_query_reads_what_peers_hold_for_an_index_value() {
    let dir = tempfile::tempdir().unwrap();
    let a = node(&dir.path().join("a"), &[], Subscription::all()).await;
    a.put_records_locally(notes()).await.unwrap();
    let b = node(&dir.path().join("b"), &[&a], Subscription::nothing()).await;
    b.put_record_locally(note("cy", 1, "work")).await.unwrap();
    round(&b, &a).await;

    let mut expected: Vec<Note> = notes().into_iter().filter(|n| n.list == "work").collect();
    expected.push(note("cy", 1, "work"));
    expected.sort_by(|x, y| x.id.cmp(&y.id));
    let found = b.query_remote::<Note>(work(), 100).await.unwrap();
    assert_eq!(found, expected, "A's twenty and B's own, in key order");
    // Read, not stored: B still holds its own note alone.
    assert_eq!(held(&b).await, vec![note("cy", 1, "work")]);
    // A limit keeps the first ones in key order.
    let first = b.query_remote::<Note>(work(), 5).await.unwrap();
    assert_eq!(first, expected[..5]);

    // A note moved to another list leaves the results.
    a.put_record_locally(note("ann", 0, "home")).await.unwrap();
    let found = b.query_remote::<Note>(work(), 100).await.unwrap();
    assert_eq!(found.len(), expected.len() - 1);
    assert!(found.iter().all(|n| n.list == "work"));

    // The copies read answer `get_record` while A is away.
    a.shutdown().await.unwrap();
    let copy = b
        .get_record::<Note>(NoteKey(("bob".into(), 4)))
        .await
        .unwrap();
    assert_eq!(copy, note("bob", 4, "work"));
    // With no peer to ask (or the swarm stopped), B answers for itself.
    b.stop_swarm().await.unwrap();
    let alone = b.query_remote::<Note>(work(), 100).await.unwrap();
    assert_eq!(alone, vec![note("cy", 1, "work")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_stores_what_a_remote_query_finds_in_its_subscription() {
    let dir = tempfile::tempdir().unwrap();
    let a = node(&dir.path().join("a"), &[], Subscription::all()).await;
    let b = node(
        &dir.path().join("b"),
        &[&a],
        Subscription::<Note>::key_prefix("bob"),
    )
    .await;
    round(&b, &a).await;
    // Written after B's catch-up: B learns of them from the query.
    a.put_records_locally(notes()).await.unwrap();
    let found = b.query_remote::<Note>(work(), 100).await.unwrap();
    assert_eq!(found.len(), 20);
    // Bob's ten work notes are B's to keep: they are stored (in the
    // background, as `get_record` keeps what it fetches).
    let mut events = b.subscribe_to_broadcasts();
    wait_until(
        "Bob's work notes stored",
        &mut events,
        || b.store().tree::<Note>().len().is_ok_and(|n| n == 10),
        || b.store().tree::<Note>().len(),
    )
    .await;
    let kept = held(&b).await;
    assert!(kept.iter().all(|n| n.id.0 == "bob" && n.list == "work"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_query_answers_are_checked_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let a = node(&dir.path().join("a"), &[], Subscription::all()).await;
    a.put_records_locally(notes()).await.unwrap();
    let b = node(&dir.path().join("b"), &[&a], Subscription::nothing()).await;
    round(&b, &a).await;

    // A raw peer answers every query with a mix: one honest match (any
    // peer may write a note), and what no answer may carry.
    let mallory = Keypair::generate_ed25519();
    let now = now();
    let seal = |record: &Note| {
        Envelope::seal(&mallory, record, now)
            .unwrap()
            .as_bytes()
            .to_vec()
    };
    let honest = note("mal", 1, "work");
    let mut forged = seal(&note("mal", 2, "work"));
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let answer = vec![
        seal(&honest),
        // Valid, but not at work.
        seal(&note("mal", 3, "home")),
        // Valid, but another model.
        Envelope::seal(&mallory, &user_record(9), now)
            .unwrap()
            .as_bytes()
            .to_vec(),
        forged,
        vec![0xde, 0xad],
    ];
    let mut events = b.subscribe_to_broadcasts();
    let mut raw = query_swarm(&mallory);
    raw.dial(address_of(&b)).unwrap();
    // A second raw peer answers with more records than any answer may hold.
    let flood_key = Keypair::generate_ed25519();
    let flood: Vec<Vec<u8>> = (0..300)
        .map(|n| {
            Envelope::seal(&flood_key, &note("flood", n, "work"), now)
                .unwrap()
                .as_bytes()
                .to_vec()
        })
        .collect();
    let mut flooder = query_swarm(&flood_key);
    flooder.dial(address_of(&b)).unwrap();
    let serve = |mut swarm: common::raw::QuerySwarm, records: Vec<Vec<u8>>| async move {
        loop {
            if let SwarmEvent::Behaviour(request_response::Event::Message {
                message: request_response::Message::Request { channel, .. },
                ..
            }) = swarm.select_next_some().await
            {
                let response = QueryResponse {
                    records: records.clone(),
                };
                let _ = swarm.behaviour_mut().send_response(channel, response);
            }
        }
    };
    let raw_task = tokio::spawn(serve(raw, answer));
    let flood_task = tokio::spawn(serve(flooder, flood));
    // Both raw peers connected before the query.
    let mut waiting = vec![
        mallory.public().to_peer_id(),
        flood_key.public().to_peer_id(),
    ];
    while !waiting.is_empty() {
        let peer = wait_for("a raw peer to connect", &mut events, |e| match e {
            Event::PeerConnected(p) => Some(*p),
            _ => None,
        })
        .await;
        waiting.retain(|p| *p != peer);
    }

    let found = b.query_remote::<Note>(work(), 100).await.unwrap();
    let mut expected: Vec<Note> = notes().into_iter().filter(|n| n.list == "work").collect();
    expected.push(honest);
    expected.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(found, expected);
    let stats = b.stats();
    assert_eq!(stats.rejected(Rejection::OffQuery), 2, "{stats:?}");
    assert!(stats.rejected(Rejection::BadSignature) >= 1, "{stats:?}");
    // Two bytes are no envelope of any format.
    assert!(
        stats.rejected(Rejection::UnsupportedFormat) >= 1,
        "{stats:?}"
    );
    assert!(held(&b).await.is_empty());
    raw_task.abort();
    flood_task.abort();
}

fn user_record(id: u64) -> User {
    User {
        id,
        name: "u".into(),
        email: format!("u{id}@x"),
        age: 1,
        address: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_answers_holds_a_query_for_the_grace_period_only() {
    let dir = tempfile::tempdir().unwrap();
    // A long query timeout: the call must not wait for it.
    let slow = |c: &mut netabase::node::NetabaseConfig| c.query_timeout = Duration::from_secs(300);
    let a = open(&dir.path().join("a"), config(&[], slow)).await;
    a.register::<Note>().unwrap();
    a.start_swarm().await.unwrap();
    a.put_records_locally(notes()).await.unwrap();
    let b = open(&dir.path().join("b"), config(&[&a], slow)).await;
    b.register::<Note>().unwrap();
    b.subscribe(Subscription::<Note>::nothing()).await.unwrap();
    b.start_swarm().await.unwrap();
    round(&b, &a).await;
    // A raw peer that reads queries and never answers.
    let mut events = b.subscribe_to_broadcasts();
    let silent = Keypair::generate_ed25519();
    let mut raw = query_swarm(&silent);
    raw.dial(address_of(&b)).unwrap();
    let task = tokio::spawn(async move {
        let mut pending = Vec::new();
        loop {
            if let SwarmEvent::Behaviour(request_response::Event::Message {
                message: request_response::Message::Request { channel, .. },
                ..
            }) = raw.select_next_some().await
            {
                pending.push(channel);
            }
        }
    });
    let id = silent.public().to_peer_id();
    wait_for("the silent peer to connect", &mut events, |e| {
        matches!(e, Event::PeerConnected(p) if *p == id).then_some(())
    })
    .await;
    let found = tokio::time::timeout(NET_WAIT, b.query_remote::<Note>(work(), 100))
        .await
        .expect("the query returned without waiting out the silent peer")
        .unwrap();
    assert_eq!(found.len(), 20);
    task.abort();
}
