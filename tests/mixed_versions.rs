//! Peers on different releases of an app, with different versions of one
//! model, sync on 127.0.0.1. Each record travels at the version its writer
//! wrote; a newer peer reads older records through the chain, an older
//! peer holds newer records as they are (served, counted, not typed), all
//! end with equal fingerprints, catch-up does not fetch anything again,
//! and an older peer updated in place reads what it held. Write rules
//! judge a version a peer cannot read by its writer and authority.

mod common;

use common::*;
use netabase::codec::{record_key, Envelope};
use netabase::node::{Event, Netabase, NetabaseConfig, NodeError, Rejection};
use netabase::store::Lookup;
use netabase::{KeyEncode, Keypair, NetabaseModel, PeerId};

/// The first release: a card with one name.
mod v1 {
    use netabase::NetabaseModel;
    #[derive(NetabaseModel, Clone, Debug, PartialEq)]
    #[netabase(name = "Card")]
    pub struct Card {
        #[primary_key]
        pub id: u64,
        pub name: String,
    }
}

/// The second: a city, indexed; older cards get "unknown".
mod v2 {
    use netabase::NetabaseModel;
    #[derive(NetabaseModel, Clone, Debug, PartialEq)]
    #[netabase(name = "Card", version = 2, from = super::v1::Card)]
    pub struct Card {
        #[primary_key]
        pub id: u64,
        pub name: String,
        #[secondary_key]
        pub city: String,
    }

    impl From<super::v1::Card> for Card {
        fn from(old: super::v1::Card) -> Self {
            Card {
                id: old.id,
                name: old.name,
                city: "unknown".into(),
            }
        }
    }
}

/// The third: the name split in two (a name with no space is refused).
mod v3 {
    use netabase::NetabaseModel;
    #[derive(NetabaseModel, Clone, Debug, PartialEq)]
    #[netabase(name = "Card", version = 3, from = super::v2::Card)]
    pub struct Card {
        #[primary_key]
        pub id: u64,
        pub first: String,
        #[secondary_key]
        pub last: String,
        #[secondary_key]
        pub city: String,
    }

    impl TryFrom<super::v2::Card> for Card {
        type Error = String;
        fn try_from(old: super::v2::Card) -> Result<Self, String> {
            let (first, last) = old
                .name
                .split_once(' ')
                .ok_or_else(|| format!("the name {:?} has no space", old.name))?;
            Ok(Card {
                id: old.id,
                first: first.into(),
                last: last.into(),
                city: old.city,
            })
        }
    }
}

use v2::CardQueries as _;
use v3::CardQueries as _;

/// Records each node writes.
const EACH: u64 = 200;
/// A key all three write in turn, v1 first, v3 last: v3's version wins
/// everywhere.
const SHARED: u64 = 9_999;

fn config_for(bootstrap: &[&Netabase]) -> NetabaseConfig {
    config(bootstrap, |_| {})
}

async fn start(
    dir: &std::path::Path,
    bootstrap: &[&Netabase],
    register: fn(&Netabase),
) -> Netabase {
    let node = Netabase::new_with_path(dir, config_for(bootstrap)).unwrap();
    register(&node);
    node.start_swarm().await.unwrap();
    node
}

async fn typed<M: NetabaseModel>(node: &Netabase) -> u64 {
    node.query_local_records::<M, _, _>(|tree| tree.len())
        .await
        .unwrap()
}

/// Catch-up rounds between every pair until the three fingerprints agree
/// (bounded); returns the rounds taken.
async fn converge(nodes: [&Netabase; 3]) -> usize {
    for rounds in 1..=6 {
        for (i, j) in [(0, 1), (0, 2), (1, 2), (1, 0), (2, 0), (2, 1)] {
            round(nodes[i], nodes[j]).await;
        }
        let prints: Vec<_> = nodes
            .iter()
            .map(|n| n.sync_fingerprint().unwrap())
            .collect();
        if prints.windows(2).all(|w| w[0] == w[1]) {
            return rounds;
        }
    }
    panic!("three nodes on three versions did not converge in 6 rounds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_on_three_versions_converge_and_an_updated_peer_reads_what_it_held() {
    let dir = tempfile::tempdir().unwrap();
    let a = start(&dir.path().join("a"), &[], |n| {
        n.register::<v1::Card>().unwrap()
    })
    .await;
    let mut a_events = a.subscribe_to_broadcasts();
    let b = start(&dir.path().join("b"), &[&a], |n| {
        n.register::<v2::Card>().unwrap()
    })
    .await;
    let c = start(&dir.path().join("c"), &[&a, &b], |n| {
        n.register::<v3::Card>().unwrap()
    })
    .await;

    // Each writes its own records at once, and the shared key in turn.
    let name = |id: u64| format!("Ada {id}");
    let (ra, rb, rc) = tokio::join!(
        a.put_records_locally(
            (0..EACH)
                .map(|id| v1::Card { id, name: name(id) })
                .collect()
        ),
        b.put_records_locally(
            (1000..1000 + EACH)
                .map(|id| v2::Card {
                    id,
                    name: name(id),
                    city: "Oslo".into(),
                })
                .collect()
        ),
        c.put_records_locally(
            (2000..2000 + EACH)
                .map(|id| v3::Card {
                    id,
                    first: "Ada".into(),
                    last: id.to_string(),
                    city: "Lima".into(),
                })
                .collect()
        ),
    );
    for written in [ra, rb, rc] {
        written.unwrap();
    }
    // Each writes the shared key after seeing the last write of it, so
    // each write follows the one before (clocks alone could tie).
    a.put_record_locally(v1::Card {
        id: SHARED,
        name: "Old Name".into(),
    })
    .await
    .unwrap();
    round(&b, &a).await;
    b.put_record_locally(v2::Card {
        id: SHARED,
        name: "Mid Name".into(),
        city: "Oslo".into(),
    })
    .await
    .unwrap();
    round(&c, &b).await;
    c.put_record_locally(v3::Card {
        id: SHARED,
        first: "New".into(),
        last: "Name".into(),
        city: "Lima".into(),
    })
    .await
    .unwrap();

    let rounds = converge([&a, &b, &c]).await;
    println!("three versions converged in {rounds} round(s)");

    // A (v1) reads its own records typed; v2's and v3's it holds as they
    // are, the shared key among them (v3 wrote last), and says so.
    assert_eq!(typed::<v1::Card>(&a).await, EACH);
    assert_eq!(a.stats().newer_version_held, 2 * EACH + 1);
    let held = wait_for("a newer-version event on A", &mut a_events, |e| match e {
        Event::NewerVersionHeld { model, held, .. } => Some((*model, *held)),
        _ => None,
    })
    .await;
    assert_eq!(held.0, "Card");
    match a.get_record::<v1::Card>(v1::CardKey(SHARED)).await {
        Err(NodeError::NewerVersion {
            model: "Card",
            version: 3,
            known: 1,
        }) => {}
        other => panic!("{other:?}"),
    }
    // B (v2) reads A's records through the chain, and its own.
    assert_eq!(typed::<v2::Card>(&b).await, 2 * EACH);
    assert_eq!(b.stats().newer_version_held, EACH + 1);
    let unknown = b
        .query_local_records::<v2::Card, _, _>(|t| t.by_city("unknown"))
        .await
        .unwrap();
    assert_eq!(unknown.len() as u64, EACH, "A's records, read through v2");
    // C (v3) reads all of them, two steps back for A's.
    assert_eq!(typed::<v3::Card>(&c).await, 3 * EACH + 1);
    assert_eq!(c.stats().newer_version_held, 0);
    assert_eq!(
        c.get_record::<v3::Card>(v3::CardKey(7)).await.unwrap(),
        v3::Card {
            id: 7,
            first: "Ada".into(),
            last: "7".into(),
            city: "unknown".into(),
        }
    );
    // What C holds for A's record is A's v1 envelope, read through the
    // chain on every read (a lazy read): nothing re-signs it.
    let held = c
        .store()
        .begin_read()
        .unwrap()
        .envelope(&record_key(
            v3::Card::ID,
            v3::CardKey(7).to_key_bytes().as_slice(),
        ))
        .unwrap()
        .expect("held");
    let held = Envelope::from_bytes(&held, usize::MAX).unwrap();
    assert_eq!((held.model_version(), held.writer()), (1, a.peer_id()));
    assert_eq!(
        held.open::<v3::Card>().unwrap().map(|card| card.last),
        Some("7".to_string())
    );
    assert_eq!(
        c.get_record::<v3::Card>(v3::CardKey(SHARED))
            .await
            .unwrap()
            .first,
        "New"
    );

    // No loop: another round fetches nothing, on any side.
    for (x, y) in [(&a, &b), (&a, &c), (&b, &c), (&b, &a), (&c, &a), (&c, &b)] {
        assert_eq!(round(x, y).await, 0, "a converged round fetches nothing");
    }

    // A updated in place: its file, opened by v2 code. B's records enter
    // its typed tree without a fetch (no swarm runs); C's stay held.
    let fingerprint = a.sync_fingerprint().unwrap();
    a.shutdown().await.unwrap();
    drop(a);
    let a = open_again(&dir.path().join("a")).await;
    a.register::<v2::Card>().unwrap();
    assert_eq!(typed::<v2::Card>(&a).await, 2 * EACH);
    assert_eq!(a.stats().newer_version_held, EACH + 1);
    assert_eq!(a.stats().accepted, 0, "nothing fetched");
    assert_eq!(a.sync_fingerprint().unwrap(), fingerprint);
    let oslo = a
        .query_local_records::<v2::Card, _, _>(|t| t.by_city("Oslo"))
        .await
        .unwrap();
    assert_eq!(oslo.len() as u64, EACH, "B's records, indexed");
    // And by v3 code: everything, the shared key too.
    a.shutdown().await.unwrap();
    drop(a);
    let a = open_again(&dir.path().join("a")).await;
    a.register::<v3::Card>().unwrap();
    assert_eq!(typed::<v3::Card>(&a).await, 3 * EACH + 1);
    assert_eq!(a.stats().newer_version_held, 0);
    let lima = a
        .query_local_records::<v3::Card, _, _>(|t| t.by_city("Lima"))
        .await
        .unwrap();
    assert_eq!(lima.len() as u64, EACH + 1);
    // Every envelope still verifies: nothing was re-signed or re-encoded.
    for (_, bytes) in a.store().begin_read().unwrap().envelopes().unwrap() {
        Envelope::from_bytes(&bytes, usize::MAX).expect("verifies");
    }
}

/// Opens the node at `dir` again once the last one has let go of it.
async fn open_again(dir: &std::path::Path) -> Netabase {
    tokio::time::timeout(NET_WAIT, async {
        loop {
            match Netabase::new_with_path(dir, NetabaseConfig::loopback()) {
                Err(NodeError::Store(netabase::StoreError::AlreadyOpen)) => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await
                }
                opened => return opened.unwrap(),
            }
        }
    })
    .await
    .expect("the database is released")
}

/// A note only its owner writes, at version 1 and 2.
mod owned1 {
    use netabase::{NetabaseModel, PeerId};
    #[derive(NetabaseModel, Clone, Debug, PartialEq)]
    #[netabase(name = "Owned", write = "owner")]
    pub struct Owned {
        #[primary_key]
        pub id: u64,
        #[owner]
        pub owner: PeerId,
        pub text: String,
    }
}

mod owned2 {
    use netabase::{NetabaseModel, PeerId};
    #[derive(NetabaseModel, Clone, Debug, PartialEq)]
    #[netabase(name = "Owned", write = "owner", version = 2, from = super::owned1::Owned)]
    pub struct Owned {
        #[primary_key]
        pub id: u64,
        #[owner]
        pub owner: PeerId,
        pub text: String,
        pub pinned: bool,
    }

    impl From<super::owned1::Owned> for Owned {
        fn from(old: super::owned1::Owned) -> Self {
            Owned {
                id: old.id,
                owner: old.owner,
                text: old.text,
                pinned: false,
            }
        }
    }
}

/// A v1 node judges v2 writes it cannot read by their signer: the owner's
/// are held, anyone else's refused, whatever version they claim, and the
/// owner's record stays the owner's across versions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_peer_keeps_the_owner_rule_on_versions_it_cannot_read() {
    let dir = tempfile::tempdir().unwrap();
    let node = Netabase::new_with_path(dir.path(), NetabaseConfig::loopback()).unwrap();
    node.register::<owned1::Owned>().unwrap();
    node.start_swarm().await.unwrap();
    let mut events = node.subscribe_to_broadcasts();

    let owner = Keypair::generate_ed25519();
    let owner_id = owner.public().to_peer_id();
    let thief = Keypair::generate_ed25519();
    let mut swarm = raw::kad_swarm(&thief);
    raw::kad_dial(&mut swarm, &node);
    let key = record_key(
        owned1::Owned::ID,
        owned1::OwnedKey(1).to_key_bytes().as_slice(),
    );
    let v2 = |by: &Keypair, owner: PeerId, text: &str| {
        let record = owned2::Owned {
            id: 1,
            owner,
            text: text.into(),
            pinned: true,
        };
        Envelope::seal(by, &record, now()).unwrap()
    };
    let accepted = |n: &Netabase| n.stats().accepted;
    let refused = |n: &Netabase| n.stats().rejected(Rejection::NotAllowed);
    let target = node.peer_id();
    // Sends `envelope` to the node, then waits until `done` holds.
    macro_rules! push {
        ($envelope:expr, $what:expr, $done:expr) => {{
            let bytes = $envelope.as_bytes().to_vec();
            raw::push(&mut swarm, target, key.clone(), bytes, None).await;
            wait_until($what, &mut events, || $done, || node.stats()).await;
        }};
    }

    // 1. The owner's v1 record.
    let first = owned1::Owned {
        id: 1,
        owner: owner_id,
        text: "mine".into(),
    };
    push!(
        Envelope::seal(&owner, &first, now()).unwrap(),
        "the owner's v1 record",
        accepted(&node) == 1
    );
    // 2. A thief's v2 version naming itself: refused, though unreadable here.
    push!(
        v2(&thief, thief.public().to_peer_id(), "stolen"),
        "the thief refused",
        refused(&node) == 1
    );
    // 3. A thief's v2 version naming the owner: refused (not signed by it).
    push!(
        v2(&thief, owner_id, "stolen"),
        "the thief refused again",
        refused(&node) == 2
    );
    assert_eq!(
        node.get_record::<owned1::Owned>(owned1::OwnedKey(1))
            .await
            .unwrap(),
        first
    );
    // 4. The owner's own v2 version: held, not typed.
    push!(
        v2(&owner, owner_id, "mine, pinned"),
        "the owner's v2 record",
        accepted(&node) == 2
    );
    assert_eq!(node.stats().newer_version_held, 1);
    assert!(matches!(
        node.get_record::<owned1::Owned>(owned1::OwnedKey(1)).await,
        Err(NodeError::NewerVersion { version: 2, .. })
    ));
    // 5. A thief's v2 version after it: still the owner's record.
    push!(
        v2(&thief, owner_id, "stolen"),
        "the thief refused a third time",
        refused(&node) == 3
    );
    // 6. Claiming a version no release has, with garbage for a payload:
    //    judged by the same rule, refused.
    let garbage = Envelope::seal_raw_at(
        &thief,
        owned1::Owned::ID,
        owned1::OwnedKey(1).to_key_bytes().as_slice(),
        vec![0xff; 40],
        now(),
        false,
        99,
    )
    .unwrap();
    push!(garbage, "version 99 refused", refused(&node) == 4);
    assert_eq!(node.stats().newer_version_held, 1);
    // 7. The owner back on v1: the typed record returns.
    let back = owned1::Owned {
        id: 1,
        owner: owner_id,
        text: "mine again".into(),
    };
    push!(
        Envelope::seal(&owner, &back, now()).unwrap(),
        "the owner's v1 record again",
        accepted(&node) == 3
    );
    assert_eq!(node.stats().newer_version_held, 0);
    assert_eq!(
        node.get_record::<owned1::Owned>(owned1::OwnedKey(1))
            .await
            .unwrap(),
        back
    );
}
