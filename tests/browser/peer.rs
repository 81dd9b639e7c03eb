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

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use libp2p::kad::{self, store::MemoryStore, store::RecordStore, Record, RecordKey};
use libp2p::{noise, yamux, Multiaddr};
use netabase::codec::{record_key, Envelope};
use netabase::node::{Netabase, NetabaseConfig};
use netabase::{KeyEncode, Keypair, Lookup, NetabaseModel};
use netabase_workspace::models::{Item, ItemKey, ItemQueries};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The key of the forged record the hostile peer serves.
const FORGED_ID: u64 = 666;

#[tokio::main]
async fn main() {
    let dir = std::env::args().nth(1).expect("usage: browser-test-peer <data dir>");
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
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    // The rest of the head: nothing in it matters here.
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).await? <= 2 {
            break;
        }
    }
    let target = line.split_whitespace().nth(1).unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let args: HashMap<&str, String> = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k, unescape(v)))
        .collect();
    let number = |name: &str| args.get(name).and_then(|v| v.parse::<u64>().ok());
    let text = |name: &str| args.get(name).cloned().unwrap_or_default();
    let (status, body) = match path {
        "/put" => {
            let item = Item {
                id: number("id").unwrap_or(0),
                list: text("list"),
                text: text("text"),
            };
            match node.put_record(item).await {
                Ok(_) => (200, "ok".to_string()),
                Err(error) => (500, error.to_string()),
            }
        }
        "/delete" => match node.remove_record::<Item>(ItemKey(number("id").unwrap_or(0))).await {
            Ok(held) => (200, held.to_string()),
            Err(error) => (500, error.to_string()),
        },
        "/get" => {
            let id = number("id").unwrap_or(0);
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
            let list = text("list");
            match node
                .query_local_records::<Item, _, _>(move |tree| tree.by_list(list.as_str()))
                .await
            {
                Ok(items) => (200, items.len().to_string()),
                Err(error) => (500, error.to_string()),
            }
        }
        "/fingerprint" => (200, format!("{:?}", node.sync_fingerprint())),
        "/seed" => {
            let from = number("from").unwrap_or(0);
            let count = number("count").unwrap_or(0);
            let list = text("list");
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
        _ => (404, format!("no such call: {path}")),
    };
    let reason = if status == 200 { "OK" } else { "Not OK" };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nAccess-Control-Allow-Origin: *\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = reader.into_inner();
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// `%XX` and `+` in a query value.
fn unescape(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match value
                    .get(i + 1..i + 3)
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
