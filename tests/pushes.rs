//! Records pushed over Kademlia by peers the node cannot trust: one writer
//! signing two records for one key with one timestamp, and a peer flooding
//! the node with valid records while honest peers write.

mod common;

use std::time::Duration;

use common::raw;
use common::*;
use futures::StreamExt;
use libp2p::kad::{self, Quorum, Record, RecordKey};
use libp2p::swarm::SwarmEvent;
use netabase::codec::{record_key, Envelope};
use netabase::node::{Event, Netabase, Rejection};
use netabase::store::Lookup;
use netabase::sync::reconcile::digest;

use netabase::{KeyEncode, Keypair, NetabaseModel};

fn key(id: u64) -> Vec<u8> {
    record_key(User::ID, UserKey(id).to_key_bytes().as_slice())
}

/// Waits until `node` holds a record of user `id` (bounded).
async fn holds(node: &Netabase, events: &mut tokio::sync::broadcast::Receiver<Event>, id: u64) {
    let wanted = UserKey(id).to_key_bytes().as_slice().to_vec();
    if node.record_version::<User>(&UserKey(id)).is_some() {
        return;
    }
    wait_for("the pushed record to be stored", events, |e| match e {
        Event::Record { key, .. } if *key == wanted => Some(()),
        _ => None,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_records_with_one_version_end_the_same_on_every_peer() {
    let dir = tempfile::tempdir().unwrap();
    let (a, mut a_events) = start(&dir.path().join("a"), &[]).await;
    let (b, mut b_events) = start(&dir.path().join("b"), &[]).await;
    // One writer signs two different records for user 5 with one timestamp.
    let writer = Keypair::generate_ed25519();
    let at = now();
    let x = Envelope::seal(&writer, &user(5, "x@example.com", 1), at).unwrap();
    let y = Envelope::seal(&writer, &user(5, "y@example.com", 2), at).unwrap();
    assert_eq!(x.version(), y.version());
    let mut swarm = raw::kad_swarm(&writer);
    raw::kad_dial(&mut swarm, &a);
    raw::push(&mut swarm, a.peer_id(), key(5), x.as_bytes().to_vec(), None).await;
    raw::kad_dial(&mut swarm, &b);
    raw::push(&mut swarm, b.peer_id(), key(5), y.as_bytes().to_vec(), None).await;
    holds(&a, &mut a_events, 5).await;
    holds(&b, &mut b_events, 5).await;
    assert_ne!(a.sync_fingerprint().unwrap(), b.sync_fingerprint().unwrap());

    // They meet: both keep the one with the greater digest.
    let (winner, loser) = if digest(x.as_bytes()) > digest(y.as_bytes()) {
        (&x, &y)
    } else {
        (&y, &x)
    };
    let _ = loser;
    b.dial(address_of(&a)).await.unwrap();
    round(&a, &b).await;
    round(&b, &a).await;
    assert_eq!(a.sync_fingerprint().unwrap(), b.sync_fingerprint().unwrap());
    let expected = winner.open::<User>().unwrap().unwrap();
    for node in [&a, &b] {
        assert_eq!(
            node.store().tree::<User>().get(&UserKey(5)).unwrap(),
            Some(expected.clone())
        );
    }
    // A second round finds nothing to fetch: no refetching every round.
    let before = (a.stats(), b.stats());
    assert_eq!(round(&a, &b).await, 0);
    assert_eq!(round(&b, &a).await, 0);
    assert_eq!(
        (
            a.stats().rejected(Rejection::Stale),
            b.stats().rejected(Rejection::Stale)
        ),
        (
            before.0.rejected(Rejection::Stale),
            before.1.rejected(Rejection::Stale)
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_peer_does_not_crowd_out_honest_writers() {
    const FLOOD: u64 = 10_000;
    const HONEST: u64 = 3;
    const EACH: u64 = 20;
    let dir = tempfile::tempdir().unwrap();
    // No catch-up: an honest push dropped here would never come back, so
    // every honest record must get through on its own.
    let (node, _) = start_with(&dir.path().join("node"), &[], |c| c.catch_up = false).await;
    let mut honest = Vec::new();
    for i in 0..HONEST {
        let (peer, _) = start_with(&dir.path().join(format!("h{i}")), &[&node], |c| {
            c.catch_up = false;
        })
        .await;
        honest.push(peer);
    }
    // The flood: valid, signed records, all in flight at once.
    let flooder = Keypair::generate_ed25519();
    let mut swarm = raw::kad_swarm(&flooder);
    raw::kad_dial(&mut swarm, &node);
    let mut pending = std::collections::HashSet::new();
    for id in 0..FLOOD {
        let envelope =
            Envelope::seal(&flooder, &user(100_000 + id, &format!("f{id}@x"), 1), now()).unwrap();
        let record = Record {
            key: RecordKey::new(&key(100_000 + id)),
            value: envelope.as_bytes().to_vec(),
            publisher: None,
            expires: None,
        };
        pending.insert(swarm.behaviour_mut().put_record_to(
            record,
            std::iter::once(node.peer_id()),
            Quorum::One,
        ));
    }
    let flood = tokio::spawn(async move {
        tokio::time::timeout(NET_WAIT, async {
            while !pending.is_empty() {
                if let SwarmEvent::Behaviour(kad::Event::OutboundQueryProgressed { id, .. }) =
                    swarm.select_next_some().await
                {
                    pending.remove(&id);
                }
            }
        })
        .await
        .expect("the flood is acknowledged");
    });
    // Meanwhile the honest peers write.
    let writes = honest.iter().enumerate().map(|(i, peer)| async move {
        for j in 0..EACH {
            let id = i as u64 * 1_000 + j;
            peer.put_record(user(id, &format!("h{id}@example.com"), 1))
                .await
                .unwrap();
        }
    });
    futures::future::join_all(writes).await;
    flood.await.unwrap();
    // Every honest record is stored (bounded wait: storing runs behind the
    // acknowledgements).
    let users = node.store().tree::<User>();
    tokio::time::timeout(NET_WAIT, async {
        loop {
            let stored = (0..HONEST)
                .flat_map(|i| (0..EACH).map(move |j| i * 1_000 + j))
                .filter(|id| node.record_version::<User>(&UserKey(*id)).is_some())
                .count() as u64;
            if stored == HONEST * EACH {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("honest records were dropped: {:?}", node.stats()));
    // Every flooded record is stored or counted as dropped: nothing else
    // goes missing (bounded wait: the queue drains behind the acks).
    tokio::time::timeout(NET_WAIT, async {
        loop {
            let stats = node.stats();
            if stats.accepted + stats.rejected(Rejection::Overloaded) == HONEST * EACH + FLOOD {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("pushed records went missing: {:?}", node.stats()));
    let stats = node.stats();
    println!(
        "flood: {} of {FLOOD} stored, {} dropped as overloaded",
        users.len().unwrap() - HONEST * EACH,
        stats.rejected(Rejection::Overloaded)
    );
    assert_eq!(users.len().unwrap(), stats.accepted);
}
