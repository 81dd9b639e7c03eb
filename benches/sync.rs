//! Catch-up and reconciliation against their floors: every group measures
//! netabase and the same work on raw rust-libp2p / redb, in the same run, on
//! 127.0.0.1. Read the ratio `<group>/netabase/..` : `<group>/raw_*/..`, not
//! absolute times (see `/work/shared/PERF.md`).
//!
//! ```text
//! cargo bench --features bench --bench sync                                  # the suite
//! cargo bench --features bench --bench sync -- --profile-time=5 catch_up     # flamegraphs under target/criterion
//! ```
//!
//! | group | netabase | floor |
//! |---|---|---|
//! | `catch_up_100k` | a fresh node B bootstrapped to A (which holds 100,000 small records) starts, until B has accepted all of them | raw request-response moving the same 100,000 envelopes in batches of 512, 4 requests in flight: each batch checked in a blocking task and committed with three rows a record (envelope, payload, index entry), the batches queued in one durable transaction, with netabase's own check (`raw_same_work`: `Envelope::from_bytes_many`) or ed25519-dalek's `verify_batch` (`raw_same_work_dalek`); each batch committed to redb in one durable transaction, unchecked (`raw_libp2p_redb`); the transfer alone (`raw_libp2p`) |
//! | `catch_up_100k_paired` | as above | `raw_same_work` and `raw_same_work_dalek`, paired (see `net::paired`): the figure to read |
//! | `reconcile_equal_100k` | `reconcile::initiate` / `respond` between two equal 100,000-item sets until a message is empty, in-process (`netabase/initiate_respond`); and two running nodes holding the same 100,000 records, from `catch_up()` to `Event::CaughtUp` (`netabase/node_round`) | XOR + count of the same 100,000 digests, once per side, from a `Vec` |
//! | `reconcile_fresh_1m` | an empty set reconciling with a set of 1,000,000 items (12-byte record keys), in memory, until a message is empty: every message encoded and decoded as on the wire (`netabase/exchange`) | the list of the 1,000,000 keys and states it learns, bincode-encoded and decoded once (`raw_bincode/encode_decode_items`) |
//! | `verify_512` | `Envelope::from_bytes_many` of 512 envelopes (a fetched batch) by 1 and by 8 writers: decoding and the batched signature check | ed25519-dalek's `verify_batch` over 512 signatures of messages as long, by as many writers; and `verify` on each |
//!
//! `catch_up_100k` reports records/s (`Throughput::Elements`). Its timer
//! starts at B's `start_swarm` (B's empty data directory is made before) and
//! stops when B's counters show every record accepted; the count is then
//! checked in B's typed tree. Durability is the default (every batch fsynced);
//! A, B and the floor's database share one disk. Once per bench it also
//! prints the process's CPU time over one catch-up (how many cores were
//! busy: is it CPU-bound?), and for netabase the most threads the process had
//! and what its `Event::CatchUp` progress events said along the way.
//!
//! `reconcile_equal_100k` and `reconcile_fresh_1m` print the exchange's
//! messages and encoded bytes once; `reconcile_fresh_1m` also the bytes of
//! what the empty side learns, and the ratio of the two.
//!
//! Every wait is bounded and panics with what it waited for.

mod net;

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use futures::StreamExt;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, StreamProtocol, Swarm};
use net::{
    address_of, bounded, paired, raw_swarm_with, runtime, tempdir, AsyncSides, RawCodec,
    RawResponse, WAIT,
};
use netabase::codec::Envelope;
use netabase::node::{Event, Netabase, NetabaseConfig, Protocol};
use netabase::sync::reconcile::{self, Item, ItemSet, ItemState, KeyRange, Part};
use netabase::{Keypair, Lookup};
use pprof::criterion::{Output, PProfProfiler};
use redb::{ReadableDatabase, ReadableTableMetadata, TableDefinition};
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

/// Records A holds.
const RECORDS: u64 = 100_000;
/// Records A writes per `put_records_locally` (one transaction each).
const WRITE_CHUNK: u64 = 10_000;
/// Bytes of `Note::body`.
const BODY_BYTES: usize = 32;
/// Keys per request in the floor: netabase's fetch batch.
const FLOOR_BATCH: usize = 512;
/// Requests in flight in the floor: netabase's fetches in flight to one peer.
const FLOOR_IN_FLIGHT: usize = 4;
/// Bound on a whole catch-up (of either side) and on every other wait.
/// The floor's protocol (its message limit is `net::MAX_MESSAGE_BYTES`,
/// netabase's: 16 MiB).
const RAW_PROTOCOL: StreamProtocol = StreamProtocol::new("/bench/raw-sync/1.0.0");
/// The floor's table: record key -> envelope, as netabase's envelope table.
const RAW_ENVELOPES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("raw/envelopes");
/// The same-work floor's other tables, as netabase's records table and
/// secondary index: record key -> payload, and index value ++ record key.
const RAW_RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("raw/records");
const RAW_INDEX: TableDefinition<&[u8], &[u8]> = TableDefinition::new("raw/index");
/// Bytes of a payload the same-work floor indexes (a Note's topic is 7-8).
const FLOOR_INDEX_BYTES: usize = 8;

/// How the same-work floor checks a fetched batch.
#[derive(Clone, Copy)]
enum Check {
    /// netabase's own check of envelopes (`Envelope::from_bytes_many`:
    /// decoding, and one batched check of the signatures): the floor of
    /// everything else catch-up does, with the check's cost shared.
    Codec,
    /// ed25519-dalek's `verify_batch` over envelopes re-signed by this key
    /// ([`floor_signed`]): all raw, the check 1.5x netabase's
    /// (`verify_512`).
    Dalek(ed25519_dalek::VerifyingKey),
}

/// What a floor of `catch_up_100k` does with each fetched batch.
#[derive(Clone, Copy)]
enum FloorKind {
    /// Nothing: the transfer alone.
    None,
    /// Commits the envelopes to one table, a durable transaction a batch.
    Envelopes,
    /// netabase's work on raw parts: checks each batch in a blocking task
    /// (batches in flight are checked at once), then commits three rows a
    /// record (envelope, payload, index entry) in one durable transaction
    /// for all the batches queued.
    SameWork(Check),
}

impl FloorKind {
    /// The database (new, at `path`) the floor commits to, if any, and how
    /// it checks a batch first, if at all.
    fn open(self, path: &std::path::Path) -> (Option<redb::Database>, Option<Check>) {
        let db = || Some(redb::Database::create(path).expect("create a db"));
        match self {
            FloorKind::None => (None, None),
            FloorKind::Envelopes => (db(), None),
            FloorKind::SameWork(check) => (db(), Some(check)),
        }
    }

    /// Checks every record is in the database at `path` (the writer dropped
    /// its handle: every batch is there).
    fn check(self, path: &std::path::Path) {
        let tables: &[TableDefinition<&[u8], &[u8]>] = match self {
            FloorKind::None => return,
            FloorKind::Envelopes => &[RAW_ENVELOPES],
            FloorKind::SameWork(_) => &[RAW_ENVELOPES, RAW_RECORDS, RAW_INDEX],
        };
        let db = redb::Database::open(path).expect("reopen the db");
        let txn = db.begin_read().expect("begin read");
        for table in tables {
            let table = txn.open_table(*table).expect("open the table");
            assert_eq!(table.len().expect("count"), RECORDS);
        }
    }
}

/// A record as the floor's writer stores it: record key, envelope, payload
/// (empty unless the floor does the same work).
type FloorRow = (Vec<u8>, Vec<u8>, Vec<u8>);

/// The same envelopes as A's, their last 64 bytes replaced by `signer`'s
/// ed25519 signature of the rest: what [`Check::Dalek`] checks, as netabase
/// checks A's (one writer, the same lengths).
fn floor_signed(
    envelopes: &[(Vec<u8>, Vec<u8>)],
    signer: &ed25519_dalek::SigningKey,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    use ed25519_dalek::Signer;
    envelopes
        .iter()
        .map(|(key, envelope)| {
            let signed = envelope.len() - 64;
            let mut bytes = envelope[..signed].to_vec();
            bytes.extend_from_slice(&signer.sign(&bytes).to_bytes());
            (key.clone(), bytes)
        })
        .collect()
}

/// Checks a fetched batch as `check` says (panicking on a bad one: the
/// bench's server is honest) and returns the rows to store.
fn floor_check(batch: Vec<(Vec<u8>, Vec<u8>)>, check: Check) -> Vec<FloorRow> {
    match check {
        Check::Codec => {
            let checked =
                Envelope::from_bytes_many(batch.iter().map(|(_, e)| e.as_slice()), 1 << 20);
            batch
                .into_iter()
                .zip(checked)
                .map(|((key, bytes), envelope)| {
                    let payload = envelope.expect("a valid envelope").payload().to_vec();
                    (key, bytes, payload)
                })
                .collect()
        }
        Check::Dalek(key) => {
            let messages: Vec<&[u8]> = batch.iter().map(|(_, e)| &e[..e.len() - 64]).collect();
            let signatures: Vec<ed25519_dalek::Signature> = batch
                .iter()
                .map(|(_, e)| {
                    ed25519_dalek::Signature::from_slice(&e[e.len() - 64..])
                        .expect("64 signature bytes")
                })
                .collect();
            let keys = vec![key; batch.len()];
            ed25519_dalek::verify_batch(&messages, &signatures, &keys)
                .expect("every signature is valid");
            // As many bytes as a Note's payload, just before the signature.
            let payload = |e: &[u8]| e[e.len() - 64 - BODY_BYTES - 10..e.len() - 64].to_vec();
            batch
                .into_iter()
                .map(|(key, bytes)| {
                    let payload = payload(&bytes);
                    (key, bytes, payload)
                })
                .collect()
        }
    }
}

fn note(id: u64) -> Note {
    Note {
        id,
        topic: format!("topic-{}", id % 16),
        body: "n".repeat(BODY_BYTES),
    }
}

// ---------------------------------------------------------------------------
// Shared plumbing.

/// CPU time (user + system, every thread) this process has used so far,
/// from `/proc/self/stat` (Linux, 100 ticks a second); `None` elsewhere.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name: state is the 3rd field, utime the 14th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// Threads this process has now, from `/proc/self/status`; 0 if unknown.
fn thread_count() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// `cpu` used over `wall`, as "CPU time (cores busy on average)".
fn cpu_use(cpu: Option<Duration>, wall: Duration) -> String {
    match cpu {
        Some(cpu) => format!(
            "{cpu:?} CPU ({:.2} cores busy)",
            cpu.as_secs_f64() / wall.as_secs_f64()
        ),
        None => "CPU time unknown".to_string(),
    }
}

/// Node A: started, then (so that its start republishes nothing) filled with
/// [`RECORDS`] notes through `put_records_locally`.
async fn start_source(dir: &std::path::Path) -> Netabase {
    let a = Netabase::new_with_path(dir, NetabaseConfig::loopback()).expect("open node A");
    a.register::<Note>().expect("register Note");
    bounded("A's start_swarm", a.start_swarm())
        .await
        .expect("start A's swarm");
    for chunk in 0..RECORDS / WRITE_CHUNK {
        let notes: Vec<Note> = (chunk * WRITE_CHUNK..(chunk + 1) * WRITE_CHUNK)
            .map(note)
            .collect();
        let stored = bounded("put_records_locally", a.put_records_locally(notes))
            .await
            .expect("put_records_locally");
        assert_eq!(stored as u64, WRITE_CHUNK);
    }
    a
}

/// A's stored `(record key, envelope)` pairs, in key order.
fn envelopes_of(node: &Netabase) -> Vec<(Vec<u8>, Vec<u8>)> {
    let envelopes = node
        .store()
        .begin_read()
        .expect("begin a read")
        .envelopes()
        .expect("read the envelopes");
    assert_eq!(envelopes.len() as u64, RECORDS);
    envelopes
}

/// The reconciliation item set of `envelopes`, as a node keeps it.
fn item_set(envelopes: &[(Vec<u8>, Vec<u8>)]) -> ItemSet {
    let mut set = ItemSet::new();
    for (key, bytes) in envelopes {
        let envelope = Envelope::from_trusted_bytes(bytes).expect("a stored envelope");
        set.insert(
            key.clone(),
            ItemState {
                digest: reconcile::digest(bytes),
                timestamp: envelope.version().timestamp.0,
            },
        );
    }
    set
}

/// What running an exchange to its end produced.
struct Exchange {
    messages: usize,
    /// Encoded bytes of every message (when asked for).
    bytes: usize,
    /// Keys each side learnt it should fetch.
    a_wants: usize,
    b_wants: usize,
}

/// `initiate` on A, then `respond` alternately on B and A until a message is
/// empty; with `measure`, also the bincode size of every message.
fn exchange(a: &ItemSet, b: &ItemSet, measure: bool) -> Exchange {
    let size = |message: &Vec<Part>| {
        if measure {
            bincode::encode_to_vec(message, bincode::config::standard())
                .expect("encode a message")
                .len()
        } else {
            0
        }
    };
    let mut message = reconcile::initiate(a);
    let mut out = Exchange {
        messages: 1,
        bytes: size(&message),
        a_wants: 0,
        b_wants: 0,
    };
    let mut b_turn = true;
    while !message.is_empty() {
        assert!(out.messages < 1000, "the exchange does not end");
        let outcome = reconcile::respond(if b_turn { b } else { a }, &message)
            .expect("an honest message is well-formed");
        if b_turn {
            out.b_wants += outcome.want.len();
        } else {
            out.a_wants += outcome.want.len();
        }
        message = outcome.reply;
        out.messages += 1;
        out.bytes += size(&message);
        b_turn = !b_turn;
    }
    out
}

// ---------------------------------------------------------------------------
// The floor: two raw rust-libp2p swarms with request-response only. Same
// transport as netabase (tcp with nodelay + noise + yamux) and the same
// message framing as its sync codec (`net::RawCodec`).

type RawSwarm = Swarm<request_response::Behaviour<RawCodec>>;

fn raw_swarm(keypair: &Keypair) -> RawSwarm {
    raw_swarm_with(keypair, |_| {
        request_response::Behaviour::with_codec(
            RawCodec,
            [(RAW_PROTOCOL, ProtocolSupport::Full)],
            request_response::Config::default().with_request_timeout(WAIT),
        )
    })
}

/// The floor's A: serves the envelopes of the keys asked for, from memory
/// (as netabase serves them from its in-memory view), in its own task until
/// `stop` fires or drops. Returns its `/p2p` address.
async fn spawn_raw_server(
    rt: &Runtime,
    envelopes: &[(Vec<u8>, Vec<u8>)],
) -> (Multiaddr, oneshot::Sender<()>, JoinHandle<()>) {
    let mut swarm = raw_swarm(&Keypair::generate_ed25519());
    let peer = *swarm.local_peer_id();
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("a valid address"))
        .expect("listen on 127.0.0.1");
    let address = bounded("a raw listen address", async {
        loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                return address.with(Protocol::P2p(peer));
            }
        }
    })
    .await;
    let held: HashMap<Vec<u8>, Vec<u8>> = envelopes.iter().cloned().collect();
    let (stop, mut stopped) = oneshot::channel();
    let task = rt.spawn(async move {
        loop {
            tokio::select! {
                event = swarm.select_next_some() => {
                    if let SwarmEvent::Behaviour(request_response::Event::Message {
                        message: request_response::Message::Request { request, channel, .. },
                        ..
                    }) = event
                    {
                        let response: RawResponse = request
                            .iter()
                            .map(|key| held.get(key).cloned().unwrap_or_default())
                            .collect();
                        let _ = swarm.behaviour_mut().send_response(channel, response);
                    }
                }
                _ = &mut stopped => break,
            }
        }
    });
    (address, stop, task)
}

/// The floor's B: a fresh swarm dials the server, asks for every key in
/// batches of [`FLOOR_BATCH`] with [`FLOOR_IN_FLIGHT`] requests in flight,
/// and, with a database, hands each batch (checked first, with a check) to
/// a writer thread that commits it to redb durably ([`FloorKind::open`]
/// makes both). Timed from the swarm's build until every envelope is
/// received (and, with a database, committed).
async fn raw_catch_up(
    server: &Multiaddr,
    keys: &[Vec<u8>],
    (db, check): (Option<redb::Database>, Option<Check>),
) -> Duration {
    let server_peer = server
        .iter()
        .find_map(|p| match p {
            Protocol::P2p(peer) => Some(peer),
            _ => None,
        })
        .expect("a /p2p address");
    let keypair = Keypair::generate_ed25519();
    let start = Instant::now();

    // The writer: batches in, one durable commit each (all queued batches
    // together when it fell behind), counts out.
    let (stored_tx, mut stored_rx) = mpsc::unbounded_channel::<usize>();
    let same_work = check.is_some();
    let writer = db.map(|db| {
        let (batches, incoming) = std::sync::mpsc::channel::<Vec<FloorRow>>();
        let thread = std::thread::spawn(move || {
            while let Ok(first) = incoming.recv() {
                let mut taken = vec![first];
                if same_work {
                    taken.extend(incoming.try_iter().take(FLOOR_IN_FLIGHT - 1));
                }
                let txn = db.begin_write().expect("begin write");
                {
                    let mut envelopes = txn.open_table(RAW_ENVELOPES).expect("open the table");
                    // The same-work floor's other two rows: the record's
                    // payload by key, and its index entry.
                    let mut others = same_work.then(|| {
                        (
                            txn.open_table(RAW_RECORDS).expect("open the table"),
                            txn.open_table(RAW_INDEX).expect("open the table"),
                        )
                    });
                    for (key, envelope, payload) in taken.iter().flatten() {
                        envelopes
                            .insert(key.as_slice(), envelope.as_slice())
                            .expect("insert");
                        if let Some((records, index)) = &mut others {
                            records
                                .insert(key.as_slice(), payload.as_slice())
                                .expect("insert");
                            let mut entry = payload[..FLOOR_INDEX_BYTES].to_vec();
                            entry.extend_from_slice(key);
                            index.insert(entry.as_slice(), &[][..]).expect("insert");
                        }
                    }
                }
                txn.commit().expect("commit");
                let n = taken.iter().map(Vec::len).sum();
                if stored_tx.send(n).is_err() {
                    return;
                }
            }
        });
        (batches, thread)
    });

    let mut swarm = raw_swarm(&keypair);
    swarm.dial(server.clone()).expect("dial the server");
    let batches: Vec<&[Vec<u8>]> = keys.chunks(FLOOR_BATCH).collect();
    let mut next = 0;
    let mut in_flight: HashMap<OutboundRequestId, usize> = HashMap::new();
    let (mut received, mut stored) = (0usize, 0usize);
    let total = keys.len();
    let storing = writer.is_some();
    bounded("the raw catch-up to finish", async {
        while (if storing { stored } else { received }) < total {
            tokio::select! {
                event = swarm.select_next_some() => match event {
                    SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == server_peer => {
                        while next < batches.len() && in_flight.len() < FLOOR_IN_FLIGHT {
                            let id = swarm.behaviour_mut().send_request(&server_peer, batches[next].to_vec());
                            in_flight.insert(id, next);
                            next += 1;
                        }
                    }
                    SwarmEvent::Behaviour(request_response::Event::Message {
                        message: request_response::Message::Response { request_id, response },
                        ..
                    }) => {
                        let batch = in_flight.remove(&request_id).expect("a response to a request sent");
                        assert_eq!(response.len(), batches[batch].len(), "a full batch");
                        assert!(response.iter().all(|e| !e.is_empty()), "every key is held");
                        received += response.len();
                        if next < batches.len() {
                            let id = swarm.behaviour_mut().send_request(&server_peer, batches[next].to_vec());
                            in_flight.insert(id, next);
                            next += 1;
                        }
                        match (&writer, check) {
                            (Some((to_writer, _)), Some(check)) => {
                                // Checked off the swarm's task, as many
                                // batches at once as are in flight.
                                let pairs: Vec<_> = batches[batch].iter().cloned().zip(response).collect();
                                let to_writer = to_writer.clone();
                                tokio::task::spawn_blocking(move || {
                                    let rows = floor_check(pairs, check);
                                    to_writer.send(rows).expect("the writer is running");
                                });
                            }
                            (Some((to_writer, _)), None) => {
                                let rows = batches[batch]
                                    .iter()
                                    .cloned()
                                    .zip(response)
                                    .map(|(key, bytes)| (key, bytes, Vec::new()))
                                    .collect();
                                to_writer.send(rows).expect("the writer is running");
                            }
                            (None, _) => drop(black_box(response)),
                        }
                    }
                    SwarmEvent::Behaviour(request_response::Event::OutboundFailure { error, .. }) => {
                        panic!("a raw request failed: {error}")
                    }
                    SwarmEvent::OutgoingConnectionError { error, .. } => {
                        panic!("could not dial the raw server: {error}")
                    }
                    _ => {}
                },
                Some(n) = stored_rx.recv(), if storing => stored += n,
            }
        }
    })
    .await;
    let elapsed = start.elapsed();
    if let Some((batches, thread)) = writer {
        drop(batches);
        thread.join().expect("the writer thread");
    }
    elapsed
}

// ---------------------------------------------------------------------------
// catch_up_100k: a fresh node until it holds everything A holds.

/// The paired catch-up's sides: netabase's fresh node, and the same work on
/// raw parts ([`FloorKind::SameWork`]) with netabase's check and with
/// dalek's.
struct CatchUpSides<'a> {
    a: &'a Netabase,
    /// A's envelopes, and the same re-signed for [`Check::Dalek`].
    servers: [&'a Multiaddr; 2],
    keys: &'a [Vec<u8>],
    key: ed25519_dalek::VerifyingKey,
}

impl AsyncSides for CatchUpSides<'_> {
    async fn run(&mut self, side: usize) -> Duration {
        let (server, kind) = match side {
            0 => return netabase_catch_up(self.a, false).await,
            1 => (self.servers[0], FloorKind::SameWork(Check::Codec)),
            _ => (self.servers[1], FloorKind::SameWork(Check::Dalek(self.key))),
        };
        let db_dir = tempdir("netabase-bench-sync-");
        let path = db_dir.path().join("raw.redb");
        let elapsed = raw_catch_up(server, self.keys, kind.open(&path)).await;
        kind.check(&path);
        elapsed
    }
}

/// Starts a fresh, empty node B bootstrapped to A and times until B has
/// accepted every record; then checks them in B's typed tree and stops B.
/// With `report`, prints the process's CPU use, its most threads and where
/// catch-up's progress events stood when the last record was accepted.
async fn netabase_catch_up(a: &Netabase, report: bool) -> Duration {
    let dir = tempdir("netabase-bench-sync-");
    let config = NetabaseConfig {
        bootstrap_peers: vec![address_of(a)],
        ..NetabaseConfig::loopback()
    };
    let b = Netabase::new_with_path(dir.path().join("b"), config).expect("open node B");
    b.register::<Note>().expect("register Note");
    let mut events = b.subscribe_to_broadcasts();

    let cpu_before = process_cpu();
    let start = Instant::now();
    bounded("B's start_swarm", b.start_swarm())
        .await
        .expect("start B's swarm");
    // Catch-up progress is also announced per record (`Event::Record`); every
    // event is a cue to look at B's counters, which count a batch after its
    // commit and before its events. Lagging behind the events is harmless.
    // The first CatchUp event comes when reconciliation has found what to fetch.
    let mut first_catch_up: Option<Duration> = None;
    let mut caught_up_reported: Option<Duration> = None;
    let mut last_catch_up = None;
    let mut most_threads = 0;
    let waited = tokio::time::timeout(WAIT, async {
        while b.stats().accepted < RECORDS {
            match events.recv().await {
                Ok(Event::CatchUp {
                    received,
                    outstanding,
                    ..
                }) => {
                    first_catch_up.get_or_insert_with(|| start.elapsed());
                    if outstanding == 0 && caught_up_reported.is_none() {
                        caught_up_reported = Some(start.elapsed());
                    }
                    last_catch_up = Some((received, outstanding));
                    if report {
                        most_threads = most_threads.max(thread_count());
                    }
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("B's event stream closed"),
            }
        }
    })
    .await;
    let elapsed = start.elapsed();
    let cpu = process_cpu()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    if waited.is_err() {
        panic!(
            "timed out after {WAIT:?} waiting for B to accept {RECORDS} records (accepted {}, last catch-up event {last_catch_up:?})",
            b.stats().accepted
        );
    }

    let held = bounded(
        "B's count",
        b.query_local_records::<Note, _, _>(|tree| tree.len()),
    )
    .await
    .expect("count B's notes");
    assert_eq!(held, RECORDS, "B's typed tree holds every record");
    assert_eq!(b.stats().rejected_total(), 0, "B refused nothing");
    if report {
        eprintln!(
            "catch_up_100k/netabase: all {RECORDS} accepted after {elapsed:?}, {}, at most {most_threads} threads; \
             first CatchUp event (reconciliation done) at {first_catch_up:?}; \
             first CatchUp event with outstanding 0 at {caught_up_reported:?}; \
             last CatchUp event seen (received, outstanding): {last_catch_up:?}",
            cpu_use(cpu, elapsed)
        );
    }
    bounded("B's stop_swarm", b.stop_swarm())
        .await
        .expect("stop B's swarm");
    drop(b);
    drop(dir);
    elapsed
}

fn catch_up_100k(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempdir("netabase-bench-sync-");
    let a = rt.block_on(start_source(&dir.path().join("a")));
    let envelopes = envelopes_of(&a);
    let keys: Vec<Vec<u8>> = envelopes.iter().map(|(k, _)| k.clone()).collect();
    let envelope_bytes: usize = envelopes.iter().map(|(_, e)| e.len()).sum();
    let key_bytes: usize = keys.iter().map(Vec::len).sum();
    // What the first reconciliation message of a fresh node costs: A lists
    // every item to B.
    let from_empty = exchange(&ItemSet::new(), &item_set(&envelopes), true);
    eprintln!(
        "catch_up_100k: {RECORDS} envelopes of {}..{} bytes ({envelope_bytes} in all), record keys {key_bytes} bytes in all; reconciling an empty node with A: {} messages, {} encoded bytes, {} keys wanted",
        envelopes.iter().map(|(_, e)| e.len()).min().unwrap_or(0),
        envelopes.iter().map(|(_, e)| e.len()).max().unwrap_or(0),
        from_empty.messages,
        from_empty.bytes,
        from_empty.a_wants,
    );

    let mut group = c.benchmark_group("catch_up_100k");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.throughput(Throughput::Elements(RECORDS));

    let mut report = true;
    group.bench_function("netabase/fresh_node", |bench| {
        bench.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += netabase_catch_up(&a, std::mem::take(&mut report)).await;
                }
                total
            })
        })
    });

    let (server, stop, server_task) = rt.block_on(spawn_raw_server(&rt, &envelopes));
    let signer = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
    let (signed_server, signed_stop, signed_task) =
        rt.block_on(spawn_raw_server(&rt, &floor_signed(&envelopes, &signer)));
    let floors: [(&str, &Multiaddr, FloorKind); 4] = [
        (
            "raw_same_work/check_store_3_rows_durable",
            &server,
            FloorKind::SameWork(Check::Codec),
        ),
        (
            "raw_same_work_dalek/check_store_3_rows_durable",
            &signed_server,
            FloorKind::SameWork(Check::Dalek(signer.verifying_key())),
        ),
        (
            "raw_libp2p_redb/batch_512_x4_durable",
            &server,
            FloorKind::Envelopes,
        ),
        ("raw_libp2p/batch_512_x4", &server, FloorKind::None),
    ];
    for (name, server, kind) in floors {
        let mut report = true;
        group.bench_function(name, |bench| {
            bench.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let db_dir = tempdir("netabase-bench-sync-");
                        let path = db_dir.path().join("raw.redb");
                        let floor = kind.open(&path);
                        let cpu_before = process_cpu();
                        let elapsed = raw_catch_up(server, &keys, floor).await;
                        if std::mem::take(&mut report) {
                            let cpu = process_cpu().zip(cpu_before).map(|(a, b)| a - b);
                            eprintln!(
                                "catch_up_100k/{name}: {elapsed:?}, {}",
                                cpu_use(cpu, elapsed)
                            );
                        }
                        total += elapsed;
                        kind.check(&path);
                    }
                    total
                })
            })
        });
    }
    group.finish();

    let mut sides = CatchUpSides {
        a: &a,
        servers: [&server, &signed_server],
        keys: &keys,
        key: signer.verifying_key(),
    };
    paired(
        c,
        "catch_up_100k_paired",
        &rt,
        "fresh_node",
        &["netabase", "raw_same_work", "raw_same_work_dalek"],
        &mut sides,
    );

    let _ = stop.send(());
    let _ = signed_stop.send(());
    rt.block_on(async {
        let _ = bounded("the raw server to stop", server_task).await;
        let _ = bounded("the raw server to stop", signed_task).await;
        bounded("A's stop_swarm", a.stop_swarm())
            .await
            .expect("stop A's swarm");
    });
}

// ---------------------------------------------------------------------------
// reconcile_equal_100k: two peers holding the same records agree.

fn reconcile_equal_100k(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempdir("netabase-bench-sync-");
    let a = rt.block_on(start_source(&dir.path().join("a")));
    let envelopes = envelopes_of(&a);
    // Two sets built apart, as two peers would hold them.
    let (set_a, set_b) = (item_set(&envelopes), item_set(&envelopes));
    let digests: Vec<u128> = envelopes
        .iter()
        .map(|(_, e)| reconcile::digest(e))
        .collect();

    let measured = exchange(&set_a, &set_b, true);
    assert_eq!((measured.a_wants, measured.b_wants), (0, 0));
    eprintln!(
        "reconcile_equal_100k: {} messages, {} bincode-encoded bytes in all",
        measured.messages, measured.bytes
    );

    let mut group = c.benchmark_group("reconcile_equal_100k");
    group.sample_size(10);
    group.bench_function("netabase/initiate_respond", |bench| {
        bench.iter(|| {
            let done = exchange(black_box(&set_a), black_box(&set_b), false);
            assert_eq!(done.a_wants + done.b_wants, 0);
            done.messages
        })
    });
    // Two nodes that hold the same records: B caught up from A once, then
    // each iteration is one `catch_up()` round until B reports it done.
    let b_dir = tempdir("netabase-bench-sync-");
    let b = rt.block_on(async {
        let b = Netabase::new_with_path(
            b_dir.path().join("b"),
            NetabaseConfig {
                bootstrap_peers: vec![address_of(&a)],
                catch_up_interval: None,
                ..NetabaseConfig::loopback()
            },
        )
        .expect("open node B");
        b.register::<Note>().expect("register Note");
        let mut events = b.subscribe_to_broadcasts();
        bounded("B's start_swarm", b.start_swarm())
            .await
            .expect("start B");
        caught_up(&mut events, a.peer_id()).await;
        assert_eq!(b.sync_fingerprint().unwrap(), a.sync_fingerprint().unwrap());
        b
    });
    group.bench_function("netabase/node_round", |bench| {
        bench.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let mut events = b.subscribe_to_broadcasts();
                    let start = Instant::now();
                    b.catch_up().await.expect("B is running");
                    let received = caught_up(&mut events, a.peer_id()).await;
                    total += start.elapsed();
                    assert_eq!(received, 0, "equal sets: nothing to fetch");
                }
                total
            })
        })
    });
    // The least a peer must do to learn two sets are equal: fingerprint its
    // whole set, once on each side.
    group.bench_function("raw_vec/xor_fingerprint_both_sides", |bench| {
        bench.iter(|| {
            let fingerprint = |digests: &[u128]| {
                digests
                    .iter()
                    .fold((0u128, 0u64), |(xor, count), d| (xor ^ d, count + 1))
            };
            let ours = fingerprint(black_box(&digests));
            let theirs = fingerprint(black_box(&digests));
            assert_eq!(ours, theirs);
            ours
        })
    });
    group.finish();
    rt.block_on(async {
        bounded("B's stop_swarm", b.stop_swarm())
            .await
            .expect("stop B's swarm");
        bounded("A's stop_swarm", a.stop_swarm())
            .await
            .expect("stop A's swarm");
    });
}

/// Waits (bounded) for `Event::CaughtUp` from `peer`; returns what it received.
async fn caught_up(events: &mut broadcast::Receiver<Event>, peer: netabase::PeerId) -> u64 {
    bounded("a finished catch-up", async {
        loop {
            match events.recv().await {
                Ok(Event::CaughtUp {
                    peer: p, received, ..
                }) if p == peer => return received,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("event stream closed"),
            }
        }
    })
    .await
}

// ---------------------------------------------------------------------------
// reconcile_fresh_1m: an empty peer learns a large set.

/// Runs the exchange from the empty side `a`, every message through bincode
/// as on the wire; returns (messages, encoded bytes, keys `a` wants).
fn wire_exchange(a: &ItemSet, b: &ItemSet) -> (usize, usize, usize) {
    let config = bincode::config::standard();
    let mut message = reconcile::initiate(a);
    let (mut messages, mut bytes, mut wants) = (0, 0, 0);
    let mut b_turn = true;
    loop {
        let encoded = bincode::encode_to_vec(&message, config).expect("encode a message");
        messages += 1;
        bytes += encoded.len();
        if message.is_empty() {
            return (messages, bytes, wants);
        }
        assert!(messages < 10_000, "the exchange does not end");
        let (decoded, _): (Vec<Part>, usize) =
            bincode::decode_from_slice(&encoded, config).expect("decode a message");
        let outcome = reconcile::respond(if b_turn { b } else { a }, &decoded)
            .expect("an honest message is well-formed");
        if !b_turn {
            wants += outcome.want.len();
        }
        message = outcome.reply;
        b_turn = !b_turn;
    }
}

fn reconcile_fresh_1m(c: &mut Criterion) {
    const ITEMS: u64 = 1_000_000;
    let key = |i: u64| {
        let mut key = 7u32.to_be_bytes().to_vec();
        key.extend(i.to_be_bytes());
        key
    };
    let full = ItemSet::from_sorted((0..ITEMS).map(|i| {
        let state = ItemState {
            digest: reconcile::digest(&i.to_le_bytes()),
            timestamp: 1_700_000_000_000 << 16,
        };
        (key(i), state)
    }))
    .expect("keys in order");
    let empty = ItemSet::new();
    let items: Vec<Item> = full.items(&KeyRange::all()).collect();
    let learned = bincode::encode_to_vec(&items, bincode::config::standard())
        .expect("encode the items")
        .len();
    let (messages, bytes, wants) = wire_exchange(&empty, &full);
    assert_eq!(wants as u64, ITEMS);
    eprintln!(
        "reconcile_fresh_1m: {messages} messages, {bytes} encoded bytes; the keys and states learned are {learned} bytes: {:.3}x",
        bytes as f64 / learned as f64
    );
    let mut group = c.benchmark_group("reconcile_fresh_1m");
    group.sample_size(10);
    group.throughput(Throughput::Elements(ITEMS));
    group.bench_function("netabase/exchange", |bench| {
        bench.iter(|| wire_exchange(black_box(&empty), black_box(&full)))
    });
    group.bench_function("raw_bincode/encode_decode_items", |bench| {
        bench.iter(|| {
            let config = bincode::config::standard();
            let encoded = bincode::encode_to_vec(black_box(&items), config).expect("encode");
            let (decoded, _): (Vec<Item>, usize) =
                bincode::decode_from_slice(&encoded, config).expect("decode");
            decoded.len()
        })
    });
    group.finish();
}

// ---------------------------------------------------------------------------
// verify_512: what bounds catch-up, one fetched batch's signature checks.

/// Envelopes per batch: a fetch's.
const VERIFY_BATCH: usize = 512;

fn verify_512(c: &mut Criterion) {
    use ed25519_dalek::{Signer, SigningKey, Verifier};
    let mut group = c.benchmark_group("verify_512");
    group.throughput(Throughput::Elements(VERIFY_BATCH as u64));
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64;
    for writers in [1usize, 8] {
        let keys: Vec<Keypair> = (0..writers).map(|_| Keypair::generate_ed25519()).collect();
        let envelopes: Vec<Vec<u8>> = (0..VERIFY_BATCH)
            .map(|i| {
                let stamp = netabase::sync::Timestamp::new(millis, i as u16);
                Envelope::seal(&keys[i % writers], &note(i as u64), stamp)
                    .expect("seal a note")
                    .as_bytes()
                    .to_vec()
            })
            .collect();
        group.bench_function(format!("netabase/from_bytes_many/{writers}_writers"), |b| {
            b.iter(|| {
                let checked =
                    Envelope::from_bytes_many(envelopes.iter().map(Vec::as_slice), 1 << 20);
                assert!(checked.iter().all(Result::is_ok));
                checked
            })
        });
        // The floor: dalek's batch over signatures of messages as long as
        // the envelopes' signed part, by as many writers.
        let signers: Vec<SigningKey> = (0..writers)
            .map(|w| SigningKey::from_bytes(&[w as u8 + 1; 32]))
            .collect();
        let messages: Vec<Vec<u8>> = envelopes
            .iter()
            .map(|e| e[..e.len() - 64].to_vec())
            .collect();
        let signatures: Vec<ed25519_dalek::Signature> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| signers[i % writers].sign(m))
            .collect();
        let verifying: Vec<ed25519_dalek::VerifyingKey> = (0..VERIFY_BATCH)
            .map(|i| signers[i % writers].verifying_key())
            .collect();
        let slices: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        group.bench_function(format!("raw_dalek/verify_batch/{writers}_writers"), |b| {
            b.iter(|| ed25519_dalek::verify_batch(&slices, &signatures, &verifying).expect("valid"))
        });
        if writers == 1 {
            group.bench_function("raw_dalek/verify_each", |b| {
                b.iter(|| {
                    for ((m, s), k) in slices.iter().zip(&signatures).zip(&verifying) {
                        k.verify(m, s).expect("valid");
                    }
                })
            });
        }
    }
    group.finish();
}

// ---------------------------------------------------------------------------

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .with_profiler(PProfProfiler::new(100, Output::Flamegraph(None)))
}

criterion_group! {
    name = benches;
    config = config();
    targets = catch_up_100k, reconcile_equal_100k, reconcile_fresh_1m, verify_512,
}
criterion_main!(benches);
