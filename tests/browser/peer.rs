//! The native side of the browser tests, started by `tests/browser/run`:
//!
//! - a Netabase node listening on WebSocket on 127.0.0.1, with `Item`
//!   registered: what the browser node syncs with;
//! - a hostile Kademlia peer (raw libp2p, also on WebSocket) holding one
//!   `Item` whose signature is broken: what the browser must refuse;
//! - a small HTTP control API on 127.0.0.1, which the browser test calls to
//!   make the native node write, delete and report what it holds.
//!
//! It prints `NODE <address>`, `HOSTILE <address>` and `CONTROL <url>`, then
//! `READY`, and runs until `/quit` or its stdin closes.
//!
//! Control calls (GET, answers are plain text, `Access-Control-Allow-Origin: *`):
//! `/put?id=N&list=L&text=T`, `/delete?id=N`, `/get?id=N` (`list|text`, or
//! 404), `/count?list=L` (by the secondary index), `/fingerprint`,
//! `/seed?from=N&count=K&list=L` (K records written locally, for catch-up),
//! `/quit`.

use std::time::Duration;

use futures::StreamExt;
use libp2p::kad::{self, store::MemoryStore, store::RecordStore, Record, RecordKey};
use libp2p::{noise, yamux, Multiaddr};
use netabase::codec::{record_key, Envelope};
use netabase::node::{Netabase, NetabaseConfig};
use netabase::{KeyEncode, Keypair, Lookup, NetabaseModel};
use netabase_workspace::models::{Item, ItemKey, ItemQueries};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

#[path = "../../examples/browser/http.rs"]
mod http;

/// The key of the forged record the hostile peer serves.
const FORGED_ID: u64 = 666;

#[tokio::main]
async fn main() {
    let dir = std::env::args()
        .nth(1)
        .expect("usage: browser-test-peer <data dir>");
    let config = NetabaseConfig {
        listen_addresses: vec!["/ip4/127.0.0.1/tcp/0/ws".parse().unwrap()],
        ..NetabaseConfig::default()
    };
    let node = Netabase::new_with_path(&dir, config).expect("open the native node");
    node.register::<Item>().unwrap();
    node.start_swarm().await.unwrap();
    println!("NODE {}", node.addresses()[0]);

    let hostile = hostile_peer().await;
    println!("HOSTILE {hostile}");

    let control = TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("CONTROL http://{}", control.local_addr().unwrap());
    println!("READY");

    let (quit_tx, mut quit) = tokio::sync::mpsc::channel::<()>(1);
    // A closed stdin (the script ended) stops the peer too.
    let stdin_quit = quit_tx.clone();
    tokio::spawn(async move {
        let mut sink = Vec::new();
        let _ = tokio::io::stdin().read_to_end(&mut sink).await;
        let _ = stdin_quit.send(()).await;
    });
    loop {
        tokio::select! {
            _ = quit.recv() => break,
            accepted = control.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let node = node.clone();
                let quit = quit_tx.clone();
                tokio::spawn(async move {
                    if let Err(error) = serve(stream, &node, &quit).await {
                        eprintln!("control: {error}");
                    }
                });
            }
        }
    }
    node.shutdown().await.unwrap();
}

/// A raw Kademlia server on WebSocket holding one forged `Item`: the
/// genuine envelope of a record it signed, with its signature's last byte
/// flipped.
async fn hostile_peer() -> Multiaddr {
    let keypair = Keypair::generate_ed25519();
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair.clone())
        .with_tokio()
        .with_websocket(noise::Config::new, yamux::Config::default)
        .await
        .unwrap()
        .with_behaviour(|key| {
            let peer = key.public().to_peer_id();
            let config = kad::Config::new(netabase::node::KAD_PROTOCOL);
            let mut kad = kad::Behaviour::with_config(peer, MemoryStore::new(peer), config);
            kad.set_mode(Some(kad::Mode::Server));
            kad
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
        .build();
    let item = Item {
        id: FORGED_ID,
        list: "forged".into(),
        text: "signed by nobody".into(),
    };
    let now = netabase::sync::Timestamp::new(unix_millis(), 0);
    let genuine = Envelope::seal(&keypair, &item, now).unwrap();
    let mut forged = genuine.as_bytes().to_vec();
    let last = forged.len() - 1;
    forged[last] ^= 0xff;
    let key = record_key(Item::ID, ItemKey(FORGED_ID).to_key_bytes().as_slice());
    swarm
        .behaviour_mut()
        .store_mut()
        .put(Record::new(RecordKey::new(&key), forged))
        .unwrap();
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0/ws".parse().unwrap())
        .unwrap();
    let peer = *swarm.local_peer_id();
    let address = loop {
        if let libp2p::swarm::SwarmEvent::NewListenAddr { address, .. } =
            swarm.select_next_some().await
        {
            break address;
        }
    };
    tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    address.with(libp2p::multiaddr::Protocol::P2p(peer))
}

fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Answers one control request.
async fn serve(
    stream: TcpStream,
    node: &Netabase,
    quit: &tokio::sync::mpsc::Sender<()>,
) -> std::io::Result<()> {
    let request = http::Request::read(stream).await?;
    let number = |name: &str| request.number(name).unwrap_or(0);
    let (status, body) = match request.path.as_str() {
        "/put" => {
            let item = Item {
                id: number("id"),
                list: request.text("list"),
                text: request.text("text"),
            };
            match node.put_record(item).await {
                Ok(_) => (200, "ok".to_string()),
                Err(error) => (500, error.to_string()),
            }
        }
        "/delete" => match node.remove_record::<Item>(ItemKey(number("id"))).await {
            Ok(held) => (200, held.to_string()),
            Err(error) => (500, error.to_string()),
        },
        "/get" => {
            let id = number("id");
            match node
                .query_local_records::<Item, _, _>(move |tree| tree.get(&ItemKey(id)))
                .await
            {
                Ok(Some(item)) => (200, format!("{}|{}", item.list, item.text)),
                Ok(None) => (404, "missing".to_string()),
                Err(error) => (500, error.to_string()),
            }
        }
        "/count" => {
            let list = request.text("list");
            match node
                .query_local_records::<Item, _, _>(move |tree| tree.by_list(list.as_str()))
                .await
            {
                Ok(items) => (200, items.len().to_string()),
                Err(error) => (500, error.to_string()),
            }
        }
        "/fingerprint" => (200, format!("{:?}", node.sync_fingerprint().unwrap())),
        "/seed" => {
            let (from, count, list) = (number("from"), number("count"), request.text("list"));
            let mut result = (200, count.to_string());
            for id in from..from + count {
                let item = Item {
                    id,
                    list: list.clone(),
                    text: format!("seeded {id}"),
                };
                if let Err(error) = node.put_record_locally(item).await {
                    result = (500, error.to_string());
                    break;
                }
            }
            result
        }
        "/quit" => {
            let _ = quit.send(()).await;
            (200, "bye".to_string())
        }
        path => (404, format!("no such call: {path}")),
    };
    request.respond(status, "text/plain", body.as_bytes()).await
}
