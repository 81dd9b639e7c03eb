//! A peer that asks for large records and never reads the answers pins at
//! most a few answers' worth of the node's memory: each peer has two
//! requests answered at a time (a few more wait, the rest are refused), and
//! a connection carries a bounded number of streams at once. Before these bounds,
//! 200 such requests took a node from 47 MB to 1.7 GB.
//!
//! Alone in its test binary, so the process's resident memory is the
//! node's and the raw peer's only.

mod common;

use std::time::Duration;

use common::raw::{self, SyncRequest};
use common::*;
use futures::StreamExt;
use libp2p::request_response;
use libp2p::swarm::SwarmEvent;
use netabase::codec::record_key;
use netabase::node::{Netabase, NetabaseConfig};
use netabase::{KeyEncode, NetabaseModel};

/// Resident memory of this process, in bytes.
fn resident() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_answers_pin_a_bounded_amount_of_memory() {
    const RECORDS: u64 = 100;
    const REQUESTS: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let config = NetabaseConfig {
        // Answers nobody reads stay pinned until this long: the worst case.
        query_timeout: Duration::from_secs(120),
        ..NetabaseConfig::loopback()
    };
    let node = Netabase::new_with_path(dir.path(), config).unwrap();
    node.register::<User>().unwrap();
    node.start_swarm().await.unwrap();
    let big: Vec<User> = (0..RECORDS)
        .map(|i| User {
            name: "x".repeat(50 * 1024),
            ..user(i, &format!("{i}@example.com"), 1)
        })
        .collect();
    node.put_records_locally(big).await.unwrap();
    let keys: Vec<Vec<u8>> = (0..RECORDS)
        .map(|i| record_key(User::ID, UserKey(i).to_key_bytes().as_slice()))
        .collect();

    let mut peer = raw::sync_swarm(false, Duration::from_secs(120));
    raw::sync_connect(&mut peer, &node).await;
    let before = resident();
    for _ in 0..REQUESTS {
        peer.behaviour_mut()
            .send_request(&node.peer_id(), SyncRequest::Fetch(keys.clone()));
    }
    // The peer never reads, so it never learns which requests were
    // refused: watch the process's memory for a fixed window instead, while
    // the node answers what it will (answers are built in milliseconds).
    let mut after = before;
    let window = tokio::time::sleep(Duration::from_secs(3));
    tokio::pin!(window);
    let mut sample = tokio::time::interval(Duration::from_millis(20));
    loop {
        tokio::select! {
            _ = &mut window => break,
            _ = sample.tick() => after = after.max(resident()),
            event = peer.select_next_some() => match event {
                SwarmEvent::Behaviour(request_response::Event::Message {
                    message: request_response::Message::Response { .. },
                    ..
                }) => panic!("an answer was read"),
                SwarmEvent::Behaviour(request_response::Event::Message {
                    message: request_response::Message::Request { channel, .. },
                    ..
                }) => {
                    // The node's own catch-up with us: nothing here.
                    let _ = peer.behaviour_mut().send_response(
                        channel,
                        raw::SyncResponse::Reconcile(Default::default(), Vec::new()),
                    );
                }
                _ => {}
            },
        }
    }
    let grown = after.saturating_sub(before);
    let stats = node.stats();
    println!(
        "resident {} MB -> peak {} MB; node: {} requests dropped",
        before >> 20,
        after >> 20,
        stats.sync_requests_dropped
    );
    assert!(grown < 64 << 20, "memory grew by {} MB", grown >> 20);
    // The node still answers an honest peer.
    assert!(node.get_record::<User>(UserKey(1)).await.is_ok());
}
