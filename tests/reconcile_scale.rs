//! Reconciliation stays linear and every message keeps to its limits at any
//! set size: a fresh node learning 1M and 5M records, and two nodes with 1%
//! scattered differences, in memory. Every message is checked as a reader
//! checks it (`check_message`) and its encoded size counted.

use netabase::sync::reconcile::{
    check_message, digest, initiate, message_cost, respond, Item, ItemSet, ItemState, KeyRange,
    Part, MAX_MESSAGE_COST, MAX_PARTS,
};

/// Record keys as a node has them: a 4-byte model id, then an 8-byte key.
fn key(i: u64) -> Vec<u8> {
    let mut key = 7u32.to_be_bytes().to_vec();
    key.extend(i.to_be_bytes());
    key
}

fn state(i: u64, version: u64) -> ItemState {
    ItemState {
        digest: digest(&[i.to_le_bytes(), version.to_le_bytes()].concat()),
        timestamp: 1_000 + version,
    }
}

/// `n` items; those `i` with `changed(i)` hold a newer version.
fn set(n: u64, changed: impl Fn(u64) -> bool) -> ItemSet {
    ItemSet::from_sorted((0..n).map(|i| (key(i), state(i, u64::from(changed(i)))))).unwrap()
}

struct Traffic {
    messages: usize,
    bytes: usize,
    largest: usize,
    a_wants: Vec<Vec<u8>>,
    b_wants: Vec<Vec<u8>>,
}

/// Runs an exchange from `a` to its end, checking every message.
fn exchange(a: &ItemSet, b: &ItemSet) -> Traffic {
    let config = bincode::config::standard();
    let mut traffic = Traffic {
        messages: 0,
        bytes: 0,
        largest: 0,
        a_wants: Vec::new(),
        b_wants: Vec::new(),
    };
    let mut message = initiate(a);
    let mut b_turn = true;
    loop {
        check_message(&message).expect("every message keeps to the reader's limits");
        assert!(message.len() <= MAX_PARTS);
        assert!(message_cost(&message) <= MAX_MESSAGE_COST);
        let size = bincode::encode_to_vec(&message, config).unwrap().len();
        traffic.messages += 1;
        traffic.bytes += size;
        traffic.largest = traffic.largest.max(size);
        assert!(traffic.messages < 10_000, "the exchange does not end");
        if message.is_empty() {
            break;
        }
        let outcome = respond(if b_turn { b } else { a }, &message).unwrap();
        if b_turn {
            traffic.b_wants.extend(outcome.want);
        } else {
            traffic.a_wants.extend(outcome.want);
        }
        message = outcome.reply;
        b_turn = !b_turn;
    }
    for wants in [&mut traffic.a_wants, &mut traffic.b_wants] {
        wants.sort();
        wants.dedup();
    }
    traffic
}

/// The encoded bytes of what a side learns: each key and its state.
fn learned_bytes(set: &ItemSet, keys: &[Vec<u8>]) -> usize {
    let items: Vec<Item> = keys
        .iter()
        .map(|k| Item {
            key: k.clone(),
            state: *set.get(k).unwrap(),
        })
        .collect();
    bincode::encode_to_vec(items, bincode::config::standard())
        .unwrap()
        .len()
}

fn fresh(n: u64) {
    let full = set(n, |_| false);
    for traffic in [
        exchange(&ItemSet::new(), &full),
        // The other way round: the full side starts.
        {
            let mut t = exchange(&full, &ItemSet::new());
            std::mem::swap(&mut t.a_wants, &mut t.b_wants);
            t
        },
    ] {
        assert_eq!(traffic.a_wants.len() as u64, n);
        assert!(traffic.b_wants.is_empty());
        let learned = learned_bytes(&full, &traffic.a_wants);
        println!(
            "fresh {n}: {} messages, {} bytes (largest {}), learned {learned} bytes: {:.3}x",
            traffic.messages,
            traffic.bytes,
            traffic.largest,
            traffic.bytes as f64 / learned as f64
        );
        assert!(traffic.bytes <= 2 * learned, "{} bytes", traffic.bytes);
    }
}

fn scattered(n: u64) {
    // 1% of the keys differ, spread evenly: every 100th is newer on b, and
    // every 100th (offset 50) exists only on a.
    let a = ItemSet::from_sorted((0..n).map(|i| (key(i), state(i, 0)))).unwrap();
    let b = ItemSet::from_sorted(
        (0..n)
            .filter(|i| i % 100 != 50)
            .map(|i| (key(i), state(i, u64::from(i % 100 == 0)))),
    )
    .unwrap();
    let traffic = exchange(&a, &b);
    let expect_a: Vec<Vec<u8>> = (0..n).filter(|i| i % 100 == 0).map(key).collect();
    let expect_b: Vec<Vec<u8>> = (0..n).filter(|i| i % 100 == 50).map(key).collect();
    assert_eq!(traffic.a_wants, expect_a);
    assert_eq!(traffic.b_wants, expect_b);
    let learned = learned_bytes(&b, &traffic.a_wants) + learned_bytes(&a, &traffic.b_wants);
    println!(
        "1% of {n}: {} messages, {} bytes (largest {}), learned {learned} bytes: {:.1}x",
        traffic.messages,
        traffic.bytes,
        traffic.largest,
        traffic.bytes as f64 / learned as f64
    );
    // With a difference every 50 keys nearly every leaf range (at most 32
    // items) differs and is listed by both sides: traffic grows with the
    // set, linearly (plus a fingerprint per split level), never with its
    // square, and the messages stay few.
    let per_record = traffic.bytes as f64 / n as f64;
    assert!(per_record <= 80.0, "{per_record} bytes a record");
    assert!(
        traffic.messages as u64 <= n / 1000,
        "{} messages",
        traffic.messages
    );
}

#[test]
fn a_fresh_node_learns_1m_records_in_linear_traffic() {
    fresh(1_000_000);
}

#[test]
fn a_fresh_node_learns_5m_records_in_linear_traffic() {
    fresh(5_000_000);
}

#[test]
fn one_percent_scattered_differences_in_1m_records() {
    scattered(1_000_000);
}

#[test]
fn one_percent_scattered_differences_in_5m_records() {
    scattered(5_000_000);
}

#[test]
fn a_range_is_listed_from_where_the_last_message_stopped() {
    // The listing a fresh node receives covers the key space once, in order.
    let full = set(100_000, |_| false);
    let empty = ItemSet::new();
    let mut seen = Vec::new();
    let mut message = initiate(&empty);
    let mut b_turn = true;
    while !message.is_empty() {
        if !b_turn {
            for part in &message {
                if let Part::Items { items, .. } = part {
                    seen.extend(items.iter().map(|item| item.key.clone()));
                }
            }
        }
        message = respond(if b_turn { &full } else { &empty }, &message)
            .unwrap()
            .reply;
        b_turn = !b_turn;
    }
    let all: Vec<Vec<u8>> = full.items(&KeyRange::all()).map(|item| item.key).collect();
    assert_eq!(seen, all);
}
