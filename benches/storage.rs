//! The storage layer against its floor: every group measures netabase and the
//! same work hand-written on raw redb + bincode (see `common/models.rs`), in
//! the same run, on file-backed databases. Read the ratio
//! `netabase/<Model>/..` : `raw_redb/<Model>/..`, not absolute times.
//!
//! ```text
//! cargo bench --features bench --bench storage                          # the suite
//! cargo bench --features bench --bench storage -- --profile-time=5 local_record_storage  # flamegraphs under target/criterion
//! ```

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkGroup, BenchmarkId, Criterion,
    SamplingMode, Throughput,
};
use netabase::{Lookup, Store};
use pprof::criterion::{Output, PProfProfiler};
use redb::{ReadableDatabase, ReadableTable};

use common::{
    for_each_model, id, index_of, netabase_store, raw_db, raw_decode, raw_get, same, samples,
    scattered, tempdir, BenchModel, RawWriteTree,
};

type Group<'a> = BenchmarkGroup<'a, WallTime>;

/// Encoded size the read benches' records aim at.
const READ_BYTES: usize = 256;
/// Records in the trees the lookup benches query.
const LOOKUP_RECORDS: u64 = 1000;

// ---------------------------------------------------------------------------
// local_record_storage: one record, one durable commit.

fn local_record_storage(c: &mut Criterion) {
    let mut group = c.benchmark_group("local_record_storage");
    for size in [100, 1000, 10_000] {
        for_each_model!(put_one(&mut group, size));
    }
    group.finish();
}

fn put_one<M: BenchModel>(group: &mut Group<'_>, size: usize) {
    let dir = tempdir();

    let store = Store::open(dir.path().join("netabase.redb")).expect("open store");
    let tree = store.tree::<M>();
    let mut seed = 0;
    group.bench_function(BenchmarkId::new(id::<M>("netabase"), size), |b| {
        b.iter_batched(
            || {
                seed += 1;
                M::sample(seed, size)
            },
            |record| tree.put(&record).expect("put"),
            BatchSize::SmallInput,
        )
    });

    let db = redb::Database::create(dir.path().join("raw.redb")).expect("create raw db");
    let mut seed = 0;
    group.bench_function(BenchmarkId::new(id::<M>("raw_redb"), size), |b| {
        b.iter_batched(
            || {
                seed += 1;
                M::sample(seed, size).to_raw()
            },
            |record| {
                let txn = db.begin_write().expect("begin write");
                let replaced = RawWriteTree::<M>::open(&txn).put(&record);
                txn.commit().expect("commit");
                replaced
            },
            BatchSize::SmallInput,
        )
    });
}

// ---------------------------------------------------------------------------
// query_local_records: iterate and decode a whole tree.

fn query_local_records(c: &mut Criterion) {
    let mut group = c.benchmark_group("query_local_records");
    for count in [10, 100, 1000] {
        group.throughput(Throughput::Elements(count));
        for_each_model!(scan(&mut group, count));
    }
    group.finish();
}

fn scan<M: BenchModel>(group: &mut Group<'_>, count: u64) {
    let dir = tempdir();
    let records = samples::<M>(count, READ_BYTES);
    let raws: Vec<M::Raw> = records.iter().map(M::to_raw).collect();
    let store = netabase_store(&dir.path().join("netabase.redb"), &records);
    let db = raw_db::<M>(&dir.path().join("raw.redb"), &raws);
    let tree = store.tree::<M>();

    let scan_netabase = || {
        let mut n = 0u64;
        for record in tree.iter().expect("iter") {
            black_box(record.expect("decode"));
            n += 1;
        }
        n
    };
    let scan_raw = || {
        let txn = db.begin_read().expect("begin read");
        let table = txn.open_table(M::RAW_RECORDS).expect("open records");
        let mut n = 0u64;
        for entry in table.iter().expect("iter") {
            let (_, value) = entry.expect("read");
            black_box(raw_decode::<M>(value.value()));
            n += 1;
        }
        n
    };
    assert_eq!(scan_netabase(), count);
    assert_eq!(scan_raw(), count);

    group.bench_function(BenchmarkId::new(id::<M>("netabase"), count), |b| {
        b.iter(scan_netabase)
    });
    group.bench_function(BenchmarkId::new(id::<M>("raw_redb"), count), |b| {
        b.iter(scan_raw)
    });
}

// ---------------------------------------------------------------------------
// The lookup groups share one fixture: LOOKUP_RECORDS records on each side.

struct Fixture<M: BenchModel> {
    _dir: tempfile::TempDir,
    records: Vec<M>,
    raws: Vec<M::Raw>,
    /// Record positions in lookup order.
    order: Vec<usize>,
    store: Store,
    db: redb::Database,
}

impl<M: BenchModel> Fixture<M> {
    fn new() -> Self {
        let dir = tempdir();
        let records = samples::<M>(LOOKUP_RECORDS, READ_BYTES);
        let raws: Vec<M::Raw> = records.iter().map(M::to_raw).collect();
        let store = netabase_store(&dir.path().join("netabase.redb"), &records);
        let db = raw_db::<M>(&dir.path().join("raw.redb"), &raws);
        let order = scattered(records.len());
        Fixture {
            _dir: dir,
            records,
            raws,
            order,
            store,
            db,
        }
    }

    /// `f(record)` for each record, in lookup order.
    fn in_order<T>(&self, f: impl Fn(&M) -> T) -> Vec<T> {
        self.order.iter().map(|&i| f(&self.records[i])).collect()
    }

    fn raw_ids(&self) -> Vec<u64> {
        self.order
            .iter()
            .map(|&i| M::raw_id(&self.raws[i]))
            .collect()
    }
}

/// An endless walk over `items`.
fn cycle<'a, T>(items: &'a [T]) -> impl FnMut() -> &'a T + 'a {
    let mut at = 0;
    move || {
        at = (at + 1) % items.len();
        &items[at]
    }
}

// ---------------------------------------------------------------------------
// get_by_primary_key

fn get_by_primary_key(c: &mut Criterion) {
    let mut group = c.benchmark_group("get_by_primary_key");
    for_each_model!(get(&mut group));
    group.finish();
}

fn get<M: BenchModel>(group: &mut Group<'_>) {
    let fx = Fixture::<M>::new();
    let keys = fx.in_order(M::key);
    let ids = fx.raw_ids();
    let tree = fx.store.tree::<M>();
    assert!(same(
        &tree.get(&keys[0]).expect("get").expect("present"),
        &raw_get::<M>(
            &fx.db
                .begin_read()
                .expect("read")
                .open_table(M::RAW_RECORDS)
                .expect("open"),
            ids[0]
        )
        .expect("present"),
    ));

    // One call: its own read transaction, table opened, get, decode.
    let mut key = cycle(&keys);
    group.bench_function(BenchmarkId::new(id::<M>("netabase"), "one_call"), |b| {
        b.iter(|| tree.get(key()).expect("get").expect("present"))
    });
    let mut raw_id = cycle(&ids);
    group.bench_function(BenchmarkId::new(id::<M>("raw_redb"), "one_call"), |b| {
        b.iter(|| {
            let txn = fx.db.begin_read().expect("begin read");
            let records = txn.open_table(M::RAW_RECORDS).expect("open records");
            raw_get::<M>(&records, *raw_id()).expect("present")
        })
    });

    // Within a read transaction whose tables stay open.
    let txn = fx.store.begin_read().expect("begin read");
    let read_tree = txn.open_tree::<M>().expect("open tree");
    group.bench_function(BenchmarkId::new(id::<M>("netabase"), "open_tree"), |b| {
        b.iter(|| read_tree.get(key()).expect("get").expect("present"))
    });
    let raw_txn = fx.db.begin_read().expect("begin read");
    let records = raw_txn.open_table(M::RAW_RECORDS).expect("open records");
    group.bench_function(BenchmarkId::new(id::<M>("raw_redb"), "open_tree"), |b| {
        b.iter(|| raw_get::<M>(&records, *raw_id()).expect("present"))
    });
}

// ---------------------------------------------------------------------------
// unique_index_lookup: what the generated `by_email` runs.

fn unique_index_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("unique_index_lookup");
    for_each_model!(unique(&mut group));
    group.finish();
}

fn unique<M: BenchModel>(group: &mut Group<'_>) {
    let fx = Fixture::<M>::new();
    let index = index_of::<M>(M::UNIQUE_FIELD, true);
    let values = fx.in_order(M::unique_value);
    let tree = fx.store.tree::<M>();

    let raw_lookup = |txn: &redb::ReadTransaction, value: &M::UniqueValue| {
        let unique = M::raw_open_unique(txn);
        let records = txn.open_table(M::RAW_RECORDS).expect("open records");
        let id = M::raw_unique_get(&unique, value).expect("indexed");
        raw_get::<M>(&records, id).expect("dangling index entry")
    };
    let first = tree
        .index_get_unique(index, &values[0])
        .expect("lookup")
        .expect("found");
    let txn = fx.db.begin_read().expect("begin read");
    assert!(same(&first, &raw_lookup(&txn, &values[0])));
    drop(txn);

    let mut value = cycle(&values);
    group.bench_function(BenchmarkId::new(id::<M>("netabase"), "one_call"), |b| {
        b.iter(|| {
            tree.index_get_unique(index, value())
                .expect("lookup")
                .expect("found")
        })
    });
    group.bench_function(BenchmarkId::new(id::<M>("raw_redb"), "one_call"), |b| {
        b.iter(|| raw_lookup(&fx.db.begin_read().expect("begin read"), value()))
    });

    let txn = fx.store.begin_read().expect("begin read");
    let read_tree = txn.open_tree::<M>().expect("open tree");
    group.bench_function(BenchmarkId::new(id::<M>("netabase"), "open_tree"), |b| {
        b.iter(|| {
            read_tree
                .index_get_unique(index, value())
                .expect("lookup")
                .expect("found")
        })
    });
    let raw_txn = fx.db.begin_read().expect("begin read");
    let unique = M::raw_open_unique(&raw_txn);
    let records = raw_txn.open_table(M::RAW_RECORDS).expect("open records");
    group.bench_function(BenchmarkId::new(id::<M>("raw_redb"), "open_tree"), |b| {
        b.iter(|| {
            let id = M::raw_unique_get(&unique, value()).expect("indexed");
            raw_get::<M>(&records, id).expect("dangling index entry")
        })
    });
}

// ---------------------------------------------------------------------------
// non_unique_range_lookup: every record whose indexed value lies in a range.

fn non_unique_range_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("non_unique_range_lookup");
    for_each_model!(range(&mut group));
    group.finish();
}

fn range<M: BenchModel>(group: &mut Group<'_>) {
    let fx = Fixture::<M>::new();
    let index = index_of::<M>(M::RANGE_FIELD, false);
    let tree = fx.store.tree::<M>();

    let raw_range = |index: &M::RawRange, records: &redb::ReadOnlyTable<u64, &'static [u8]>| {
        let mut out = Vec::new();
        M::raw_range_each(index, |id| {
            out.push(raw_get::<M>(records, id).expect("dangling index entry"))
        });
        out
    };
    let raw_one_call = || {
        let txn = fx.db.begin_read().expect("begin read");
        let records = txn.open_table(M::RAW_RECORDS).expect("open records");
        raw_range(&M::raw_open_range(&txn), &records)
    };
    let found = tree.index_range(index, M::range()).expect("lookup");
    let raw_found = raw_one_call();
    assert!(
        found.len() >= 5,
        "{}: only {} in range",
        M::NAME,
        found.len()
    );
    assert_eq!(found.len(), raw_found.len());
    assert!(found.iter().zip(&raw_found).all(|(a, b)| same(a, b)));
    let per_lookup = found.len() as u64;
    group.throughput(Throughput::Elements(per_lookup));

    group.bench_function(BenchmarkId::new(id::<M>("netabase"), "one_call"), |b| {
        b.iter(|| tree.index_range(index, M::range()).expect("lookup"))
    });
    group.bench_function(BenchmarkId::new(id::<M>("raw_redb"), "one_call"), |b| {
        b.iter(raw_one_call)
    });

    let txn = fx.store.begin_read().expect("begin read");
    let read_tree = txn.open_tree::<M>().expect("open tree");
    group.bench_function(BenchmarkId::new(id::<M>("netabase"), "open_tree"), |b| {
        b.iter(|| read_tree.index_range(index, M::range()).expect("lookup"))
    });
    let raw_txn = fx.db.begin_read().expect("begin read");
    let range_index = M::raw_open_range(&raw_txn);
    let records = raw_txn.open_table(M::RAW_RECORDS).expect("open records");
    group.bench_function(BenchmarkId::new(id::<M>("raw_redb"), "open_tree"), |b| {
        b.iter(|| raw_range(&range_index, &records))
    });
}

// ---------------------------------------------------------------------------
// put_many_10000: 10,000 records in one durable transaction, into a fresh
// database each time (created and dropped outside the measurement).

const PUT_MANY: u64 = 10_000;
const PUT_MANY_BYTES: usize = 256;

fn put_many_10000(c: &mut Criterion) {
    let mut group = c.benchmark_group("put_many_10000");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .throughput(Throughput::Elements(PUT_MANY));
    for_each_model!(put_many(&mut group));
    group.finish();
}

fn put_many<M: BenchModel>(group: &mut Group<'_>) {
    let dir = tempdir();
    let records = samples::<M>(PUT_MANY, PUT_MANY_BYTES);
    let raws: Vec<M::Raw> = records.iter().map(M::to_raw).collect();
    let fresh_file = || tempfile::NamedTempFile::new_in(dir.path()).expect("create a db file");

    group.bench_function(id::<M>("netabase"), |b| {
        b.iter_batched(
            || {
                let file = fresh_file();
                (Store::open(file.path()).expect("open store"), file)
            },
            |(store, file)| {
                let n = store.tree::<M>().put_many(&records).expect("put_many");
                assert_eq!(n as u64, PUT_MANY);
                (store, file)
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function(id::<M>("raw_redb"), |b| {
        b.iter_batched(
            || {
                let file = fresh_file();
                let db = redb::Database::create(file.path()).expect("create raw db");
                (db, file)
            },
            |(db, file)| {
                let txn = db.begin_write().expect("begin write");
                {
                    let mut tree = RawWriteTree::<M>::open(&txn);
                    for record in &raws {
                        tree.put(record);
                    }
                }
                txn.commit().expect("commit");
                (db, file)
            },
            BatchSize::PerIteration,
        )
    });
}

// ---------------------------------------------------------------------------

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .with_profiler(PProfProfiler::new(100, Output::Flamegraph(None)))
}

/// The groups `netabase::bench_main!` generates (what a user gets for their
/// own models), for the same sample models, in the same run as the
/// hand-written floors above: `User/put/durable/..` reads against
/// `local_record_storage/raw_redb/User/..`, and so on.
fn generated(c: &mut Criterion) {
    netabase::bench::storage::<common::models::User>(c);
    netabase::bench::storage::<common::models::Post>(c);
}

criterion_group! {
    name = benches;
    config = config();
    targets =
        local_record_storage,
        query_local_records,
        get_by_primary_key,
        unique_index_lookup,
        non_unique_range_lookup,
        put_many_10000,
        generated,
}
criterion_main!(benches);
