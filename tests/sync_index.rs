//! Reconciliation's index of what a node holds lives in its database,
//! updated in the transaction of every write: it survives restarts as it
//! was, and a file from before it was kept gets one built at open.

mod common;

use common::*;
use netabase::node::{Netabase, NetabaseConfig};
use redb::{ReadableDatabase, TableHandle};

const RECORDS: u64 = 2_000;

async fn holding(dir: &std::path::Path) -> netabase::sync::reconcile::Fingerprint {
    let node = open(dir, NetabaseConfig::loopback()).await;
    let users = (0..RECORDS).map(|i| user(i, &format!("{i}@x"), (i % 50) as u32));
    node.put_records_locally(users.collect()).await.unwrap();
    node.remove_record_locally::<User>(UserKey(7))
        .await
        .unwrap();
    let held = node.sync_fingerprint();
    assert_eq!(held.count, RECORDS, "a delete is held as a record");
    node.shutdown().await.unwrap();
    held
}

/// The index's tables, as redb lists them in the node's file.
fn index_tables(dir: &std::path::Path) -> Vec<String> {
    let db = redb::Database::open(dir.join("netabase.redb")).unwrap();
    let txn = db.begin_read().unwrap();
    txn.list_tables()
        .unwrap()
        .map(|t| t.name().to_string())
        .filter(|name| {
            name.starts_with("netabase/sync/items") || name.starts_with("netabase/sync/levels")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_is_kept_across_restarts_and_built_for_an_older_file() {
    let dir = tempfile::tempdir().unwrap();
    let held = holding(dir.path()).await;
    assert_eq!(index_tables(dir.path()).len(), 2);

    // Reopened: the same fingerprint, from the index as it was kept.
    let node = open(dir.path(), NetabaseConfig::loopback()).await;
    assert_eq!(node.sync_fingerprint(), held);
    node.shutdown().await.unwrap();

    // A file written before the index existed: built at open, the same.
    {
        let db = redb::Database::open(dir.path().join("netabase.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        for name in ["netabase/sync/items", "netabase/sync/levels"] {
            let table: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new(name);
            let _ = txn.delete_table(table);
        }
        txn.commit().unwrap();
    }
    assert!(index_tables(dir.path()).is_empty());
    let node = open(dir.path(), NetabaseConfig::loopback()).await;
    assert_eq!(node.sync_fingerprint(), held);

    // And it syncs as before: a fresh peer catches up on all of it.
    node.start_swarm().await.unwrap();
    let (peer, mut events) = start(&dir.path().join("peer"), &[&node]).await;
    caught_up_with(&mut events, node.peer_id()).await;
    assert_eq!(peer.sync_fingerprint(), held);
    node.shutdown().await.unwrap();
    peer.shutdown().await.unwrap();
}

/// Two nodes holding the same records agree in one message each way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equal_nodes_agree_at_once_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = start(&dir.path().join("a"), &[]).await;
    let users = (0..RECORDS).map(|i| user(i, &format!("{i}@x"), 1));
    a.put_records_locally(users.collect()).await.unwrap();
    let (b, mut b_events) = start(&dir.path().join("b"), &[&a]).await;
    assert_eq!(caught_up_with(&mut b_events, a.peer_id()).await, RECORDS);
    b.shutdown().await.unwrap();
    drop(b);
    let b = Netabase::new_with_path(dir.path().join("b"), common::config(&[&a], |_| {})).unwrap();
    b.register::<User>().unwrap();
    b.register::<Post>().unwrap();
    let mut b_events = b.subscribe_to_broadcasts();
    b.start_swarm().await.unwrap();
    assert_eq!(caught_up_with(&mut b_events, a.peer_id()).await, 0);
    assert_eq!(b.sync_fingerprint(), a.sync_fingerprint());
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}
