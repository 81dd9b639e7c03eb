use super::*;

fn state(key: &[u8], timestamp: u64) -> ItemState {
    ItemState {
        digest: digest(&[key, &timestamp.to_le_bytes()].concat()),
        timestamp,
    }
}

fn set(items: &[(u32, u64)]) -> ItemSet {
    let mut set = ItemSet::new();
    for &(key, timestamp) in items {
        let key = key.to_be_bytes().to_vec();
        let state = state(&key, timestamp);
        set.insert(key, state);
    }
    set
}

/// Runs the exchange to the end; returns what each side wants and the
/// number of messages and encoded bytes sent.
fn run(a: &ItemSet, b: &ItemSet) -> (Vec<Vec<u8>>, Vec<Vec<u8>>, usize, usize) {
    let config = bincode::config::standard();
    let (mut a_wants, mut b_wants) = (Vec::new(), Vec::new());
    let mut message = initiate(a);
    let mut bytes = bincode::encode_to_vec(&message, config).unwrap().len();
    let mut messages = 1;
    let mut b_turn = true;
    while !message.is_empty() {
        assert!(messages < 1000, "exchange does not end");
        assert!(message_cost(&message) <= MAX_MESSAGE_COST);
        let (side, wants) = if b_turn {
            (b, &mut b_wants)
        } else {
            (a, &mut a_wants)
        };
        let outcome = respond(side, &message).unwrap();
        wants.extend(outcome.want);
        message = outcome.reply;
        bytes += bincode::encode_to_vec(&message, config).unwrap().len();
        messages += 1;
        b_turn = !b_turn;
    }
    for wants in [&mut a_wants, &mut b_wants] {
        wants.sort();
        wants.dedup();
    }
    (a_wants, b_wants, messages, bytes)
}

fn keys(ks: &[u32]) -> Vec<Vec<u8>> {
    ks.iter().map(|k| k.to_be_bytes().to_vec()).collect()
}

#[test]
fn equal_sets_exchange_one_fingerprint_each_way() {
    let items: Vec<(u32, u64)> = (0..100_000).map(|i| (i, 1)).collect();
    let (a, b) = (set(&items), set(&items));
    let (a_wants, b_wants, messages, bytes) = run(&a, &b);
    assert!(a_wants.is_empty() && b_wants.is_empty());
    assert_eq!(messages, 2);
    assert!(bytes < 64, "{bytes} bytes");
}

#[test]
fn each_side_learns_what_it_lacks_or_holds_older() {
    let mut a_items: Vec<(u32, u64)> = (0..5000).map(|i| (i, 1)).collect();
    let mut b_items = a_items.clone();
    a_items.push((7000, 1)); // only on a
    b_items.push((8000, 1)); // only on b
    b_items.retain(|(k, _)| *k != 1234); // b lacks one
    a_items[10].1 = 5; // a newer for key 10
    b_items[20].1 = 5; // b newer for key 20
    let (a_wants, b_wants, _, _) = run(&set(&a_items), &set(&b_items));
    assert_eq!(a_wants, keys(&[20, 8000]));
    assert_eq!(b_wants, keys(&[10, 1234, 7000]));
}

#[test]
fn empty_sides() {
    let full = set(&(0..100).map(|i| (i, 1)).collect::<Vec<_>>());
    let (a_wants, b_wants, _, _) = run(&ItemSet::new(), &full);
    assert_eq!(a_wants.len(), 100);
    assert!(b_wants.is_empty());
    let (a_wants, b_wants, _, _) = run(&full, &ItemSet::new());
    assert!(a_wants.is_empty());
    assert_eq!(b_wants.len(), 100);
    let (a_wants, b_wants, messages, _) = run(&ItemSet::new(), &ItemSet::new());
    assert!(a_wants.is_empty() && b_wants.is_empty());
    assert_eq!(messages, 1 + 1);
}

#[test]
fn a_fresh_peer_learns_a_large_set_in_bounded_messages_and_linear_bytes() {
    let full = set(&(0..200_000).map(|i| (i, 1)).collect::<Vec<_>>());
    let (a_wants, _, messages, bytes) = run(&ItemSet::new(), &full);
    assert_eq!(a_wants.len(), 200_000);
    // What it learns: each key and its state, as listed on the wire.
    let learned = bincode::encode_to_vec(
        full.items(&KeyRange::all()).collect::<Vec<_>>(),
        bincode::config::standard(),
    )
    .unwrap()
    .len();
    assert!(bytes <= 2 * learned, "{bytes} bytes for {learned}");
    assert!(messages < 100, "{messages} messages");
}

#[test]
fn a_peer_away_past_the_horizon_drops_its_ghosts_and_the_other_does_not_fetch_them() {
    // b was last in sync at 100; a synced at 1000 and collected deletes
    // older than 500. Key 1 (written at 50) was deleted meanwhile; key 2
    // was written by b while away, but before a's floor: a refuses it, so
    // b drops it too. Key 4 was written by b at 600, after the floor.
    let a = set(&[(3, 900)]);
    let b = set(&[(1, 50), (2, 200), (3, 900), (4, 600)]);
    let a_marks = Watermarks {
        synced: 1000,
        floor: 500,
    };
    let b_marks = Watermarks {
        synced: 100,
        floor: 0,
    };
    let mut message = initiate(&a);
    let (mut a_wants, mut b_ghosts, mut a_ghosts) = (Vec::new(), Vec::new(), Vec::new());
    let mut b_turn = true;
    let mut rounds = 0;
    while !message.is_empty() {
        rounds += 1;
        assert!(rounds < 10);
        let outcome = if b_turn {
            respond_with(&b, &message, b_marks, a_marks)
        } else {
            respond_with(&a, &message, a_marks, b_marks)
        }
        .unwrap();
        if b_turn {
            b_ghosts.extend(outcome.ghosts);
        } else {
            a_wants.extend(outcome.want);
            a_ghosts.extend(outcome.ghosts);
        }
        message = outcome.reply;
        b_turn = !b_turn;
    }
    assert_eq!(a_wants, keys(&[4]));
    assert_eq!(b_ghosts, keys(&[1, 2]));
    assert!(a_ghosts.is_empty());
    assert!(is_ghost(50, b_marks, a_marks));
    assert!(!is_ghost(600, b_marks, a_marks));
    assert!(!is_ghost(50, a_marks, b_marks));
}

#[test]
fn a_node_never_wants_what_its_floor_or_clock_refuses() {
    let a = ItemSet::new();
    let b = set(&[(1, 10), (2, 600), (3, 5_000)]);
    let cx = Context {
        ours: Watermarks {
            synced: 1000,
            floor: 500,
        },
        latest: 4_000,
        ..Context::default()
    };
    // Whatever b claims: a's own floor decides.
    let message = vec![Part::Items {
        range: KeyRange::all(),
        items: b.items(&KeyRange::all()).collect(),
        reply: false,
    }];
    let outcome = respond_in(&a, &message, &cx).unwrap();
    assert_eq!(outcome.want, keys(&[2]));
    assert_eq!((outcome.too_new, outcome.earliest_too_new), (1, 5_000));
}

#[test]
fn a_fetching_side_learns_everything_without_listing_its_own() {
    let mut a_items: Vec<(u32, u64)> = (0..50_000).map(|i| (i, 1)).collect();
    let mut b_items = a_items.clone();
    a_items.push((70_000, 1));
    b_items.push((80_000, 1));
    b_items.retain(|(k, _)| *k != 1234);
    b_items[20].1 = 5;
    let (a, b) = (set(&a_items), set(&b_items));
    let fetching = Context {
        fetching: true,
        ..Context::default()
    };
    let (mut wants, mut a_listed, mut messages) = (Vec::new(), 0, 0);
    let mut message = initiate(&a);
    let mut b_turn = true;
    while !message.is_empty() {
        messages += 1;
        assert!(messages < 100);
        let outcome = if b_turn {
            respond(&b, &message).unwrap()
        } else {
            let outcome = respond_in(&a, &message, &fetching).unwrap();
            wants.extend(outcome.want.clone());
            outcome
        };
        if !b_turn {
            a_listed += outcome
                .reply
                .iter()
                .map(|p| match p {
                    Part::Items { items, .. } => items.len(),
                    Part::Fingerprint { .. } => 0,
                })
                .sum::<usize>();
        }
        message = outcome.reply;
        b_turn = !b_turn;
    }
    wants.sort();
    wants.dedup();
    assert_eq!(wants, keys(&[20, 80_000]));
    // The full side never lists its items to an empty one it fetches from.
    let empty = ItemSet::new();
    let outcome = respond_in(
        &a,
        &respond(&empty, &initiate(&a)).unwrap().reply,
        &fetching,
    )
    .unwrap();
    assert!(outcome.reply.is_empty(), "{:?}", outcome.reply.len());
    assert!(
        a_listed < 2_000,
        "{a_listed} items listed by the fetching side"
    );
}

#[test]
fn the_whole_set_fingerprint_follows_inserts_replacements_and_removals() {
    let mut set = set(&[(1, 1), (2, 1), (3, 1)]);
    set.insert(
        2u32.to_be_bytes().to_vec(),
        ItemState {
            digest: 99,
            timestamp: 2,
        },
    );
    set.remove(&1u32.to_be_bytes());
    set.remove(&7u32.to_be_bytes());
    let walked = set
        .items(&KeyRange::all())
        .fold(Fingerprint::default(), |fp, item| Fingerprint {
            xor: fp.xor ^ item.state.digest,
            count: fp.count + 1,
        });
    assert_eq!(set.fingerprint(&KeyRange::all()), walked);
    assert_eq!(walked.count, 2);
}

#[test]
fn malformed_messages_are_refused_before_any_work() {
    let full = set(&[(1, 1), (2, 1)]);
    let part = |lower: u32, upper: Option<u32>| Part::Fingerprint {
        range: KeyRange {
            lower: lower.to_be_bytes().to_vec(),
            upper: upper.map(|u| u.to_be_bytes().to_vec()),
        },
        fingerprint: Fingerprint { xor: 1, count: 1 },
    };
    let refused = |message: &[Part]| respond(&full, message).unwrap_err();
    assert_eq!(refused(&[part(9, Some(1))]), MessageError::BadRanges);
    assert_eq!(refused(&[part(1, Some(1))]), MessageError::BadRanges);
    assert_eq!(
        refused(&[part(1, Some(5)), part(3, Some(9))]),
        MessageError::BadRanges
    );
    assert_eq!(
        refused(&[part(1, None), part(3, None)]),
        MessageError::BadRanges
    );
    assert_eq!(refused(&vec![part(0, None); 2]), MessageError::BadRanges);
    let many: Vec<Part> = (0..=MAX_PARTS as u32)
        .map(|i| part(2 * i, Some(2 * i + 1)))
        .collect();
    assert_eq!(refused(&many), MessageError::TooManyParts(MAX_PARTS + 1));
    let outside = Part::Items {
        range: KeyRange {
            lower: vec![5],
            upper: Some(vec![6]),
        },
        items: vec![Item {
            key: vec![7],
            state: ItemState {
                digest: 1,
                timestamp: 1,
            },
        }],
        reply: true,
    };
    assert_eq!(refused(&[outside]), MessageError::BadItems);
    let huge = Part::Fingerprint {
        range: KeyRange {
            lower: vec![0; MAX_MESSAGE_COST],
            upper: None,
        },
        fingerprint: Fingerprint::default(),
    };
    assert!(matches!(refused(&[huge]), MessageError::TooLarge(_)));
}

#[test]
fn the_costliest_valid_message_gets_a_reply_within_the_limits() {
    // 1024 disjoint ranges that all differ, against 200,000 items: the
    // reply stops at its budget and folds the rest.
    let full = set(&(0..200_000).map(|i| (i * 2, 1)).collect::<Vec<_>>());
    let message: Vec<Part> = (0..MAX_PARTS as u32)
        .map(|i| Part::Fingerprint {
            range: KeyRange {
                lower: (i * 390).to_be_bytes().to_vec(),
                upper: Some(((i + 1) * 390).to_be_bytes().to_vec()),
            },
            fingerprint: Fingerprint { xor: 7, count: 7 },
        })
        .collect();
    let outcome = respond(&full, &message).unwrap();
    assert!(outcome.reply.len() <= MAX_PARTS);
    assert!(message_cost(&outcome.reply) <= MAX_MESSAGE_COST);
    check_message(&outcome.reply).unwrap();
}
