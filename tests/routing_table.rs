//! What a connection makes a node tell others. A node hands the peers in
//! its routing table to every Kademlia query; a peer there that cannot be
//! reached makes each of those queries dial it and wait. A Kademlia client
//! (a browser tab) answers no queries and is reached only over the
//! connection it opened, so it must never be named; nor, once its
//! connection is gone, a server that listens nowhere.

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use libp2p::kad::{self, store::MemoryStore};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{identify, PeerId, Swarm};
use netabase::node::{Netabase, NetabaseConfig, IDENTIFY_PROTOCOL, KAD_PROTOCOL};
use netabase::Keypair;

/// A peer as netabase nodes see one: Kademlia and Identify.
#[derive(NetworkBehaviour)]
struct Visitor {
    kad: kad::Behaviour<MemoryStore>,
    identify: identify::Behaviour,
}

/// A peer that dials `node` and listens nowhere, in this Kademlia mode;
/// returns once it has told `node` who it is (Identify).
async fn visit(node: &Netabase, mode: kad::Mode) -> Swarm<Visitor> {
    let keypair = Keypair::generate_ed25519();
    let mut swarm = common::raw::tcp_swarm(&keypair, Duration::from_secs(60), |key| {
        let peer = key.public().to_peer_id();
        let mut kad = kad::Behaviour::with_config(
            peer,
            MemoryStore::new(peer),
            kad::Config::new(KAD_PROTOCOL),
        );
        kad.set_mode(Some(mode));
        Visitor {
            kad,
            identify: identify::Behaviour::new(identify::Config::new(
                IDENTIFY_PROTOCOL.into(),
                key.public(),
            )),
        }
    });
    swarm.dial(address_of(node)).unwrap();
    tokio::time::timeout(NET_WAIT, async {
        loop {
            if let SwarmEvent::Behaviour(VisitorEvent::Identify(identify::Event::Sent {
                peer_id,
                ..
            })) = swarm.select_next_some().await
            {
                if peer_id == node.peer_id() {
                    return;
                }
            }
        }
    })
    .await
    .expect("the visitor identified itself");
    swarm
}

/// A Kademlia peer asks `node` for the peers closest to `target`: whether
/// the answer made it dial `target`.
async fn named(asker: &mut Swarm<kad::Behaviour<MemoryStore>>, target: PeerId) -> bool {
    let mut dialled = false;
    asker.behaviour_mut().get_closest_peers(target);
    tokio::time::timeout(NET_WAIT, async {
        loop {
            match asker.select_next_some().await {
                SwarmEvent::Dialing {
                    peer_id: Some(peer),
                    ..
                } if peer == target => dialled = true,
                SwarmEvent::Behaviour(kad::Event::OutboundQueryProgressed {
                    result: kad::QueryResult::GetClosestPeers(_),
                    step,
                    ..
                }) if step.last => return,
                _ => {}
            }
        }
    })
    .await
    .expect("the query ended");
    dialled
}

/// The asker, connected to `node`.
fn asker(node: &Netabase) -> Swarm<kad::Behaviour<MemoryStore>> {
    let mut asker = raw::kad_swarm(&Keypair::generate_ed25519());
    raw::kad_dial(&mut asker, node);
    asker
}

/// Asks until `node` no longer names `target` (bounded), then three more
/// times: it stays unnamed.
async fn until_unnamed(node: &Netabase, target: PeerId) {
    let mut asker = asker(node);
    let mut asked = 0;
    tokio::time::timeout(NET_WAIT, async {
        loop {
            asked += 1;
            if !named(&mut asker, target).await {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("still named after {asked} queries"));
    for _ in 0..3 {
        assert!(!named(&mut asker, target).await, "named again");
    }
}

async fn node(dir: &std::path::Path) -> Netabase {
    let node = Netabase::new_with_path(dir, NetabaseConfig::loopback()).unwrap();
    node.start_swarm().await.unwrap();
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kademlia_client_is_never_handed_to_others() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path()).await;
    let client = visit(&node, kad::Mode::Client).await;
    let id = *client.local_peer_id();
    // Its connection stays open while others ask.
    until_unnamed(&node, id).await;
    drop(client);
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_listens_nowhere_is_forgotten_with_its_connection() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path()).await;
    let server = visit(&node, kad::Mode::Server).await;
    let id = *server.local_peer_id();
    drop(server);
    until_unnamed(&node, id).await;
    node.shutdown().await.unwrap();
}
