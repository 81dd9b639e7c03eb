//! What the storage benches share: the model list, the hand-written floor each
//! model is measured against, and fixtures.
//!
//! Every bench function is written once, generic over `M: BenchModel`, and run
//! for each model of [`for_each_model!`]. To add a model, define it in
//! `models.rs` with `#[derive(netabase::NetabaseModel)]`, implement
//! [`BenchModel`] for it (its raw mirror struct, its index tables as a careful
//! hand-written redb layer would keep them), and add it to the macro.

pub mod models;

use std::ops::RangeInclusive;
use std::path::Path;

use bincode::config;
use netabase::{KeyEncode, NetabaseModel, Sample, Store};
use redb::{ReadableTable, TableDefinition};

/// Runs `bench::<M>(args..)` for every bench model.
macro_rules! for_each_model {
    ($bench:ident ( $($arg:expr),* $(,)? )) => {{
        $bench::<$crate::common::models::User>($($arg),*);
        $bench::<$crate::common::models::Post>($($arg),*);
    }};
}
pub(crate) use for_each_model;

/// Records table of the floor: the primary key as a redb integer, the record as
/// its bincode 2 encoding.
pub type RawRecords = TableDefinition<'static, u64, &'static [u8]>;

/// A netabase model the suite runs on, plus its hand-written floor on raw redb
/// and bincode.
pub trait BenchModel: NetabaseModel + Sample {
    /// The same fields in a plain struct with `#[derive(bincode::Encode, bincode::Decode)]`.
    type Raw: bincode::Encode + bincode::Decode<()>;
    /// The floor's records table.
    const RAW_RECORDS: RawRecords;

    /// The unique index the `unique_index_lookup` group queries.
    const UNIQUE_FIELD: &'static str;
    /// The value type of that index, as the lookup takes it.
    type UniqueValue: KeyEncode;
    /// The non-unique index the `non_unique_range_lookup` group scans.
    const RANGE_FIELD: &'static str;
    /// The value type of that index.
    type RangeValue: KeyEncode + Copy;

    /// This record as the floor stores it.
    fn to_raw(&self) -> Self::Raw;
    /// The floor record's primary key.
    fn raw_id(raw: &Self::Raw) -> u64;
    /// This record's value in the unique index.
    fn unique_value(&self) -> Self::UniqueValue;
    /// The range of the non-unique index both sides scan.
    fn range() -> RangeInclusive<Self::RangeValue>;

    /// Every index table of the floor, open for writing.
    type RawIndexes<'txn>;
    /// Opens the index tables in a write transaction.
    fn raw_open_indexes(txn: &redb::WriteTransaction) -> Self::RawIndexes<'_>;
    /// Whether `new` may be written: no unique value of it belongs to another
    /// record. `old` is the record it replaces.
    fn raw_unique_ok(
        indexes: &Self::RawIndexes<'_>,
        old: Option<&Self::Raw>,
        new: &Self::Raw,
    ) -> bool;
    /// Moves the index entries from `old`'s values to `new`'s.
    fn raw_reindex(indexes: &mut Self::RawIndexes<'_>, old: Option<&Self::Raw>, new: &Self::Raw);

    /// The floor's unique index, open for reading.
    type RawUnique;
    /// Opens the unique index in a read transaction.
    fn raw_open_unique(txn: &redb::ReadTransaction) -> Self::RawUnique;
    /// The primary key the unique index maps `value` to.
    fn raw_unique_get(index: &Self::RawUnique, value: &Self::UniqueValue) -> Option<u64>;

    /// The floor's range-scanned index, open for reading.
    type RawRange;
    /// Opens the range-scanned index in a read transaction.
    fn raw_open_range(txn: &redb::ReadTransaction) -> Self::RawRange;
    /// Calls `f` with the primary key of every entry within [`range`](Self::range),
    /// in value then primary-key order.
    fn raw_range_each(index: &Self::RawRange, f: impl FnMut(u64));
}

/// The floor's write path for one model in one transaction: the records table
/// and every index table, opened once.
pub struct RawWriteTree<'txn, M: BenchModel> {
    records: redb::Table<'txn, u64, &'static [u8]>,
    indexes: M::RawIndexes<'txn>,
}

impl<'txn, M: BenchModel> RawWriteTree<'txn, M> {
    pub fn open(txn: &'txn redb::WriteTransaction) -> Self {
        RawWriteTree {
            records: txn
                .open_table(M::RAW_RECORDS)
                .expect("open the raw records table"),
            indexes: M::raw_open_indexes(txn),
        }
    }

    /// Inserts or replaces `record` and keeps the indexes in step: reads the
    /// old record to drop its stale entries, and checks unique indexes before
    /// the first write so a refused put changes nothing. Returns whether a
    /// record was replaced.
    pub fn put(&mut self, record: &M::Raw) -> bool {
        let id = M::raw_id(record);
        let payload = bincode::encode_to_vec(record, config::standard()).expect("encode");
        let old = self
            .records
            .get(id)
            .expect("read the old record")
            .map(|value| raw_decode::<M>(value.value()));
        assert!(
            M::raw_unique_ok(&self.indexes, old.as_ref(), record),
            "unique violation in the floor"
        );
        self.records
            .insert(id, payload.as_slice())
            .expect("write a record");
        M::raw_reindex(&mut self.indexes, old.as_ref(), record);
        old.is_some()
    }
}

pub fn raw_decode<M: BenchModel>(bytes: &[u8]) -> M::Raw {
    bincode::decode_from_slice(bytes, config::standard())
        .expect("decode a raw record")
        .0
}

/// The floor's `get`: one lookup in the records table, then decode.
pub fn raw_get<M: BenchModel>(
    records: &impl ReadableTable<u64, &'static [u8]>,
    id: u64,
) -> Option<M::Raw> {
    records
        .get(id)
        .expect("read a record")
        .map(|value| raw_decode::<M>(value.value()))
}

/// Whether a netabase record and a floor record encode to the same bytes:
/// both sides store and decode exactly the same payload.
pub fn same<M: BenchModel>(record: &M, raw: &M::Raw) -> bool {
    netabase::codec::encode(record).expect("encode")
        == bincode::encode_to_vec(raw, config::standard()).expect("encode")
}

/// The position of `field` in `M::INDEXES`, checked to be (non-)unique.
pub fn index_of<M: NetabaseModel>(field: &str, unique: bool) -> usize {
    let index = M::INDEXES
        .iter()
        .position(|spec| spec.name == field)
        .unwrap_or_else(|| panic!("{} has no index on `{field}`", M::NAME));
    assert_eq!(M::INDEXES[index].unique, unique, "{}.{field}", M::NAME);
    index
}

/// `BenchmarkId` function names: `netabase/User`, `raw_redb/User`.
pub fn id<M: NetabaseModel>(side: &str) -> String {
    format!("{side}/{}", M::NAME)
}

/// Samples of seeds `0..count`, of about `bytes` encoded bytes each.
pub fn samples<M: BenchModel>(count: u64, bytes: usize) -> Vec<M> {
    (0..count).map(|seed| M::sample(seed, bytes)).collect()
}

/// A scratch directory for database files (under `$TMPDIR`, which must be
/// disk-backed for the durable-commit numbers to mean anything).
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("netabase-bench-")
        .tempdir()
        .expect("create a temporary directory")
}

/// A netabase store at `path` holding `records`, written in one transaction.
pub fn netabase_store<M: BenchModel>(path: &Path, records: &[M]) -> Store {
    let store = Store::open(path).expect("open a netabase store");
    store
        .tree::<M>()
        .put_many(records)
        .expect("populate the netabase store");
    store
}

/// A raw redb database at `path` holding `records`, written in one transaction.
pub fn raw_db<M: BenchModel>(path: &Path, records: &[M::Raw]) -> redb::Database {
    let db = redb::Database::create(path).expect("create a raw redb database");
    let txn = db.begin_write().expect("begin a raw write");
    {
        let mut tree = RawWriteTree::<M>::open(&txn);
        for record in records {
            tree.put(record);
        }
    }
    txn.commit().expect("commit the raw database");
    db
}

/// A permutation of `0..n` that hops around the key space, so consecutive
/// lookups do not hit neighbouring keys.
pub fn scattered(n: usize) -> Vec<usize> {
    const STEP: usize = 7919; // prime: coprime with any n that is not a multiple of it
    assert!(!n.is_multiple_of(STEP));
    (0..n).map(|i| i * STEP % n).collect()
}
