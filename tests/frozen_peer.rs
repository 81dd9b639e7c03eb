//! A frozen peer (a suspended process keeps its connections open and never
//! answers) does not stall reads: `get_record` returns once it holds a
//! valid copy and a short grace period for the other answers has passed.

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use netabase::node::Event;
use netabase::Keypair;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_peer_does_not_stall_get_record() {
    let dir = tempfile::tempdir().unwrap();
    let (v, _) = start(&dir.path().join("v"), &[]).await;
    v.put_record_locally(user(1, "one@x", 1)).await.unwrap();
    let (h, mut h_events) = start_with(&dir.path().join("h"), &[&v], |c| c.catch_up = false).await;
    let holder = v.peer_id();
    wait_for("H to reach V", &mut h_events, |e| {
        matches!(e, Event::PeerConnected(p) if *p == holder).then_some(())
    })
    .await;

    // A peer that connects to H and then stops answering anything.
    let mut frozen = raw::kad_swarm(&Keypair::generate_ed25519());
    let frozen_id = *frozen.local_peer_id();
    // A server: H keeps it in its routing table and asks it in queries.
    frozen
        .behaviour_mut()
        .set_mode(Some(libp2p::kad::Mode::Server));
    raw::kad_dial(&mut frozen, &h);
    tokio::time::timeout(NET_WAIT, async {
        loop {
            if let SwarmEvent::ConnectionEstablished { .. } = frozen.select_next_some().await {
                return;
            }
        }
    })
    .await
    .expect("the frozen peer connects");
    wait_for("H to see the frozen peer", &mut h_events, |e| {
        matches!(e, Event::PeerConnected(p) if *p == frozen_id).then_some(())
    })
    .await;
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
    let (v, _) = start(&dir.path().join("v"), &[]).await;
    v.put_record_locally(user(1, "old@x", 1)).await.unwrap();
    let (h, mut h_events) = start_with(&dir.path().join("h"), &[&v], |c| c.catch_up = false).await;
    let holder = v.peer_id();
    wait_for("H to reach V", &mut h_events, |e| {
        matches!(e, Event::PeerConnected(p) if *p == holder).then_some(())
    })
    .await;

    // A slow peer holding a newer version, signed by its own key.
    let slow_key = Keypair::generate_ed25519();
    let newer = netabase::codec::Envelope::seal(
        &slow_key,
        &user(1, "new@x", 2),
        netabase::sync::Timestamp(now().0 + 1_000),
    )
    .unwrap();
    let mut slow = raw::kad_swarm(&slow_key);
    let slow_id = *slow.local_peer_id();
    slow.behaviour_mut()
        .set_mode(Some(libp2p::kad::Mode::Server));
    libp2p::kad::store::RecordStore::put(
        slow.behaviour_mut().store_mut(),
        libp2p::kad::Record::new(newer.record_key(), newer.as_bytes().to_vec()),
    )
    .unwrap();
    raw::kad_dial(&mut slow, &h);
    tokio::time::timeout(NET_WAIT, async {
        loop {
            if let SwarmEvent::ConnectionEstablished { .. } = slow.select_next_some().await {
                return;
            }
        }
    })
    .await
    .expect("the slow peer connects");
    wait_for("H to see the slow peer", &mut h_events, |e| {
        matches!(e, Event::PeerConnected(p) if *p == slow_id).then_some(())
    })
    .await;

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
