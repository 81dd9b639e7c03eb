//! A data directory written by the version that kept envelopes in a table
//! of their own (read whole into memory at every open) is moved to the
//! records table and its persistent index the first time it is opened,
//! losing nothing; a crash part-way leaves a directory that opens and
//! finishes the move.

mod common;

use common::*;
use netabase::node::{Netabase, NetabaseConfig};
use netabase::store::Lookup;
use redb::{ReadableDatabase, TableDefinition};

/// netabase's key type as redb names it (byte order, as `&[u8]`): the
/// tables below are opened raw, as an earlier version left them.
#[derive(Debug)]
enum KeyBytes {}

impl redb::Value for KeyBytes {
    type SelfType<'a>
        = &'a [u8]
    where
        Self: 'a;
    type AsBytes<'a>
        = &'a [u8]
    where
        Self: 'a;

    fn fixed_width() -> Option<usize> {
        None
    }

    fn from_bytes<'a>(data: &'a [u8]) -> &'a [u8]
    where
        Self: 'a,
    {
        data
    }

    fn as_bytes<'a, 'b: 'a>(value: &'a &'b [u8]) -> &'a [u8]
    where
        Self: 'b,
    {
        value
    }

    fn type_name() -> redb::TypeName {
        redb::TypeName::new("netabase::KeyBytes")
    }
}

impl redb::Key for KeyBytes {
    fn compare(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
        a.cmp(b)
    }
}

const OLD: TableDefinition<'static, KeyBytes, &[u8]> =
    TableDefinition::new("netabase/sync/envelopes");
const RECORDS: TableDefinition<'static, KeyBytes, &[u8]> =
    TableDefinition::new("netabase/sync/records");
const LEVELS: TableDefinition<'static, KeyBytes, &[u8]> =
    TableDefinition::new("netabase/sync/levels");
const TOMBSTONES: TableDefinition<'static, KeyBytes, ()> =
    TableDefinition::new("netabase/sync/tombstones");
const META: TableDefinition<'static, &str, u64> = TableDefinition::new("netabase/sync/meta");

/// Rewrites the database at `path` in the earlier layout: envelopes alone
/// in their own table, no index, no list of deletes, no record of the
/// latest version written.
fn downgrade(path: &std::path::Path) {
    // Whole envelopes, as the store joins them (a row now keeps only what
    // the typed row does not hold).
    let envelopes = {
        let store = netabase::Store::open(path).unwrap();
        let envelopes = store.begin_read().unwrap().envelopes().unwrap();
        store.close().unwrap();
        envelopes
    };
    let db = redb::Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut old = txn.open_table(OLD).unwrap();
        for (key, envelope) in &envelopes {
            old.insert(&key[..], &envelope[..]).unwrap();
        }
        let mut meta = txn.open_table(META).unwrap();
        meta.remove("issued").unwrap();
    }
    txn.delete_table(RECORDS).unwrap();
    txn.delete_table(LEVELS).unwrap();
    txn.delete_table(TOMBSTONES).unwrap();
    txn.commit().unwrap();
}

async fn fill(dir: &std::path::Path) -> (Netabase, netabase::sync::reconcile::Fingerprint) {
    let node = Netabase::new_with_path(dir, NetabaseConfig::loopback()).unwrap();
    node.register::<User>().unwrap();
    let users: Vec<User> = (0..300)
        .map(|i| user(i, &format!("{i}@x"), i as u32))
        .collect();
    node.put_records_locally(users).await.unwrap();
    node.remove_record_locally::<User>(UserKey(7))
        .await
        .unwrap();
    let fingerprint = node.sync_fingerprint().unwrap();
    (node, fingerprint)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_earlier_directory_is_moved_to_the_records_table_once_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (node, before) = fill(dir.path()).await;
    let version = node.record_version::<User>(&UserKey(5)).unwrap();
    let deleted = node.record_version::<User>(&UserKey(7)).unwrap();
    node.shutdown().await.unwrap();
    drop(node);
    downgrade(&dir.path().join("netabase.redb"));

    let node = Netabase::new_with_path(dir.path(), NetabaseConfig::loopback()).unwrap();
    node.register::<User>().unwrap();
    assert_eq!(
        node.sync_fingerprint().unwrap(),
        before,
        "the index, rebuilt"
    );
    assert_eq!(node.record_version::<User>(&UserKey(5)), Some(version));
    assert_eq!(node.record_version::<User>(&UserKey(7)), Some(deleted));
    assert_eq!(
        node.store().tree::<User>().get(&UserKey(5)).unwrap(),
        Some(user(5, "5@x", 5))
    );
    // The clock's seed came back with the move: a new write sorts after
    // everything this node wrote before.
    let written = node
        .put_record_locally(user(400, "400@x", 1))
        .await
        .unwrap();
    assert!(written.version().timestamp > version.timestamp);
    assert!(written.version().timestamp > deleted.timestamp);
    node.shutdown().await.unwrap();

    // Moved once: nothing is left in the old table.
    let db = redb::Database::create(dir.path().join("netabase.redb")).unwrap();
    let read = db.begin_read().unwrap();
    assert!(read.open_table(OLD).is_err(), "the old table is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_cut_short_by_a_crash_finishes_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let (node, before) = fill(dir.path()).await;
    node.shutdown().await.unwrap();
    drop(node);
    let path = dir.path().join("netabase.redb");
    downgrade(&path);
    // One transaction of the move, of 100 records, then the process dies:
    // the rest is still in the old table.
    {
        let store = netabase::Store::open(&path).unwrap();
        let txn = store.begin_write().unwrap();
        let moved = txn
            .upgrade_envelopes(100, |bytes| {
                let envelope = netabase::codec::Envelope::from_trusted_bytes(bytes).ok()?;
                Some(netabase::store::EnvelopeState {
                    digest: netabase::sync::reconcile::digest(bytes),
                    timestamp: envelope.version().timestamp.0,
                    tombstone: envelope.is_tombstone(),
                })
            })
            .unwrap();
        assert_eq!(moved, 100);
        txn.commit().unwrap();
    }

    let node = Netabase::new_with_path(dir.path(), NetabaseConfig::loopback()).unwrap();
    node.register::<User>().unwrap();
    assert_eq!(node.sync_fingerprint().unwrap(), before);
    for id in [0, 150, 299] {
        assert!(node.record_version::<User>(&UserKey(id)).is_some(), "{id}");
    }
    node.shutdown().await.unwrap();
}
