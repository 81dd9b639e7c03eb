//! What versioned models cost, beside their floors in the same run:
//! `cargo bench --features bench --bench versions`.
//!
//! - `version_read`: a v2 record decoded (`decode_version` at its own
//!   version), a v1 record read through the one-step chain (decoded as v1,
//!   then `From`), and raw bincode decoding the same v2 bytes (the floor);
//! - `version_migrate_100k`: `Store::register` of v2 on a file of 100,000
//!   v1 records (the migration: every record converted and written back,
//!   its index rebuilt, one durable commit), against the same work on raw
//!   redb + bincode: read each row, decode v1, convert, encode v2, write it
//!   back and its index entry, one durable commit.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use bincode::{Decode, Encode};
use criterion::{criterion_group, criterion_main, Criterion};
use netabase::{NetabaseModel, Store};
use redb::{ReadableTable, TableDefinition};

const RECORDS: u64 = 100_000;

mod v1 {
    #[derive(netabase::NetabaseModel, Clone, Debug, PartialEq)]
    #[netabase(name = "Contact")]
    pub struct Contact {
        #[primary_key]
        pub id: u64,
        pub name: String,
        pub note: String,
    }
}

mod v2 {
    #[derive(netabase::NetabaseModel, Clone, Debug, PartialEq)]
    #[netabase(name = "Contact", version = 2, from = super::v1::Contact)]
    pub struct Contact {
        #[primary_key]
        pub id: u64,
        pub name: String,
        pub note: String,
        #[secondary_key]
        pub city: String,
    }

    impl From<super::v1::Contact> for Contact {
        fn from(old: super::v1::Contact) -> Self {
            Contact {
                id: old.id,
                name: old.name,
                note: old.note,
                city: "unknown".into(),
            }
        }
    }
}

/// The floor's records: the same fields, plain bincode.
#[derive(Encode, Decode)]
struct RawV1 {
    id: u64,
    name: String,
    note: String,
}

#[derive(Encode, Decode)]
struct RawV2 {
    id: u64,
    name: String,
    note: String,
    city: String,
}

fn contact(id: u64) -> v1::Contact {
    v1::Contact {
        id,
        name: format!("contact {id}"),
        note: "x".repeat(200),
    }
}

fn version_read(c: &mut Criterion) {
    let config = bincode::config::standard();
    let old = netabase::codec::encode(&contact(7)).expect("encode v1");
    let new = netabase::codec::encode(&v2::Contact::from(contact(7))).expect("encode v2");
    let mut group = c.benchmark_group("version_read");
    group.bench_function("netabase/v2_record", |b| {
        b.iter(|| v2::Contact::decode_version(2, black_box(&new)).expect("decode"))
    });
    group.bench_function("netabase/v1_record_through_the_chain", |b| {
        b.iter(|| v2::Contact::decode_version(1, black_box(&old)).expect("decode"))
    });
    group.bench_function("raw_bincode/v2_record", |b| {
        b.iter(|| {
            bincode::decode_from_slice::<RawV2, _>(black_box(&new), config)
                .expect("decode")
                .0
        })
    });
    group.finish();
}

// Keyed as netabase keys them: the big-endian id, and for the index the
// value, then the id, then the id's length.
const RAW_RECORDS: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("records");
const RAW_CITY: TableDefinition<'static, &[u8], ()> = TableDefinition::new("city");

/// A v1 file for each side, built once and copied per iteration (untimed).
fn v1_files(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let netabase = dir.join("netabase-v1.redb");
    let store = Store::open(&netabase).expect("open");
    store.register::<v1::Contact>().expect("register v1");
    store
        .tree::<v1::Contact>()
        .put_many((0..RECORDS).map(contact))
        .expect("fill");
    store.close().expect("close");
    let raw = dir.join("raw-v1.redb");
    let db = redb::Database::create(&raw).expect("create");
    let txn = db.begin_write().expect("write");
    {
        let mut table = txn.open_table(RAW_RECORDS).expect("table");
        let config = bincode::config::standard();
        for id in 0..RECORDS {
            let old = contact(id);
            let bytes = bincode::encode_to_vec(
                RawV1 {
                    id,
                    name: old.name,
                    note: old.note,
                },
                config,
            )
            .expect("encode");
            table
                .insert(&id.to_be_bytes()[..], bytes.as_slice())
                .expect("insert");
        }
    }
    txn.commit().expect("commit");
    (netabase, raw)
}

fn raw_migrate(db: &redb::Database) {
    let config = bincode::config::standard();
    let txn = db.begin_write().expect("write");
    {
        let mut table = txn.open_table(RAW_RECORDS).expect("table");
        let mut city = txn.open_table(RAW_CITY).expect("index");
        let mut after: Option<Vec<u8>> = None;
        loop {
            let lower = match &after {
                Some(key) => std::ops::Bound::Excluded(key.as_slice()),
                None => std::ops::Bound::Unbounded,
            };
            let chunk: Vec<(Vec<u8>, Vec<u8>)> = table
                .range::<&[u8]>((lower, std::ops::Bound::Unbounded))
                .expect("range")
                .take(1024)
                .map(|entry| {
                    let (key, value) = entry.expect("row");
                    (key.value().to_vec(), value.value().to_vec())
                })
                .collect();
            let Some((last, _)) = chunk.last() else {
                break;
            };
            after = Some(last.clone());
            for (key, bytes) in chunk {
                let (old, _): (RawV1, usize) =
                    bincode::decode_from_slice(&bytes, config).expect("decode");
                let new = RawV2 {
                    id: old.id,
                    name: old.name,
                    note: old.note,
                    city: "unknown".into(),
                };
                let encoded = bincode::encode_to_vec(&new, config).expect("encode");
                table
                    .insert(key.as_slice(), encoded.as_slice())
                    .expect("write");
                let mut entry = new.city.into_bytes();
                entry.extend_from_slice(&key);
                entry.extend_from_slice(&(key.len() as u16).to_be_bytes());
                city.insert(entry.as_slice(), ()).expect("index");
            }
        }
    }
    txn.commit().expect("commit");
}

fn version_migrate(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a scratch directory");
    let (netabase_v1, raw_v1) = v1_files(dir.path());
    let copy = dir.path().join("copy.redb");
    let mut group = c.benchmark_group("version_migrate_100k");
    group.sample_size(10);
    group.bench_function("netabase/register_v2", |b| {
        b.iter_custom(|iterations| {
            let mut took = Duration::ZERO;
            for _ in 0..iterations {
                std::fs::copy(&netabase_v1, &copy).expect("copy the v1 file");
                let store = Store::open(&copy).expect("open");
                let started = Instant::now();
                store.register::<v2::Contact>().expect("migrate");
                took += started.elapsed();
                store.close().expect("close");
            }
            took
        })
    });
    group.bench_function("raw_redb/same_work", |b| {
        b.iter_custom(|iterations| {
            let mut took = Duration::ZERO;
            for _ in 0..iterations {
                std::fs::copy(&raw_v1, &copy).expect("copy the v1 file");
                let db = redb::Database::create(&copy).expect("open");
                let started = Instant::now();
                raw_migrate(&db);
                took += started.elapsed();
            }
            took
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = version_read, version_migrate
}
criterion_main!(benches);
