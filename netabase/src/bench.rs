//! Benchmarks for your own models (feature `bench`). A bench target of
//! five lines measures every model you name, at the sizes its `Sample`
//! makes:
//!
//! ```ignore
//! // benches/my_models.rs, with `[[bench]] name = "my_models", harness = false`
//! // and netabase's `bench` feature.
//! use my_app::{Order, User};
//! netabase::bench_main!(User, Order);
//! ```
//!
//! `cargo bench --bench my_models` runs, per model (groups are named
//! `<Model>/<what>`): `put` (one durable and one eventual commit, at 100,
//! 1,000 and 10,000 sample bytes), `put_many` (10,000 records in one
//! transaction), `get` (by primary key, among 1,000), `index_<field>` for
//! each secondary index (`lookup` of one value, `range` over a tenth of the
//! values), `scan` (1,000 records), and `node` (`put_record` to two
//! loopback peers; a fresh node catching up 10,000 records). Add
//! `-- --profile-time=5 <Model>/` for flamegraphs under `target/criterion`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};

use crate::key::KeyEncode;
use crate::model::{IndexEntries, NetabaseModel};
use crate::node::{Event, Netabase, NetabaseConfig};
use crate::sample::Sample;
use crate::store::{Durability, Lookup, Store};

pub use criterion;

/// Records in the trees the read benches query.
const RECORDS: u64 = 1_000;
/// Records written in one `put_many`, and caught up by a fresh node.
const MANY: u64 = 10_000;
/// Sample sizes of the put benches, in bytes.
const SIZES: [usize; 3] = [100, 1_000, 10_000];
/// Bound on every wait of the node benches.
const WAIT: Duration = Duration::from_secs(120);

/// The criterion configuration the generated benches run with: short
/// runs, flamegraphs on `--profile-time`.
pub fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .with_profiler(pprof::criterion::PProfProfiler::new(
            100,
            pprof::criterion::Output::Flamegraph(None),
        ))
}

/// Every generated group for `M`.
pub fn model<M: NetabaseModel + Sample>(c: &mut Criterion) {
    storage::<M>(c);
    node::<M>(c);
}

/// The model's short name, for group names.
fn short<M: NetabaseModel>() -> &'static str {
    M::NAME.rsplit("::").next().unwrap_or(M::NAME)
}

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("netabase-bench-")
        .tempdir()
        .expect("create a scratch directory")
}

fn open(dir: &tempfile::TempDir, name: &str, durability: Durability) -> Store {
    Store::builder()
        .durability(durability)
        .open(dir.path().join(name))
        .expect("open a store")
}

/// The local store benches of `M`.
pub fn storage<M: NetabaseModel + Sample>(c: &mut Criterion) {
    let name = short::<M>();
    let dir = scratch();

    let mut group = c.benchmark_group(format!("{name}/put"));
    for (label, durability) in [
        ("durable", Durability::Immediate),
        ("eventual", Durability::Eventual),
    ] {
        let tree = open(&dir, &format!("put-{label}.redb"), durability).tree::<M>();
        for size in SIZES {
            let mut seed = 0;
            group.bench_function(BenchmarkId::new(label, size), |b| {
                b.iter_batched(
                    || {
                        seed += 1;
                        M::sample(seed, size)
                    },
                    |record| tree.put(&record).expect("put"),
                    criterion::BatchSize::SmallInput,
                )
            });
        }
    }
    group.finish();

    let mut group = c.benchmark_group(format!("{name}/put_many"));
    let store = open(&dir, "put-many.redb", Durability::Immediate);
    let mut round = 0;
    group.bench_function(BenchmarkId::from_parameter(MANY), |b| {
        b.iter_batched(
            || {
                round += 1;
                (0..MANY)
                    .map(|i| M::sample(round * MANY + i, 100))
                    .collect::<Vec<_>>()
            },
            |records| store.tree::<M>().put_many(&records).expect("put_many"),
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();

    // The read benches share one tree of RECORDS records.
    let store = open(&dir, "read.redb", Durability::Eventual);
    let records: Vec<M> = (0..RECORDS).map(|seed| M::sample(seed, 256)).collect();
    store.tree::<M>().put_many(&records).expect("fill");
    store.flush().expect("flush");
    let keys: Vec<M::Key> = records.iter().map(NetabaseModel::key).collect();

    let mut group = c.benchmark_group(format!("{name}/get"));
    let tree = store.tree::<M>();
    let mut i = 0;
    group.bench_function("by_primary_key", |b| {
        b.iter(|| {
            i = (i + 7) % keys.len();
            black_box(tree.get(&keys[i]).expect("get"))
        })
    });
    group.finish();

    for (index, spec) in M::INDEXES.iter().enumerate() {
        // The values the records hold for this index, sorted.
        let mut values: Vec<Vec<u8>> = Vec::new();
        let mut entries = IndexEntries::new();
        for record in &records {
            entries.clear();
            record.index_entries(&mut entries);
            values.extend(
                entries
                    .iter()
                    .filter(|(i, _)| *i == index)
                    .map(|(_, v)| v.to_vec()),
            );
        }
        values.sort();
        values.dedup();
        if values.is_empty() {
            continue;
        }
        let mut group = c.benchmark_group(format!("{name}/index_{}", spec.name));
        let mut i = 0;
        group.bench_function("lookup", |b| {
            b.iter(|| {
                i = (i + 7) % values.len();
                black_box(tree.index_get(index, &Raw(&values[i])).expect("lookup"))
            })
        });
        let tenth = values[(values.len() / 10).min(values.len() - 1)].clone();
        group.bench_function("range", |b| {
            b.iter(|| {
                black_box(
                    tree.index_range(index, Raw(&values[0])..=Raw(&tenth))
                        .expect("range"),
                )
            })
        });
        group.finish();
    }

    let mut group = c.benchmark_group(format!("{name}/scan"));
    group.bench_function(BenchmarkId::from_parameter(RECORDS), |b| {
        b.iter(|| {
            let txn = store.begin_read().expect("read");
            let tree = txn.open_tree::<M>().expect("tree");
            tree.iter().expect("iter").count()
        })
    });
    group.finish();
}

/// Already-encoded index values, passed through as they are.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Raw<'a>(&'a [u8]);

impl KeyEncode for Raw<'_> {
    fn encode_key(&self, out: &mut crate::key::KeyBuf) {
        out.extend_from_slice(self.0);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("build a tokio runtime")
}

async fn start<M: NetabaseModel>(
    dir: &std::path::Path,
    bootstrap: &[&Netabase],
    durability: Durability,
) -> Netabase {
    let config = NetabaseConfig {
        durability,
        catch_up_interval: None,
        bootstrap_peers: bootstrap.iter().flat_map(|n| n.addresses()).collect(),
        ..NetabaseConfig::loopback()
    };
    let node = Netabase::new_with_path(dir, config).expect("open a node");
    node.register::<M>().expect("register the model");
    node.start_swarm().await.expect("start the swarm");
    node
}

/// `fut`, or a panic naming `what` after [`WAIT`].
async fn bounded<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// The node benches of `M`: publishing to loopback peers, and catching up.
pub fn node<M: NetabaseModel + Sample>(c: &mut Criterion) {
    let name = short::<M>();
    let rt = runtime();
    let dir = scratch();
    let mut group = c.benchmark_group(format!("{name}/node"));

    let (a, b, c2) = rt.block_on(async {
        let a = start::<M>(&dir.path().join("a"), &[], Durability::Immediate).await;
        let mut a_events = a.subscribe_to_broadcasts();
        let b = start::<M>(&dir.path().join("b"), &[&a], Durability::Immediate).await;
        let c = start::<M>(&dir.path().join("c"), &[&a], Durability::Immediate).await;
        let mut met = 0;
        bounded("the peers to connect", async {
            while met < 2 {
                if let Ok(Event::PeerConnected(_)) = a_events.recv().await {
                    met += 1;
                }
            }
        })
        .await;
        (a, b, c)
    });
    let mut seed = MANY * 10;
    group.bench_function("put_record_two_peers", |bench| {
        bench.iter(|| {
            seed += 1;
            rt.block_on(a.put_record(M::sample(seed, 256)))
                .expect("put_record")
        })
    });

    // A source of MANY records, and a fresh node catching up each time.
    let source = rt.block_on(async {
        let source = start::<M>(&dir.path().join("source"), &[], Durability::Eventual).await;
        let records = (0..MANY).map(|s| M::sample(s, 256)).collect();
        source
            .put_records_locally(records)
            .await
            .expect("fill the source");
        source
    });
    let mut round = 0;
    group.bench_function(BenchmarkId::new("catch_up", MANY), |bench| {
        bench.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    round += 1;
                    let fresh_dir = dir.path().join(format!("fresh-{round}"));
                    let config = NetabaseConfig {
                        durability: Durability::Eventual,
                        catch_up_interval: None,
                        bootstrap_peers: source.addresses(),
                        ..NetabaseConfig::loopback()
                    };
                    let fresh = Netabase::new_with_path(&fresh_dir, config).expect("open");
                    fresh.register::<M>().expect("register");
                    let mut events = fresh.subscribe_to_broadcasts();
                    let begin = Instant::now();
                    fresh.start_swarm().await.expect("start");
                    bounded("the catch-up", async {
                        loop {
                            if let Ok(Event::CaughtUp { peer, .. }) = events.recv().await {
                                if peer == source.peer_id() {
                                    return;
                                }
                            }
                        }
                    })
                    .await;
                    total += begin.elapsed();
                    fresh.shutdown().await.expect("shut down");
                    let _ = std::fs::remove_dir_all(&fresh_dir);
                }
                total
            })
        })
    });
    group.finish();
    rt.block_on(async {
        for node in [a, b, c2, source] {
            let _ = node.shutdown().await;
        }
    });
}

/// A criterion `main` benchmarking each model listed (each must implement
/// `Sample`, which the derive gives models whose field types all do):
/// `netabase::bench_main!(User, Order);`. Needs netabase's `bench` feature.
#[macro_export]
macro_rules! bench_main {
    ($($model:ty),+ $(,)?) => {
        fn __netabase_benches(c: &mut $crate::bench::criterion::Criterion) {
            $( $crate::bench::model::<$model>(c); )+
        }
        $crate::bench::criterion::criterion_group! {
            name = __netabase_bench_group;
            config = $crate::bench::config();
            targets = __netabase_benches
        }
        $crate::bench::criterion::criterion_main!(__netabase_bench_group);
    };
}
