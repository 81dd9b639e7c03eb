//! The node against its floor: every group measures a netabase node and the
//! same work on raw rust-libp2p / redb / tokio, in the same run, on
//! 127.0.0.1. Read the ratio `<group>/netabase/..` : `<group>/raw_*/..`, not
//! absolute times (see `/work/shared/PERF.md`).
//!
//! ```text
//! cargo bench --features bench --bench node                                   # the suite
//! cargo bench --features bench --bench node -- --profile-time=5 dht_put       # flamegraphs under target/criterion
//! ```
//!
//! | group | netabase | floor |
//! |---|---|---|
//! | `netabase_creation` | `Netabase::new_with_path` on a fresh directory, paired | `raw_same_work`: `redb::Database::create` + an ed25519 keypair + the key file made durable; `raw_floor`: the database and the keypair |
//! | `swarm_lifecycle` | `start_swarm` + first connection to a running node + `stop_swarm` | swarm build + listen + dial + `ConnectionEstablished` + drop |
//! | `dht_put_record` | `put_record` of ~1 KiB, 3 nodes, durable, quorum 1 | Kademlia `put_record` `Quorum::One`, 3 nodes; **plus** one durable redb commit (add the two) |
//! | `dht_get_record` | `get_record` on C of a record only A holds | Kademlia `get_record` on C of a record only A holds |
//! | `dht_put_paired` | `put_record` as above, paired (see `net::paired`) | the same work on raw parts (`raw_same_work`: sign, durable commit, Kademlia put; B and C check the signature and commit durably) and `raw_floor` (durable commit + plain Kademlia put) |
//! | `dht_get_paired` | `get_record` as above, paired (C asks A and B over the catch-up protocol) | raw request-response gets of the same bytes (`get_floor`): `raw_same_work`: C's swarm in its own task, asked through a channel, looks in its own redb file, then asks A and B, which answer with a read of theirs (each from a blocking task), then the copy's signature check; `raw_same_work_in_memory`: the same with values held in memory; `raw_floor`: one round trip to A, answered in its poll; `raw_kad_get`: the plain Kademlia get (netabase's get before it asked over the catch-up protocol) |
//! | `event_subscription` | `put_record_locally` (no fsync) until 1 / 8 subscribers saw the event (`netabase`), or the typed change (`netabase_typed`, `node.watch`) | tokio broadcast send until 1 / 8 receivers got it |
//!
//! `dht_put_record/netabase/.._eventual` and `dht_get_record/netabase/.._eventual`
//! run the same with `Durability::Eventual` on every node: no fsync, so the
//! difference to the default is the disk's share (floor: `raw_redb/commit_1KiB_no_fsync`).
//! `dht_put_record/netabase/.._peers_on_tmpfs` keeps every commit durable but
//! puts B's and C's data on tmpfs, as if they ran on other machines.
//!
//! Every wait is bounded (`net::WAIT`) and panics with what it waited for.

mod get_floor;
mod net;

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode};
use futures::StreamExt;
use libp2p::kad::store::{MemoryStore, MemoryStoreConfig, RecordStore};
use libp2p::kad::{self, GetRecordOk, QueryResult, Quorum, Record, RecordKey};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm};
use net::{address_of, bounded, paired, raw_swarm_with, runtime, tempdir, AsyncSides};
use netabase::codec::Envelope;
use netabase::node::{Event, Netabase, NetabaseConfig, NodeError, Protocol, KAD_PROTOCOL};
use netabase::sync::Timestamp;
use netabase::{Durability, Keypair};
use pprof::criterion::{Output, PProfProfiler};
use redb::TableDefinition;
use tokio::runtime::Runtime;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;

/// The bench model: a small record with one secondary index.
#[derive(netabase::NetabaseModel, Clone, Debug, PartialEq)]
pub struct Note {
    #[primary_key]
    pub id: u64,
    #[secondary_key]
    pub topic: String,
    pub body: String,
}

/// Bytes of `Note::body`: makes the signed envelope (what goes on the wire
/// and into redb) about 1 KiB. The floors use values of the envelope's exact
/// size (see [`envelope_bytes`]).
const BODY_BYTES: usize = 880;
/// The floors' Kademlia packet limit: netabase's (60 KiB records + 8 KiB).
const MAX_PACKET: usize = 68 * 1024;
/// The floor's redb table for the single-record commit.
const RAW_NOTES: TableDefinition<u64, &[u8]> = TableDefinition::new("raw/notes");

fn note(id: u64) -> Note {
    Note {
        id,
        topic: format!("topic-{}", id % 16),
        body: "n".repeat(BODY_BYTES),
    }
}

/// Size of a `Note`'s signed envelope: the size of the floors' values.
fn envelope_bytes() -> usize {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64;
    Envelope::seal(
        &Keypair::generate_ed25519(),
        &note(1),
        Timestamp::new(millis, 0),
    )
    .expect("seal a note")
    .as_bytes()
    .len()
}

// ---------------------------------------------------------------------------
// Shared plumbing.

fn loopback() -> Multiaddr {
    "/ip4/127.0.0.1/tcp/0"
        .parse()
        .expect("a valid literal address")
}

// ---------------------------------------------------------------------------
// Netabase nodes.

/// A node at `dir` with `Note` registered, bootstrapped to `bootstrap`, started.
async fn start_node(dir: &Path, bootstrap: &[&Netabase], config: NetabaseConfig) -> Netabase {
    let config = NetabaseConfig {
        bootstrap_peers: bootstrap.iter().map(|n| address_of(n)).collect(),
        ..config
    };
    let node = Netabase::new_with_path(dir, config).expect("open a node");
    node.register::<Note>().expect("register Note");
    bounded("start_swarm", node.start_swarm())
        .await
        .expect("start the swarm");
    node
}

/// Waits (bounded) until `events` has reported a connection to each of `peers`.
async fn wait_connected(events: &mut broadcast::Receiver<Event>, peers: &[PeerId]) {
    let mut missing = peers.to_vec();
    bounded("the peers to connect", async {
        while !missing.is_empty() {
            match events.recv().await {
                Ok(Event::PeerConnected(peer)) => missing.retain(|p| *p != peer),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("event stream closed"),
            }
        }
    })
    .await;
}

/// Where B's and C's data directories live.
#[derive(Clone, Copy)]
enum Peers {
    /// Next to A's, on the same disk.
    SameDisk,
    /// On tmpfs (`/dev/shm`), as if on other machines: their fsyncs cost
    /// nothing and, above all, do not join A's. (On ext4 with
    /// `data=ordered` an fsync commits the whole journal, so on one disk A's
    /// commit also flushes what B and C just wrote, even without their fsync.)
    Tmpfs,
}

/// Three netabase nodes on 127.0.0.1: B and C bootstrapped to A.
struct NetabaseNet {
    a: Netabase,
    b: Netabase,
    c: Netabase,
    _dirs: [tempfile::TempDir; 2],
}

impl NetabaseNet {
    /// Loopback nodes, all with `durability`; B's and C's data as `peers` says.
    async fn start(durability: Durability, peers: Peers) -> Self {
        let config = NetabaseConfig {
            durability,
            ..NetabaseConfig::loopback()
        };
        let dir = tempdir("netabase-bench-node-");
        let peer_dir = match peers {
            Peers::SameDisk => tempdir("netabase-bench-node-"),
            Peers::Tmpfs => tempfile::Builder::new()
                .prefix("netabase-bench-node-")
                .tempdir_in("/dev/shm")
                .expect("a directory on /dev/shm (tmpfs)"),
        };
        let a = start_node(&dir.path().join("a"), &[], config.clone()).await;
        let mut a_events = a.subscribe_to_broadcasts();
        let b = start_node(&peer_dir.path().join("b"), &[&a], config.clone()).await;
        let c = start_node(&peer_dir.path().join("c"), &[&a], config).await;
        wait_connected(&mut a_events, &[b.peer_id(), c.peer_id()]).await;
        NetabaseNet {
            a,
            b,
            c,
            _dirs: [dir, peer_dir],
        }
    }

    async fn stop(self) {
        for node in [&self.a, &self.b, &self.c] {
            bounded("stop_swarm", node.stop_swarm())
                .await
                .expect("stop the swarm");
        }
    }
}

/// Publishes from `node` until one put lands: A's routing table fills once
/// Identify has run on the fresh connections. Bounded.
async fn publish_once(node: &Netabase, record: Note) {
    for _ in 0..200 {
        match bounded("put_record", node.put_record(record.clone())).await {
            Ok(_) => return,
            Err(NodeError::Publish { .. }) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(other) => panic!("put_record failed: {other}"),
        }
    }
    panic!("put_record never reached a peer");
}

// ---------------------------------------------------------------------------
// Raw rust-libp2p peers: the floor. Same transport (tcp with nodelay + noise +
// yamux), same Kademlia protocol and packet limit, server mode, in-memory
// records (room for every record the benches write).

type RawSwarm = Swarm<kad::Behaviour<MemoryStore>>;

fn raw_swarm(keypair: &Keypair) -> RawSwarm {
    raw_swarm_filtering(keypair, false)
}

/// A raw peer; with `filter`, inbound records are handed to the driver
/// (`kad::InboundRequest::PutRecord`) instead of stored, as netabase's are.
fn raw_swarm_filtering(keypair: &Keypair, filter: bool) -> RawSwarm {
    raw_swarm_with(keypair, |key| raw_kad(key, filter))
}

/// A raw peer's Kademlia: netabase's protocol name and packet limit, server
/// mode, records in memory (room for every record the benches write).
fn raw_kad(key: &Keypair, filter: bool) -> kad::Behaviour<MemoryStore> {
    let peer = key.public().to_peer_id();
    let mut config = kad::Config::new(KAD_PROTOCOL);
    config.set_max_packet_size(MAX_PACKET);
    if filter {
        config.set_record_filtering(kad::StoreInserts::FilterBoth);
    }
    let store = MemoryStore::with_config(
        peer,
        MemoryStoreConfig {
            max_records: 1 << 20,
            max_value_bytes: MAX_PACKET,
            ..MemoryStoreConfig::default()
        },
    );
    let mut kad = kad::Behaviour::with_config(peer, store, config);
    kad.set_mode(Some(kad::Mode::Server));
    kad
}

/// Starts `swarm` listening on 127.0.0.1 and returns its `/p2p` address.
async fn raw_listen<B: NetworkBehaviour>(swarm: &mut Swarm<B>) -> Multiaddr {
    swarm.listen_on(loopback()).expect("listen on 127.0.0.1");
    let peer = *swarm.local_peer_id();
    bounded("a raw listen address", async {
        loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                return address.with(Protocol::P2p(peer));
            }
        }
    })
    .await
}

/// A raw peer driven in its own task: its commands, and the task.
type RawPeer = (mpsc::UnboundedSender<RawCommand>, JoinHandle<()>);

enum RawCommand {
    /// Put a record into this peer's own store only.
    StoreLocally(Record, oneshot::Sender<()>),
}

/// Drives `swarm` in its own task until the command sender is dropped.
fn spawn_raw(rt: &Runtime, swarm: RawSwarm) -> (mpsc::UnboundedSender<RawCommand>, JoinHandle<()>) {
    spawn_raw_keeping(rt, swarm, None)
}

/// [`spawn_raw`]; with `keeper`, every record pushed to this peer is
/// checked and durably stored in a blocking task, as a netabase peer does.
fn spawn_raw_keeping(
    rt: &Runtime,
    mut swarm: RawSwarm,
    keeper: Option<Arc<Keeper>>,
) -> (mpsc::UnboundedSender<RawCommand>, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let task = rt.spawn(async move {
        loop {
            tokio::select! {
                event = swarm.select_next_some() => {
                    if let (
                        SwarmEvent::Behaviour(kad::Event::InboundRequest {
                            request:
                                kad::InboundRequest::PutRecord {
                                    record: Some(record),
                                    ..
                                },
                        }),
                        Some(keeper),
                    ) = (event, &keeper)
                    {
                        let keeper = keeper.clone();
                        tokio::task::spawn_blocking(move || keeper.keep(&record));
                    }
                }
                command = rx.recv() => match command {
                    Some(RawCommand::StoreLocally(record, ack)) => {
                        swarm
                            .behaviour_mut()
                            .store_mut()
                            .put(record)
                            .expect("store locally");
                        let _ = ack.send(());
                    }
                    None => break,
                },
            }
        }
    });
    (tx, task)
}

/// Three raw peers, listening, wired as netabase wires its nodes: B and C
/// know A (their bootstrap peer) and dial it; A knows B and C (what
/// netabase's Identify handler adds). Nobody is driven yet.
async fn raw_network() -> [(RawSwarm, Multiaddr); 3] {
    raw_network_with(|_| false).await
}

/// [`raw_network`], where peer `i` (A is 0) hands the records pushed to it
/// to its driver if `filter(i)` (see [`raw_swarm_filtering`]).
async fn raw_network_with(filter: impl Fn(usize) -> bool) -> [(RawSwarm, Multiaddr); 3] {
    wired(
        |i| raw_swarm_filtering(&Keypair::generate_ed25519(), filter(i)),
        |kad| kad,
    )
    .await
}

/// Three listening peers built by `build(i)`, wired as netabase wires its
/// nodes (see [`raw_network`]) through the Kademlia `kad_of` picks out.
async fn wired<B: NetworkBehaviour>(
    build: impl Fn(usize) -> Swarm<B>,
    kad_of: fn(&mut B) -> &mut kad::Behaviour<MemoryStore>,
) -> [(Swarm<B>, Multiaddr); 3] {
    let mut nodes = Vec::new();
    for i in 0..3 {
        let mut swarm = build(i);
        let address = raw_listen(&mut swarm).await;
        nodes.push((swarm, address));
    }
    let addresses: Vec<(PeerId, Multiaddr)> = nodes
        .iter()
        .map(|(s, a)| (*s.local_peer_id(), a.clone()))
        .collect();
    let (a_peer, a_addr) = addresses[0].clone();
    for (i, (swarm, _)) in nodes.iter_mut().enumerate() {
        if i == 0 {
            for (peer, address) in &addresses[1..] {
                kad_of(swarm.behaviour_mut()).add_address(peer, address.clone());
            }
        } else {
            kad_of(swarm.behaviour_mut()).add_address(&a_peer, a_addr.clone());
            swarm.dial(a_addr.clone()).expect("dial A");
        }
    }
    match <[_; 3]>::try_from(nodes) {
        Ok(nodes) => nodes,
        Err(_) => unreachable!("three peers were built"),
    }
}

fn raw_record(id: u64, value_bytes: usize) -> Record {
    Record {
        key: RecordKey::new(&id.to_be_bytes()),
        value: vec![0x5a; value_bytes],
        publisher: None,
        expires: None,
    }
}

/// Kademlia put with `Quorum::One`, driving `swarm` until the query reports.
async fn raw_put(swarm: &mut RawSwarm, record: Record) -> Result<(), kad::PutRecordError> {
    let id = swarm
        .behaviour_mut()
        .put_record(record, Quorum::One)
        .expect("store the record locally");
    bounded("a raw put", async {
        loop {
            if let SwarmEvent::Behaviour(kad::Event::OutboundQueryProgressed {
                id: done,
                result: QueryResult::PutRecord(result),
                ..
            }) = swarm.select_next_some().await
            {
                if done == id {
                    return result.map(drop);
                }
            }
        }
    })
    .await
}

/// Puts `record` from `swarm` until one put lands (the routing tables fill
/// first), as [`publish_once`] does for a node. Bounded.
async fn raw_publish_once(swarm: &mut RawSwarm, record: Record) {
    let mut last = None;
    for _ in 0..200 {
        match raw_put(swarm, record.clone()).await {
            Ok(()) => return,
            Err(error) => last = Some(error),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("a raw put never reached a peer: {last:?}");
}

/// Kademlia get, driving `swarm` until the query's last step (as netabase's
/// `get_record` does); returns the copies found at other peers, and one.
async fn raw_get(swarm: &mut RawSwarm, key: RecordKey) -> (usize, Option<Vec<u8>>) {
    let id = swarm.behaviour_mut().get_record(key);
    let mut remote = 0;
    let mut value = None;
    bounded("a raw get", async {
        loop {
            if let SwarmEvent::Behaviour(kad::Event::OutboundQueryProgressed {
                id: done,
                result: QueryResult::GetRecord(result),
                step,
                ..
            }) = swarm.select_next_some().await
            {
                if done != id {
                    continue;
                }
                if let Ok(GetRecordOk::FoundRecord(found)) = result {
                    if found.peer.is_some() {
                        black_box(&found.record.value);
                        remote += 1;
                        value = Some(found.record.value);
                    }
                }
                if step.last {
                    return (remote, value);
                }
            }
        }
    })
    .await
}

// ---------------------------------------------------------------------------
// netabase_creation: a node's data directory from nothing.

/// The creation's sides, each on a fresh empty directory made before its
/// clock starts, its handles dropped and the directory removed after:
/// `new_with_path`; the same work on raw parts (a redb file, a keypair,
/// and the key made durable as `new_with_path` makes it); the plain floor
/// (a redb file and a keypair).
struct CreationSides {
    dir: tempfile::TempDir,
    n: u64,
}

impl CreationSides {
    fn fresh_dir(&mut self) -> std::path::PathBuf {
        self.n += 1;
        let path = self.dir.path().join(format!("d{}", self.n));
        std::fs::create_dir(&path).expect("create a directory");
        path
    }
}

impl AsyncSides for CreationSides {
    async fn run(&mut self, side: usize) -> Duration {
        let path = self.fresh_dir();
        let start = Instant::now();
        let held: Box<dyn std::any::Any> = match side {
            0 => Box::new(
                Netabase::new_with_path(&path, NetabaseConfig::loopback()).expect("open a node"),
            ),
            1 => {
                // What `new_with_path` promises beyond the plain floor: the
                // identity key is on disk before it returns (written to a
                // temporary file, fsynced, renamed, and the directory
                // fsynced), so a crash never changes the peer id.
                let db = redb::Database::create(path.join("raw.redb")).expect("create a db");
                let keypair = Keypair::generate_ed25519();
                let bytes = keypair.to_protobuf_encoding().expect("encode the key");
                let tmp = path.join("key.tmp");
                let mut file = std::fs::File::create(&tmp).expect("create the key file");
                std::io::Write::write_all(&mut file, &bytes).expect("write the key");
                file.sync_all().expect("sync the key");
                std::fs::rename(&tmp, path.join("key")).expect("rename the key");
                std::fs::File::open(&path)
                    .and_then(|d| d.sync_all())
                    .expect("sync the directory");
                Box::new((db, keypair))
            }
            _ => {
                let db = redb::Database::create(path.join("raw.redb")).expect("create a db");
                Box::new((db, Keypair::generate_ed25519()))
            }
        };
        let took = start.elapsed();
        drop(held);
        std::fs::remove_dir_all(&path).expect("remove the directory");
        took
    }
}

/// `new_with_path` against the same work and the plain floor, paired: the
/// disk's fsync times drift more between benches run one after the other
/// than the sides differ.
fn netabase_creation(c: &mut Criterion) {
    // `new_with_path` is synchronous and starts no task: the runtime only
    // drives the paired loop.
    let rt = runtime();
    let mut sides = CreationSides {
        dir: tempdir("netabase-bench-node-"),
        n: 0,
    };
    paired(
        c,
        "netabase_creation",
        &rt,
        "new_with_path",
        &["netabase", "raw_same_work", "raw_floor"],
        &mut sides,
    );
}

// ---------------------------------------------------------------------------
// swarm_lifecycle: start, first connection to a running peer, stop.

fn swarm_lifecycle(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("swarm_lifecycle");
    group.sampling_mode(SamplingMode::Flat);

    {
        let dir = tempdir("netabase-bench-node-");
        let peer = rt.block_on(start_node(
            &dir.path().join("peer"),
            &[],
            NetabaseConfig::loopback(),
        ));
        let config = NetabaseConfig {
            bootstrap_peers: vec![address_of(&peer)],
            ..NetabaseConfig::loopback()
        };
        let node = Netabase::new_with_path(dir.path().join("node"), config).expect("open a node");
        node.register::<Note>().expect("register Note");
        let target = peer.peer_id();

        group.bench_function("netabase/start_connect_stop", |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let mut events = node.subscribe_to_broadcasts();
                        let start = Instant::now();
                        bounded("start_swarm", node.start_swarm())
                            .await
                            .expect("start the swarm");
                        wait_connected(&mut events, &[target]).await;
                        bounded("stop_swarm", node.stop_swarm())
                            .await
                            .expect("stop the swarm");
                        total += start.elapsed();
                    }
                    total
                })
            })
        });
        rt.block_on(bounded("stop_swarm", peer.stop_swarm()))
            .expect("stop the peer");
    }

    {
        let (peer_id, peer_addr, peer_task) = rt.block_on(async {
            let mut swarm = raw_swarm(&Keypair::generate_ed25519());
            let address = raw_listen(&mut swarm).await;
            let peer_id = *swarm.local_peer_id();
            (peer_id, address, spawn_raw(&rt, swarm))
        });
        // Like the netabase node, one identity for every start.
        let keypair = Keypair::generate_ed25519();

        group.bench_function("raw_libp2p/build_listen_connect_drop", |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let start = Instant::now();
                        let mut swarm = raw_swarm(&keypair);
                        swarm.listen_on(loopback()).expect("listen on 127.0.0.1");
                        swarm
                            .behaviour_mut()
                            .add_address(&peer_id, peer_addr.clone());
                        swarm.dial(peer_addr.clone()).expect("dial the peer");
                        // Netabase's start_swarm returns once listening; wait for both.
                        let (mut listening, mut connected) = (false, false);
                        bounded("a raw listen and connection", async {
                            while !(listening && connected) {
                                match swarm.select_next_some().await {
                                    SwarmEvent::NewListenAddr { .. } => listening = true,
                                    SwarmEvent::ConnectionEstablished { peer_id: p, .. }
                                        if p == peer_id =>
                                    {
                                        connected = true
                                    }
                                    _ => {}
                                }
                            }
                        })
                        .await;
                        drop(swarm);
                        total += start.elapsed();
                    }
                    total
                })
            })
        });
        drop(peer_task);
    }
    group.finish();
}

// ---------------------------------------------------------------------------
// dht_put_record: publish ~1 KiB from A in a 3-node network.

fn dht_put_record(c: &mut Criterion) {
    let rt = runtime();
    let value_bytes = envelope_bytes();
    let mut group = c.benchmark_group("dht_put_record");
    group.sampling_mode(SamplingMode::Flat);

    // Default durability: a durable local commit, then a Kademlia put with
    // write quorum 1; B and C validate and durably store what they receive.
    // On one machine all three share a disk, and B's and C's writes join A's
    // next fsync: `.._peers_on_tmpfs` moves B's and C's data to tmpfs (as if
    // they were other machines: what the floor `raw_redb + raw_libp2p`
    // compares with), and `.._eventual` takes every fsync out (floor:
    // `raw_redb/commit_1KiB_no_fsync + raw_libp2p`).
    for (name, durability, peers) in [
        (
            "netabase/put_record_1KiB",
            Durability::Immediate,
            Peers::SameDisk,
        ),
        (
            "netabase/put_record_1KiB_peers_on_tmpfs",
            Durability::Immediate,
            Peers::Tmpfs,
        ),
        (
            "netabase/put_record_1KiB_eventual",
            Durability::Eventual,
            Peers::SameDisk,
        ),
    ] {
        let net = rt.block_on(NetabaseNet::start(durability, peers));
        rt.block_on(publish_once(&net.a, note(0)));
        let mut id = 0;
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        id += 1;
                        let record = note(id);
                        let start = Instant::now();
                        bounded("put_record", net.a.put_record(record))
                            .await
                            .expect("put_record");
                        total += start.elapsed();
                    }
                    total
                })
            })
        });
        rt.block_on(net.stop());
    }

    {
        // A is driven inline by the timed code; B and C in their own tasks.
        let (mut a, others) = rt.block_on(async {
            let [(a, _), (b, _), (c, _)] = raw_network().await;
            (a, [spawn_raw(&rt, b), spawn_raw(&rt, c)])
        });
        // As on the netabase side: one put must land before measuring.
        rt.block_on(raw_publish_once(&mut a, raw_record(u64::MAX, value_bytes)));
        let mut id = 0;
        group.bench_function("raw_libp2p/kad_put_quorum_one_1KiB", |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        id += 1;
                        let record = raw_record(id, value_bytes);
                        let start = Instant::now();
                        raw_put(&mut a, record).await.expect("a raw put");
                        total += start.elapsed();
                    }
                    total
                })
            })
        });
        drop((a, others));
    }

    {
        // The second floor: the local half of put_record, one durable commit.
        let dir = tempdir("netabase-bench-node-");
        let db = redb::Database::create(dir.path().join("raw.redb")).expect("create a db");
        let value = vec![0x5a; value_bytes];
        let mut id = 0u64;
        group.bench_function("raw_redb/durable_commit_1KiB", |b| {
            b.iter(|| {
                id += 1;
                let txn = db.begin_write().expect("begin write");
                txn.open_table(RAW_NOTES)
                    .expect("open the table")
                    .insert(id, value.as_slice())
                    .expect("insert");
                txn.commit().expect("commit");
            })
        });
        // The floor of `.._eventual`: the same commit without fsync (over
        // a fixed set of keys, so the file stays small at ~10 us an op).
        group.bench_function("raw_redb/commit_1KiB_no_fsync", |b| {
            b.iter(|| {
                id += 1;
                let mut txn = db.begin_write().expect("begin write");
                txn.set_durability(redb::Durability::None)
                    .expect("set durability");
                txn.open_table(RAW_NOTES)
                    .expect("open the table")
                    .insert(id % 4096, value.as_slice())
                    .expect("insert");
                txn.commit().expect("commit");
            })
        });
    }
    group.finish();
}

// ---------------------------------------------------------------------------
// dht_get_record: C fetches a record only A holds.
//
// Both sides are timed to the Kademlia query's *last* step (the query has
// asked every peer it found), because that is when netabase's get_record
// answers: it collects every copy, keeps the newest, then commits it on C.

/// Writes `record` on A only (untimed), then times C's `get_record` of it.
async fn netabase_fetch(net: &NetabaseNet, record: Note) -> Duration {
    bounded(
        "put_record_locally",
        net.a.put_record_locally(record.clone()),
    )
    .await
    .expect("put_record_locally");
    go_idle();
    let start = Instant::now();
    let fetched = bounded("get_record", net.c.get_record::<Note>(NoteKey(record.id)))
        .await
        .expect("get_record of a remote record");
    let elapsed = start.elapsed();
    assert_eq!(fetched, record);
    elapsed
}

/// Lets the runtime go idle before a get's clock starts, so every side's
/// get starts as a get after a pause does: the worker threads parked. What
/// each side stored untimed just before left them otherwise unlike: the
/// raw sides' store goes through a worker, which is still awake when the
/// get is asked of it; the node's store commits on the blocking pool, and
/// the workers have parked by the time it returns. Blocks the timing
/// thread on purpose: a timer would wake a worker to fire it.
fn go_idle() {
    std::thread::sleep(Duration::from_millis(1));
}

/// Has A store `record` in its own store only (untimed), then times a
/// Kademlia get of it driven on `c`.
async fn raw_fetch(
    c: &mut RawSwarm,
    a: &mpsc::UnboundedSender<RawCommand>,
    record: Record,
) -> Duration {
    raw_fetch_checked(c, a, record, None).await
}

/// Puts `record` into the store of the raw peer driven through `peer`
/// only, and waits for it to be there.
async fn store_at(peer: &mpsc::UnboundedSender<RawCommand>, record: Record) {
    let (ack, acked) = oneshot::channel();
    peer.send(RawCommand::StoreLocally(record, ack))
        .expect("the raw peer is running");
    bounded("a raw peer to store a record", acked)
        .await
        .expect("the raw peer acknowledges");
}

/// [`raw_fetch`]; with `check`, the copy found is checked against that
/// signer's key before the clock stops.
async fn raw_fetch_checked(
    c: &mut RawSwarm,
    a: &mpsc::UnboundedSender<RawCommand>,
    record: Record,
    check: Option<&ed25519_dalek::VerifyingKey>,
) -> Duration {
    let key = record.key.clone();
    store_at(a, record).await;
    go_idle();
    let start = Instant::now();
    let (remote, value) = raw_get(c, key).await;
    if let Some(key) = check {
        assert!(
            signed_by(key, &value.unwrap_or_default()),
            "a bad signature"
        );
    }
    let elapsed = start.elapsed();
    assert!(remote >= 1, "the raw get found no remote copy");
    elapsed
}

fn dht_get_record(c: &mut Criterion) {
    let rt = runtime();
    let value_bytes = envelope_bytes();
    let mut group = c.benchmark_group("dht_get_record");
    group.sampling_mode(SamplingMode::Flat);

    // Default durability: C commits what it fetched durably before
    // answering. `.._eventual`: no fsync anywhere.
    for (name, durability) in [
        ("netabase/remote_get_1KiB", Durability::Immediate),
        ("netabase/remote_get_1KiB_eventual", Durability::Eventual),
    ] {
        let net = rt.block_on(NetabaseNet::start(durability, Peers::SameDisk));
        let mut id = 0;
        // The first fetch also opens C's connection to B.
        id += 1;
        rt.block_on(netabase_fetch(&net, note(id)));
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        id += 1;
                        total += netabase_fetch(&net, note(id)).await;
                    }
                    total
                })
            })
        });
        rt.block_on(net.stop());
    }

    {
        // C is driven inline by the timed code; A and B in their own tasks.
        let (mut c_swarm, a_commands, b_peer) = rt.block_on(async {
            let [(a, _), (b, _), (c, _)] = raw_network().await;
            (c, spawn_raw(&rt, a), spawn_raw(&rt, b))
        });
        let mut id = 0;
        let a = &a_commands.0;
        id += 1;
        rt.block_on(raw_fetch(&mut c_swarm, a, raw_record(id, value_bytes)));
        group.bench_function("raw_libp2p/kad_get_1KiB", |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        id += 1;
                        total += raw_fetch(&mut c_swarm, a, raw_record(id, value_bytes)).await;
                    }
                    total
                })
            })
        });
        drop((c_swarm, a_commands, b_peer));
    }
    group.finish();
}

// ---------------------------------------------------------------------------
// The same work on raw parts: what `put_record` and `get_record` promise
// beyond a raw Kademlia put or get. A netabase put signs the record,
// commits it durably, and publishes it; every peer that receives it checks
// its signature and commits it durably (on this machine, on the same disk,
// so their fsyncs join the writer's). A netabase get checks the signature
// of what it fetched. The raw floors above do none of that.

/// A raw peer's storage for pushed records: signature check, durable commit.
struct Keeper {
    db: redb::Database,
    key: ed25519_dalek::VerifyingKey,
    /// Records kept so far.
    kept: std::sync::atomic::AtomicU64,
}

impl Keeper {
    fn new(dir: &Path, key: ed25519_dalek::VerifyingKey) -> Self {
        let db = redb::Database::create(dir.join("keeper.redb")).expect("create a db");
        Keeper {
            db,
            key,
            kept: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Checks the record's signature (its last 64 bytes, over the rest),
    /// then commits it durably.
    fn keep(&self, record: &Record) {
        if !signed_by(&self.key, &record.value) {
            return;
        }
        commit_kept(&self.db, record);
        self.kept.fetch_add(1, std::sync::atomic::Ordering::Release);
    }
}

/// Waits (bounded, untimed) until `done()`: a side's background work
/// (its peers storing what they received) ends before the next side runs,
/// so no side is timed on another's disk traffic.
async fn settle(what: &str, done: impl Fn() -> bool) {
    bounded(what, async {
        while !done() {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    })
    .await
}

const RAW_KEPT: TableDefinition<&[u8], &[u8]> = TableDefinition::new("raw/kept");

/// Commits `record` to `db` in one durable transaction.
fn commit_kept(db: &redb::Database, record: &Record) {
    let txn = db.begin_write().expect("begin write");
    txn.open_table(RAW_KEPT)
        .expect("open the table")
        .insert(record.key.as_ref(), record.value.as_slice())
        .expect("insert");
    txn.commit().expect("commit");
}

/// Whether `value`'s last 64 bytes are `key`'s signature over the rest.
fn signed_by(key: &ed25519_dalek::VerifyingKey, value: &[u8]) -> bool {
    use ed25519_dalek::Verifier;
    let Some(split) = value.len().checked_sub(64) else {
        return false;
    };
    let (message, signature) = value.split_at(split);
    ed25519_dalek::Signature::from_slice(signature)
        .is_ok_and(|signature| key.verify(message, &signature).is_ok())
}

/// A raw record of `value_bytes` signed by `signer`, as an envelope is.
fn signed_record(signer: &ed25519_dalek::SigningKey, id: u64, value_bytes: usize) -> Record {
    use ed25519_dalek::Signer;
    let mut value = vec![0x5a; value_bytes - 64];
    value[..8].copy_from_slice(&id.to_be_bytes());
    let signature = signer.sign(&value);
    value.extend_from_slice(&signature.to_bytes());
    Record {
        key: RecordKey::new(&id.to_be_bytes()),
        value,
        publisher: None,
        expires: None,
    }
}

/// Three raw peers doing what netabase's do: A signs, commits durably and
/// publishes; B and C check and durably commit what they receive. A is
/// driven inline by the timed code.
struct RawKeepingNet {
    a: RawSwarm,
    a_db: redb::Database,
    signer: ed25519_dalek::SigningKey,
    keepers: [Arc<Keeper>; 2],
    _others: [RawPeer; 2],
    _dir: tempfile::TempDir,
}

impl RawKeepingNet {
    async fn start(rt: &Runtime) -> Self {
        let dir = tempdir("netabase-bench-node-");
        let signer = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let [(a, _), (b, _), (c, _)] = raw_network_with(|i| i > 0).await;
        let keeper = |name: &str| {
            let path = dir.path().join(name);
            std::fs::create_dir(&path).expect("create a directory");
            Some(Arc::new(Keeper::new(&path, signer.verifying_key())))
        };
        let keepers = [keeper("b"), keeper("c")];
        let others = [
            spawn_raw_keeping(rt, b, keepers[0].clone()),
            spawn_raw_keeping(rt, c, keepers[1].clone()),
        ];
        let keepers = keepers.map(|k| k.expect("a keeper"));
        let a_db = redb::Database::create(dir.path().join("a.redb")).expect("create a db");
        let mut net = RawKeepingNet {
            a,
            a_db,
            signer,
            keepers,
            _others: others,
            _dir: dir,
        };
        let record = signed_record(&net.signer, u64::MAX, envelope_bytes());
        raw_publish_once(&mut net.a, record).await;
        net
    }

    /// One put as netabase does it, sequentially: sign, commit, publish.
    async fn put(&mut self, id: u64, value_bytes: usize) -> Duration {
        let start = Instant::now();
        let record = signed_record(&self.signer, id, value_bytes);
        commit_kept(&self.a_db, &record);
        raw_put(&mut self.a, record).await.expect("a raw put");
        start.elapsed()
    }

    /// Records both peers kept.
    fn kept(&self) -> u64 {
        self.keepers
            .iter()
            .map(|k| k.kept.load(std::sync::atomic::Ordering::Acquire))
            .sum()
    }
}

/// The put's sides: netabase, the same work on raw parts, and the plain
/// floor (raw durable commit, then raw Kademlia put to peers that keep
/// records in memory and check nothing).
struct PutSides {
    netabase: NetabaseNet,
    keeping: RawKeepingNet,
    plain: (RawSwarm, [RawPeer; 2]),
    plain_db: redb::Database,
    value_bytes: usize,
    id: u64,
    _dir: tempfile::TempDir,
}

impl AsyncSides for PutSides {
    async fn run(&mut self, side: usize) -> Duration {
        self.id += 1;
        let id = self.id;
        match side {
            0 => {
                let record = note(id);
                let net = &self.netabase;
                let before = net.b.stats().accepted + net.c.stats().accepted;
                let start = Instant::now();
                bounded("put_record", net.a.put_record(record))
                    .await
                    .expect("put_record");
                let took = start.elapsed();
                settle("B and C to store the record", || {
                    net.b.stats().accepted + net.c.stats().accepted >= before + 2
                })
                .await;
                took
            }
            1 => {
                let before = self.keeping.kept();
                let took = self.keeping.put(id, self.value_bytes).await;
                settle("the raw peers to keep the record", || {
                    self.keeping.kept() >= before + 2
                })
                .await;
                took
            }
            _ => {
                let start = Instant::now();
                let value = vec![0x5a; self.value_bytes];
                let txn = self.plain_db.begin_write().expect("begin write");
                txn.open_table(RAW_NOTES)
                    .expect("open the table")
                    .insert(id, value.as_slice())
                    .expect("insert");
                txn.commit().expect("commit");
                raw_put(&mut self.plain.0, raw_record(id, self.value_bytes))
                    .await
                    .expect("a raw put");
                start.elapsed()
            }
        }
    }
}

fn dht_put_paired(c: &mut Criterion) {
    let rt = runtime();
    let value_bytes = envelope_bytes();
    let mut sides = rt.block_on(async {
        let netabase = NetabaseNet::start(Durability::Immediate, Peers::SameDisk).await;
        publish_once(&netabase.a, note(0)).await;
        let keeping = RawKeepingNet::start(&rt).await;
        let [(a, _), (b, _), (c, _)] = raw_network().await;
        let mut plain = (a, [spawn_raw(&rt, b), spawn_raw(&rt, c)]);
        raw_publish_once(&mut plain.0, raw_record(u64::MAX, value_bytes)).await;
        let dir = tempdir("netabase-bench-node-");
        let plain_db = redb::Database::create(dir.path().join("raw.redb")).expect("create a db");
        PutSides {
            netabase,
            keeping,
            plain,
            plain_db,
            value_bytes,
            id: 0,
            _dir: dir,
        }
    });
    paired(
        c,
        "dht_put_paired",
        &rt,
        "put_1KiB",
        &["netabase", "raw_same_work", "raw_floor"],
        &mut sides,
    );
    rt.block_on(sides.netabase.stop());
}

/// The get's sides: netabase's `get_record` of a record only A holds (C
/// asks A and B over the catch-up protocol), and its floors: raw
/// request-response gets of the same bytes (`get_floor`), and the plain
/// Kademlia get netabase's get used to be. A stores the record before the
/// clock starts.
struct GetSides {
    netabase: NetabaseNet,
    /// `raw_same_work`: C looks in its own redb file, then asks A and B,
    /// which answer with a read of theirs; each from a blocking task. The
    /// copy's signature is checked.
    same_work: [get_floor::Peer; 3],
    /// `raw_same_work_in_memory`: the same, every peer holding values in
    /// memory (as nodes did before records moved to redb).
    same_work_in_memory: [get_floor::Peer; 3],
    _files: tempfile::TempDir,
    /// `raw_floor`: C asks A, which answers inside its poll.
    floor: [get_floor::Peer; 3],
    /// `raw_kad_get`: C driven inline, A and B in their own tasks.
    c: RawSwarm,
    a: mpsc::UnboundedSender<RawCommand>,
    _peers: [RawPeer; 2],
    signer: ed25519_dalek::SigningKey,
    value_bytes: usize,
    id: u64,
}

impl AsyncSides for GetSides {
    async fn run(&mut self, side: usize) -> Duration {
        self.id += 1;
        let id = self.id;
        match side {
            0 => {
                let c = &self.netabase.c;
                let before = c.stats().accepted;
                let took = netabase_fetch(&self.netabase, note(id)).await;
                settle("C to keep the fetched copy", || c.stats().accepted > before).await;
                took
            }
            1 | 4 => {
                let record = signed_record(&self.signer, id, self.value_bytes);
                let [a, b, c] = if side == 1 {
                    &self.same_work
                } else {
                    &self.same_work_in_memory
                };
                let key = record.key.to_vec();
                a.hold(key.clone(), record.value).await;
                go_idle();
                let start = Instant::now();
                let value = c.get(vec![a.id, b.id], key).await.expect("a copy");
                assert!(
                    signed_by(&self.signer.verifying_key(), &value),
                    "a bad signature"
                );
                start.elapsed()
            }
            2 => {
                let record = signed_record(&self.signer, id, self.value_bytes);
                let [a, _, c] = &self.floor;
                let key = record.key.to_vec();
                a.hold(key.clone(), record.value).await;
                go_idle();
                let start = Instant::now();
                black_box(c.get(vec![a.id], key).await.expect("a copy"));
                start.elapsed()
            }
            3 => raw_fetch(&mut self.c, &self.a, raw_record(id, self.value_bytes)).await,
            _ => unreachable!("five sides"),
        }
    }
}

fn dht_get_paired(c: &mut Criterion) {
    let rt = runtime();
    let value_bytes = envelope_bytes();
    let mut sides = rt.block_on(async {
        let netabase = NetabaseNet::start(Durability::Immediate, Peers::SameDisk).await;
        netabase_fetch(&netabase, note(1_000_000_000)).await;
        let [(a, _), (b, _), (c, _)] = raw_network().await;
        let (a_commands, a_task) = spawn_raw(&rt, a);
        let b = spawn_raw(&rt, b);
        let files = tempdir("netabase-bench-get-floor-");
        let mut sides = GetSides {
            netabase,
            same_work: get_floor::network(&rt, true, get_floor::Held::disk(files.path())).await,
            same_work_in_memory: get_floor::network(&rt, true, get_floor::Held::memory()).await,
            floor: get_floor::network(&rt, false, get_floor::Held::memory()).await,
            _files: files,
            c,
            a: a_commands.clone(),
            _peers: [(a_commands, a_task), b],
            signer: ed25519_dalek::SigningKey::from_bytes(&[9; 32]),
            value_bytes,
            id: 0,
        };
        // The first fetch also opens C's connection to B.
        raw_fetch(&mut sides.c, &sides.a, raw_record(u64::MAX, value_bytes)).await;
        // And a first get on each floor, untimed.
        sides.id = 1 << 40;
        sides.run(1).await;
        sides.run(2).await;
        sides.run(4).await;
        sides.id = 0;
        sides
    });
    paired(
        c,
        "dht_get_paired",
        &rt,
        "remote_get_1KiB",
        &[
            "netabase",
            "raw_same_work",
            "raw_floor",
            "raw_kad_get",
            "raw_same_work_in_memory",
        ],
        &mut sides,
    );
    rt.block_on(sides.netabase.stop());
}

// ---------------------------------------------------------------------------
// event_subscription: a local write until every subscriber has its event.
//
// Each subscriber runs in its own task and reports the instant it received
// the event; an iteration lasts from the write's start to the last report.
// `netabase/0` is `put_record_locally` alone: subtract it from `netabase/N`
// for the fan-out's own cost.

/// What the floor broadcasts: the fields of netabase's `Event::Record`.
#[derive(Clone, Debug)]
struct RawEvent {
    model: &'static str,
    key: Vec<u8>,
    writer: PeerId,
}

impl RawEvent {
    /// What a subscriber checks before reporting (netabase's match on `Event::Record`).
    fn is_note(&self) -> bool {
        black_box(&self.writer);
        self.model == "Note" && !self.key.is_empty()
    }
}

/// `subscribers` tasks, each reporting on `reports` when `receive` yields.
fn spawn_subscribers<T: Clone + Send + 'static>(
    rt: &Runtime,
    subscribe: impl Fn() -> broadcast::Receiver<T>,
    subscribers: usize,
    keep: fn(&T) -> bool,
) -> (mpsc::UnboundedReceiver<Instant>, Vec<JoinHandle<()>>) {
    let (tx, reports) = mpsc::unbounded_channel();
    let tasks = (0..subscribers)
        .map(|_| {
            let mut events = subscribe();
            let tx = tx.clone();
            rt.spawn(async move {
                loop {
                    match events.recv().await {
                        Ok(event) => {
                            if keep(&event) && tx.send(Instant::now()).is_err() {
                                return;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            })
        })
        .collect();
    (reports, tasks)
}

/// Waits (bounded) for `n` reports; returns the latest.
async fn last_report(reports: &mut mpsc::UnboundedReceiver<Instant>, n: usize) -> Option<Instant> {
    let mut last = None;
    for _ in 0..n {
        let at = bounded("a subscriber to receive the event", reports.recv())
            .await
            .expect("subscribers are running");
        last = last.max(Some(at));
    }
    last
}

fn event_subscription(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("event_subscription");

    {
        // Eventual durability takes the fsync out; no swarm is needed for a
        // local write or its event.
        let dir = tempdir("netabase-bench-node-");
        let config = NetabaseConfig {
            durability: Durability::Eventual,
            ..NetabaseConfig::loopback()
        };
        let node = Netabase::new_with_path(dir.path(), config).expect("open a node");
        node.register::<Note>().expect("register Note");
        let mut id = 0;
        for subscribers in [0, 1, 8] {
            let (mut reports, tasks) = spawn_subscribers(
                &rt,
                || node.subscribe_to_broadcasts(),
                subscribers,
                |event| matches!(event, Event::Record { .. }),
            );
            group.bench_function(BenchmarkId::new("netabase", subscribers), |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            id += 1;
                            let record = note(id);
                            let start = Instant::now();
                            bounded("put_record_locally", node.put_record_locally(record))
                                .await
                                .expect("put_record_locally");
                            let end = last_report(&mut reports, subscribers)
                                .await
                                .unwrap_or_else(Instant::now);
                            total += end.saturating_duration_since(start);
                        }
                        total
                    })
                })
            });
            tasks.iter().for_each(JoinHandle::abort);
        }
        // The same writes, watched as typed changes (`node.watch::<Note>()`:
        // the record decoded once and shared) instead of untyped events.
        for subscribers in [1, 8] {
            let (tx, mut reports) = mpsc::unbounded_channel();
            let tasks: Vec<JoinHandle<()>> = (0..subscribers)
                .map(|_| {
                    let mut changes = node.watch::<Note>().expect("Note is registered");
                    let tx = tx.clone();
                    rt.spawn(async move {
                        while let Ok(change) = changes.next().await {
                            black_box(&change.record);
                            if tx.send(Instant::now()).is_err() {
                                return;
                            }
                        }
                    })
                })
                .collect();
            group.bench_function(BenchmarkId::new("netabase_typed", subscribers), |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            id += 1;
                            let start = Instant::now();
                            bounded("put_record_locally", node.put_record_locally(note(id)))
                                .await
                                .expect("put_record_locally");
                            let end = last_report(&mut reports, subscribers)
                                .await
                                .unwrap_or_else(Instant::now);
                            total += end.saturating_duration_since(start);
                        }
                        total
                    })
                })
            });
            tasks.iter().for_each(JoinHandle::abort);
        }
    }

    {
        let (sender, _) = broadcast::channel::<RawEvent>(4096);
        let writer = PeerId::random();
        let mut id = 0u64;
        for subscribers in [1, 8] {
            let (mut reports, tasks) =
                spawn_subscribers(&rt, || sender.subscribe(), subscribers, RawEvent::is_note);
            group.bench_function(BenchmarkId::new("raw_tokio", subscribers), |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            id += 1;
                            let start = Instant::now();
                            let _ = sender.send(RawEvent {
                                model: "Note",
                                key: id.to_be_bytes().to_vec(),
                                writer,
                            });
                            let end = last_report(&mut reports, subscribers)
                                .await
                                .expect("at least one subscriber");
                            total += end.saturating_duration_since(start);
                        }
                        total
                    })
                })
            });
            tasks.iter().for_each(JoinHandle::abort);
        }
    }
    group.finish();
}

// ---------------------------------------------------------------------------

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .with_profiler(PProfProfiler::new(100, Output::Flamegraph(None)))
}

criterion_group! {
    name = benches;
    config = config();
    targets =
        netabase_creation,
        swarm_lifecycle,
        dht_put_record,
        dht_get_record,
        dht_put_paired,
        dht_get_paired,
        event_subscription,
}
criterion_main!(benches);
