//! Versioned models: a store written by version 1 of a model opens with the
//! code of versions 2 and 3, which migrate its records through the chain
//! of `from` models when they register it, in one transaction: indexes on
//! fields added later answer, a conversion that refuses one record changes
//! nothing, a migration killed part-way leaves the old data as it was, and
//! code older than the file refuses it instead of misreading it.
//!
//! `migration_child` does nothing unless the parent sets
//! `NETABASE_MIGRATION_CHILD_DB`: then it is the process killed mid-way.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use netabase::node::{Netabase, NetabaseConfig};
use netabase::store::Lookup;
use netabase::{Store, StoreError};

const CHILD_ENV: &str = "NETABASE_MIGRATION_CHILD_DB";
const RECORDS: u64 = 10_000;

/// The first release: a contact with one name.
mod v1 {
    use netabase::NetabaseModel;
    #[derive(NetabaseModel, Clone, Debug, PartialEq)]
    #[netabase(name = "Contact")]
    pub struct Contact {
        #[primary_key]
        pub id: u64,
        pub name: String,
    }
}

/// The second: a city, indexed; old contacts get "unknown".
mod v2 {
    use netabase::NetabaseModel;
    #[derive(NetabaseModel, Clone, Debug, PartialEq)]
    #[netabase(name = "Contact", version = 2, from = super::v1::Contact)]
    pub struct Contact {
        #[primary_key]
        pub id: u64,
        pub name: String,
        #[secondary_key]
        pub city: String,
    }

    impl From<super::v1::Contact> for Contact {
        fn from(old: super::v1::Contact) -> Self {
            // The crash test's child stops here, mid-migration, to be killed.
            if old.id == super::STALL_AT && std::env::var_os(super::CHILD_ENV).is_some() {
                println!("migrating");
                std::thread::sleep(std::time::Duration::from_secs(600));
            }
            Contact {
                id: old.id,
                name: old.name,
                city: "unknown".into(),
            }
        }
    }
}

/// The third: the name split in two; a name with no space is refused.
mod v3 {
    use netabase::NetabaseModel;
    #[derive(NetabaseModel, Clone, Debug, PartialEq)]
    #[netabase(name = "Contact", version = 3, from = super::v2::Contact)]
    pub struct Contact {
        #[primary_key]
        pub id: u64,
        #[secondary_key]
        pub first: String,
        pub last: String,
        #[secondary_key]
        pub city: String,
    }

    impl TryFrom<super::v2::Contact> for Contact {
        type Error = String;
        fn try_from(old: super::v2::Contact) -> Result<Self, String> {
            let (first, last) = old
                .name
                .split_once(' ')
                .ok_or_else(|| format!("the name {:?} has no space", old.name))?;
            Ok(Contact {
                id: old.id,
                first: first.into(),
                last: last.into(),
                city: old.city,
            })
        }
    }
}

use v2::ContactQueries as _;
use v3::ContactQueries as _;

/// The record the crash test's child stalls on.
const STALL_AT: u64 = 5_000;

fn written_by_v1(path: &std::path::Path, name: impl Fn(u64) -> String) {
    let store = Store::open(path).unwrap();
    store.register::<v1::Contact>().unwrap();
    store
        .tree::<v1::Contact>()
        .put_many((0..RECORDS).map(|id| v1::Contact { id, name: name(id) }))
        .unwrap();
    store.close().unwrap();
}

fn full_name(id: u64) -> String {
    format!("Ada {id}")
}

#[test]
fn a_v1_file_opens_with_v2_code_and_its_new_index_answers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("contacts.redb");
    written_by_v1(&path, full_name);

    let store = Store::open(&path).unwrap();
    store.register::<v2::Contact>().unwrap();
    let contacts = store.tree::<v2::Contact>();
    assert_eq!(contacts.len().unwrap(), RECORDS);
    assert_eq!(
        contacts.get(&v2::ContactKey(42)).unwrap(),
        Some(v2::Contact {
            id: 42,
            name: full_name(42),
            city: "unknown".into(),
        })
    );
    // The index on the field v2 added holds every migrated record.
    assert_eq!(contacts.by_city("unknown").unwrap().len() as u64, RECORDS);
    contacts
        .put(&v2::Contact {
            id: RECORDS,
            name: "Grace Hopper".into(),
            city: "Arlington".into(),
        })
        .unwrap();
    assert_eq!(contacts.by_city("Arlington").unwrap().len(), 1);
    store.close().unwrap();

    // Code older than the file refuses it rather than misreading it.
    let store = Store::open(&path).unwrap();
    match store.register::<v1::Contact>() {
        Err(StoreError::NewerVersion {
            model: "Contact",
            stored: 2,
            known: 1,
        }) => {}
        other => panic!("v1 code on a v2 file: {other:?}"),
    }
}

#[test]
fn a_v1_file_opens_with_v3_code_through_two_steps() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("contacts.redb");
    written_by_v1(&path, full_name);

    let store = Store::open(&path).unwrap();
    store.register::<v3::Contact>().unwrap();
    let contacts = store.tree::<v3::Contact>();
    assert_eq!(contacts.len().unwrap(), RECORDS);
    assert_eq!(
        contacts.get(&v3::ContactKey(7)).unwrap(),
        Some(v3::Contact {
            id: 7,
            first: "Ada".into(),
            last: "7".into(),
            city: "unknown".into(),
        })
    );
    assert_eq!(contacts.by_first("Ada").unwrap().len() as u64, RECORDS);
    store.close().unwrap();
    // Registered again: nothing left to migrate, the records stay.
    let store = Store::open(&path).unwrap();
    store.register::<v3::Contact>().unwrap();
    assert_eq!(store.tree::<v3::Contact>().len().unwrap(), RECORDS);
}

#[test]
fn a_record_the_conversion_refuses_fails_the_migration_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("contacts.redb");
    // Record 1234's name has no space: v3 refuses it.
    written_by_v1(&path, |id| {
        if id == 1234 {
            "Plato".into()
        } else {
            full_name(id)
        }
    });
    let store = Store::open(&path).unwrap();
    match store.register::<v3::Contact>() {
        Err(StoreError::Migration {
            model: "Contact",
            from: 1,
            to: 3,
            key,
            reason,
        }) => {
            assert_eq!(key, "ContactKey(1234)");
            assert!(reason.contains("\"Plato\" has no space"), "{reason}");
        }
        other => panic!("the refused record: {other:?}"),
    }
    store.close().unwrap();
    // Nothing changed: v1 code reads every record as it wrote it.
    let store = Store::open(&path).unwrap();
    store.register::<v1::Contact>().unwrap();
    let contacts = store.tree::<v1::Contact>();
    assert_eq!(contacts.len().unwrap(), RECORDS);
    assert_eq!(
        contacts.get(&v1::ContactKey(1234)).unwrap().unwrap().name,
        "Plato"
    );
}

/// Opens the v1 file and registers v2, which stalls mid-migration (see
/// `v2::Contact::from`) until the parent kills it.
#[test]
fn migration_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let store = Store::open(&path).expect("child opens the file");
    store.register::<v2::Contact>().expect("child migrates");
}

#[test]
fn a_migration_killed_part_way_leaves_the_old_data_and_runs_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("contacts.redb");
    written_by_v1(&path, full_name);

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "migration_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the migrating child");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("migrating") {
                let _ = tx.send(());
            }
        }
    });
    let stalled = rx.recv_timeout(Duration::from_secs(120));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        stalled.is_ok(),
        "the child reached the middle of its migration"
    );

    // The old data, as it was.
    {
        let store = Store::open(&path).unwrap();
        store.register::<v1::Contact>().unwrap();
        let contacts = store.tree::<v1::Contact>();
        assert_eq!(contacts.len().unwrap(), RECORDS);
        assert_eq!(
            contacts.get(&v1::ContactKey(STALL_AT + 1)).unwrap(),
            Some(v1::Contact {
                id: STALL_AT + 1,
                name: full_name(STALL_AT + 1),
            })
        );
        store.close().unwrap();
    }
    // And the migration runs again, whole.
    let store = Store::open(&path).unwrap();
    store.register::<v2::Contact>().unwrap();
    assert_eq!(
        store
            .tree::<v2::Contact>()
            .by_city("unknown")
            .unwrap()
            .len() as u64,
        RECORDS
    );
}

/// A node's file keeps each synced record's envelope split, joined with
/// its typed row: migrating those rows keeps the envelopes whole first,
/// so every one is still served as it was signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_keeps_a_nodes_signed_envelopes_intact() {
    let dir = tempfile::tempdir().unwrap();
    let node = Netabase::new_with_path(dir.path(), NetabaseConfig::default()).unwrap();
    node.register::<v1::Contact>().unwrap();
    node.put_records_locally(
        (0..100)
            .map(|id| v1::Contact {
                id,
                name: full_name(id),
            })
            .collect(),
    )
    .await
    .unwrap();
    let before = node.store().begin_read().unwrap().envelopes().unwrap();
    assert_eq!(before.len(), 100);
    node.shutdown().await.unwrap();
    drop(node);

    let store = Store::open(dir.path().join("netabase.redb")).unwrap();
    store.register::<v2::Contact>().unwrap();
    let after = store.begin_read().unwrap().envelopes().unwrap();
    assert_eq!(after, before, "every envelope, byte for byte");
    for (_, bytes) in &after {
        netabase::codec::Envelope::from_bytes(bytes, usize::MAX).expect("still verifies");
    }
}
