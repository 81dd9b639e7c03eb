//! The index checked against a plain scan, rebuilt, split, and timed.

use std::collections::BTreeMap;

use super::*;
use redb::ReadableDatabase;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn database() -> redb::Database {
    redb::Builder::new()
        .create_with_backend(redb::backends::InMemoryBackend::new())
        .expect("an in-memory database")
}

fn key(rng: &mut Rng) -> Vec<u8> {
    // Short keys over a small alphabet: many shared prefixes, repeats.
    let len = 1 + rng.below(4) as usize;
    (0..len).map(|_| b'a' + rng.below(6) as u8).collect()
}

fn brute(model: &BTreeMap<Vec<u8>, ItemState>, range: &KeyRange) -> Fingerprint {
    model
        .iter()
        .filter(|(k, _)| range.contains(k))
        .fold(Fingerprint::default(), |total, (_, state)| {
            plus(total, one(*state))
        })
}

fn random_range(rng: &mut Rng) -> KeyRange {
    let (a, b) = (key(rng), key(rng));
    let (lower, upper) = if a <= b { (a, b) } else { (b, a) };
    match rng.below(4) {
        0 => KeyRange::all(),
        1 => KeyRange { lower, upper: None },
        _ => KeyRange {
            lower,
            upper: Some(upper),
        },
    }
}

/// Keys from a small alphabet repeat often, so inserts, replaces and
/// removes of boundary keys (bucket splits and merges) all happen.
#[test]
fn every_range_fingerprint_matches_a_scan_through_inserts_replaces_and_removes() {
    let db = database();
    let boundaries = Boundaries::new([7; 16]);
    let mut model = BTreeMap::new();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for round in 0..40 {
        let txn = db.begin_write().unwrap();
        {
            let mut view = WriteView::open(&txn, boundaries.clone()).unwrap();
            for _ in 0..50 {
                let k = key(&mut rng);
                if rng.below(3) == 0 {
                    assert_eq!(view.remove(&k).unwrap(), model.remove(&k));
                } else {
                    let state = ItemState {
                        digest: u128::from(rng.next()) << 64 | u128::from(rng.next()),
                        timestamp: rng.next(),
                    };
                    assert_eq!(view.insert(&k, state).unwrap(), model.insert(k, state));
                }
            }
            // Read through the writable view, mid-transaction.
            for _ in 0..20 {
                let range = random_range(&mut rng);
                assert_eq!(
                    view.read().unwrap().try_fingerprint(&range).unwrap(),
                    brute(&model, &range),
                    "round {round}, {range:?}"
                );
            }
        }
        txn.commit().unwrap();
        let read = db.begin_read().unwrap();
        let view = ReadView::open(&read, boundaries.clone()).unwrap();
        assert_eq!(view.len().unwrap(), model.len() as u64);
        for _ in 0..20 {
            let range = random_range(&mut rng);
            assert_eq!(
                view.try_fingerprint(&range).unwrap(),
                brute(&model, &range),
                "round {round}, {range:?}"
            );
            let items = view.try_items(&range, usize::MAX).unwrap();
            let expected: Vec<&Vec<u8>> = model.keys().filter(|k| range.contains(k)).collect();
            assert_eq!(items.iter().map(|i| &i.key).collect::<Vec<_>>(), expected);
        }
    }
}

#[test]
fn a_rebuilt_index_answers_as_the_one_kept_write_by_write() {
    let db = database();
    let boundaries = Boundaries::new([5; 16]);
    let mut rng = Rng(0x1234_5678_9ABC_DEF1);
    let mut model = BTreeMap::new();
    let txn = db.begin_write().unwrap();
    {
        let mut view = WriteView::open(&txn, boundaries.clone()).unwrap();
        for _ in 0..3000 {
            let k = key(&mut rng);
            let state = ItemState {
                digest: u128::from(rng.next()),
                timestamp: rng.next(),
            };
            view.insert(&k, state).unwrap();
            model.insert(k, state);
        }
    }
    txn.commit().unwrap();
    let kept: Vec<(Vec<u8>, Vec<u8>)> = {
        let read = db.begin_read().unwrap();
        let table = read.open_table(LEVELS_TABLE).unwrap();
        table
            .iter()
            .unwrap()
            .map(|e| {
                e.map(|(k, v)| (k.value().to_vec(), v.value().to_vec()))
                    .unwrap()
            })
            .collect()
    };
    let txn = db.begin_write().unwrap();
    assert_eq!(rebuild(&txn, boundaries).unwrap(), model.len() as u64);
    txn.commit().unwrap();
    let read = db.begin_read().unwrap();
    let table = read.open_table(LEVELS_TABLE).unwrap();
    let rebuilt: Vec<(Vec<u8>, Vec<u8>)> = table
        .iter()
        .unwrap()
        .map(|e| {
            e.map(|(k, v)| (k.value().to_vec(), v.value().to_vec()))
                .unwrap()
        })
        .collect();
    assert_eq!(rebuilt, kept);
}

/// What keeping the index costs a write, beside the record's own row (a
/// 300-byte envelope), with keys in random order (local writes) and in
/// key order (a catch-up's batches):
/// `cargo test --release -p netabase --lib index_write_cost -- --ignored --nocapture`.
#[test]
#[ignore]
fn index_write_cost() {
    let boundaries = Boundaries::new([9; 16]);
    let batches = 200u64;
    let per_batch = 512u64;
    let envelope = [7u8; 300];
    for sorted in [false, true] {
        let mut timed = [std::time::Duration::ZERO; 2];
        for with_levels in [false, true] {
            let db = database();
            let mut rng = Rng(42);
            let started = std::time::Instant::now();
            for batch in 0..batches {
                let txn = db.begin_write().unwrap();
                {
                    let mut view = WriteView::open(&txn, boundaries.clone()).unwrap();
                    for i in 0..per_batch {
                        let k = if sorted {
                            (batch * per_batch + i).to_be_bytes()
                        } else {
                            rng.next().to_be_bytes()
                        };
                        let state = ItemState {
                            digest: u128::from(rng.next()),
                            timestamp: 1,
                        };
                        let row = row(state, false, &envelope);
                        if with_levels {
                            view.insert_row(&k, &row).unwrap();
                        } else {
                            view.view.items.insert(&k[..], &row[..]).unwrap();
                        }
                    }
                    view.flush().unwrap();
                }
                txn.commit().unwrap();
            }
            timed[usize::from(with_levels)] = started.elapsed();
        }
        let n = (batches * per_batch) as u32;
        println!(
            "keys {}: the row alone {:?} a record; row and levels {:?}",
            if sorted { "in order" } else { "random" },
            timed[0] / n,
            timed[1] / n
        );
    }
}

#[test]
fn splits_cover_the_range_in_order_with_parts_of_similar_size() {
    let db = database();
    let boundaries = Boundaries::new([3; 16]);
    let txn = db.begin_write().unwrap();
    let n = 20_000u64;
    {
        let mut view = WriteView::open(&txn, boundaries.clone()).unwrap();
        for i in 0..n {
            let state = ItemState {
                digest: u128::from(i) * 0x9E37_79B9,
                timestamp: i,
            };
            view.insert(&i.to_be_bytes(), state).unwrap();
        }
    }
    txn.commit().unwrap();
    let read = db.begin_read().unwrap();
    let view = ReadView::open(&read, boundaries).unwrap();
    for range in [
        KeyRange::all(),
        KeyRange {
            lower: 5_000u64.to_be_bytes().to_vec(),
            upper: Some(5_400u64.to_be_bytes().to_vec()),
        },
    ] {
        let parts = view.try_split(&range, 16).unwrap();
        assert!(parts.len() > 1 && parts.len() <= 16, "{}", parts.len());
        assert_eq!(parts.first().unwrap().lower, range.lower);
        assert_eq!(parts.last().unwrap().upper, range.upper);
        for pair in parts.windows(2) {
            assert_eq!(pair[0].upper.as_ref(), Some(&pair[1].lower));
            assert!(pair[0].lower < pair[1].lower);
        }
        let total = view.try_fingerprint(&range).unwrap().count;
        let sizes: Vec<u64> = parts
            .iter()
            .map(|p| view.try_fingerprint(p).unwrap().count)
            .collect();
        assert_eq!(sizes.iter().sum::<u64>(), total);
        // No part holds most of the range: the split makes progress.
        assert!(sizes.iter().all(|s| *s * 2 <= total), "{sizes:?}");
    }
}
