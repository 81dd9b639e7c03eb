//! The README's first example, compiled and run exactly as the README shows
//! it: on a lone node, and as one of three nodes. The code between the
//! markers below must equal the README's first `rust` block, so the two
//! cannot drift apart.

mod common;

use std::time::Duration;

use netabase::node::{Netabase, NetabaseConfig};

#[allow(dead_code)]
mod example {
    // README-EXAMPLE-START
    use netabase::node::{Netabase, NetabaseConfig};
    use netabase::NetabaseModel;

    #[derive(NetabaseModel, Clone, Debug, PartialEq)]
    #[netabase(name = "User")]
    pub struct User {
        #[primary_key]
        pub id: u64,
        pub name: String,
        #[secondary_key(unique)]
        pub email: String,
        #[secondary_key]
        pub age: u32,
        #[secondary_key]
        pub tags: Vec<String>, // every element is indexed
        #[secondary_key]
        pub team: Option<String>, // None is not indexed
    }

    #[tokio::main]
    async fn main() -> netabase::Result<()> {
        run("./my-node", NetabaseConfig::default()).await
    }

    pub async fn run(dir: &str, config: NetabaseConfig) -> netabase::Result<()> {
        let node = Netabase::new_with_path(dir, config)?;
        node.register::<User>()?;
        node.start_swarm().await?;

        let ada = User {
            id: 1,
            name: "Ada".into(),
            email: "ada@example.com".into(),
            age: 36,
            tags: vec!["math".into()],
            team: None,
        };
        // Durable here, then sent to whichever peers there are (none is fine).
        let written = node.put_record(ada).await?;
        println!("replicated: {} ({:?})", written.replicated, written.version);

        // Typed, indexed queries of the local store, off the async runtime.
        let by_email = node
            .query_local_records::<User, _, _>(|users| users.by_email("ada@example.com"))
            .await?;
        let adults = node
            .query_local_records::<User, _, _>(|users| users.by_age_range(18..))
            .await?;
        // The local copy, else fetched from peers and validated.
        let ada = node.get_record::<User>(UserKey(1)).await?;
        assert_eq!(by_email.as_ref(), Some(&ada));
        println!("{} adult(s), first: {}", adults.len(), ada.name);

        node.shutdown().await?;
        Ok(())
    }
    // README-EXAMPLE-END
}

#[allow(dead_code)]
mod changing {
    // README-CHANGING-START
    mod v1 {
        /// The first release.
        #[derive(netabase::NetabaseModel, Clone, Debug, PartialEq)]
        #[netabase(name = "Contact")]
        pub struct Contact {
            #[primary_key]
            pub id: u64,
            pub name: String,
            pub age: u32,
        }
    }

    mod v2 {
        /// The second: a field added, and indexed.
        #[derive(netabase::NetabaseModel, Clone, Debug, PartialEq)]
        #[netabase(name = "Contact", version = 2, from = super::v1::Contact)]
        pub struct Contact {
            #[primary_key]
            pub id: u64,
            pub name: String,
            pub age: u32,
            #[secondary_key]
            pub city: String,
        }

        impl From<super::v1::Contact> for Contact {
            fn from(old: super::v1::Contact) -> Self {
                let city = "unknown".into();
                Contact {
                    id: old.id,
                    name: old.name,
                    age: old.age,
                    city,
                }
            }
        }
    }

    mod v3 {
        /// The third: a field renamed, and a type changed.
        #[derive(netabase::NetabaseModel, Clone, Debug, PartialEq)]
        #[netabase(name = "Contact", version = 3, from = super::v2::Contact)]
        pub struct Contact {
            #[primary_key]
            pub id: u64,
            pub full_name: String, // was `name`
            pub age: u8,           // was a u32
            #[secondary_key]
            pub city: String,
        }

        impl TryFrom<super::v2::Contact> for Contact {
            type Error = String;
            // An error refuses the record, naming it: nothing is half-migrated.
            fn try_from(old: super::v2::Contact) -> Result<Self, String> {
                let age =
                    u8::try_from(old.age).map_err(|_| format!("age {} is over 255", old.age))?;
                Ok(Contact {
                    id: old.id,
                    full_name: old.name,
                    age,
                    city: old.city,
                })
            }
        }
    }

    // At start-up, the app registers its newest version:
    // node.register::<v3::Contact>()?;
    // README-CHANGING-END

    /// The README's three versions: a v1 file read by v3 code (a field added,
    /// one renamed, one retyped), and a record the retyping refuses.
    #[test]
    fn the_readme_model_versions_migrate_and_refuse_what_does_not_fit() {
        use netabase::store::Lookup;
        use netabase::{Store, StoreError};
        use v3::ContactQueries as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("contacts.redb");
        let write_v1 = |ages: &[u32]| {
            let store = Store::open(&path).unwrap();
            store.register::<v1::Contact>().unwrap();
            for (id, age) in ages.iter().enumerate() {
                let name = format!("Ada {id}");
                let contact = v1::Contact {
                    id: id as u64,
                    name,
                    age: *age,
                };
                store.tree::<v1::Contact>().put(&contact).unwrap();
            }
            store.close().unwrap();
        };
        write_v1(&[36, 300]);
        let store = Store::open(&path).unwrap();
        match store.register::<v3::Contact>() {
            Err(StoreError::Migration { key, reason, .. }) => {
                assert!(key.contains('1'), "{key}");
                assert!(reason.contains("age 300 is over 255"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        store.close().unwrap();
        write_v1(&[36, 30]);
        let store = Store::open(&path).unwrap();
        store.register::<v3::Contact>().unwrap();
        let ada = store
            .tree::<v3::Contact>()
            .get(&v3::ContactKey(0))
            .unwrap()
            .unwrap();
        assert_eq!((ada.full_name.as_str(), ada.age), ("Ada 0", 36));
        assert_eq!(
            store
                .tree::<v3::Contact>()
                .by_city("unknown")
                .unwrap()
                .len(),
            2
        );
    }
}

#[allow(dead_code)]
mod device {
    // README-DEVICE-START
    use netabase::node::{Netabase, NetabaseConfig, Subscription};
    use netabase::NetabaseModel;

    /// Keyed by its owner first: each user's notes are one range of keys.
    #[derive(NetabaseModel, Clone, Debug, PartialEq)]
    #[netabase(name = "Note")]
    pub struct Note {
        #[primary_key]
        pub id: (String, u64), // (owner, number)
        #[secondary_key]
        pub list: String,
        pub text: String,
    }

    /// A user's device: keeps that user's notes in sync, reads others on demand.
    pub async fn open_device(
        dir: &str,
        user: &str,
        config: NetabaseConfig,
    ) -> netabase::Result<Netabase> {
        let node = Netabase::new_with_path(dir, config)?;
        node.register::<Note>()?;
        // Kept in the node's file: set before the swarm starts, the first
        // catch-up already fetches this user's notes alone.
        let mine = Subscription::<Note>::key_prefix(user);
        node.subscribe(mine).await?;
        node.start_swarm().await?;
        Ok(node)
    }
    // README-DEVICE-END

    /// The README's device beside a peer holding two users' notes: it
    /// keeps its user's, and reads the other's on demand.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_readme_device_keeps_its_users_notes() {
        use netabase::store::Lookup;
        let dir = tempfile::tempdir().unwrap();
        let peer =
            Netabase::new_with_path(dir.path().join("peer"), super::common::config(&[], |_| {}))
                .unwrap();
        peer.register::<Note>().unwrap();
        peer.start_swarm().await.unwrap();
        let notes: Vec<Note> = ["ada", "bob"]
            .iter()
            .flat_map(|owner| {
                (0..10).map(move |n| Note {
                    id: (owner.to_string(), n),
                    list: "inbox".into(),
                    text: format!("{owner} {n}"),
                })
            })
            .collect();
        peer.put_records_locally(notes).await.unwrap();
        let config = super::common::config(&[&peer], |_| {});
        let phone = open_device(dir.path().join("phone").to_str().unwrap(), "ada", config)
            .await
            .unwrap();
        super::common::round(&phone, &peer).await;
        let held: Vec<Note> = phone
            .query_local_records::<Note, _, _>(|t| t.iter()?.collect())
            .await
            .unwrap();
        assert_eq!(held.len(), 10);
        assert!(held.iter().all(|note| note.id.0 == "ada"));
        let bobs = phone
            .get_record::<Note>(NoteKey(("bob".into(), 4)))
            .await
            .unwrap();
        assert_eq!(bobs.text, "bob 4");
    }
}

/// The README's first `rust` block after `after`.
fn readme_block(after: &str) -> String {
    let readme = include_str!("../README.md");
    let from = readme.find(after).expect("the README's section");
    let start = from + readme[from..].find("```rust\n").expect("a rust block") + "```rust\n".len();
    let end = start + readme[start..].find("```").expect("the block ends");
    readme[start..end].to_string()
}

/// The code between `// README-<marker>-START` and its end in this file,
/// unindented.
fn tested_block(marker: &str) -> String {
    let source = include_str!("readme.rs");
    let start_marker = format!("// README-{marker}-START\n");
    let start = source.find(&start_marker).unwrap() + start_marker.len();
    let end = source.find(&format!("    // README-{marker}-END")).unwrap();
    source[start..end]
        .lines()
        .map(|line| line.strip_prefix("    ").unwrap_or(line))
        .map(|line| format!("{line}\n"))
        .collect()
}

#[test]
fn the_readme_shows_the_tested_example() {
    assert_eq!(
        readme_block("# Netabase"),
        tested_block("EXAMPLE"),
        "the README's first example and tests/readme.rs differ"
    );
}

#[test]
fn the_readme_shows_the_tested_model_versions() {
    assert_eq!(
        readme_block("## Changing a model"),
        tested_block("CHANGING"),
        "the README's \"Changing a model\" and tests/readme.rs differ"
    );
}

#[test]
fn the_readme_shows_the_tested_device() {
    assert_eq!(
        readme_block("## Sync only what a device needs"),
        tested_block("DEVICE"),
        "the README's \"Sync only what a device needs\" and tests/readme.rs differ"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_example_runs_on_a_lone_node() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().join("my-node");
    example::run(dir.to_str().unwrap(), NetabaseConfig::loopback())
        .await
        .unwrap();
    // It ran to the end and released its directory: it opens again at once.
    let node = Netabase::new_with_path(&dir, NetabaseConfig::loopback()).unwrap();
    node.register::<example::User>().unwrap();
    assert_eq!(
        node.get_record::<example::User>(example::UserKey(1))
            .await
            .unwrap()
            .email,
        "ada@example.com"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_example_runs_beside_two_peers() {
    let dir = tempfile::tempdir().unwrap();
    let peer = |name: &str, bootstrap: Vec<&Netabase>| {
        let node =
            Netabase::new_with_path(dir.path().join(name), common::config(&bootstrap, |_| {}))
                .unwrap();
        node.register::<example::User>().unwrap();
        node
    };
    let b = peer("b", vec![]);
    let mut b_events = b.subscribe_to_broadcasts();
    b.start_swarm().await.unwrap();
    let c = peer("c", vec![&b]);
    let mut c_events = c.subscribe_to_broadcasts();
    c.start_swarm().await.unwrap();
    common::caught_up_with(&mut c_events, b.peer_id()).await;
    let config = common::config(&[&b, &c], |_| {});
    example::run(dir.path().join("a").to_str().unwrap(), config)
        .await
        .unwrap();
    // The record reached the others (Kademlia places it on the closest).
    let holds = |node: &Netabase| {
        node.record_version::<example::User>(&example::UserKey(1))
            .is_some()
    };
    tokio::time::timeout(Duration::from_secs(60), async {
        while !holds(&b) && !holds(&c) {
            tokio::select! {
                _ = b_events.recv() => {}
                _ = c_events.recv() => {}
            }
        }
    })
    .await
    .expect("the record reached a peer");
    let holder = if holds(&b) { &b } else { &c };
    let held = holder
        .get_record::<example::User>(example::UserKey(1))
        .await
        .unwrap();
    assert_eq!(held.name, "Ada");
}
