//! The native side of the browser tests, started by `tests/browser/run`:
//!
//! - a Netabase node listening on WebSocket on 127.0.0.1, with `Item`
//!   registered: what the browser node syncs with;
//! - a hostile Kademlia peer (raw libp2p, also on WebSocket) holding one
//!   `Item` whose signature is broken: what the browser must refuse;
//! - a relay (a second node, on WebSocket, no model registered): tabs
//!   hold slots on it and reach each other through it;
//! - a small HTTP control API on 127.0.0.1, which the browser test calls to
//!   make the native node write, delete and report what it holds.
//!
//! It prints `NODE <address>`, `HOSTILE <address>`, `RELAY <address>` and
//! `CONTROL <url>`, then `READY`, and runs until `/quit` or its stdin closes.
//!
//! Control calls (GET, answers are plain text, `Access-Control-Allow-Origin: *`):
//! `/put?id=N&list=L&text=T`, `/delete?id=N`, `/get?id=N` (`list|text`, or
//! 404), `/count?list=L` (by the secondary index), `/fingerprint`,
//! `/seed?from=N&count=K&list=L` (K records written locally, for catch-up),
//! `/quit`.

use std::time::Duration;

use futures::StreamExt;
use libp2p::kad::{self, store::MemoryStore, store::RecordStore, Record, RecordKey};
use libp2p::{noise, request_response, yamux, Multiaddr};
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

    // Holds no records: whatever two tabs sync through it, they sync from
    // each other.
    let relay = Netabase::new_in_memory(NetabaseConfig {
        listen_addresses: vec!["/ip4/127.0.0.1/tcp/0/ws".parse().unwrap()],
        relay: Some(netabase::node::RelayLimits::default()),
        ..NetabaseConfig::default()
    })
    .expect("open the relay");
    relay.start_swarm().await.unwrap();
    println!("RELAY {}", relay.addresses()[0]);

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
    relay.shutdown().await.unwrap();
    node.shutdown().await.unwrap();
}

/// A raw peer on WebSocket holding one forged `Item` (the genuine envelope
/// of a record it signed, with its signature's last byte flipped): a
/// Kademlia server that routes, and a catch-up peer that answers every
/// `Fetch` with the forged copy (`get_record` asks for records there) and
/// every reconciliation with nothing.
async fn hostile_peer() -> Multiaddr {
    let keypair = Keypair::generate_ed25519();
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
            let sync = request_response::Behaviour::with_codec(
                hostile::Codec,
                [(
                    netabase::node::SYNC_PROTOCOL,
                    request_response::ProtocolSupport::Full,
                )],
                request_response::Config::default(),
            );
            hostile::Behaviour { kad, sync }
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
        .build();
    let key = record_key(Item::ID, ItemKey(FORGED_ID).to_key_bytes().as_slice());
    swarm
        .behaviour_mut()
        .kad
        .store_mut()
        .put(Record::new(RecordKey::new(&key), forged.clone()))
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
            if let libp2p::swarm::SwarmEvent::Behaviour(hostile::BehaviourEvent::Sync(
                request_response::Event::Message {
                    message:
                        request_response::Message::Request {
                            request, channel, ..
                        },
                    ..
                },
            )) = swarm.select_next_some().await
            {
                let response = match request {
                    hostile::Request::Fetch => hostile::Response::Records(vec![forged.clone()]),
                    hostile::Request::Reconcile => hostile::Response::Reconcile(
                        netabase::sync::reconcile::Watermarks::default(),
                        Vec::new(),
                    ),
                };
                let _ = swarm.behaviour_mut().sync.send_response(channel, response);
            }
        }
    });
    address.with(libp2p::multiaddr::Protocol::P2p(peer))
}

/// The hostile peer's behaviour and its side of the catch-up protocol.
mod hostile {
    use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    use libp2p::swarm::NetworkBehaviour;
    use libp2p::{kad, request_response, StreamProtocol};
    use netabase::sync::reconcile::{Part, Watermarks};

    #[derive(NetworkBehaviour)]
    pub struct Behaviour {
        pub kad: kad::Behaviour<kad::store::MemoryStore>,
        pub sync: request_response::Behaviour<Codec>,
    }

    /// What was asked: the request's variant is all this peer reads.
    #[derive(Debug)]
    pub enum Request {
        Reconcile,
        Fetch,
    }

    /// The node's catch-up response, variant for variant.
    #[derive(Debug, bincode::Encode)]
    pub enum Response {
        Reconcile(Watermarks, Vec<Part>),
        Records(Vec<Vec<u8>>),
    }

    /// The node's framing: a 4-byte big-endian length, then bincode.
    #[derive(Clone, Default)]
    pub struct Codec;

    fn invalid(what: &str) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
    }

    #[async_trait::async_trait]
    impl request_response::Codec for Codec {
        type Protocol = StreamProtocol;
        type Request = Request;
        type Response = Response;

        async fn read_request<T: AsyncRead + Unpin + Send>(
            &mut self,
            _: &StreamProtocol,
            io: &mut T,
        ) -> std::io::Result<Request> {
            let mut len = [0u8; 4];
            io.read_exact(&mut len).await?;
            let len = u32::from_be_bytes(len) as usize;
            if len > 16 * 1024 * 1024 {
                return Err(invalid("a request too large"));
            }
            let mut bytes = vec![0u8; len];
            io.read_exact(&mut bytes).await?;
            // bincode writes the variant's index first.
            match bytes.first() {
                Some(0) => Ok(Request::Reconcile),
                Some(1) => Ok(Request::Fetch),
                _ => Err(invalid("not a catch-up request")),
            }
        }

        async fn read_response<T: AsyncRead + Unpin + Send>(
            &mut self,
            _: &StreamProtocol,
            _: &mut T,
        ) -> std::io::Result<Response> {
            Err(invalid("this peer asks nothing"))
        }

        async fn write_request<T: AsyncWrite + Unpin + Send>(
            &mut self,
            _: &StreamProtocol,
            _: &mut T,
            _: Request,
        ) -> std::io::Result<()> {
            Err(invalid("this peer asks nothing"))
        }

        async fn write_response<T: AsyncWrite + Unpin + Send>(
            &mut self,
            _: &StreamProtocol,
            io: &mut T,
            response: Response,
        ) -> std::io::Result<()> {
            let bytes = bincode::encode_to_vec(&response, bincode::config::standard())
                .map_err(|_| invalid("encode a response"))?;
            io.write_all(&(bytes.len() as u32).to_be_bytes()).await?;
            io.write_all(&bytes).await?;
            io.close().await
        }
    }
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
