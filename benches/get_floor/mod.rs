//! `dht_get_paired`'s floors: a get as raw rust-libp2p request-response
//! round trips of the bytes netabase's get moves (a request naming one
//! key, an answer carrying its envelope or nothing), on netabase's
//! transport and framing (`net::RawCodec`).
//!
//! Three peers, A, B and C, each driven in its own task and asked through
//! a channel, as a node's swarm is; C is connected to A and B.
//!
//! Peers hold values in memory ([`Held::Memory`]) or, as a node does, in a
//! redb file each ([`Held::Disk`]): then a peer answers with one read of
//! its file, and a get first looks in the asker's own file (a node answers
//! a record it holds without asking anyone), both from a blocking task.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use redb::ReadableDatabase;

use futures::StreamExt;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::{PeerId, StreamProtocol, Swarm};
use netabase::Keypair;
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::net::{bounded, raw_swarm_with, RawCodec, RawResponse};

/// The floors' protocol.
const PROTOCOL: StreamProtocol = StreamProtocol::new("/bench/get/1.0.0");

type RrSwarm = Swarm<request_response::Behaviour<RawCodec>>;

/// The table a disk-backed floor peer holds its values in.
const HELD: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("held");

/// Where floor peers hold values.
pub enum Held {
    /// A map in memory.
    Memory(Mutex<HashMap<Vec<u8>, Vec<u8>>>),
    /// A redb file, written durably.
    Disk(redb::Database),
}

impl Held {
    /// Peers holding values in memory.
    pub fn memory() -> impl Fn(usize) -> Held {
        |_| Held::Memory(Mutex::default())
    }

    /// Peers holding values in `dir/<peer>.redb`.
    pub fn disk(dir: &Path) -> impl Fn(usize) -> Held + '_ {
        move |peer| {
            let db = redb::Database::create(dir.join(format!("{peer}.redb"))).expect("create a db");
            let txn = db.begin_write().expect("a write");
            txn.open_table(HELD).expect("the table");
            txn.commit().expect("commit");
            Held::Disk(db)
        }
    }

    fn insert(&self, key: Vec<u8>, value: Vec<u8>) {
        match self {
            Held::Memory(map) => {
                map.lock().expect("not poisoned").insert(key, value);
            }
            Held::Disk(db) => {
                let txn = db.begin_write().expect("a write");
                txn.open_table(HELD)
                    .expect("the table")
                    .insert(key.as_slice(), value.as_slice())
                    .expect("insert");
                txn.commit().expect("commit");
            }
        }
    }

    /// The values held for `keys` (empty: not held), as a node's `records_for`.
    fn lookup(&self, keys: &[Vec<u8>]) -> RawResponse {
        match self {
            Held::Memory(map) => {
                let map = map.lock().expect("not poisoned");
                keys.iter()
                    .map(|key| map.get(key).cloned().unwrap_or_default())
                    .collect()
            }
            Held::Disk(db) => {
                let txn = db.begin_read().expect("a read");
                let table = txn.open_table(HELD).expect("the table");
                keys.iter()
                    .map(|key| {
                        let value = table.get(key.as_slice()).expect("a get");
                        value.map(|v| v.value().to_vec()).unwrap_or_default()
                    })
                    .collect()
            }
        }
    }
}

/// What a floor peer is asked to do.
pub enum Command {
    /// Hold `value` under `key`: answered to requests from now on.
    Hold(Vec<u8>, Vec<u8>, oneshot::Sender<()>),
    /// Ask `peers` for `key`; the reply, once every one has answered, is
    /// the first copy any of them sent.
    Get(Vec<PeerId>, Vec<u8>, oneshot::Sender<Option<Vec<u8>>>),
}

/// A floor peer: its id, its commands, and its task.
pub struct Peer {
    pub id: PeerId,
    pub commands: mpsc::UnboundedSender<Command>,
    _task: JoinHandle<()>,
}

impl Peer {
    /// Has this peer hold `value` under `key`, and waits until it does.
    pub async fn hold(&self, key: Vec<u8>, value: Vec<u8>) {
        let (ack, acked) = oneshot::channel();
        self.commands
            .send(Command::Hold(key, value, ack))
            .expect("the floor peer is running");
        bounded("a floor peer to hold a record", acked)
            .await
            .expect("the floor peer acknowledges");
    }

    /// Asks `peers` for `key` through this peer's task.
    pub async fn get(&self, peers: Vec<PeerId>, key: Vec<u8>) -> Option<Vec<u8>> {
        let (reply, found) = oneshot::channel();
        self.commands
            .send(Command::Get(peers, key, reply))
            .expect("the floor peer is running");
        bounded("a floor get", found)
            .await
            .expect("the floor peer answers")
    }
}

/// `[A, B, C]`, C connected to A and B, peer `i` holding in `held(i)`.
/// With `blocking`, peers answer from a blocking task and send the answer
/// back through their loop, as a node answers a fetch; otherwise inside
/// the swarm's poll.
pub async fn network(rt: &Runtime, blocking: bool, held: impl Fn(usize) -> Held) -> [Peer; 3] {
    let mut swarms: Vec<RrSwarm> = (0..3).map(|_| swarm()).collect();
    let mut addresses = Vec::new();
    for swarm in &mut swarms[..2] {
        addresses.push(crate::raw_listen(swarm).await);
    }
    let mut c = swarms.pop().expect("three swarms");
    let b = swarms.pop().expect("three swarms");
    let a = swarms.pop().expect("three swarms");
    let a = spawn(rt, a, blocking, held(0));
    let b = spawn(rt, b, blocking, held(1));
    for address in addresses {
        c.dial(address).expect("dial");
    }
    bounded("C to connect to A and B", async {
        let mut connected = 0;
        while connected < 2 {
            if let SwarmEvent::ConnectionEstablished { .. } = c.select_next_some().await {
                connected += 1;
            }
        }
    })
    .await;
    [a, b, spawn(rt, c, blocking, held(2))]
}

fn swarm() -> RrSwarm {
    raw_swarm_with(&Keypair::generate_ed25519(), |_| {
        request_response::Behaviour::with_codec(
            RawCodec,
            [(PROTOCOL, ProtocolSupport::Full)],
            request_response::Config::default(),
        )
    })
}

fn spawn(rt: &Runtime, swarm: RrSwarm, blocking: bool, held: Held) -> Peer {
    let id = *swarm.local_peer_id();
    let (commands, rx) = mpsc::unbounded_channel();
    let task = rt.spawn(drive(swarm, rx, blocking, Arc::new(held)));
    Peer {
        id,
        commands,
        _task: task,
    }
}

/// Where a get's copy goes.
type Reply = oneshot::Sender<Option<Vec<u8>>>;
/// A get in flight: answers still awaited, the first copy, the caller.
type Get = (usize, Option<Vec<u8>>, Reply);

/// Drives a floor peer until its command sender is dropped.
async fn drive(
    mut swarm: RrSwarm,
    mut commands: mpsc::UnboundedReceiver<Command>,
    blocking: bool,
    held: Arc<Held>,
) {
    // Gets whose asker looked in its own file first, to send now.
    let (looked_tx, mut looked) = mpsc::unbounded_channel::<(Vec<PeerId>, Vec<u8>, Reply)>();
    let (answered_tx, mut answered) =
        mpsc::unbounded_channel::<(ResponseChannel<RawResponse>, RawResponse)>();
    let mut requests: HashMap<OutboundRequestId, u64> = HashMap::new();
    let mut gets: HashMap<u64, Get> = HashMap::new();
    let mut next = 0u64;
    loop {
        tokio::select! {
            event = swarm.select_next_some() => {
                let SwarmEvent::Behaviour(event) = event else { continue };
                let (request_id, copy) = match event {
                    request_response::Event::Message {
                        message: request_response::Message::Request { request, channel, .. },
                        ..
                    } => {
                        if blocking {
                            let held = held.clone();
                            let tx = answered_tx.clone();
                            tokio::task::spawn_blocking(move || {
                                let _ = tx.send((channel, held.lookup(&request)));
                            });
                        } else {
                            let response = held.lookup(&request);
                            let _ = swarm.behaviour_mut().send_response(channel, response);
                        }
                        continue;
                    }
                    request_response::Event::Message {
                        message: request_response::Message::Response { request_id, response },
                        ..
                    } => (request_id, response.into_iter().next().filter(|v| !v.is_empty())),
                    request_response::Event::OutboundFailure { request_id, .. } => (request_id, None),
                    _ => continue,
                };
                let Some(get) = requests.remove(&request_id) else { continue };
                if let Some((waiting, found, _)) = gets.get_mut(&get) {
                    *waiting -= 1;
                    if found.is_none() {
                        *found = copy;
                    }
                    if *waiting == 0 {
                        if let Some((_, found, reply)) = gets.remove(&get) {
                            let _ = reply.send(found);
                        }
                    }
                }
            }
            Some((channel, response)) = answered.recv() => {
                let _ = swarm.behaviour_mut().send_response(channel, response);
            }
            command = commands.recv() => match command {
                None => break,
                Some(Command::Hold(key, value, ack)) => {
                    let held = held.clone();
                    tokio::task::spawn_blocking(move || {
                        held.insert(key, value);
                        let _ = ack.send(());
                    });
                }
                Some(Command::Get(peers, key, reply)) if matches!(*held, Held::Disk(_)) => {
                    // Its own file first, from a blocking task, as a node.
                    let held = held.clone();
                    let tx = looked_tx.clone();
                    tokio::task::spawn_blocking(move || {
                        let own = held.lookup(std::slice::from_ref(&key));
                        assert!(own.iter().all(Vec::is_empty), "C holds no value");
                        let _ = tx.send((peers, key, reply));
                    });
                }
                Some(Command::Get(peers, key, reply)) => {
                    next += 1;
                    ask(&mut swarm, &mut requests, next, &peers, &key);
                    gets.insert(next, (peers.len(), None, reply));
                }
            },
            Some((peers, key, reply)) = looked.recv() => {
                next += 1;
                ask(&mut swarm, &mut requests, next, &peers, &key);
                gets.insert(next, (peers.len(), None, reply));
            }
        }
    }
}

/// Sends get `get`'s request for `key` to each of `peers`.
fn ask(
    swarm: &mut RrSwarm,
    requests: &mut HashMap<OutboundRequestId, u64>,
    get: u64,
    peers: &[PeerId],
    key: &[u8],
) {
    for peer in peers {
        let id = swarm.behaviour_mut().send_request(peer, vec![key.to_vec()]);
        requests.insert(id, get);
    }
}
