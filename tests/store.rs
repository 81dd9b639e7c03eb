//! The typed store: every tree operation, indexes, transactions, reopening and
//! failures.

mod common;

use common::disk::FullableDisk;
use common::*;
use netabase::codec::{self, CodecError};
use netabase::store::{Durability, IntegrityCheck, Lookup, Store, StoreBuilder, StoreError};

fn memory() -> Store {
    Store::in_memory().expect("in-memory store")
}

#[test]
fn put_get_contains_len() {
    let store = memory();
    let users = store.tree::<User>();
    assert!(users.is_empty().unwrap());
    assert_eq!(users.get(&UserKey(1)).unwrap(), None);

    let ada = user(1, "ada@example.com", 36);
    assert!(!users.put(&ada).unwrap(), "first put replaces nothing");
    assert_eq!(users.get(&UserKey(1)).unwrap(), Some(ada.clone()));
    assert!(users.contains(&UserKey(1)).unwrap());
    assert!(!users.contains(&UserKey(2)).unwrap());
    assert_eq!(users.len().unwrap(), 1);
    assert!(users.put(&ada).unwrap(), "second put replaces");
    assert_eq!(users.len().unwrap(), 1);
}

#[test]
fn empty_tree_answers_every_read() {
    let store = memory();
    let users = store.tree::<User>();
    assert_eq!(users.len().unwrap(), 0);
    assert_eq!(users.iter().unwrap().count(), 0);
    assert_eq!(users.range(UserKey(0)..UserKey(10)).unwrap().count(), 0);
    assert_eq!(users.by_email("x").unwrap(), None);
    assert!(users.by_age(3).unwrap().is_empty());
    assert!(users.by_age_range(..).unwrap().is_empty());
    assert_eq!(users.remove(&UserKey(1)).unwrap(), None);
}

#[test]
fn iter_and_range_in_key_order() {
    let store = memory();
    let users = store.tree::<User>();
    for id in [5u64, 1, 300, 42, 7] {
        users.put(&user(id, &format!("{id}@x"), 20)).unwrap();
    }
    let ids = |it: netabase::store::Records<'_, User>| -> Vec<u64> {
        it.map(|u| u.unwrap().id).collect()
    };
    assert_eq!(ids(users.iter().unwrap()), vec![1, 5, 7, 42, 300]);
    assert_eq!(
        ids(users.range(UserKey(5)..UserKey(42)).unwrap()),
        vec![5, 7]
    );
    assert_eq!(
        ids(users.range(UserKey(5)..=UserKey(42)).unwrap()),
        vec![5, 7, 42]
    );
    assert_eq!(ids(users.range(UserKey(8)..).unwrap()), vec![42, 300]);
    assert_eq!(
        users
            .iter()
            .unwrap()
            .rev()
            .map(|u| u.unwrap().id)
            .collect::<Vec<_>>(),
        vec![300, 42, 7, 5, 1]
    );
    // An inverted range is empty, not a panic.
    #[allow(clippy::reversed_empty_ranges)]
    let inverted = users.range(UserKey(42)..UserKey(5)).unwrap();
    assert_eq!(inverted.count(), 0);
}

#[test]
fn unique_and_non_unique_lookups() {
    let store = memory();
    let users = store.tree::<User>();
    users
        .put_many([
            user(1, "ada@example.com", 36),
            user(2, "alan@example.com", 41),
            user(3, "grace@example.com", 36),
        ])
        .unwrap();
    assert_eq!(
        users.by_email("alan@example.com").unwrap().map(|u| u.id),
        Some(2)
    );
    assert_eq!(users.by_email("nobody@example.com").unwrap(), None);
    let ids: Vec<u64> = users.by_age(36).unwrap().iter().map(|u| u.id).collect();
    assert_eq!(ids, vec![1, 3]);
    let found = users.find(&UserSecondaryKey::Age(UserAgeKey(41))).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, 2);
    let by_range: Vec<u64> = users
        .by_age_range(37..)
        .unwrap()
        .iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(by_range, vec![2]);
    let emails: Vec<String> = users
        .by_email_range("ad".."b")
        .unwrap()
        .into_iter()
        .map(|u| u.email)
        .collect();
    assert_eq!(emails, vec!["ada@example.com", "alan@example.com"]);
}

#[test]
fn update_moves_index_entries() {
    let store = memory();
    let users = store.tree::<User>();
    users.put(&user(1, "old@example.com", 30)).unwrap();
    users.put(&user(1, "new@example.com", 31)).unwrap();
    assert_eq!(users.by_email("old@example.com").unwrap(), None);
    assert_eq!(
        users.by_email("new@example.com").unwrap().map(|u| u.age),
        Some(31)
    );
    assert!(users.by_age(30).unwrap().is_empty());
    assert_eq!(users.by_age(31).unwrap().len(), 1);
    // The old owner's unique value is free again.
    users.put(&user(2, "old@example.com", 30)).unwrap();
    assert_eq!(
        users.by_email("old@example.com").unwrap().map(|u| u.id),
        Some(2)
    );
    assert_indexes_consistent(&users);
}

#[test]
fn remove_drops_record_and_index_entries() {
    let store = memory();
    let users = store.tree::<User>();
    users.put(&user(1, "a@x", 30)).unwrap();
    users.put(&user(2, "b@x", 30)).unwrap();
    assert_eq!(
        users.remove(&UserKey(1)).unwrap().map(|u| u.email),
        Some("a@x".into())
    );
    assert_eq!(users.get(&UserKey(1)).unwrap(), None);
    assert_eq!(users.by_email("a@x").unwrap(), None);
    assert_eq!(users.by_age(30).unwrap().len(), 1);
    assert_eq!(users.remove(&UserKey(1)).unwrap(), None);
    assert_indexes_consistent(&users);
}

#[test]
fn unique_violation_writes_nothing() {
    let store = memory();
    let users = store.tree::<User>();
    users.put(&user(1, "taken@x", 30)).unwrap();

    let err = users.put(&user(2, "taken@x", 40)).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::UniqueViolation {
                model: "User",
                index: "email"
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("User.email"), "{err}");
    assert_eq!(users.get(&UserKey(2)).unwrap(), None);
    assert!(users.by_age(40).unwrap().is_empty());

    // A batch with one bad record is refused whole.
    let err = users
        .put_many([user(3, "free@x", 50), user(4, "taken@x", 50)])
        .unwrap_err();
    assert!(matches!(err, StoreError::UniqueViolation { .. }));
    assert_eq!(users.len().unwrap(), 1);
    assert!(users.by_age(50).unwrap().is_empty());

    // Two records of one batch claiming the same value are refused too.
    assert!(users
        .put_many([user(5, "dup@x", 1), user(6, "dup@x", 1)])
        .is_err());
    assert_eq!(users.len().unwrap(), 1);
    assert_indexes_consistent(&users);
}

#[test]
fn refused_put_leaves_an_open_transaction_usable() {
    let store = memory();
    let txn = store.begin_write().unwrap();
    {
        let mut users = txn.open_tree::<User>().unwrap();
        users.put(&user(1, "a@x", 1)).unwrap();
        assert!(users.put(&user(2, "a@x", 2)).is_err());
        users.put(&user(3, "c@x", 3)).unwrap();
    }
    txn.commit().unwrap();
    let users = store.tree::<User>();
    let ids: Vec<u64> = users.iter().unwrap().map(|u| u.unwrap().id).collect();
    assert_eq!(ids, vec![1, 3]);
    assert_indexes_consistent(&users);
}

#[test]
fn option_index_skips_none() {
    let store = memory();
    let posts = store.tree::<Post>();
    posts.put(&post("a", &[], Some("ada"), 0)).unwrap();
    posts.put(&post("b", &[], None, 0)).unwrap();
    assert_eq!(posts.by_editor("ada").unwrap().len(), 1);
    assert_eq!(posts.by_editor_range(..).unwrap().len(), 1);
    // Some -> None removes the entry, None -> Some adds one.
    posts.put(&post("a", &[], None, 0)).unwrap();
    posts.put(&post("b", &[], Some("bob"), 0)).unwrap();
    assert!(posts.by_editor("ada").unwrap().is_empty());
    assert_eq!(posts.by_editor("bob").unwrap()[0].slug, "b");
    assert_indexes_consistent(&posts);
}

#[test]
fn vec_index_covers_each_element() {
    let store = memory();
    let posts = store.tree::<Post>();
    posts.put(&post("a", &["rust", "db"], None, 0)).unwrap();
    posts
        .put(&post("b", &["rust", "rust", "p2p"], None, 0))
        .unwrap();
    let slugs = |tag: &str| -> Vec<String> {
        posts
            .by_tags(tag)
            .unwrap()
            .into_iter()
            .map(|p| p.slug)
            .collect()
    };
    assert_eq!(
        slugs("rust"),
        vec!["a", "b"],
        "a repeated element is one entry"
    );
    assert_eq!(slugs("db"), vec!["a"]);
    posts.put(&post("a", &["p2p"], None, 0)).unwrap();
    assert_eq!(slugs("rust"), vec!["b"]);
    assert!(slugs("db").is_empty());
    assert_eq!(slugs("p2p"), vec!["a", "b"]);
    posts.put(&post("b", &[], None, 0)).unwrap();
    assert_eq!(slugs("p2p"), vec!["a"]);
    assert_indexes_consistent(&posts);
}

#[test]
fn negative_number_ranges_come_back_in_order() {
    let store = memory();
    let posts = store.tree::<Post>();
    for (slug, score) in [
        ("a", 5),
        ("b", -3),
        ("c", i64::MIN),
        ("d", 0),
        ("e", -1),
        ("f", i64::MAX),
    ] {
        posts.put(&post(slug, &[], None, score)).unwrap();
    }
    let scores = |v: Vec<Post>| -> Vec<i64> { v.into_iter().map(|p| p.score).collect() };
    assert_eq!(
        scores(posts.by_score_range(..).unwrap()),
        vec![i64::MIN, -3, -1, 0, 5, i64::MAX]
    );
    assert_eq!(
        scores(posts.by_score_range(-3..1).unwrap()),
        vec![-3, -1, 0]
    );
    assert_eq!(
        scores(posts.by_score_range(-10..=-1).unwrap()),
        vec![-3, -1]
    );
    assert_eq!(
        scores(posts.by_score_range(i64::MIN..-3).unwrap()),
        vec![i64::MIN]
    );
    assert_eq!(
        scores(posts.by_score_range(5..).unwrap()),
        vec![5, i64::MAX]
    );
}

#[test]
fn string_primary_keys_and_byte_array_unique_index() {
    let store = memory();
    let posts = store.tree::<Post>();
    let p = post("hello-world", &[], None, 1);
    posts.put(&p).unwrap();
    assert_eq!(
        posts.get(&PostKey("hello-world".into())).unwrap(),
        Some(p.clone())
    );
    assert_eq!(posts.by_checksum(&p.checksum).unwrap(), Some(p));
    let slugs: Vec<String> = posts
        .range(PostKey("a".into())..PostKey("i".into()))
        .unwrap()
        .map(|p| p.unwrap().slug)
        .collect();
    assert_eq!(slugs, vec!["hello-world"]);
}

#[test]
fn secondary_keys_are_typed() {
    let p = post("a", &["x", "y"], Some("ed"), -2);
    let keys = netabase::NetabaseModel::secondary_keys(&p);
    assert!(keys.contains(&PostSecondaryKey::Tags(PostTagsKey("x".into()))));
    assert!(keys.contains(&PostSecondaryKey::Editor(PostEditorKey("ed".into()))));
    assert!(keys.contains(&PostSecondaryKey::Score(PostScoreKey(-2))));
    assert_eq!(keys.len(), 5);
    assert_eq!(
        <Post as netabase::NetabaseModel>::NAME,
        "netabase_workspace::models::Post"
    );
    assert_eq!(<Post as netabase::NetabaseModel>::INDEXES.len(), 4);
    assert!(<Post as netabase::NetabaseModel>::INDEXES[3].unique);
}

#[test]
fn transaction_spans_models_and_abort_discards() {
    let store = memory();
    let txn = store.begin_write().unwrap();
    {
        let mut users = txn.open_tree::<User>().unwrap();
        let mut posts = txn.open_tree::<Post>().unwrap();
        users.put(&user(1, "a@x", 1)).unwrap();
        posts.put(&post("p", &["t"], None, 0)).unwrap();
        // A write tree reads its own uncommitted writes.
        assert_eq!(users.by_email("a@x").unwrap().map(|u| u.id), Some(1));
        assert!(matches!(
            txn.open_tree::<User>(),
            Err(StoreError::TreeAlreadyOpen { model: "User" })
        ));
    }
    // Readers see nothing before the commit.
    assert!(store.tree::<User>().is_empty().unwrap());
    txn.commit().unwrap();
    assert_eq!(store.tree::<User>().len().unwrap(), 1);
    assert_eq!(store.tree::<Post>().len().unwrap(), 1);

    let txn = store.begin_write().unwrap();
    txn.open_tree::<User>()
        .unwrap()
        .put(&user(2, "b@x", 2))
        .unwrap();
    txn.abort().unwrap();
    let txn = store.begin_write().unwrap();
    txn.open_tree::<User>()
        .unwrap()
        .put(&user(3, "c@x", 3))
        .unwrap();
    drop(txn);
    assert_eq!(store.tree::<User>().len().unwrap(), 1);
}

#[test]
fn store_write_commits_only_on_ok() {
    let store = memory();
    let result: Result<(), StoreError> = store.write(|txn| {
        txn.open_tree::<User>()?.put(&user(1, "a@x", 1))?;
        txn.open_tree::<User>()?.put(&user(2, "a@x", 1))?; // refused: unique
        Ok(())
    });
    assert!(result.is_err());
    assert!(store.tree::<User>().is_empty().unwrap());
    store
        .write(|txn| txn.open_tree::<User>()?.put(&user(1, "a@x", 1)).map(drop))
        .unwrap();
    assert_eq!(store.tree::<User>().len().unwrap(), 1);
}

#[test]
fn read_transaction_is_a_snapshot() {
    let store = memory();
    let users = store.tree::<User>();
    users.put(&user(1, "a@x", 1)).unwrap();
    let snapshot = store.begin_read().unwrap();
    let iter = users.iter().unwrap();
    users.put(&user(2, "b@x", 1)).unwrap();
    users.remove(&UserKey(1)).unwrap();
    let tree = snapshot.open_tree::<User>().unwrap();
    assert_eq!(tree.len().unwrap(), 1);
    assert_eq!(tree.by_email("a@x").unwrap().map(|u| u.id), Some(1));
    assert_eq!(tree.by_age(1).unwrap().len(), 1);
    assert_eq!(iter.count(), 1, "an iterator keeps its snapshot");
    assert_eq!(users.iter().unwrap().next().unwrap().unwrap().id, 2);
}

#[test]
fn reopening_a_file_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.redb");
    {
        let store = Store::open(&path).unwrap();
        store.tree::<User>().put(&user(1, "a@x", 7)).unwrap();
        store
            .tree::<Post>()
            .put(&post("p", &["t"], Some("e"), -1))
            .unwrap();
        assert!(matches!(Store::open(&path), Err(StoreError::AlreadyOpen)));
    }
    let store = Store::open(&path).unwrap();
    let users = store.tree::<User>();
    assert_eq!(users.by_email("a@x").unwrap().map(|u| u.age), Some(7));
    assert_eq!(store.tree::<Post>().by_tags("t").unwrap().len(), 1);
    assert_indexes_consistent(&users);
}

#[test]
fn opening_a_file_that_is_not_a_database_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-a-db");
    std::fs::write(&path, b"definitely not redb, just some bytes").unwrap();
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    assert!(err.to_string().contains("not-a-db"), "{err}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        b"definitely not redb, just some bytes"
    );
}

#[test]
fn eventual_durability_and_flush() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.redb");
    {
        let store = Store::builder()
            .durability(Durability::Eventual)
            .open(&path)
            .unwrap();
        assert_eq!(store.durability(), Durability::Eventual);
        store
            .tree::<User>()
            .put_many((0..100).map(|i| user(i, &format!("{i}@x"), 1)))
            .unwrap();
        assert_eq!(store.tree::<User>().len().unwrap(), 100);
        store.flush().unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.tree::<User>().len().unwrap(), 100);
}

#[test]
fn nested_types_round_trip() {
    let store = memory();
    let users = store.tree::<User>();
    let mut u = user(1, "a@x", 1);
    u.address = Some(Address {
        city: "Zürich".into(),
        zip: 8001,
    });
    users.put(&u).unwrap();
    assert_eq!(users.get(&UserKey(1)).unwrap(), Some(u));
}

#[test]
fn malformed_payloads_are_errors() {
    for bytes in [
        &b""[..],
        b"\x01",
        b"\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        b"\x01\xfc\xff\xff\xff\x7f",
    ] {
        assert!(matches!(
            codec::decode::<User>(bytes),
            Err(CodecError::Decode { .. })
        ));
    }
    let mut bytes = codec::encode(&user(1, "a@x", 1)).unwrap();
    assert_eq!(codec::decode::<User>(&bytes).unwrap(), user(1, "a@x", 1));
    bytes.push(0);
    assert!(matches!(
        codec::decode::<User>(&bytes),
        Err(CodecError::Decode { .. })
    ));
}

#[test]
fn oversized_record_is_refused_before_writing() {
    let store = memory();
    let users = store.tree::<User>();
    let mut big = user(1, "a@x", 1);
    big.name = "x".repeat(netabase::codec::MAX_PAYLOAD_BYTES + 1);
    let err = users.put(&big).unwrap_err();
    assert!(
        matches!(err, StoreError::Codec(CodecError::TooLarge { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("limit"), "{err}");
    assert!(users.is_empty().unwrap());
}

#[test]
fn full_disk_is_a_clear_error_and_loses_nothing_committed() {
    let disk = FullableDisk::new();
    let store = Store::builder().with_backend(disk.clone()).unwrap();
    let users = store.tree::<User>();
    users
        .put_many((0..50).map(|i| user(i, &format!("{i}@x"), 1)))
        .unwrap();

    disk.fill();
    let err = users
        .put_many((50..5000).map(|i| user(i, &format!("{i}@x"), 2)))
        .unwrap_err();
    match &err {
        StoreError::Storage { source, .. } => assert!(source.is_io(), "{err:?}"),
        other => panic!("expected a storage error, got {other:?}"),
    }
    drop(users);
    drop(store);

    // With space again, the database reopens with exactly what was committed.
    disk.free();
    let store = Store::builder().with_backend(disk).unwrap();
    let users = store.tree::<User>();
    assert_eq!(users.len().unwrap(), 50);
    assert!(users.by_age(2).unwrap().is_empty());
    assert_eq!(users.by_age(1).unwrap().len(), 50);
    assert_indexes_consistent(&users);
    users.put(&user(50, "50@x", 3)).unwrap();
    assert_eq!(users.len().unwrap(), 51);
}

#[test]
fn a_store_that_hit_a_full_disk_reopens_in_place() {
    let disk = FullableDisk::new();
    let store = disk.store();
    let users = store.tree::<User>();
    users.put(&user(1, "1@x", 1)).unwrap();
    disk.fill();
    let err = users.put(&user(2, "2@x", 1)).unwrap_err();
    assert!(err.needs_reopen(), "{err:?}");
    // redb remembers the failure: every write fails, even with space again.
    disk.free();
    let err = users.put(&user(3, "3@x", 1)).unwrap_err();
    assert!(err.needs_reopen(), "{err:?}");
    assert!(err.to_string().contains("storage failed"), "{err}");
    // Reopened in place, it writes again; clones of the store follow.
    store.reopen().unwrap();
    users.put(&user(4, "4@x", 1)).unwrap();
    let ids: Vec<u64> = users.iter().unwrap().map(|u| u.unwrap().id).collect();
    assert_eq!(ids, [1, 4]);
    assert_indexes_consistent(&users);
    // An in-memory store has nothing to reopen.
    Store::in_memory().unwrap().reopen().unwrap();
}

#[test]
fn samples_are_deterministic_and_sized() {
    use netabase::Sample;
    for size in [100usize, 1000, 10_000] {
        let a = Post::sample(7, size);
        assert_eq!(a, Post::sample(7, size));
        assert_ne!(
            a.slug,
            Post::sample(8, size).slug,
            "distinct seeds, distinct keys"
        );
        let encoded = codec::encode(&a).unwrap().len();
        assert!(
            encoded >= size / 2 && encoded <= size * 3 / 2,
            "target {size}, got {encoded}"
        );
    }
}

#[test]
fn ranges_at_the_edges_of_the_key_space() {
    use std::ops::Bound::{Excluded, Included, Unbounded};
    let store = memory();
    let users = store.tree::<User>();
    users.put(&user(1, "a@x", u32::MAX)).unwrap();
    users.put(&user(2, "b@x", 0)).unwrap();
    assert!(users
        .by_age_range((Excluded(u32::MAX), Unbounded))
        .unwrap()
        .is_empty());
    assert_eq!(
        users
            .by_age_range((Included(u32::MAX), Unbounded))
            .unwrap()
            .len(),
        1
    );
    assert_eq!(users.by_age_range(..=u32::MAX).unwrap().len(), 2);
    assert_eq!(users.by_age_range(..0).unwrap().len(), 0);
    assert!(users
        .range((Excluded(UserKey(u64::MAX)), Unbounded))
        .unwrap()
        .next()
        .is_none());
}

#[test]
fn oversized_keys_are_refused_before_writing() {
    let store = memory();
    let posts = store.tree::<Post>();
    let long = "k".repeat(netabase::store::MAX_KEY_BYTES);
    let err = posts.put(&post(&long, &[], None, 0)).unwrap_err();
    assert!(
        matches!(err, StoreError::KeyTooLarge { model, .. } if model.ends_with("::Post")),
        "{err:?}"
    );
    let err = posts.put(&post("short", &[&long], None, 0)).unwrap_err();
    assert!(matches!(err, StoreError::KeyTooLarge { .. }), "{err:?}");
    assert!(posts.is_empty().unwrap());
    assert!(posts.by_tags(&long).unwrap().is_empty());
}

#[test]
fn a_model_without_secondary_keys_works() {
    let store = memory();
    let blobs = store.tree::<Blob>();
    let blob = Blob {
        id: [7; 16],
        bytes: vec![1, 2, 3],
    };
    blobs.put(&blob).unwrap();
    assert_eq!(blobs.get(&BlobKey([7; 16])).unwrap(), Some(blob.clone()));
    assert!(netabase::NetabaseModel::secondary_keys(&blob).is_empty());
    assert_eq!(blobs.remove(&BlobKey([7; 16])).unwrap(), Some(blob));
}

#[test]
fn a_second_write_on_the_thread_holding_one_is_an_error_not_a_deadlock() {
    let store = Store::in_memory().unwrap();
    let users = store.tree::<User>();
    let txn = store.begin_write().unwrap();
    // An auto-commit write needs a write transaction of its own: redb runs
    // one at a time, so this thread would wait for itself forever.
    let err = users.put(&user(1, "a@x", 1)).unwrap_err();
    assert!(matches!(err, StoreError::WriteInProgress), "{err:?}");
    assert!(err.to_string().contains("commit it first"), "{err}");
    assert!(matches!(store.flush(), Err(StoreError::WriteInProgress)));
    let err = store.write(|_| Ok::<_, StoreError>(())).unwrap_err();
    assert!(matches!(err, StoreError::WriteInProgress), "{err:?}");
    // Through the open transaction it works; reads never wait.
    txn.open_tree::<User>()
        .unwrap()
        .put(&user(1, "a@x", 1))
        .unwrap();
    assert!(users.is_empty().unwrap());
    // Another store is another lock.
    Store::in_memory()
        .unwrap()
        .tree::<User>()
        .put(&user(9, "z@x", 1))
        .unwrap();
    // Another thread simply waits for the commit.
    let waiter = {
        let users = store.tree::<User>();
        std::thread::spawn(move || users.put(&user(2, "b@x", 1)))
    };
    txn.commit().unwrap();
    waiter.join().unwrap().unwrap();
    users.put(&user(3, "c@x", 1)).unwrap();
    assert_eq!(users.len().unwrap(), 3);
}

/// Writes 2000 users to a new file at `path`, in two commits of 1000, and
/// returns its bytes: as a killed process leaves them if `unclean` (read
/// while the store still has it open, every commit on disk but no clean
/// close), else after a clean close.
fn file_of_2000_users(path: &std::path::Path, unclean: bool) -> Vec<u8> {
    let store = Store::open(path).unwrap();
    for half in [0..1000, 1000..2000] {
        store
            .tree::<User>()
            .put_many(half.map(|i| user(i, &format!("u{i}@x"), i as u32)))
            .unwrap();
    }
    if unclean {
        return std::fs::read(path).unwrap();
    }
    drop(store);
    std::fs::read(path).unwrap()
}

/// Damages one stretch of 512 bytes of `file` at a time, every 4 KiB across
/// the whole file, opens each damaged copy at `path` with `builder`, and
/// returns how many were refused with `StoreError::Open`. No panic may
/// reach the caller, and a copy that opens must hold one of `lens` users,
/// its indexes consistent.
fn open_damaged_copies(
    path: &std::path::Path,
    file: &[u8],
    builder: impl Fn() -> StoreBuilder + std::panic::RefUnwindSafe,
    lens: &[u64],
) -> usize {
    let mut refused = 0;
    for offset in (0..file.len()).step_by(4096) {
        let mut bytes = file.to_vec();
        let end = (offset + 512).min(bytes.len());
        bytes[offset..end].fill(0xA5);
        std::fs::write(path, &bytes).unwrap();
        // Whatever redb does inside, no panic reaches the caller.
        let opened = std::panic::catch_unwind(|| match builder().open(path) {
            Ok(store) => {
                assert!(store.checked_at_open(), "offset {offset}: not checked");
                // Damage the check let through lies in unused space, or in
                // the last commit, which a crash recovery rolls back.
                let users = store.tree::<User>();
                let len = users.len().unwrap();
                assert!(lens.contains(&len), "offset {offset}: {len} users");
                assert_indexes_consistent(&users);
                false
            }
            Err(StoreError::Open { .. }) => true,
            Err(other) => panic!("offset {offset}: {other:?}"),
        });
        refused += usize::from(opened.unwrap_or_else(|_| panic!("a panic escaped at {offset}")));
    }
    refused
}

#[test]
fn a_file_damaged_before_an_unclean_shutdown_is_a_typed_error_in_every_build() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.redb");
    let unclean = file_of_2000_users(&path, true);
    // After a crash, redb cannot tell a damaged page of the last commit
    // from a torn write of it, and falls back to the commit before.
    let refused = open_damaged_copies(&path, &unclean, Store::builder, &[1000, 2000]);
    assert!(refused > 10, "only {refused} damaged files were refused");
    // The undamaged file still opens with everything in it, checked.
    std::fs::write(&path, &unclean).unwrap();
    let store = Store::open(&path).unwrap();
    assert!(store.checked_at_open());
    assert_eq!(store.tree::<User>().len().unwrap(), 2000);
}

#[test]
fn checking_every_open_refuses_a_clean_file_damaged_later() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.redb");
    let clean = file_of_2000_users(&path, false);
    let every_open = || Store::builder().integrity_check(IntegrityCheck::EveryOpen);
    let refused = open_damaged_copies(&path, &clean, every_open, &[2000]);
    assert!(refused > 10, "only {refused} damaged files were refused");
    std::fs::write(&path, &clean).unwrap();
    let store = every_open().open(&path).unwrap();
    assert!(store.checked_at_open());
    assert_eq!(store.tree::<User>().len().unwrap(), 2000);
}

#[test]
fn a_cleanly_closed_file_opens_without_reading_every_page() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.redb");
    let store = Store::open(&path).unwrap();
    assert!(!store.checked_at_open(), "a new file has nothing to check");
    store.tree::<User>().put(&user(1, "a@x", 7)).unwrap();
    drop(store);
    let store = Store::open(&path).unwrap();
    assert!(!store.checked_at_open(), "clean close, yet checked");
    assert_eq!(store.tree::<User>().len().unwrap(), 1);
    drop(store);
    let store = Store::builder()
        .integrity_check(IntegrityCheck::EveryOpen)
        .open(&path)
        .unwrap();
    assert!(store.checked_at_open(), "asked for every open");
    assert_eq!(store.tree::<User>().len().unwrap(), 1);
    drop(store);
    // The check on request left the file clean.
    assert!(!Store::open(&path).unwrap().checked_at_open());
}

#[test]
fn primary_keys_are_looked_up_in_their_borrowed_form() {
    let store = memory();
    let posts = store.tree::<Post>();
    for slug in ["apple", "banana", "cherry", "date"] {
        posts.put(&post(slug, &[], None, 0)).unwrap();
    }
    assert_eq!(
        posts.by_slug("banana").unwrap().map(|p| p.slug),
        Some("banana".into())
    );
    assert!(posts.by_slug("fig").unwrap().is_none());
    let slugs = |records: netabase::store::Records<'_, Post>| -> Vec<String> {
        records.map(|p| p.unwrap().slug).collect()
    };
    assert_eq!(
        slugs(posts.by_slug_range("b".."d").unwrap()),
        ["banana", "cherry"]
    );
    assert_eq!(
        slugs(posts.by_slug_range("cherry"..).unwrap()),
        ["cherry", "date"]
    );
    assert_eq!(slugs(posts.by_slug_range(..="apple").unwrap()), ["apple"]);
    let users = store.tree::<User>();
    users
        .put_many((0..10).map(|i| user(i, &format!("{i}@x"), 1)))
        .unwrap();
    let txn = store.begin_read().unwrap();
    let tree = txn.open_tree::<User>().unwrap();
    let ids: Vec<u64> = tree
        .by_id_range(3..6)
        .unwrap()
        .map(|u| u.unwrap().id)
        .collect();
    assert_eq!(ids, [3, 4, 5]);
    assert_eq!(tree.by_id(9).unwrap().map(|u| u.id), Some(9));
}
