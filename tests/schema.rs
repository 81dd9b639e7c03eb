//! A model's identity and its schema changing under stored data: names
//! that tell same-named structs apart, explicit names, indexes added,
//! removed and made unique on an existing file, and fields changed.

mod common;

use netabase::codec::CodecError;
use netabase::node::{Netabase, NetabaseConfig, NodeError};
use netabase::store::Lookup;
use netabase::{NetabaseModel, Store, StoreError};

use game::ItemQueries as _;
use v2::DocQueries as _;
use v3::DocQueries as _;

/// Four versions of one stored model, `Doc`, as its code changes.
mod v1 {
    use netabase::NetabaseModel;
    /// No index on `tag`.
    #[derive(NetabaseModel, Clone, Debug, PartialEq)]
    #[netabase(name = "Doc")]
    pub struct Doc {
        #[primary_key]
        pub id: u64,
        pub tag: String,
    }
}

mod v2 {
    use netabase::NetabaseModel;
    /// `tag` indexed.
    #[derive(NetabaseModel, Clone, Debug, PartialEq)]
    #[netabase(name = "Doc")]
    pub struct Doc {
        #[primary_key]
        pub id: u64,
        #[secondary_key]
        pub tag: String,
    }
}

mod v3 {
    use netabase::NetabaseModel;
    /// `tag` made unique.
    #[derive(NetabaseModel, Clone, Debug, PartialEq)]
    #[netabase(name = "Doc")]
    pub struct Doc {
        #[primary_key]
        pub id: u64,
        #[secondary_key(unique)]
        pub tag: String,
    }
}

mod v4 {
    use netabase::NetabaseModel;
    /// `tag` removed.
    #[derive(NetabaseModel, Clone, Debug, PartialEq)]
    #[netabase(name = "Doc")]
    pub struct Doc {
        #[primary_key]
        pub id: u64,
    }
}

/// Two structs named `Item` in different modules, no explicit names.
mod shop {
    use netabase::NetabaseModel;
    #[derive(NetabaseModel, Clone, Debug, PartialEq)]
    pub struct Item {
        #[primary_key]
        pub id: u64,
        pub price: u32,
    }
}

mod game {
    use netabase::NetabaseModel;
    #[derive(NetabaseModel, Clone, Debug, PartialEq)]
    pub struct Item {
        #[primary_key]
        pub id: u64,
        #[secondary_key]
        pub name: String,
    }
}

fn open(dir: &std::path::Path) -> Store {
    Store::open(dir.join("db.redb")).unwrap()
}

fn tagged(store: &Store, tag: &str) -> Vec<u64> {
    let txn = store.begin_read().unwrap();
    let tree = txn.open_tree::<v2::Doc>().unwrap();
    let mut ids: Vec<u64> = tree
        .by_tag(tag)
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    ids.sort();
    ids
}

/// `n` docs written by the first version of the program, tagged `t0`..`t2`.
fn write_v1_docs(dir: &std::path::Path, n: u64) {
    let docs = (0..n).map(|id| v1::Doc {
        id,
        tag: format!("t{}", id % 3),
    });
    open(dir).tree::<v1::Doc>().put_many(docs).unwrap();
}

#[test]
fn an_index_added_to_stored_records_is_built_on_first_read() {
    let dir = tempfile::tempdir().unwrap();
    write_v1_docs(dir.path(), 100);
    // A new build of the program, with the index: a plain read sees it whole.
    let store = open(dir.path());
    assert_eq!(tagged(&store, "t1").len(), 33);
    common::assert_indexes_consistent::<v2::Doc, _>(
        &store.begin_read().unwrap().open_tree::<v2::Doc>().unwrap(),
    );
    // Writes keep it up to date from then on.
    store
        .tree::<v2::Doc>()
        .put(&v2::Doc {
            id: 1,
            tag: "moved".into(),
        })
        .unwrap();
    assert_eq!(tagged(&store, "moved"), vec![1]);
    assert_eq!(tagged(&store, "t1").len(), 32);
}

/// The layout `model`'s file holds for it, read with redb itself.
fn stored_layout<M: NetabaseModel>(file: &std::path::Path) -> Option<String> {
    use redb::ReadableDatabase;
    let db = redb::Database::open(file).unwrap();
    let txn = db.begin_read().unwrap();
    let layouts = txn
        .open_table(redb::TableDefinition::<&str, &str>::new("netabase/layouts"))
        .ok()?;
    let stored = layouts.get(M::TABLE).unwrap()?;
    Some(stored.value().to_owned())
}

fn docs(n: u64) -> impl Iterator<Item = v2::Doc> {
    (0..n).map(|id| v2::Doc {
        id,
        tag: format!("t{}", id % 3),
    })
}

/// A model registered before it has records keeps its index layout in the
/// file, so the next process finds it current and rebuilds nothing; and a
/// read-only handle reads it before anything registers it.
#[test]
fn a_model_registered_empty_keeps_its_layout_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("db.redb");
    {
        let store = open(dir.path());
        store.register::<v2::Doc>().unwrap();
        store.tree::<v2::Doc>().put_many(docs(100)).unwrap();
    }
    assert!(stored_layout::<v2::Doc>(&file).is_some());
    // Registering through a read-only handle, or reading the empty tree
    // through one, writes nothing; the first write stores the layout.
    {
        let store = open(dir.path());
        // v3 makes `tag` unique over shared values: the rebuild is tried
        // (no refused write) and fails, and the file keeps v2's layout.
        let error = store.read_only().register::<v3::Doc>().unwrap_err();
        assert!(
            matches!(error, StoreError::UniqueViolation { .. }),
            "{error:?}"
        );
        store.read_only().register::<game::Item>().unwrap();
        assert_eq!(store.read_only().tree::<game::Item>().len().unwrap(), 0);
    }
    assert!(stored_layout::<game::Item>(&file).is_none());
    {
        let store = open(dir.path());
        let reader = store.read_only();
        assert_eq!(reader.tree::<v2::Doc>().len().unwrap(), 100);
        assert_eq!(tagged(&reader, "t1").len(), 33);
        store
            .tree::<game::Item>()
            .put(&game::Item {
                id: 1,
                name: "bow".into(),
            })
            .unwrap();
    }
    assert!(stored_layout::<game::Item>(&file).is_some());
}

/// Reads never fail as refused writes: a read-only handle reading a model
/// whose indexes changed rebuilds them first, as a writable one does.
#[test]
fn a_read_only_handle_reads_a_model_whose_indexes_changed() {
    let dir = tempfile::tempdir().unwrap();
    write_v1_docs(dir.path(), 30);
    let store = open(dir.path()).read_only();
    assert_eq!(tagged(&store, "t2").len(), 10);
    assert_eq!(store.tree::<v2::Doc>().len().unwrap(), 30);
    // Writes are still refused.
    assert!(matches!(
        store.tree::<v2::Doc>().put(&v2::Doc {
            id: 99,
            tag: "x".into()
        }),
        Err(StoreError::ReadOnly)
    ));
}

/// A node's model registered before its first record: after a clean
/// shutdown, the file holds the layout, and a read through the node's
/// (read-only) store works before `register`.
#[tokio::test]
async fn a_node_keeps_the_layout_of_a_model_registered_empty() {
    let dir = tempfile::tempdir().unwrap();
    {
        let node = Netabase::new_with_path(dir.path(), NetabaseConfig::loopback()).unwrap();
        node.register::<v2::Doc>().unwrap();
        node.put_records_locally(docs(50).collect()).await.unwrap();
        node.shutdown().await.unwrap();
    }
    assert!(stored_layout::<v2::Doc>(&dir.path().join("netabase.redb")).is_some());
    let node = Netabase::new_with_path(dir.path(), NetabaseConfig::loopback()).unwrap();
    assert_eq!(node.store().tree::<v2::Doc>().len().unwrap(), 50);
    let txn = node.store().begin_read().unwrap();
    assert_eq!(txn.open_tree::<v2::Doc>().unwrap().len().unwrap(), 50);
}

#[test]
fn an_index_removed_then_added_back_is_rebuilt_with_later_writes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        store
            .tree::<v2::Doc>()
            .put_many((0..10).map(|id| v2::Doc {
                id,
                tag: "old".into(),
            }))
            .unwrap();
        assert_eq!(tagged(&store, "old").len(), 10);
    }
    {
        // Written while the field carried no index: the old entries would go stale.
        let store = open(dir.path());
        store.register::<v1::Doc>().unwrap();
        store
            .tree::<v1::Doc>()
            .put_many((0..5).map(|id| v1::Doc {
                id,
                tag: "new".into(),
            }))
            .unwrap();
    }
    let store = open(dir.path());
    store.register::<v2::Doc>().unwrap();
    assert_eq!(tagged(&store, "new"), vec![0, 1, 2, 3, 4]);
    assert_eq!(tagged(&store, "old"), vec![5, 6, 7, 8, 9]);
    common::assert_indexes_consistent::<v2::Doc, _>(
        &store.begin_read().unwrap().open_tree::<v2::Doc>().unwrap(),
    );
}

#[test]
fn two_versions_in_one_process_each_find_their_layout() {
    let store = Store::in_memory().unwrap();
    store
        .tree::<v1::Doc>()
        .put(&v1::Doc {
            id: 1,
            tag: "a".into(),
        })
        .unwrap();
    assert_eq!(tagged(&store, "a"), vec![1]);
    store
        .tree::<v1::Doc>()
        .put(&v1::Doc {
            id: 2,
            tag: "a".into(),
        })
        .unwrap();
    assert_eq!(tagged(&store, "a"), vec![1, 2]);
}

#[test]
fn making_an_index_unique_over_shared_values_fails_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .tree::<v2::Doc>()
        .put_many([
            v2::Doc {
                id: 1,
                tag: "same".into(),
            },
            v2::Doc {
                id: 2,
                tag: "same".into(),
            },
        ])
        .unwrap();
    let error = store.register::<v3::Doc>().unwrap_err();
    assert!(
        matches!(error, StoreError::UniqueViolation { index: "tag", .. }),
        "{error:?}"
    );
    // Every read of the new version reports it; the old one still works.
    assert!(store.begin_read().unwrap().open_tree::<v3::Doc>().is_err());
    assert_eq!(tagged(&store, "same"), vec![1, 2]);
    // Once the values differ, the unique index builds.
    store
        .tree::<v2::Doc>()
        .put(&v2::Doc {
            id: 2,
            tag: "other".into(),
        })
        .unwrap();
    store.register::<v3::Doc>().unwrap();
    let txn = store.begin_read().unwrap();
    let tree = txn.open_tree::<v3::Doc>().unwrap();
    assert_eq!(tree.by_tag("same").unwrap().map(|d| d.id), Some(1));
    assert_eq!(tree.by_tag("other").unwrap().map(|d| d.id), Some(2));
}

#[test]
fn a_changed_field_list_reads_as_one_documented_decode_error() {
    let store = Store::in_memory().unwrap();
    store
        .tree::<v2::Doc>()
        .put(&v2::Doc {
            id: 1,
            tag: "x".into(),
        })
        .unwrap();
    // A field removed: bytes left over.
    let error = store.tree::<v4::Doc>().get(&v4::DocKey(1)).unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::Codec(CodecError::Decode { model: "Doc", .. })
        ),
        "{error:?}"
    );
    store.tree::<v4::Doc>().put(&v4::Doc { id: 2 }).unwrap();
    // A field added: bytes missing. The same error.
    let error = store.tree::<v1::Doc>().get(&v1::DocKey(2)).unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::Codec(CodecError::Decode { model: "Doc", .. })
        ),
        "{error:?}"
    );
    // An index over records that no longer decode cannot be built: the
    // same error, and the file keeps its layout.
    let error = store.register::<v2::Doc>().unwrap_err();
    assert!(
        matches!(error, StoreError::Codec(CodecError::Decode { .. })),
        "{error:?}"
    );
}

#[test]
fn same_named_structs_of_different_modules_are_different_models() {
    assert_ne!(shop::Item::NAME, game::Item::NAME);
    assert!(
        shop::Item::NAME.ends_with("shop::Item"),
        "{}",
        shop::Item::NAME
    );
    assert_ne!(shop::Item::ID, game::Item::ID);
    assert_eq!(v1::Doc::NAME, "Doc");
    assert_ne!(v1::Doc::SCHEMA, v2::Doc::SCHEMA);

    let store = Store::in_memory().unwrap();
    store
        .tree::<shop::Item>()
        .put(&shop::Item { id: 1, price: 5 })
        .unwrap();
    store
        .tree::<game::Item>()
        .put(&game::Item {
            id: 1,
            name: "sword".into(),
        })
        .unwrap();
    assert_eq!(
        store.tree::<shop::Item>().get(&shop::ItemKey(1)).unwrap(),
        Some(shop::Item { id: 1, price: 5 })
    );
    assert_eq!(
        store.tree::<game::Item>().by_name("sword").unwrap().len(),
        1
    );
}

#[tokio::test]
async fn a_node_tells_models_apart_and_refuses_a_clash() {
    let dir = tempfile::tempdir().unwrap();
    let node = Netabase::new_with_path(dir.path(), NetabaseConfig::loopback()).unwrap();
    node.register::<shop::Item>().unwrap();
    node.register::<game::Item>().unwrap();
    // Registering again, or a copy with the same name and fields, is fine.
    node.register::<shop::Item>().unwrap();
    node.register::<v2::Doc>().unwrap();
    let error = node.register::<v1::Doc>().unwrap_err();
    assert!(
        matches!(
            error,
            NodeError::ModelIdClash {
                first: "Doc",
                second: "Doc"
            }
        ),
        "{error:?}"
    );
    // The refused model stays unregistered; the first keeps working.
    assert!(matches!(
        node.put_record_locally(v1::Doc {
            id: 1,
            tag: "x".into()
        })
        .await,
        Err(NodeError::NotRegistered { .. })
    ));
    node.put_record_locally(v2::Doc {
        id: 1,
        tag: "x".into(),
    })
    .await
    .unwrap();
    node.put_record_locally(shop::Item { id: 1, price: 3 })
        .await
        .unwrap();
    node.put_record_locally(game::Item {
        id: 1,
        name: "bow".into(),
    })
    .await
    .unwrap();
    let shop: Vec<shop::Item> = node
        .query_local_records::<shop::Item, _, _>(|t| t.iter()?.collect())
        .await
        .unwrap();
    assert_eq!(shop, vec![shop::Item { id: 1, price: 3 }]);
}

#[tokio::test]
async fn same_named_models_sync_into_their_own_trees() {
    let dir = tempfile::tempdir().unwrap();
    let a = common::open(&dir.path().join("a"), common::config(&[], |_| {})).await;
    a.register::<shop::Item>().unwrap();
    a.register::<game::Item>().unwrap();
    a.start_swarm().await.unwrap();
    a.put_record_locally(shop::Item { id: 7, price: 3 })
        .await
        .unwrap();
    a.put_record_locally(game::Item {
        id: 7,
        name: "bow".into(),
    })
    .await
    .unwrap();
    let b = common::open(&dir.path().join("b"), common::config(&[&a], |_| {})).await;
    b.register::<shop::Item>().unwrap();
    b.register::<game::Item>().unwrap();
    let mut events = b.subscribe_to_broadcasts();
    b.start_swarm().await.unwrap();
    assert_eq!(common::caught_up_with(&mut events, a.peer_id()).await, 2);
    let shop: Vec<shop::Item> = b
        .query_local_records::<shop::Item, _, _>(|t| t.iter()?.collect())
        .await
        .unwrap();
    let game: Vec<game::Item> = b
        .query_local_records::<game::Item, _, _>(|t| t.iter()?.collect())
        .await
        .unwrap();
    assert_eq!(shop, vec![shop::Item { id: 7, price: 3 }]);
    assert_eq!(
        game,
        vec![game::Item {
            id: 7,
            name: "bow".into()
        }]
    );
    assert_eq!(b.stats().rejected_total(), 0);
}

mod profiles {
    use netabase::{NetabaseModel, PeerId, PublicKey};
    /// Keyed by its owner, with identities in plain, optional and list fields.
    #[derive(NetabaseModel, Clone, Debug, PartialEq)]
    pub struct Profile {
        #[primary_key]
        pub owner: PeerId,
        #[secondary_key]
        pub friends: Vec<PeerId>,
        #[secondary_key]
        pub signing_key: Option<PublicKey>,
        pub name: String,
    }
}

#[test]
fn identities_are_keys_and_fields() {
    use profiles::{Profile, ProfileKey, ProfileQueries as _};
    let store = Store::in_memory().unwrap();
    let (me, friend) = (netabase::PeerId::random(), netabase::PeerId::random());
    let key = netabase::Keypair::generate_ed25519().public();
    let profile = Profile {
        owner: me,
        friends: vec![friend],
        signing_key: Some(key.clone()),
        name: "me".into(),
    };
    store.tree::<Profile>().put(&profile).unwrap();
    let tree = store.tree::<Profile>();
    assert_eq!(tree.get(&ProfileKey(me)).unwrap(), Some(profile.clone()));
    assert_eq!(tree.by_owner(me).unwrap(), Some(profile.clone()));
    assert_eq!(tree.by_friends(friend).unwrap(), vec![profile.clone()]);
    assert_eq!(tree.by_signing_key(&key).unwrap(), vec![profile.clone()]);
    let bytes = netabase::codec::encode(&profile).unwrap();
    assert_eq!(netabase::codec::decode::<Profile>(&bytes).unwrap(), profile);
    // Typed keys come back from their bytes.
    let encoded = netabase::KeyEncode::to_key_bytes(&ProfileKey(me));
    assert_eq!(
        Profile::key_from_bytes(encoded.as_slice()),
        Some(ProfileKey(me))
    );
}
