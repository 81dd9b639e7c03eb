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

/// The README's first `rust` block.
fn readme_example() -> String {
    let readme = include_str!("../README.md");
    let start = readme.find("```rust\n").expect("a rust block") + "```rust\n".len();
    let end = start + readme[start..].find("```").expect("the block ends");
    readme[start..end].to_string()
}

/// The example above, as it appears in this file, unindented.
fn tested_example() -> String {
    let source = include_str!("readme.rs");
    let start =
        source.find("// README-EXAMPLE-START\n").unwrap() + "// README-EXAMPLE-START\n".len();
    let end = source.find("    // README-EXAMPLE-END").unwrap();
    source[start..end]
        .lines()
        .map(|line| line.strip_prefix("    ").unwrap_or(line))
        .map(|line| format!("{line}\n"))
        .collect()
}

#[test]
fn the_readme_shows_the_tested_example() {
    assert_eq!(
        readme_example(),
        tested_example(),
        "the README's first example and tests/readme.rs differ"
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
