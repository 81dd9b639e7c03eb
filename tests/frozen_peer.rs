//! A frozen peer (a suspended process keeps its connections open and never
//! answers) does not stall reads: `get_record` returns once it holds a
//! valid copy and a short grace period for the other answers has passed.

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use netabase::node::{Event, Netabase};
use netabase::Keypair;
use tokio::sync::broadcast;

type KadSwarm = libp2p::Swarm<libp2p::kad::Behaviour<libp2p::kad::store::MemoryStore>>;

/// V holding user 1 (`email`), and H, with catch-up off, connected to it.
async fn holder_and_reader(
    dir: &std::path::Path,
    email: &str,
) -> (Netabase, Netabase, broadcast::Receiver<Event>) {
    let (v, _) = start(&dir.join("v"), &[]).await;
    v.put_record_locally(user(1, email, 1)).await.unwrap();
    let (h, mut h_events) = start_with(&dir.join("h"), &[&v], |c| c.catch_up = false).await;
    let holder = v.peer_id();
    wait_for("H to reach V", &mut h_events, |e| {
        matches!(e, Event::PeerConnected(p) if *p == holder).then_some(())
    })
    .await;
    (v, h, h_events)
}

/// A raw Kademlia server (H keeps it in its routing table and asks it in
/// queries) connected to H; it answers only while the caller polls it.
async fn raw_server(
    keypair: &Keypair,
    h: &Netabase,
    h_events: &mut broadcast::Receiver<Event>,
    holding: Option<libp2p::kad::Record>,
) -> KadSwarm {
    let mut peer = raw::kad_swarm(keypair);
    let id = *peer.local_peer_id();
    peer.behaviour_mut()
        .set_mode(Some(libp2p::kad::Mode::Server));
    if let Some(record) = holding {
        libp2p::kad::store::RecordStore::put(peer.behaviour_mut().store_mut(), record).unwrap();
    }
    raw::kad_dial(&mut peer, h);
    tokio::time::timeout(NET_WAIT, async {
        loop {
            if let SwarmEvent::ConnectionEstablished { .. } = peer.select_next_some().await {
                return;
            }
        }
    })
    .await
    .expect("the raw peer connects");
    wait_for("H to see the raw peer", h_events, |e| {
        matches!(e, Event::PeerConnected(p) if *p == id).then_some(())
    })
    .await;
    peer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_peer_does_not_stall_get_record() {
    let dir = tempfile::tempdir().unwrap();
    let (v, h, mut h_events) = holder_and_reader(dir.path(), "one@x").await;
    // A peer that connects to H and then stops answering anything.
    let frozen = raw_server(&Keypair::generate_ed25519(), &h, &mut h_events, None).await;
    // From here `frozen` is never polled again: its connection stays open,
    // and H's requests to it go unanswered until they time out (10 s).

    for id in 0..3u64 {
        if id > 0 {
            v.put_record_locally(user(id + 1, &format!("{id}@x"), 1))
                .await
                .unwrap();
        }
        let key = if id == 0 { 1 } else { id + 1 };
        let got = tokio::time::timeout(Duration::from_secs(5), h.get_record::<User>(UserKey(key)))
            .await
            .expect("get_record waited for the frozen peer")
            .unwrap();
        assert_eq!(got.id, key);
    }
    h.shutdown().await.unwrap();
    v.shutdown().await.unwrap();
    drop(frozen);
}

/// An answer that comes after `get_record` returned is still checked: a
/// newer copy is kept, and the peer that answered with the older one gets
/// the newer back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_newer_answer_is_kept_and_written_back() {
    let dir = tempfile::tempdir().unwrap();
    let (v, h, mut h_events) = holder_and_reader(dir.path(), "old@x").await;
    // A slow peer holding a newer version, signed by its own key.
    let slow_key = Keypair::generate_ed25519();
    let newer = netabase::codec::Envelope::seal(
        &slow_key,
        &user(1, "new@x", 2),
        netabase::sync::Timestamp(now().0 + 1_000),
    )
    .unwrap();
    let record = libp2p::kad::Record::new(newer.record_key(), newer.as_bytes().to_vec());
    let mut slow = raw_server(&slow_key, &h, &mut h_events, Some(record)).await;

    // Unpolled, the slow peer cannot answer yet: H answers with V's copy.
    let got = tokio::time::timeout(Duration::from_secs(5), h.get_record::<User>(UserKey(1)))
        .await
        .expect("get_record waited for the slow peer")
        .unwrap();
    assert_eq!(got.email, "old@x");
    // Now it answers; H keeps the newer copy and sends it to V.
    let newest = newer.version();
    let settled = tokio::time::timeout(NET_WAIT, async {
        loop {
            tokio::select! {
                _ = slow.select_next_some() => {}
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
            if h.record_version::<User>(&UserKey(1)) == Some(newest)
                && v.record_version::<User>(&UserKey(1)) == Some(newest)
            {
                return;
            }
        }
    })
    .await;
    assert!(
        settled.is_ok(),
        "H holds {:?}, V holds {:?}",
        h.record_version::<User>(&UserKey(1)),
        v.record_version::<User>(&UserKey(1))
    );
    h.shutdown().await.unwrap();
    v.shutdown().await.unwrap();
}
