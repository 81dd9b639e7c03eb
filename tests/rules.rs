//! Who may write: the owner, immutable and custom rules, enforced on every
//! path a record enters (local writes, Kademlia pushes, catch-up, copies
//! answering `get_record`), by every peer, without breaking convergence.

mod common;

use common::*;
use netabase::codec::{record_key, Envelope};
use netabase::node::{Event, Netabase, NetabaseConfig, NodeError, Rejection};
use netabase::rules::{Context, Entry, Refusal, WriteRule};
use netabase::sync::Timestamp;
use netabase::{KeyEncode, Keypair, NetabaseModel, PeerId, Store};

/// A profile only its owner edits; the owner may hand it to someone else.
#[derive(NetabaseModel, Clone, Debug, PartialEq)]
#[netabase(name = "Profile", write = "owner")]
pub struct Profile {
    #[primary_key]
    pub handle: String,
    #[owner]
    pub owner: PeerId,
    pub bio: String,
}

/// One record per peer, keyed by its owner: nobody else can create it, so
/// no two first owners can race for a key.
#[derive(NetabaseModel, Clone, Debug, PartialEq)]
#[netabase(name = "Home", write = "owner")]
pub struct Home {
    #[primary_key]
    #[owner]
    pub owner: PeerId,
    pub motto: String,
}

/// An append-only log entry.
#[derive(NetabaseModel, Clone, Debug, PartialEq)]
#[netabase(name = "LogEntry", write = "immutable")]
pub struct LogEntry {
    #[primary_key]
    pub id: u64,
    pub text: String,
}

/// A counter that may only grow, and is never deleted.
#[derive(NetabaseModel, Clone, Debug, PartialEq)]
#[netabase(name = "Counter", write = GrowOnly)]
pub struct Counter {
    #[primary_key]
    pub id: u64,
    pub value: u64,
}

pub struct GrowOnly;

impl WriteRule<Counter> for GrowOnly {
    fn check(
        write: &Entry<'_, Counter>,
        held: Option<&Entry<'_, Counter>>,
        _: &dyn Context,
    ) -> Result<(), Refusal> {
        match (write.record, held.and_then(|h| h.record)) {
            (None, _) => Err(Refusal::custom("counters are never deleted")),
            (Some(new), Some(old)) if new.value < old.value => {
                Err(Refusal::custom("a counter may only grow"))
            }
            _ => Ok(()),
        }
    }
}

fn profile(handle: &str, owner: &Netabase, bio: &str) -> Profile {
    Profile {
        handle: handle.into(),
        owner: owner.peer_id(),
        bio: bio.into(),
    }
}

async fn rules_node(
    dir: &std::path::Path,
    bootstrap: &[&Netabase],
    tweak: impl FnOnce(&mut NetabaseConfig),
) -> Netabase {
    let node = open(dir, config(bootstrap, tweak)).await;
    for result in [
        node.register::<Profile>(),
        node.register::<LogEntry>(),
        node.register::<Counter>(),
        node.register::<Home>(),
    ] {
        result.unwrap();
    }
    node
}

/// Starts a node with the rule models, subscribed before it starts.
async fn start_rules(
    dir: &std::path::Path,
    bootstrap: &[&Netabase],
) -> (Netabase, tokio::sync::broadcast::Receiver<Event>) {
    start_rules_with(dir, bootstrap, |_| {}).await
}

async fn start_rules_with(
    dir: &std::path::Path,
    bootstrap: &[&Netabase],
    tweak: impl FnOnce(&mut NetabaseConfig),
) -> (Netabase, tokio::sync::broadcast::Receiver<Event>) {
    let node = rules_node(dir, bootstrap, tweak).await;
    let events = node.subscribe_to_broadcasts();
    node.start_swarm().await.unwrap();
    (node, events)
}

fn not_allowed<T: std::fmt::Debug>(result: Result<T, NodeError>) {
    assert!(
        matches!(result, Err(NodeError::NotAllowed { .. })),
        "{result:?}"
    );
}

/// The record of `M` under `key` in the node's local store.
async fn held<M: NetabaseModel + Send + 'static>(node: &Netabase, key: M::Key) -> Option<M>
where
    M::Key: Send + 'static,
{
    node.query_local_records::<M, _, _>(move |t| {
        use netabase::store::Lookup;
        t.get(&key)
    })
    .await
    .unwrap()
}

/// `owner` hands its profile `handle` to `to`, which accepts it first.
async fn hand(owner: &Netabase, to: &Netabase, handle: &str, bio: &str) {
    let accepted = to
        .accept_ownership::<Profile>(ProfileKey(handle.into()))
        .await
        .unwrap();
    owner
        .hand_over(profile(handle, to, bio), accepted)
        .await
        .unwrap();
}

async fn counter(node: &Netabase, id: u64) -> Option<u64> {
    held::<Counter>(node, CounterKey(id)).await.map(|c| c.value)
}

async fn bio(node: &Netabase, handle: &str) -> Option<(PeerId, String)> {
    held::<Profile>(node, ProfileKey(handle.into()))
        .await
        .map(|p| (p.owner, p.bio))
}

/// A local batch is judged record by record, each against the one before it
/// (held, or the batch's own earlier version of that key), and refused
/// whole when any step breaks the rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_judged_step_by_step_and_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let node = rules_node(dir.path(), &[], |_| {}).await;
    let score = |id, value| Counter { id, value };
    let entry = |text: &str| LogEntry {
        id: 1,
        text: text.into(),
    };

    // Grow-only: 5 then 3 shrinks at the second step, though 3 alone would
    // be a fine first write.
    not_allowed(
        node.put_records_locally(vec![score(1, 5), score(1, 3)])
            .await,
    );
    assert_eq!(counter(&node, 1).await, None);
    // Refused whole: the other key's record is not written either.
    not_allowed(
        node.put_records_locally(vec![score(2, 1), score(1, 5), score(1, 3)])
            .await,
    );
    assert_eq!(counter(&node, 2).await, None);
    // Growing at every step: stored, and the key counts once.
    assert_eq!(
        node.put_records_locally(vec![score(1, 3), score(1, 5)])
            .await
            .unwrap(),
        1
    );
    assert_eq!(counter(&node, 1).await, Some(5));
    // Against what is held: 7 grows from 5, then 6 shrinks from 7.
    not_allowed(
        node.put_records_locally(vec![score(1, 7), score(1, 6)])
            .await,
    );
    assert_eq!(counter(&node, 1).await, Some(5));

    // Immutable: a batch that writes an entry and then rewrites it.
    not_allowed(
        node.put_records_locally(vec![entry("first"), entry("rewritten")])
            .await,
    );
    assert_eq!(held::<LogEntry>(&node, LogEntryKey(1)).await, None);
    // Written once, it is stored.
    node.put_records_locally(vec![entry("first")])
        .await
        .unwrap();
    assert_eq!(
        held::<LogEntry>(&node, LogEntryKey(1)).await,
        Some(entry("first"))
    );
    assert_eq!(
        node.stats().rejected_total(),
        0,
        "local refusals are errors"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_writes_follow_the_rules_and_are_never_published_when_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = start_rules(&dir.path().join("a"), &[]).await;
    let (b, mut b_events) = start_rules(&dir.path().join("b"), &[&a]).await;
    caught_up_with(&mut b_events, a.peer_id()).await;

    a.put_record(profile("ada", &a, "hello")).await.unwrap();
    a.put_record(LogEntry {
        id: 1,
        text: "first".into(),
    })
    .await
    .unwrap();
    a.put_record(Counter { id: 1, value: 5 }).await.unwrap();
    round(&b, &a).await;
    assert_eq!(bio(&b, "ada").await, Some((a.peer_id(), "hello".into())));

    // B may not edit, delete or take A's profile, nor create one for A.
    not_allowed(b.put_record(profile("ada", &a, "defaced")).await);
    not_allowed(b.put_record(profile("ada", &b, "mine now")).await);
    not_allowed(b.remove_record::<Profile>(ProfileKey("ada".into())).await);
    not_allowed(b.put_record(profile("new", &a, "in A's name")).await);
    // A record keyed by its owner is created by that owner alone.
    not_allowed(
        b.put_record(Home {
            owner: a.peer_id(),
            motto: "squatted".into(),
        })
        .await,
    );
    b.put_record(Home {
        owner: b.peer_id(),
        motto: "mine".into(),
    })
    .await
    .unwrap();
    // Nor delete a key nobody holds: a delete would claim it ahead of its owner.
    not_allowed(
        b.remove_record::<Profile>(ProfileKey("unclaimed".into()))
            .await,
    );
    // Nobody changes or deletes a log entry, not even its writer.
    not_allowed(
        a.put_record(LogEntry {
            id: 1,
            text: "rewritten".into(),
        })
        .await,
    );
    not_allowed(a.remove_record::<LogEntry>(LogEntryKey(1)).await);
    // The custom rule: up only, never deleted.
    not_allowed(a.put_record(Counter { id: 1, value: 4 }).await);
    not_allowed(a.remove_record::<Counter>(CounterKey(1)).await);
    a.put_record(Counter { id: 1, value: 6 }).await.unwrap();
    // A batch with one refused write writes nothing.
    not_allowed(
        b.put_records_locally(vec![profile("bea", &b, "ok"), profile("ada", &b, "not ok")])
            .await,
    );
    assert_eq!(bio(&b, "bea").await, None);

    // Nothing refused reached A.
    round(&a, &b).await;
    assert_eq!(bio(&a, "ada").await, Some((a.peer_id(), "hello".into())));
    assert_eq!(a.stats().rejected(Rejection::NotAllowed), 0);

    // The owner cannot hand the profile to B before B accepts it, nor
    // with an acceptance that is not B's, and a peer refuses a handover
    // signed by the owner alone.
    let refused = a.put_record(profile("ada", &b, "unasked")).await;
    assert!(
        matches!(
            &refused,
            Err(NodeError::NotAllowed {
                refusal: Refusal::NotAccepted,
                ..
            })
        ),
        "{refused:?}"
    );
    let own = a
        .accept_ownership::<Profile>(ProfileKey("ada".into()))
        .await
        .unwrap();
    not_allowed(a.hand_over(profile("ada", &b, "unasked"), own).await);
    let at = now().0 + 1_000;
    let a_key = identity(&dir.path().join("a"));
    let forced = Envelope::seal_with_authority(
        &a_key,
        &ProfileKey("ada".into()),
        Some(&profile("ada", &b, "forced on B")),
        Timestamp(at),
        chain(
            a.peer_id(),
            &[(
                b.peer_id(),
                at,
                handover_signature(&a_key, "ada", b.peer_id(), at),
                vec![0; 64],
            )],
        ),
    )
    .unwrap();
    let mut kad = raw::kad_swarm(&Keypair::generate_ed25519());
    push_to(&mut kad, &b, &forced).await;
    wait_until(
        "B refuses a handover it never accepted",
        &mut b_events,
        || b.stats().rejected(Rejection::NotAllowed) == 1,
        || b.stats(),
    )
    .await;
    drop(kad);
    assert_eq!(bio(&b, "ada").await, Some((a.peer_id(), "hello".into())));

    // B accepts it, the owner hands it over, and from then on only B
    // writes it. The acceptance travels as bytes, as an application
    // would send it; it serves that one handover.
    let accepted = b
        .accept_ownership::<Profile>(ProfileKey("ada".into()))
        .await
        .unwrap();
    assert_eq!(accepted.new_owner(), b.peer_id());
    let accepted = netabase::rules::Acceptance::from_bytes(&accepted.to_bytes()).unwrap();
    a.hand_over(profile("ada", &b, "handed to B"), accepted.clone())
        .await
        .unwrap();
    round(&b, &a).await;
    b.put_record(profile("ada", &b, "B writes")).await.unwrap();
    not_allowed(a.put_record(profile("ada", &a, "A takes it back")).await);
    round(&a, &b).await;
    assert_eq!(bio(&a, "ada").await, Some((b.peer_id(), "B writes".into())));
    assert_eq!(a.sync_fingerprint().unwrap(), b.sync_fingerprint().unwrap());

    // An acceptance serves one handover: B hands the profile back to A
    // (which accepts it), and B's old acceptance cannot bring it to B again.
    hand(&b, &a, "ada", "back to A").await;
    round(&a, &b).await;
    assert_eq!(
        bio(&a, "ada").await,
        Some((a.peer_id(), "back to A".into()))
    );
    let replayed = a.hand_over(profile("ada", &b, "again"), accepted).await;
    assert!(
        matches!(
            &replayed,
            Err(NodeError::NotAllowed {
                refusal: Refusal::NotAccepted,
                ..
            })
        ),
        "{replayed:?}"
    );
}

/// Writes `envelopes` into a fresh node directory's store, as a peer that
/// signs what it likes would hold them, and opens a node there: it serves
/// them in catch-up and answers `get_record` with them.
async fn forger(
    dir: &std::path::Path,
    envelopes: &[Envelope],
    bootstrap: &[&Netabase],
) -> Netabase {
    holding(dir, envelopes);
    let (node, _) = start_rules(dir, bootstrap).await;
    node
}

/// Writes `envelopes` straight into the store a node at `dir` will open,
/// with no check: what a peer that forged or kept them would serve.
fn holding(dir: &std::path::Path, envelopes: &[Envelope]) {
    std::fs::create_dir_all(dir).unwrap();
    {
        let store = Store::open(dir.join("netabase.redb")).unwrap();
        let txn = store.begin_write().unwrap();
        {
            let mut table = txn.envelope_table().unwrap();
            for envelope in envelopes {
                let state = netabase::store::EnvelopeState {
                    digest: netabase::sync::reconcile::digest(envelope.as_bytes()),
                    timestamp: envelope.version().timestamp.0,
                    tombstone: envelope.is_tombstone(),
                };
                table
                    .insert(
                        &envelope.record_key(),
                        envelope.as_bytes(),
                        state,
                        netabase::store::Form::Whole,
                    )
                    .unwrap();
            }
            table.flush().unwrap();
        }
        txn.commit().unwrap();
    }
}

/// A chain claiming `from` handed the record to `to`, signed by `signer`
/// (the same wire form the node writes).
fn chain(root: PeerId, links: &[(PeerId, u64, Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let links: Vec<_> = links
        .iter()
        .map(|(to, at, sig, accepted)| (to.to_bytes(), *at, sig.clone(), accepted.clone()))
        .collect();
    netabase::bincode::encode_to_vec(
        (root.to_bytes(), links),
        netabase::bincode::config::standard(),
    )
    .unwrap()
}

fn handover_signature(signer: &Keypair, handle: &str, to: PeerId, at: u64) -> Vec<u8> {
    let key = ProfileKey(handle.into()).to_key_bytes();
    let to = to.to_bytes();
    let mut message = b"netabase/owner/v1\0".to_vec();
    message.extend_from_slice(&Profile::ID.0.to_be_bytes());
    message.extend_from_slice(&(key.len() as u32).to_be_bytes());
    message.extend_from_slice(key.as_slice());
    message.extend_from_slice(&to);
    message.extend_from_slice(&at.to_be_bytes());
    signer.sign(&message).unwrap()
}

/// `signer`'s acceptance of `handle` from `from` at `position` (the wire
/// form the node signs).
fn acceptance_signature(signer: &Keypair, handle: &str, from: PeerId, position: u32) -> Vec<u8> {
    let key = ProfileKey(handle.into()).to_key_bytes();
    let mut message = b"netabase/owner/accept/v1\0".to_vec();
    message.extend_from_slice(&Profile::ID.0.to_be_bytes());
    message.extend_from_slice(&(key.len() as u32).to_be_bytes());
    message.extend_from_slice(key.as_slice());
    message.extend_from_slice(&from.to_bytes());
    message.extend_from_slice(&signer.public().to_peer_id().to_bytes());
    message.extend_from_slice(&position.to_be_bytes());
    signer.sign(&message).unwrap()
}

/// Every way a peer signing with its own key can try to take a record that
/// is not its own.
fn forgeries(mallory: &Keypair, owner: PeerId, handles: [&str; 4]) -> Vec<Envelope> {
    let me = mallory.public().to_peer_id();
    let at = now().0 + 1_000;
    let mine = |handle: &str| Profile {
        handle: handle.into(),
        owner: me,
        bio: "taken".into(),
    };
    vec![
        // Its own chain, naming itself: a rival first owner.
        Envelope::seal_with_authority(
            mallory,
            &ProfileKey(handles[0].into()),
            Some(&mine(handles[0])),
            Timestamp(at),
            chain(me, &[]),
        )
        .unwrap(),
        // A delete on its own authority.
        Envelope::seal_with_authority::<Profile>(
            mallory,
            &ProfileKey(handles[1].into()),
            None,
            Timestamp(at),
            chain(me, &[]),
        )
        .unwrap(),
        // A handover from the owner that the owner never signed.
        Envelope::seal_with_authority(
            mallory,
            &ProfileKey(handles[2].into()),
            Some(&mine(handles[2])),
            Timestamp(at),
            chain(
                owner,
                &[(
                    me,
                    at,
                    handover_signature(mallory, handles[2], me, at),
                    acceptance_signature(mallory, handles[2], owner, 0),
                )],
            ),
        )
        .unwrap(),
        // The owner's own chain and name, signed by someone else.
        Envelope::seal_with_authority(
            mallory,
            &ProfileKey(handles[3].into()),
            Some(&Profile {
                handle: handles[3].into(),
                owner,
                bio: "put words in the owner's mouth".into(),
            }),
            Timestamp(at),
            chain(owner, &[]),
        )
        .unwrap(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_cannot_take_a_record_through_any_path() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = start_rules(&dir.path().join("a"), &[]).await;
    let handles = ["p0", "p1", "p2", "p3", "q0", "q1", "q2", "q3"];
    for handle in handles {
        a.put_record_locally(profile(handle, &a, "by A"))
            .await
            .unwrap();
    }
    a.put_record_locally(LogEntry {
        id: 7,
        text: "kept".into(),
    })
    .await
    .unwrap();
    a.put_record_locally(Counter { id: 2, value: 10 })
        .await
        .unwrap();
    let (v, mut v_events) = start_rules(&dir.path().join("v"), &[&a]).await;
    caught_up_with(&mut v_events, a.peer_id()).await;
    let before = v.sync_fingerprint().unwrap();
    let mallory = Keypair::generate_ed25519();

    // 1. Pushed straight over Kademlia.
    let mut kad = raw::kad_swarm(&mallory);
    raw::kad_dial(&mut kad, &v);
    let pushed = forgeries(&mallory, a.peer_id(), ["p0", "p1", "p2", "p3"]);
    let rewrite = Envelope::seal(
        &mallory,
        &LogEntry {
            id: 7,
            text: "rewritten".into(),
        },
        Timestamp(now().0 + 1_000),
    )
    .unwrap();
    // A newer counter that shrank: the custom rule refuses it.
    let shrunk = Envelope::seal(
        &mallory,
        &Counter { id: 2, value: 1 },
        Timestamp(now().0 + 1_000),
    )
    .unwrap();
    for envelope in pushed.iter().chain([&rewrite, &shrunk]) {
        raw::push(
            &mut kad,
            v.peer_id(),
            envelope.record_key(),
            envelope.as_bytes().to_vec(),
            None,
        )
        .await;
    }
    wait_until(
        "the pushes are refused",
        &mut v_events,
        || v.stats().rejected(Rejection::NotAllowed) >= 6,
        || v.stats(),
    )
    .await;
    // Not driven from here on: gone, so no query waits on it.
    drop(kad);
    assert_eq!(v.sync_fingerprint().unwrap(), before);

    // 2. Offered in catch-up by a peer holding them.
    // The immutable record's rewrite and the shrunk counter too.
    let mut offered = forgeries(&mallory, a.peer_id(), ["q0", "q1", "q2", "q3"]);
    offered.extend([rewrite.clone(), shrunk.clone()]);
    let x = forger(&dir.path().join("x"), &offered, &[&v]).await;
    let refused = wait_for("V's catch-up with the forger", &mut v_events, |e| match e {
        Event::CaughtUp { peer, refused, .. } if *peer == x.peer_id() => Some(*refused),
        _ => None,
    })
    .await;
    assert_eq!(refused, 6);
    assert_eq!(v.stats().rejected(Rejection::NotAllowed), 12);
    assert_eq!(v.sync_fingerprint().unwrap(), before);
    for handle in handles {
        assert_eq!(bio(&v, handle).await, Some((a.peer_id(), "by A".into())));
    }

    // 3. As the answer to a `get_record`, from a node that holds nothing
    // for the key (no catch-up: it asks the DHT). The owner's copy and the
    // forger's newer one both arrive, for each kind of forgery; the
    // forger's does not follow from the owner's, so the owner's is
    // returned and kept.
    let late_handles = ["r0", "r1", "r2", "r3"];
    for handle in late_handles {
        a.put_record_locally(profile(handle, &a, "by A, later"))
            .await
            .unwrap();
    }
    let mut late = forgeries(&mallory, a.peer_id(), late_handles);
    a.put_record_locally(LogEntry {
        id: 8,
        text: "kept too".into(),
    })
    .await
    .unwrap();
    late.push(
        Envelope::seal(
            &mallory,
            &LogEntry {
                id: 8,
                text: "rewritten".into(),
            },
            Timestamp(now().0 + 1_000),
        )
        .unwrap(),
    );
    let y = forger(&dir.path().join("y"), &late, &[]).await;
    let (w, mut w_events) =
        start_rules_with(&dir.path().join("w"), &[&a, &y], |c| c.catch_up = false).await;
    for handle in late_handles {
        let fetched = w
            .get_record::<Profile>(ProfileKey(handle.into()))
            .await
            .unwrap();
        assert_eq!(
            (fetched.owner, fetched.bio.as_str()),
            (a.peer_id(), "by A, later"),
            "{handle}"
        );
    }
    let entry = w.get_record::<LogEntry>(LogEntryKey(8)).await.unwrap();
    assert_eq!(entry.text, "kept too");
    // What it returned it stores in the background: the owner's versions.
    let versions = |node: &Netabase| -> Vec<_> {
        late_handles
            .iter()
            .map(|h| node.record_version::<Profile>(&ProfileKey((*h).into())))
            .collect()
    };
    wait_until(
        "W stores the owner's copies",
        &mut w_events,
        || versions(&w) == versions(&a),
        || (versions(&w), w.stats()),
    )
    .await;
    // Every forger's copy was refused: on the answer's path or, arriving
    // after the read grace, in the background.
    wait_until(
        "W refuses every forger's copy",
        &mut w_events,
        || w.stats().rejected(Rejection::NotAllowed) >= 5,
        || w.stats(),
    )
    .await;

    // A peer holding nothing for a key accepts it from the owner its
    // copy, fetched from peers, names; the owner hands it over with that.
    let (z, _) = start_rules_with(&dir.path().join("z"), &[&a], |c| c.catch_up = false).await;
    let accepted = z
        .accept_ownership::<Profile>(ProfileKey("r0".into()))
        .await
        .unwrap();
    assert_eq!(
        (accepted.from(), accepted.new_owner()),
        (a.peer_id(), z.peer_id())
    );
    a.hand_over(profile("r0", &z, "to Z"), accepted)
        .await
        .unwrap();

    // Honest peers still sync with each other.
    a.put_record(profile("p0", &a, "A again")).await.unwrap();
    round(&v, &a).await;
    assert_eq!(bio(&v, "p0").await, Some((a.peer_id(), "A again".into())));
    for node in [&a, &v, &w, &x, &y, &z] {
        node.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handover_is_accepted_in_any_arrival_order_and_peers_converge() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = start_rules(&dir.path().join("a"), &[]).await;
    let (b, mut b_events) = start_rules(&dir.path().join("b"), &[&a]).await;
    let (c, mut c_events) = start_rules(&dir.path().join("c"), &[&a, &b]).await;
    caught_up_with(&mut b_events, a.peer_id()).await;
    caught_up_with(&mut c_events, a.peer_id()).await;
    a.put_record(profile("doc", &a, "v1")).await.unwrap();
    c.put_record(profile("cdoc", &c, "c1")).await.unwrap();
    a.put_record(Counter { id: 1, value: 3 }).await.unwrap();
    for (node, peer) in [(&b, &a), (&c, &a), (&b, &c), (&a, &c)] {
        round(node, peer).await;
    }

    // C goes away. A hands "doc" to B, B edits it twice; C edits its own.
    c.stop_swarm().await.unwrap();
    hand(&a, &b, "doc", "handed").await;
    round(&b, &a).await;
    b.put_record(profile("doc", &b, "B's first")).await.unwrap();
    b.put_record(profile("doc", &b, "B's second"))
        .await
        .unwrap();
    // A no longer may.
    not_allowed(a.put_record(profile("doc", &a, "A again")).await);
    c.put_record_locally(profile("cdoc", &c, "c2"))
        .await
        .unwrap();
    // Conflicting writes to one counter, each valid where it is made: A
    // grows it to 5, C (later, away) to 7. The newer one wins everywhere.
    a.put_record(Counter { id: 1, value: 5 }).await.unwrap();
    c.put_record_locally(Counter { id: 1, value: 7 })
        .await
        .unwrap();

    // C comes back holding "doc" as A's, and meets only B's latest write: the
    // chain it carries proves the handover C missed.
    c.start_swarm().await.unwrap();
    c.dial(address_of(&b)).await.unwrap();
    c.dial(address_of(&a)).await.unwrap();
    for _ in 0..3 {
        for (node, peer) in [(&c, &b), (&c, &a), (&a, &c), (&b, &c), (&a, &b)] {
            round(node, peer).await;
        }
        if [&b, &c]
            .iter()
            .all(|n| n.sync_fingerprint().unwrap() == a.sync_fingerprint().unwrap())
        {
            break;
        }
    }
    for node in [&a, &b, &c] {
        assert_eq!(
            node.sync_fingerprint().unwrap(),
            a.sync_fingerprint().unwrap()
        );
        assert_eq!(
            bio(node, "doc").await,
            Some((b.peer_id(), "B's second".into()))
        );
        assert_eq!(bio(node, "cdoc").await, Some((c.peer_id(), "c2".into())));
        assert_eq!(counter(node, 1).await, Some(7));
        assert_eq!(
            node.stats().rejected(Rejection::NotAllowed),
            0,
            "{:?}",
            node.stats()
        );
    }

    // The newest write arriving before the handover it depends on: a fresh
    // node is pushed B's latest write first, then the handover.
    let (d, mut d_events) = start_rules(&dir.path().join("d"), &[]).await;
    let mallory = Keypair::generate_ed25519();
    let mut kad = raw::kad_swarm(&mallory);
    raw::kad_dial(&mut kad, &d);
    let latest = b.store().begin_read().unwrap().envelope(&record_key(
        Profile::ID,
        ProfileKey("doc".into()).to_key_bytes().as_slice(),
    ));
    let latest = latest.unwrap().unwrap();
    raw::push(
        &mut kad,
        d.peer_id(),
        record_key(
            Profile::ID,
            ProfileKey("doc".into()).to_key_bytes().as_slice(),
        ),
        latest,
        None,
    )
    .await;
    wait_for("D stores B's write", &mut d_events, |e| {
        matches!(e, Event::Record { .. }).then_some(())
    })
    .await;
    assert_eq!(
        bio(&d, "doc").await,
        Some((b.peer_id(), "B's second".into()))
    );
}

/// A shared document only members write.
#[derive(NetabaseModel, Clone, Debug, PartialEq)]
#[netabase(name = "Doc", write = "members")]
pub struct Doc {
    #[primary_key]
    pub id: u64,
    pub text: String,
}

/// Starts a node syncing `Doc`, with `admin` as its admin.
async fn member_node(
    dir: &std::path::Path,
    bootstrap: &[&Netabase],
    admin: Option<PeerId>,
) -> (Netabase, tokio::sync::broadcast::Receiver<Event>) {
    let node = Netabase::new_with_path(
        dir,
        config(bootstrap, |c| {
            if let Some(admin) = admin {
                c.admins.insert(Doc::NAME.to_string(), vec![admin]);
            }
        }),
    )
    .unwrap();
    node.register::<Doc>().unwrap();
    let events = node.subscribe_to_broadcasts();
    node.start_swarm().await.unwrap();
    (node, events)
}

/// Pushes `envelope` to `node` from a raw Kademlia peer.
async fn push_to(
    kad: &mut libp2p::Swarm<libp2p::kad::Behaviour<libp2p::kad::store::MemoryStore>>,
    node: &Netabase,
    envelope: &Envelope,
) {
    raw::kad_dial(kad, node);
    raw::push(
        kad,
        node.peer_id(),
        envelope.record_key(),
        envelope.as_bytes().to_vec(),
        None,
    )
    .await;
}

/// The peer id a node directory has (its identity is made on first open):
/// the admin's id is needed in every configuration before it starts.
async fn peer_id_of(dir: &std::path::Path) -> PeerId {
    let node = Netabase::new_with_path(dir, NetabaseConfig::loopback()).unwrap();
    let id = node.peer_id();
    node.shutdown().await.unwrap();
    id
}

fn identity(dir: &std::path::Path) -> Keypair {
    Keypair::from_protobuf_encoding(&std::fs::read(dir.join("identity.key")).unwrap()).unwrap()
}

/// A, the admin of `Doc`, and B and C, each caught up with it.
async fn admin_and_two(dir: &std::path::Path) -> (Netabase, Netabase, Netabase) {
    let a_dir = dir.join("a");
    let admin = peer_id_of(&a_dir).await;
    let (a, _) = member_node(&a_dir, &[], Some(admin)).await;
    let (b, mut b_events) = member_node(&dir.join("b"), &[&a], Some(admin)).await;
    let (c, mut c_events) = member_node(&dir.join("c"), &[&a], Some(admin)).await;
    caught_up_with(&mut b_events, a.peer_id()).await;
    caught_up_with(&mut c_events, a.peer_id()).await;
    (a, b, c)
}

/// `member`'s membership of `Doc`, closed now: written by an admin while
/// its swarm is stopped, so no exchange in flight carries it early.
fn revocation(member: PeerId) -> netabase::rules::Membership {
    netabase::rules::Membership {
        id: netabase::rules::Membership::id(Doc::ID, &member),
        model: Doc::ID.0,
        member,
        periods: vec![(0, Some(now().0))],
    }
}

async fn doc(node: &Netabase, id: u64) -> Option<String> {
    held::<Doc>(node, DocKey(id)).await.map(|d| d.text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_write_while_their_membership_lasts() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = admin_and_two(dir.path()).await;
    let admin = a.peer_id();
    let mut c_events = c.subscribe_to_broadcasts();

    // Only admins grant; B is not a member yet.
    not_allowed(b.grant::<Doc>(c.peer_id()).await);
    not_allowed(
        b.put_record(Doc {
            id: 1,
            text: "too early".into(),
        })
        .await,
    );
    a.grant::<Doc>(b.peer_id()).await.unwrap();
    round(&b, &a).await;
    assert_eq!(b.members::<Doc>().unwrap(), vec![b.peer_id()]);
    b.put_record(Doc {
        id: 1,
        text: "B's".into(),
    })
    .await
    .unwrap();
    for (node, peer) in [(&a, &b), (&c, &a), (&c, &b)] {
        round(node, peer).await;
    }
    assert_eq!(doc(&c, 1).await.as_deref(), Some("B's"));
    // C is no member: refused at home, and by peers if it forges one.
    not_allowed(
        c.put_record(Doc {
            id: 1,
            text: "C's".into(),
        })
        .await,
    );

    // A revokes B while away from everyone, so that no exchange in flight
    // carries the revocation before A is back. B, unaware, writes again,
    // and C takes that write.
    a.stop_swarm().await.unwrap();
    a.put_record_locally(revocation(b.peer_id())).await.unwrap();
    let late = Envelope::seal(
        &identity(&dir.path().join("b")),
        &Doc {
            id: 1,
            text: "after revocation".into(),
        },
        Timestamp(now().0 + 10),
    )
    .unwrap();
    let mallory = Keypair::generate_ed25519();
    let mut kad = raw::kad_swarm(&mallory);
    push_to(&mut kad, &c, &late).await;
    let late_version = late.version();
    wait_until(
        "C stores B's late write",
        &mut c_events,
        || c.record_version::<Doc>(&DocKey(1)) == Some(late_version),
        || (c.record_version::<Doc>(&DocKey(1)), c.stats()),
    )
    .await;
    assert_eq!(doc(&c, 1).await.as_deref(), Some("after revocation"));
    // A is back: it refuses that write.
    let mut a_events = a.subscribe_to_broadcasts();
    a.start_swarm().await.unwrap();
    push_to(&mut kad, &a, &late).await;
    wait_until(
        "A refuses B's late write",
        &mut a_events,
        || a.stats().rejected(Rejection::NotAllowed) >= 1,
        || a.stats(),
    )
    .await;
    // And offered in catch-up by a peer that kept it.
    let keeper_dir = dir.path().join("keeper");
    holding(&keeper_dir, std::slice::from_ref(&late));
    // It only serves: were it to catch up, it would learn of the
    // revocation and drop that write before A asks for it.
    let keeper = Netabase::new_with_path(
        &keeper_dir,
        config(&[&a], |c| {
            c.admins.insert(Doc::NAME.to_string(), vec![admin]);
            c.catch_up = false;
        }),
    )
    .unwrap();
    keeper.register::<Doc>().unwrap();
    keeper.start_swarm().await.unwrap();
    let refused = wait_for("A's catch-up with the keeper", &mut a_events, |e| match e {
        Event::CaughtUp { peer, refused, .. } if *peer == keeper.peer_id() => Some(*refused),
        _ => None,
    })
    .await;
    assert_eq!(refused, 1);
    assert_eq!(a.stats().rejected(Rejection::NotAllowed), 2);
    keeper.shutdown().await.unwrap();
    // When C learns of the revocation it drops that write, then fetches
    // the version before it: A and C agree again.
    c.dial(address_of(&a)).await.unwrap();
    round(&c, &a).await;
    assert_eq!(doc(&c, 1).await.as_deref(), Some("B's"));
    assert_eq!(doc(&a, 1).await.as_deref(), Some("B's"));
    assert_eq!(c.sync_fingerprint().unwrap(), a.sync_fingerprint().unwrap());
    // B, once told, is refused at home too; its earlier write stands.
    b.dial(address_of(&a)).await.unwrap();
    round(&b, &a).await;
    assert!(b.members::<Doc>().unwrap().is_empty());
    not_allowed(
        b.put_record(Doc {
            id: 2,
            text: "B after".into(),
        })
        .await,
    );
    round(&b, &a).await;
    assert_eq!(doc(&b, 1).await.as_deref(), Some("B's"));
    assert_eq!(b.sync_fingerprint().unwrap(), a.sync_fingerprint().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_arrives_before_its_membership_is_taken_later() {
    let dir = tempfile::tempdir().unwrap();
    let a_dir = dir.path().join("a");
    let admin = peer_id_of(&a_dir).await;
    let (a, _) = member_node(&a_dir, &[], Some(admin)).await;
    let (d, mut d_events) = member_node(&dir.path().join("d"), &[&a], Some(admin)).await;
    caught_up_with(&mut d_events, a.peer_id()).await;
    a.grant::<Doc>(d.peer_id()).await.unwrap();
    round(&d, &a).await;
    d.put_record_locally(Doc {
        id: 5,
        text: "D's".into(),
    })
    .await
    .unwrap();
    // P meets only D, and is pushed D's write before anything else.
    let (p, mut p_events) = member_node(&dir.path().join("p"), &[], Some(admin)).await;
    let written = d
        .store()
        .begin_read()
        .unwrap()
        .envelope(&record_key(Doc::ID, DocKey(5).to_key_bytes().as_slice()));
    let written = written.unwrap().unwrap();
    let mallory = Keypair::generate_ed25519();
    let mut kad = raw::kad_swarm(&mallory);
    raw::kad_dial(&mut kad, &p);
    let key = record_key(Doc::ID, DocKey(5).to_key_bytes().as_slice());
    raw::push(&mut kad, p.peer_id(), key, written, None).await;
    wait_until(
        "refused before its membership",
        &mut p_events,
        || p.stats().rejected(Rejection::NotAllowed) > 0,
        || p.stats(),
    )
    .await;
    assert_eq!(doc(&p, 5).await, None);
    // Catching up with D brings the membership, then the write.
    p.dial(address_of(&d)).await.unwrap();
    for _ in 0..3 {
        round(&p, &d).await;
        if p.sync_fingerprint().unwrap() == d.sync_fingerprint().unwrap() {
            break;
        }
    }
    assert_eq!(doc(&p, 5).await.as_deref(), Some("D's"));
    assert_eq!(p.sync_fingerprint().unwrap(), d.sync_fingerprint().unwrap());
}

/// The catch-up that brings a revocation, and with it drops the member's
/// later write, also brings back the version before that write: when it
/// reports `refused: 0`, both sides hold the same versions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catch_up_that_drops_a_revoked_write_brings_back_the_one_before() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = admin_and_two(dir.path()).await;
    a.grant::<Doc>(b.peer_id()).await.unwrap();
    round(&b, &a).await;
    let v1 = Doc {
        id: 1,
        text: "v1".into(),
    };
    b.put_record(v1.clone()).await.unwrap();
    for (node, peer) in [(&a, &b), (&c, &b)] {
        round(node, peer).await;
    }
    assert_eq!(doc(&c, 1).await.as_deref(), Some("v1"));

    // A revokes B while its swarm is stopped; B, unaware, writes v2, and
    // C takes it.
    a.stop_swarm().await.unwrap();
    a.put_record_locally(revocation(b.peer_id())).await.unwrap();
    b.put_record_locally(Doc {
        id: 1,
        text: "v2".into(),
    })
    .await
    .unwrap();
    c.dial(address_of(&b)).await.unwrap();
    round(&c, &b).await;
    assert_eq!(doc(&c, 1).await.as_deref(), Some("v2"));
    c.stop_swarm().await.unwrap();

    // A is back. B's catch-up with A (the one its connection starts) takes
    // the revocation, drops v2, and reports only once it holds v1 again.
    let mut b_events = b.subscribe_to_broadcasts();
    a.start_swarm().await.unwrap();
    b.dial(address_of(&a)).await.unwrap();
    caught_up_as_a_holds(&b, &mut b_events, &a).await;
    // C likewise, once back.
    let mut c_events = c.subscribe_to_broadcasts();
    c.start_swarm().await.unwrap();
    c.dial(address_of(&a)).await.unwrap();
    caught_up_as_a_holds(&c, &mut c_events, &a).await;
}

/// Waits for `node`'s catch-up with `a` and checks that it reported
/// nothing refused and left `node` holding what `a` holds: the version
/// before the revoked write.
async fn caught_up_as_a_holds(
    node: &Netabase,
    events: &mut tokio::sync::broadcast::Receiver<Event>,
    a: &Netabase,
) {
    let refused = wait_for("a catch-up with A", events, |e| match e {
        Event::CaughtUp { peer, refused, .. } if *peer == a.peer_id() => Some(*refused),
        _ => None,
    })
    .await;
    assert_eq!(refused, 0);
    assert_eq!(doc(node, 1).await.as_deref(), Some("v1"));
    assert_eq!(
        node.sync_fingerprint().unwrap(),
        a.sync_fingerprint().unwrap()
    );
}
