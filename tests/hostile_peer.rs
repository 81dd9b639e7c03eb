//! A plain rust-libp2p Kademlia peer, speaking netabase's protocol, sends
//! every kind of bad record to a node. Each is refused and counted, and the
//! good record under the same key stays as it was.

mod common;

use std::time::{Duration, Instant};

use common::*;
use libp2p::{Multiaddr, PeerId};
use netabase::codec::{record_key, Envelope};
use netabase::model::ModelId;
use netabase::node::{Netabase, NetabaseConfig, Rejection};
use netabase::store::Lookup;
use netabase::sync::Timestamp;
use netabase::{KeyEncode, Keypair, NetabaseModel};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_record_is_refused_counted_and_harmless() {
    let dir = tempfile::tempdir().unwrap();
    let node = Netabase::new_with_path(dir.path(), NetabaseConfig::loopback()).unwrap();
    node.register::<User>().unwrap();
    node.start_swarm().await.unwrap();
    let good = user(1, "ada@example.com", 36);
    let genuine = node.put_record_locally(good.clone()).await.unwrap();
    let key1 = record_key(User::ID, UserKey(1).to_key_bytes().as_slice());

    let hostile = Keypair::generate_ed25519();
    let mut swarm = raw::kad_swarm(&hostile);
    let address: Multiaddr = node.listen_addresses()[0].clone();
    swarm
        .behaviour_mut()
        .add_address(&node.peer_id(), address.clone());
    swarm.dial(address).unwrap();
    let target = node.peer_id();

    // 1. Garbage bytes.
    raw::push(
        &mut swarm,
        target,
        key1.clone(),
        b"\x01garbage that is no envelope".to_vec(),
        None,
    )
    .await;
    // 2. A valid envelope for user 1 stored under user 2's key.
    let theirs = Envelope::seal(&hostile, &user(1, "evil@x", 1), now()).unwrap();
    let key2 = record_key(User::ID, UserKey(2).to_key_bytes().as_slice());
    raw::push(&mut swarm, target, key2, theirs.as_bytes().to_vec(), None).await;
    // 3. An envelope whose key is not its record's key.
    let payload = netabase::codec::encode(&user(3, "evil3@x", 1)).unwrap();
    let lying = Envelope::seal_raw(
        &hostile,
        User::ID,
        UserKey(1).to_key_bytes().as_slice(),
        payload,
        now(),
        false,
    )
    .unwrap();
    raw::push(
        &mut swarm,
        target,
        key1.clone(),
        lying.as_bytes().to_vec(),
        None,
    )
    .await;
    // 4. The genuine record with one signature byte flipped.
    let mut bad_signature = genuine.as_bytes().to_vec();
    let last = bad_signature.len() - 1;
    bad_signature[last] ^= 0xff;
    raw::push(&mut swarm, target, key1.clone(), bad_signature, None).await;
    // 5. A forged writer: the genuine writer's key and signature on a changed
    //    record, and Kademlia's (unsigned) publisher field naming some peer.
    let forged = {
        let mut bytes = genuine.as_bytes().to_vec();
        let at = bytes
            .windows(b"ada@example.com".len())
            .position(|w| w == b"ada@example.com")
            .unwrap();
        bytes[at] = b'e';
        bytes
    };
    raw::push(
        &mut swarm,
        target,
        key1.clone(),
        forged.clone(),
        Some(PeerId::random()),
    )
    .await;
    // (Claiming to be the node itself: Kademlia drops it before we see it.)
    raw::push(
        &mut swarm,
        target,
        key1.clone(),
        forged,
        Some(node.peer_id()),
    )
    .await;
    // 6. An oversized value (under Kademlia's packet limit, over the record limit).
    raw::push(&mut swarm, target, key1.clone(), vec![1u8; 62 * 1024], None).await;
    // 7. A model the node does not know.
    let unknown =
        Envelope::seal_raw(&hostile, ModelId(0xdead_beef), b"k", vec![0], now(), false).unwrap();
    raw::push(
        &mut swarm,
        target,
        record_key(ModelId(0xdead_beef), b"k"),
        unknown.as_bytes().to_vec(),
        None,
    )
    .await;
    // 8. A record stamped ten minutes in the future.
    let ahead = Timestamp::new(now().millis() + 10 * 60 * 1000, 0);
    let future = Envelope::seal(&hostile, &user(4, "future@x", 1), ahead).unwrap();
    raw::push(
        &mut swarm,
        target,
        future.record_key(),
        future.as_bytes().to_vec(),
        None,
    )
    .await;

    let expected = [
        (Rejection::Malformed, 1),
        (Rejection::KeyMismatch, 2),
        (Rejection::BadSignature, 2),
        (Rejection::TooLarge, 1),
        (Rejection::UnknownModel, 1),
        (Rejection::FromTheFuture, 1),
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stats = node.stats();
        if expected
            .iter()
            .all(|(reason, n)| stats.rejected(*reason) == *n)
        {
            assert_eq!(stats.accepted, 0);
            assert_eq!(stats.rejected_total(), 8);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "counters never reached {expected:?}: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let users = node.store().tree::<User>();
    assert_eq!(users.get(&UserKey(1)).unwrap(), Some(good));
    assert_eq!(users.len().unwrap(), 1);
    assert!(users.by_email("evil@x").unwrap().is_none());
    node.stop_swarm().await.unwrap();
}
