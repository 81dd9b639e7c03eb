//! A node whose disk fills up: it says so (an event, a stat, the cause),
//! stops acknowledging records from peers, fails local writes with a clear
//! error, and when space is back reopens its store in place and catches up,
//! so nothing a peer wrote meanwhile is lost. No restart.

mod common;

use common::disk::FullableDisk;
use common::*;
use futures::StreamExt;
use libp2p::kad::{self, Quorum, Record, RecordKey};
use libp2p::swarm::SwarmEvent;
use netabase::codec::{record_key, Envelope};
use netabase::node::{Event, Netabase, NodeError};

use netabase::store::Lookup;
use netabase::sync::Timestamp;
use netabase::{KeyEncode, Keypair, NetabaseModel};

/// Whether `node` acknowledges a record pushed to it over Kademlia.
async fn acknowledges_a_push(node: &Netabase, id: u64) -> bool {
    let keypair = Keypair::generate_ed25519();
    let mut swarm = common::raw::kad_swarm(&keypair);
    common::raw::kad_dial(&mut swarm, node);
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let envelope = Envelope::seal(
        &keypair,
        &user(id, &format!("{id}@x"), 1),
        Timestamp::new(ms, 0),
    )
    .unwrap();
    let record = Record {
        key: RecordKey::new(&record_key(User::ID, UserKey(id).to_key_bytes().as_slice())),
        value: envelope.as_bytes().to_vec(),
        publisher: None,
        expires: None,
    };
    let query =
        swarm
            .behaviour_mut()
            .put_record_to(record, std::iter::once(node.peer_id()), Quorum::One);
    tokio::time::timeout(NET_WAIT, async {
        loop {
            if let SwarmEvent::Behaviour(kad::Event::OutboundQueryProgressed {
                id, result, ..
            }) = swarm.select_next_some().await
            {
                if id == query {
                    return matches!(result, kad::QueryResult::PutRecord(Ok(_)));
                }
            }
        }
    })
    .await
    .expect("the push ends")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_survived_without_a_restart_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let disk = FullableDisk::new();
    let store = disk.store();
    let node =
        Netabase::new_with_store(dir.path().join("node"), store, config(&[], |_| {})).unwrap();
    node.register::<User>().unwrap();
    let mut events = node.subscribe_to_broadcasts();
    node.start_swarm().await.unwrap();
    let (peer, _) = start(&dir.path().join("peer"), &[&node]).await;
    caught_up_with(&mut events, peer.peer_id()).await;
    peer.put_record(user(1, "1@example.com", 1)).await.unwrap();
    wait_for("user 1 on the node", &mut events, |e| {
        matches!(e, Event::Record { .. }).then_some(())
    })
    .await;

    // The disk fills up. The next record the peer pushes cannot be stored.
    disk.fill();
    peer.put_record(user(2, "2@example.com", 1)).await.ok();
    let error = wait_for("the storage failure", &mut events, |e| match e {
        Event::StorageFailed { error } => Some(error.clone()),
        _ => None,
    })
    .await;
    assert!(error.contains("no space left on device"), "{error}");
    let stats = node.stats();
    assert!(
        stats.storage_degraded && stats.storage_failures == 1,
        "{stats:?}"
    );
    // Local writes fail with a clear error; reads go on (user 1 came from
    // a peer, so it is not cached: it is read from the store, which the
    // probes do not close while the disk stays full).
    match node.put_record_locally(user(99, "99@x", 1)).await {
        Err(NodeError::Store(error)) => assert!(error.needs_reopen(), "{error:?}"),
        other => panic!("expected a storage error, got {other:?}"),
    }
    for _ in 0..3 {
        assert_eq!(
            node.get_record::<User>(UserKey(1)).await.unwrap(),
            user(1, "1@example.com", 1)
        );
        assert_eq!(
            node.store().tree::<User>().get(&UserKey(1)).unwrap(),
            Some(user(1, "1@example.com", 1))
        );
    }
    // Peers are no longer told their records were taken: within a few
    // attempts (the mode change reaches connections asynchronously) a push
    // goes unacknowledged.
    let mut refused = false;
    for attempt in 0..10 {
        if !acknowledges_a_push(&node, 1_000 + attempt).await {
            refused = true;
            break;
        }
    }
    assert!(
        refused,
        "the node kept acknowledging records it cannot store"
    );
    // The peer goes on writing meanwhile.
    for id in 3..6 {
        peer.put_record_locally(user(id, &format!("{id}@example.com"), 1))
            .await
            .unwrap();
    }

    // Space again: the node reopens its store by itself and catches up.
    disk.free();
    wait_for("the store to recover", &mut events, |e| {
        matches!(e, Event::StorageRecovered).then_some(())
    })
    .await;
    caught_up_with(&mut events, peer.peer_id()).await;
    let stats = node.stats();
    assert!(
        !stats.storage_degraded && stats.storage_recoveries == 1,
        "{stats:?}"
    );
    let ids: Vec<u64> = users(&node).await.into_iter().map(|u| u.id).collect();
    let peers: Vec<u64> = users(&peer).await.into_iter().map(|u| u.id).collect();
    assert_eq!(peers, [1, 2, 3, 4, 5]);
    assert!(ids.starts_with(&[1, 2, 3, 4, 5]), "{ids:?}");
    node.put_record_locally(user(99, "99@x", 1)).await.unwrap();
    assert_indexes_consistent(&node.store().tree::<User>());
}
