//! What a write rule costs: the same records, the same work, under
//! `anyone` (no check) and under `owner` and `members`, in one group each,
//! beside the floor (raw redb). Read `<group>/<rule>/..` against
//! `<group>/anyone/..`. Puts and catch-ups are measured paired (see
//! `paired`): each iteration runs all three rules, so drift cancels.
//!
//! ```text
//! cargo bench --features bench --bench rules
//! ```
//!
//! | group | what |
//! |---|---|
//! | `rule_put_local` | `put_record_locally` replacing one of 100 held records (no fsync: the CPU share shows) |
//! | `rule_get_local` | `get_record` of a held record |
//! | `rule_catch_up` | a fresh node catching up 2,000 records from a peer |
//!
//! Every wait is bounded (`net::WAIT`).

mod net;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use net::{address_of, bounded, runtime, tempdir};
use netabase::node::{Event, Netabase, NetabaseConfig};
use netabase::{Durability, NetabaseModel, PeerId};
use pprof::criterion::{Output, PProfProfiler};

/// Under `anyone`; the same fields as the others, so the records weigh the same.
#[derive(NetabaseModel, Clone, Debug, PartialEq)]
#[netabase(name = "AnyNote")]
pub struct AnyNote {
    #[primary_key]
    pub id: u64,
    pub owner: PeerId,
    pub body: String,
}

/// Under `owner`.
#[derive(NetabaseModel, Clone, Debug, PartialEq)]
#[netabase(name = "OwnedNote", write = "owner")]
pub struct OwnedNote {
    #[primary_key]
    pub id: u64,
    #[owner]
    pub owner: PeerId,
    pub body: String,
}

/// Under `members` (the writer is the model's admin).
#[derive(NetabaseModel, Clone, Debug, PartialEq)]
#[netabase(name = "MemberNote", write = "members")]
pub struct MemberNote {
    #[primary_key]
    pub id: u64,
    pub owner: PeerId,
    pub body: String,
}

const BODY: usize = 1000;
const HELD: u64 = 100;
const CATCH_UP: u64 = 2_000;

/// A node with the three models; with `admin`, it administers `MemberNote`.
async fn node(dir: &std::path::Path, bootstrap: &[&Netabase], admin: Option<PeerId>) -> Netabase {
    let config = NetabaseConfig {
        durability: Durability::Eventual,
        catch_up_interval: None,
        bootstrap_peers: bootstrap.iter().map(|n| address_of(n)).collect(),
        admins: admin
            .map(|a| [(MemberNote::NAME.to_string(), vec![a])].into())
            .unwrap_or_default(),
        ..NetabaseConfig::loopback()
    };
    let node = Netabase::new_with_path(dir, config).expect("open a node");
    node.register::<AnyNote>().unwrap();
    node.register::<OwnedNote>().unwrap();
    node.register::<MemberNote>().unwrap();
    node
}

/// The peer id a node directory will have (its identity is created on open).
async fn peer_id_of(dir: &std::path::Path) -> PeerId {
    let node = Netabase::new_with_path(dir, NetabaseConfig::loopback()).unwrap();
    let id = node.peer_id();
    node.shutdown().await.unwrap();
    id
}

macro_rules! notes {
    ($model:ident, $owner:expr, $id:expr, $n:expr) => {
        $model {
            id: $id,
            owner: $owner,
            body: format!("{:0width$}", $n, width = BODY),
        }
    };
}

fn rule_put_local(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempdir("netabase-rules-put");
    let me = rt.block_on(peer_id_of(dir.path()));
    let node = rt.block_on(node(dir.path(), &[], Some(me)));
    rt.block_on(async {
        for id in 0..HELD {
            node.put_record_locally(notes!(AnyNote, me, id, 0))
                .await
                .unwrap();
            node.put_record_locally(notes!(OwnedNote, me, id, 0))
                .await
                .unwrap();
            node.put_record_locally(notes!(MemberNote, me, id, 0))
                .await
                .unwrap();
        }
    });
    let mut group = c.benchmark_group("rule_put_local");
    let mut n = 0u64;
    paired(&mut group, "replace_1KiB", |rule| {
        n += 1;
        let id = n % HELD;
        let start = Instant::now();
        let written = match rule {
            Rule::Anyone => rt.block_on(node.put_record_locally(notes!(AnyNote, me, id, n))),
            Rule::Owner => rt.block_on(node.put_record_locally(notes!(OwnedNote, me, id, n))),
            Rule::Members => rt.block_on(node.put_record_locally(notes!(MemberNote, me, id, n))),
        };
        black_box(written.unwrap());
        start.elapsed()
    });
    // The floor: the same bytes into a redb table, one commit without fsync.
    let db = redb::Database::create(dir.path().join("floor.redb")).unwrap();
    let table: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("floor");
    let value = vec![7u8; BODY + 200];
    group.bench_function("raw_redb/commit_1KiB_no_fsync", |b| {
        b.iter(|| {
            n += 1;
            let mut txn = db.begin_write().unwrap();
            txn.set_durability(redb::Durability::None).unwrap();
            txn.open_table(table)
                .unwrap()
                .insert(n % HELD, value.as_slice())
                .unwrap();
            txn.commit().unwrap();
        })
    });
    group.finish();
    rt.block_on(node.shutdown()).unwrap();
}

fn rule_get_local(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempdir("netabase-rules-get");
    let me = rt.block_on(peer_id_of(dir.path()));
    let node = rt.block_on(node(dir.path(), &[], Some(me)));
    rt.block_on(async {
        node.put_record_locally(notes!(AnyNote, me, 1, 0))
            .await
            .unwrap();
        node.put_record_locally(notes!(OwnedNote, me, 1, 0))
            .await
            .unwrap();
        node.put_record_locally(notes!(MemberNote, me, 1, 0))
            .await
            .unwrap();
    });
    let mut group = c.benchmark_group("rule_get_local");
    group.bench_function("anyone/get_record", |b| {
        b.iter(|| {
            black_box(
                rt.block_on(node.get_record::<AnyNote>(AnyNoteKey(1)))
                    .unwrap(),
            )
        })
    });
    group.bench_function("owner/get_record", |b| {
        b.iter(|| {
            black_box(
                rt.block_on(node.get_record::<OwnedNote>(OwnedNoteKey(1)))
                    .unwrap(),
            )
        })
    });
    group.bench_function("members/get_record", |b| {
        b.iter(|| {
            black_box(
                rt.block_on(node.get_record::<MemberNote>(MemberNoteKey(1)))
                    .unwrap(),
            )
        })
    });
    // The floor: decoding the same record's bytes (what a cached get costs at least).
    let bytes = netabase::codec::encode(&notes!(AnyNote, me, 1, 0)).unwrap();
    group.bench_function("raw_bincode/decode_1KiB", |b| {
        b.iter(|| black_box(netabase::codec::decode::<AnyNote>(&bytes).unwrap()))
    });
    group.finish();
    rt.block_on(node.shutdown()).unwrap();
}

/// A fresh node catching up `CATCH_UP` records of one model from `source`.
async fn fresh_catch_up(source: &Netabase, admin: PeerId) -> Duration {
    let dir = tempdir("netabase-rules-fresh");
    let fresh = node(dir.path(), &[source], Some(admin)).await;
    let mut events = fresh.subscribe_to_broadcasts();
    let start = Instant::now();
    fresh.start_swarm().await.unwrap();
    bounded("the fresh node's catch-up", async {
        loop {
            if let Ok(Event::CaughtUp {
                peer,
                received,
                refused,
            }) = events.recv().await
            {
                if peer == source.peer_id() {
                    // Caught up means holding what the source holds.
                    assert_eq!(
                        fresh.sync_fingerprint().unwrap(),
                        source.sync_fingerprint().unwrap(),
                        "caught up with {received} received, {refused} refused"
                    );
                    return;
                }
            }
        }
    })
    .await;
    let took = start.elapsed();
    fresh.shutdown().await.unwrap();
    took
}

fn rule_catch_up(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("rule_catch_up");
    group.sample_size(10);
    let mut sources = Vec::new();
    for rule in RULES {
        let dir = tempdir("netabase-rules-source");
        let me = rt.block_on(peer_id_of(dir.path()));
        let source = rt.block_on(async {
            let source = node(dir.path(), &[], Some(me)).await;
            // Each source holds one model's records only.
            match rule {
                Rule::Anyone => {
                    let all = (0..CATCH_UP)
                        .map(|id| notes!(AnyNote, me, id, id))
                        .collect();
                    source.put_records_locally::<AnyNote>(all).await.unwrap();
                }
                Rule::Owner => {
                    let all = (0..CATCH_UP)
                        .map(|id| notes!(OwnedNote, me, id, id))
                        .collect();
                    source.put_records_locally::<OwnedNote>(all).await.unwrap();
                }
                Rule::Members => {
                    let all = (0..CATCH_UP)
                        .map(|id| notes!(MemberNote, me, id, id))
                        .collect();
                    source.put_records_locally::<MemberNote>(all).await.unwrap();
                }
            }
            source.start_swarm().await.unwrap();
            source
        });
        sources.push((dir, me, source));
    }
    paired(&mut group, "fresh_node_2000", |rule| {
        let (_, me, source) = &sources[rule as usize];
        rt.block_on(fresh_catch_up(source, *me))
    });
    group.finish();
    for (_, _, source) in sources {
        rt.block_on(source.shutdown()).unwrap();
    }
}

/// The rules compared, in the order `paired` rotates through.
#[derive(Clone, Copy, Debug)]
enum Rule {
    Anyone,
    Owner,
    Members,
}

const RULES: [Rule; 3] = [Rule::Anyone, Rule::Owner, Rule::Members];

/// `<rule>/<what>` for each rule, measured paired: every iteration of
/// every bench runs the work once under each rule, in an order that
/// rotates, and reports only its own rule's time. The machine's drift
/// between benches (often larger than a rule's cost here) then falls on all
/// three alike, and the ratios to `anyone` are read from one run.
/// Criterion still measures each bench in its own window of time, so
/// `paired` also sums every rule's time over all iterations of all three
/// benches (each of which ran every rule alike) and prints each rule's
/// ratio to `anyone` from those sums: the figure to read.
fn paired(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    what: &str,
    mut run: impl FnMut(Rule) -> Duration,
) {
    let totals = std::cell::RefCell::new([Duration::ZERO; 3]);
    for (k, rule) in RULES.into_iter().enumerate() {
        let name = format!("{rule:?}").to_lowercase();
        group.bench_function(format!("{name}/{what}"), |b| {
            b.iter_custom(|iters| {
                let mut own = Duration::ZERO;
                for i in 0..iters as usize {
                    for j in 0..RULES.len() {
                        let r = (i + j) % RULES.len();
                        let took = run(RULES[r]);
                        totals.borrow_mut()[r] += took;
                        if r == k {
                            own += took;
                        }
                    }
                }
                own
            })
        });
    }
    let totals = totals.into_inner();
    let anyone = totals[0].as_secs_f64();
    if anyone > 0.0 {
        println!(
            "{what}, paired over every iteration: owner {:.3}x, members {:.3}x anyone",
            totals[1].as_secs_f64() / anyone,
            totals[2].as_secs_f64() / anyone,
        );
    }
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .with_profiler(PProfProfiler::new(100, Output::Flamegraph(None)))
}

criterion_group! {
    name = benches;
    config = config();
    targets = rule_put_local, rule_get_local, rule_catch_up,
}
criterion_main!(benches);
