//! A frozen peer (a suspended process keeps its connections open and never
//! answers) does not stall reads or writes: `get_record` returns once it
//! holds a valid copy and a short grace period for the other answers has
//! passed, and `put_record` once its quorum is met (with the default
//! quorum, once the other peers answered or a grace period has passed).
//! The frozen and slow peers of the get tests serve the catch-up protocol,
//! whose `Fetch` is what `get_record` asks peers with; the frozen peer of
//! the put tests is a node whose runtime is blocked, then let go, to show
//! that it still gets what was written meanwhile.

mod common;

use std::time::Duration;

use common::freezable::Freezable;
use common::*;
use futures::StreamExt;
use libp2p::request_response;
use libp2p::swarm::SwarmEvent;
use netabase::node::{Event, Netabase, WriteQuorum};
use netabase::Keypair;
use tokio::sync::broadcast;

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

/// A raw catch-up peer connected to H (which asks it in every get: it is
/// one of H's few connected peers); it answers only while the caller
/// polls it.
async fn raw_peer(h: &Netabase, h_events: &mut broadcast::Receiver<Event>) -> raw::SyncSwarm {
    let mut peer = raw::sync_swarm(true, Duration::from_secs(60));
    let id = *peer.local_peer_id();
    raw::sync_connect(&mut peer, h).await;
    wait_for("H to see the raw peer", h_events, |e| {
        matches!(e, Event::PeerConnected(p) if *p == id).then_some(())
    })
    .await;
    peer
}

/// Answers the fetches `peer` receives with `held` (its record key and
/// envelope), and nothing for other keys.
fn serve(peer: &mut raw::SyncSwarm, event: SwarmEvent<RrEvent>, held: &(Vec<u8>, Vec<u8>)) {
    if let SwarmEvent::Behaviour(request_response::Event::Message {
        message:
            request_response::Message::Request {
                request: raw::SyncRequest::Fetch(keys),
                channel,
                ..
            },
        ..
    }) = event
    {
        let records = keys
            .iter()
            .map(|key| {
                if *key == held.0 {
                    held.1.clone()
                } else {
                    Vec::new()
                }
            })
            .collect();
        let _ = peer
            .behaviour_mut()
            .send_response(channel, raw::SyncResponse::Records(records));
    }
}

type RrEvent = request_response::Event<raw::SyncRequest, raw::SyncResponse>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_peer_does_not_stall_get_record() {
    let dir = tempfile::tempdir().unwrap();
    let (v, h, mut h_events) = holder_and_reader(dir.path(), "one@x").await;
    // A peer that serves the catch-up protocol, connects to H and then
    // stops answering anything.
    let frozen = raw_peer(&h, &mut h_events).await;
    // From here `frozen` is never polled again: its connection stays open,
    // and H's requests to it go unanswered until they time out (30 s).

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
    let held = (newer.record_key(), newer.as_bytes().to_vec());
    let mut slow = raw_peer(&h, &mut h_events).await;

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
                event = slow.select_next_some() => serve(&mut slow, event, &held),
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

/// H writes to V and F; F freezes. Each write returns in at most twice
/// the healthy time plus the grace period (and well before any timeout:
/// waiting for F would take `query_timeout`, 30 s); F holds every write
/// once it is let go and catches up.
async fn a_frozen_peer_does_not_stall(quorum: WriteQuorum) {
    let dir = tempfile::tempdir().unwrap();
    let (v, _) = start(&dir.path().join("v"), &[]).await;
    let f_dir = dir.path().join("f");
    let f = Freezable::start(async move { start(&f_dir, &[]).await.0 }).await;
    let (h, mut h_events) = start_with(&dir.path().join("h"), &[&v, &f.node], |c| {
        c.write_quorum = quorum;
    })
    .await;
    let mut connected = std::collections::HashSet::new();
    while connected.len() < 2 {
        let peer = wait_for("H to reach V and F", &mut h_events, |e| match e {
            Event::PeerConnected(p) => Some(*p),
            _ => None,
        })
        .await;
        if peer == v.peer_id() || peer == f.node.peer_id() {
            connected.insert(peer);
        }
    }
    let grace = netabase::node::NetabaseConfig::default().write_grace;

    let mut healthy = Duration::ZERO;
    for id in 0..3u64 {
        let started = std::time::Instant::now();
        let published = h.put_record(user(id, &format!("{id}@x"), 1)).await.unwrap();
        healthy = healthy.max(started.elapsed());
        assert!(published.replicated);
    }

    let thaw = f.freeze();
    // Slack for a loaded machine; still far below a 30 s timeout.
    let bound = 2 * healthy + grace + Duration::from_secs(2);
    for id in 3..6u64 {
        let started = std::time::Instant::now();
        let published = tokio::time::timeout(
            Duration::from_secs(10),
            h.put_record(user(id, &format!("{id}@x"), 1)),
        )
        .await
        .expect("put_record waited for the frozen peer")
        .unwrap();
        let took = started.elapsed();
        assert!(published.replicated, "V stored it");
        assert!(
            took <= bound,
            "put {id} took {took:?} with a frozen peer ({healthy:?} healthy, bound {bound:?})"
        );
    }
    // V acknowledged each on receipt; it stores them a moment later.
    let stored = tokio::time::timeout(NET_WAIT, async {
        while !(3..6).all(|id| v.record_version::<User>(&UserKey(id)).is_some()) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(stored.is_ok(), "V holds what H wrote during the freeze");

    // F is let go and catches up: nothing written meanwhile is lost.
    thaw.send(()).unwrap();
    let node = f.node.clone();
    let caught_up = f
        .runtime
        .spawn(async move {
            tokio::time::timeout(NET_WAIT, async {
                loop {
                    let _ = node.catch_up_and_wait().await;
                    if (0..6).all(|id| node.record_version::<User>(&UserKey(id)).is_some()) {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
            .await
        })
        .await
        .unwrap();
    assert!(caught_up.is_ok(), "F holds every record after it resumed");
    for id in 0..6 {
        assert_eq!(
            f.node.record_version::<User>(&UserKey(id)),
            h.record_version::<User>(&UserKey(id))
        );
    }
    h.shutdown().await.unwrap();
    v.shutdown().await.unwrap();
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_peer_does_not_stall_put_record_available() {
    a_frozen_peer_does_not_stall(WriteQuorum::Available).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_peer_does_not_stall_put_record_at_least_one() {
    a_frozen_peer_does_not_stall(WriteQuorum::AtLeast(std::num::NonZeroUsize::MIN)).await;
}
