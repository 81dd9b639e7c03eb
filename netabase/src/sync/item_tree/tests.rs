use super::*;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::time::Instant;

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn state(&mut self) -> ItemState {
        ItemState {
            digest: (u128::from(self.next()) << 64) | u128::from(self.next()),
            timestamp: self.next(),
        }
    }
}

impl ItemTree {
    /// Checks BST order, heap order, priorities, every stored aggregate
    /// and the arena accounting; returns the height.
    fn check_invariants(&self) -> usize {
        let (agg, height) = self.check_subtree(self.root, None, None, u32::MAX);
        assert_eq!(agg, self.total());
        assert_eq!(self.len() as u64, agg.count);
        let mut free = 0usize;
        let mut cur = self.free;
        while let Some(node) = self.node(cur) {
            assert!(node.key.is_empty());
            free += 1;
            cur = node.left;
        }
        assert_eq!(free + self.len(), self.nodes.len());
        height
    }

    fn check_subtree(
        &self,
        idx: u32,
        lo: Option<&[u8]>,
        hi: Option<&[u8]>,
        max_prio: u32,
    ) -> (Fingerprint, usize) {
        let Some(node) = self.node(idx) else {
            assert_eq!(idx, NIL);
            return (Fingerprint::default(), 0);
        };
        let key: &[u8] = &node.key;
        assert!(lo.is_none_or(|lo| lo < key), "BST order");
        assert!(hi.is_none_or(|hi| key < hi), "BST order");
        assert!(node.prio <= max_prio, "heap order");
        assert_eq!(node.prio, self.priority(key));
        let (l, lh) = self.check_subtree(node.left, lo, Some(key), node.prio);
        let (r, rh) = self.check_subtree(node.right, Some(key), hi, node.prio);
        let agg = node.own().plus(l).plus(r);
        assert_eq!(node.agg(), agg, "stored aggregate");
        (agg, 1 + lh.max(rh))
    }
}

fn expected_fp(
    model: &BTreeMap<Vec<u8>, ItemState>,
    lower: &[u8],
    upper: Option<&[u8]>,
) -> Fingerprint {
    if upper.is_some_and(|u| u <= lower) {
        return Fingerprint::default();
    }
    let hi = upper.map_or(Bound::Unbounded, Bound::Excluded);
    model
        .range::<[u8], _>((Bound::Included(lower), hi))
        .fold(Fingerprint::default(), |acc, (_, s)| {
            acc.plus(Fingerprint::of(s))
        })
}

fn random_key(rng: &mut XorShift, small: bool) -> Vec<u8> {
    if small {
        let len = rng.below(4) as usize;
        (0..len).map(|_| rng.below(3) as u8).collect()
    } else {
        let len = rng.below(10) as usize;
        (0..len).map(|_| rng.next() as u8).collect()
    }
}

fn check_against(tree: &ItemTree, model: &BTreeMap<Vec<u8>, ItemState>, rng: &mut XorShift) {
    tree.check_invariants();
    assert_eq!(tree.len(), model.len());
    assert_eq!(tree.is_empty(), model.is_empty());
    assert_eq!(tree.total(), expected_fp(model, &[], None));
    let all: Vec<_> = tree.range(&[], None).collect();
    assert!(all
        .iter()
        .map(|(k, s)| (*k, *s))
        .eq(model.iter().map(|(k, s)| (&k[..], s))));
    for _ in 0..8 {
        let small = rng.below(2) == 0;
        let lower = random_key(rng, small);
        let upper = match rng.below(4) {
            0 => None,
            1 => Some(Vec::new()),
            _ => Some(random_key(rng, small)),
        };
        let upper = upper.as_deref();
        assert_eq!(
            tree.fingerprint(&lower, upper),
            expected_fp(model, &lower, upper)
        );
        assert_eq!(
            tree.rank(&lower),
            model
                .range::<[u8], _>((Bound::Unbounded, Bound::Excluded(&lower[..])))
                .count() as u64
        );
        assert_eq!(tree.get(&lower), model.get(&lower));
        let got: Vec<_> = tree
            .range(&lower, upper)
            .map(|(k, s)| (k.to_vec(), *s))
            .collect();
        let want: Vec<_> = if upper.is_some_and(|u| u <= &lower[..]) {
            Vec::new()
        } else {
            let hi = upper.map_or(Bound::Unbounded, Bound::Excluded);
            model
                .range::<[u8], _>((Bound::Included(&lower[..]), hi))
                .map(|(k, s)| (k.clone(), *s))
                .collect()
        };
        assert_eq!(got, want);
        let k = rng.below(model.len() as u64 + 2);
        assert_eq!(tree.select(k), model.keys().nth(k as usize).map(|k| &k[..]));
    }
}

#[test]
fn node_is_compact() {
    assert!(std::mem::size_of::<Node>() <= 80);
}

#[test]
fn differential_against_btreemap() {
    for seed in 1..=6u64 {
        let mut rng = XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut tree = ItemTree::new();
        let mut model = BTreeMap::new();
        // Alternate growth and shrink phases so the tree also empties.
        for op in 0..12_000u32 {
            let small = rng.below(3) == 0;
            let key = random_key(&mut rng, small);
            let grow = (op / 2000) % 2 == 0;
            if rng.below(10) < if grow { 7 } else { 3 } {
                let state = rng.state();
                assert_eq!(tree.insert(key.clone(), state), model.insert(key, state));
            } else {
                let key = if rng.below(2) == 0 && !model.is_empty() {
                    let k = rng.below(model.len() as u64) as usize;
                    model.keys().nth(k).cloned().unwrap_or(key)
                } else {
                    key
                };
                assert_eq!(tree.remove(&key), model.remove(&key));
            }
            if op % 5 == 0 {
                check_against(&tree, &model, &mut rng);
            }
        }
        check_against(&tree, &model, &mut rng);
        // A bulk-built copy of the same set is the same treap up to seed.
        let rebuilt = ItemTree::from_sorted(model.iter().map(|(k, s)| (k.clone(), *s)));
        let rebuilt = rebuilt.expect("sorted input");
        check_against(&rebuilt, &model, &mut rng);
        let cloned = tree.clone();
        check_against(&cloned, &model, &mut rng);
    }
}

#[test]
fn same_digest_overwrite_and_empty_key() {
    let mut tree = ItemTree::new();
    let s = ItemState {
        digest: 7,
        timestamp: 1,
    };
    assert_eq!(tree.insert(Vec::new(), s), None);
    let t = ItemState {
        digest: 7,
        timestamp: 2,
    };
    assert_eq!(tree.insert(Vec::new(), t), Some(s));
    assert_eq!(tree.get(&[]), Some(&t));
    assert_eq!(tree.fingerprint(&[], Some(&[])), Fingerprint::default());
    assert_eq!(
        tree.fingerprint(&[], Some(&[0])),
        Fingerprint { xor: 7, count: 1 }
    );
    assert_eq!(tree.select(0), Some(&[][..]));
    assert_eq!(tree.remove(&[]), Some(t));
    assert!(tree.is_empty());
    tree.check_invariants();
    assert_eq!(format!("{tree:?}"), "ItemTree { len: 0 }");
}

#[test]
fn from_sorted_rejects_unsorted() {
    let s = ItemState {
        digest: 1,
        timestamp: 0,
    };
    assert!(ItemTree::from_sorted(vec![(vec![1], s), (vec![1], s)]).is_none());
    assert!(ItemTree::from_sorted(vec![(vec![2], s), (vec![1], s)]).is_none());
    let empty = ItemTree::from_sorted(Vec::new()).expect("empty is sorted");
    assert!(empty.is_empty());
    assert_eq!(empty.range(&[], None).count(), 0);
}

fn be_key(i: u64) -> Vec<u8> {
    i.to_be_bytes().to_vec()
}

fn state_of(i: u64) -> ItemState {
    ItemState {
        digest: u128::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835),
        timestamp: i,
    }
}

#[test]
fn height_under_increasing_inserts() {
    let n = 1_000_000u64;
    let mut tree = ItemTree::new();
    for i in 0..n {
        tree.insert(be_key(i), state_of(i));
    }
    let height = tree.check_invariants();
    let bound = 4.0 * (n as f64).log2();
    assert!((height as f64) < bound, "height {height} ≥ {bound}");
    assert_eq!(tree.len() as u64, n);
    assert_eq!(tree.select(123_456), Some(&be_key(123_456)[..]));
    assert_eq!(tree.rank(&be_key(999_999)), 999_999);
}

#[test]
fn from_sorted_then_random_updates() {
    let n = 1_000_000u64;
    let tree = ItemTree::from_sorted((0..n).map(|i| (be_key(2 * i), state_of(i))));
    let mut tree = tree.expect("sorted input");
    let height = tree.check_invariants();
    assert!((height as f64) < 4.0 * (n as f64).log2());
    let mut rng = XorShift(0x1234_5678);
    let mut len = n;
    for _ in 0..200_000 {
        let k = rng.below(2 * n);
        if rng.below(2) == 0 {
            if tree.insert(be_key(k), state_of(k)).is_none() {
                len += 1;
            }
        } else if tree.remove(&be_key(k)).is_some() {
            len -= 1;
        }
    }
    assert_eq!(tree.len() as u64, len);
    let height = tree.check_invariants();
    assert!((height as f64) < 4.0 * (len as f64).log2());
}

/// Run with `cargo test --release -- --ignored --nocapture`.
#[test]
#[ignore]
fn timings() {
    let mut rng = XorShift(0xdead_beef);
    let n = 1_000_000u64;
    let keys: Vec<Vec<u8>> = (0..n).map(|_| rng.next().to_be_bytes().to_vec()).collect();
    let t = Instant::now();
    let mut tree = ItemTree::new();
    for (i, k) in keys.iter().enumerate() {
        tree.insert(k.clone(), state_of(i as u64));
    }
    println!("insert 1M random keys: {:?}", t.elapsed());
    let t = Instant::now();
    let mut baseline = BTreeMap::new();
    for (i, k) in keys.iter().enumerate() {
        baseline.insert(k.clone(), state_of(i as u64));
    }
    println!("  (BTreeMap baseline, same inserts: {:?})", t.elapsed());
    drop(baseline);

    let queries: Vec<(Vec<u8>, Vec<u8>)> = (0..n)
        .map(|_| {
            let a = rng.next();
            let b = a.saturating_add(rng.next() >> 20);
            (a.to_be_bytes().to_vec(), b.to_be_bytes().to_vec())
        })
        .collect();
    let t = Instant::now();
    let mut acc = 0u64;
    for (a, b) in &queries {
        acc = acc.wrapping_add(tree.fingerprint(a, Some(b)).count);
    }
    println!(
        "1M fingerprint queries on 1M set: {:?} ({acc})",
        t.elapsed()
    );

    let t = Instant::now();
    let mut acc = 0usize;
    for _ in 0..n {
        acc += tree.select(rng.below(n)).map_or(0, <[u8]>::len);
    }
    println!("1M select queries on 1M set: {:?} ({acc})", t.elapsed());
    drop(tree);

    let big = 5_000_000u64;
    let t = Instant::now();
    let tree = ItemTree::from_sorted((0..big).map(|i| (be_key(i), state_of(i))));
    let tree = tree.expect("sorted input");
    println!(
        "from_sorted 5M (incl. allocating the 8-byte keys): {:?}",
        t.elapsed()
    );
    assert_eq!(tree.len() as u64, big);
}
