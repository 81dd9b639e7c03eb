//! An ordered map from byte-string keys to item states, augmented so that the
//! XOR-and-count fingerprint of any key range, the rank of a key and the k-th
//! key each cost O(log n). Range-based set reconciliation asks exactly these
//! questions, over and over, of sets with millions of items.
//!
//! # Why a treap with keyed-hash priorities
//!
//! The keys come from peers we do not trust, so the tree must stay shallow
//! whatever keys arrive and in whatever order. A treap whose priority for a
//! key is `hash(seed, key)`, with SipHash keyed by a per-tree random seed
//! (`RandomState`), gives that: the shape is the unique Cartesian tree of the
//! (key, priority) pairs, so it depends only on the current key set and the
//! secret seed, never on insertion order, and without the seed an attacker
//! cannot pick keys that correlate with their priorities. The expected depth
//! is then that of a random binary search tree, about `2 ln n`, and the height
//! exceeds a small multiple of `log n` only with negligible probability.
//!
//! Compared with AVL or weight-balanced trees this needs no per-node balance
//! bookkeeping beyond the priority, and because the shape is canonical,
//! [`ItemTree::from_sorted`] can build the very same tree in O(n) with the
//! classic stack-based Cartesian-tree construction, so bulk-loaded and
//! incrementally built trees behave identically afterwards.
//!
//! Priorities are 32 bits, so that a node packs into 80 bytes; equal
//! priorities are allowed (the heap order is non-strict) and only make
//! the shape very slightly less random.
//!
//! # Storage
//!
//! Nodes live in one `Vec` and refer to each other by `u32` index, with
//! removed slots threaded into a free list through their `left` field. Each
//! node stores its subtree's XOR and count, so every structural operation
//! (insert, remove, split, merge) keeps those aggregates exact. All
//! operations are iterative: split and merge run top-down, fixing aggregates
//! on the way down, so no call stack grows with the tree.

// On 32-bit targets (wasm32) `MAX_NODES` is `usize::MAX`: the checks
// against it are then always false, and still needed on 64-bit ones.
#![cfg_attr(
    target_pointer_width = "32",
    allow(clippy::absurd_extreme_comparisons, clippy::unnecessary_min_or_max)
)]

use std::cmp::Ordering;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;

use super::reconcile::{Fingerprint, ItemState};

/// Marks an absent child, an empty tree or the end of the free list. It is
/// never a valid index because the arena holds at most `u32::MAX` slots.
const NIL: u32 = u32::MAX;

/// Arena capacity: every index must stay below [`NIL`], and subtree counts
/// are stored in 32 bits.
const MAX_NODES: usize = NIL as usize;

impl Fingerprint {
    /// One item's contribution to any aggregate containing it.
    fn of(state: &ItemState) -> Self {
        Fingerprint {
            xor: state.digest,
            count: 1,
        }
    }

    /// Union of disjoint sets.
    fn plus(self, other: Self) -> Self {
        Fingerprint {
            xor: self.xor ^ other.xor,
            count: self.count.wrapping_add(other.count),
        }
    }

    /// Difference, for `other` a subset of `self`.
    fn minus(self, other: Self) -> Self {
        Fingerprint {
            xor: self.xor ^ other.xor,
            count: self.count.wrapping_sub(other.count),
        }
    }
}

/// One arena slot. Field order is left to the compiler; with `ItemState`
/// 16-byte aligned this comes to 80 bytes on 64-bit targets.
#[derive(Clone)]
struct Node {
    state: ItemState,
    /// XOR of the digests in this node's subtree.
    agg_xor: u128,
    /// `Box<[u8]>` rather than `Vec<u8>` saves 8 bytes per node.
    key: Box<[u8]>,
    /// Number of nodes in this node's subtree.
    agg_count: u32,
    /// Left child, or the next free slot while this slot is free.
    left: u32,
    right: u32,
    /// Max-heap priority derived from the key; see the module docs.
    prio: u32,
}

impl Node {
    fn own(&self) -> Fingerprint {
        Fingerprint::of(&self.state)
    }

    fn agg(&self) -> Fingerprint {
        Fingerprint {
            xor: self.agg_xor,
            count: u64::from(self.agg_count),
        }
    }

    fn set_agg(&mut self, fp: Fingerprint) {
        self.agg_xor = fp.xor;
        // Counts never exceed MAX_NODES, which fits in 32 bits.
        self.agg_count = fp.count as u32;
    }

    /// Adds (or, XOR being its own inverse, removes) one item's digest and
    /// moves the count by `count_delta`, for ancestors of a changed node.
    fn adjust(&mut self, xor: u128, count_delta: i32) {
        self.agg_xor ^= xor;
        self.agg_count = self.agg_count.wrapping_add_signed(count_delta);
    }
}

/// An order-statistic map from byte-string keys to [`ItemState`]s whose
/// subtrees carry XOR fingerprints, for range-based set reconciliation.
#[derive(Clone)]
pub struct ItemTree {
    nodes: Vec<Node>,
    root: u32,
    /// Head of the free-slot list threaded through `Node::left`.
    free: u32,
    /// Per-tree secret that makes priorities unpredictable to peers.
    hasher: RandomState,
}

impl Default for ItemTree {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ItemTree {
    /// Printing millions of items is never useful, so only the size is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ItemTree")
            .field("len", &self.len())
            .finish()
    }
}

impl ItemTree {
    /// An empty tree with a fresh random priority seed.
    pub fn new() -> Self {
        ItemTree {
            nodes: Vec::new(),
            root: NIL,
            free: NIL,
            hasher: RandomState::new(),
        }
    }

    /// Builds from keys in strictly increasing order, in O(n) (a balanced
    /// tree, no per-item rebalancing). Returns None if the keys are not
    /// strictly increasing, or if there are `u32::MAX` or more of them.
    ///
    /// The result is the same treap that inserting the items one by one
    /// would give, so later updates keep their balance guarantees.
    pub fn from_sorted(items: impl IntoIterator<Item = (Vec<u8>, ItemState)>) -> Option<Self> {
        let mut tree = Self::new();
        let items = items.into_iter();
        tree.nodes.reserve(items.size_hint().0.min(MAX_NODES));
        // The right spine of the tree built so far; its top is the last
        // item. Nodes popped off it are final, so their aggregates are
        // computed then, children always before parents.
        let mut spine: Vec<u32> = Vec::new();
        for (key, state) in items {
            if tree.nodes.len() >= MAX_NODES {
                return None;
            }
            let prev = spine.last().and_then(|&i| tree.node(i));
            if prev.is_some_and(|prev| *prev.key >= *key) {
                return None;
            }
            let prio = tree.priority(&key);
            let idx = tree.nodes.len() as u32;
            let mut left = NIL;
            while let Some(&top) = spine.last() {
                if tree.node(top).is_none_or(|n| n.prio >= prio) {
                    break;
                }
                spine.pop();
                tree.pull(top);
                left = top;
            }
            if let Some(parent) = spine.last().and_then(|&i| tree.node_mut(i)) {
                parent.right = idx;
            }
            tree.nodes.push(Node {
                state,
                agg_xor: 0,
                key: key.into_boxed_slice(),
                agg_count: 0,
                left,
                right: NIL,
                prio,
            });
            spine.push(idx);
        }
        tree.root = spine.first().copied().unwrap_or(NIL);
        while let Some(top) = spine.pop() {
            tree.pull(top);
        }
        Some(tree)
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.total().count as usize
    }

    /// Whether the tree holds no items.
    pub fn is_empty(&self) -> bool {
        self.root == NIL
    }

    /// Sets key's state; returns the old one.
    ///
    /// The arena addresses at most `u32::MAX - 1` items (hundreds of
    /// gigabytes of nodes); inserting a new key into a tree that full leaves
    /// the tree unchanged rather than panicking.
    pub fn insert(&mut self, key: Vec<u8>, state: ItemState) -> Option<ItemState> {
        let found = self.find(&key);
        if let Some(node) = self.node_mut(found) {
            let old = std::mem::replace(&mut node.state, state);
            let delta = old.digest ^ state.digest;
            if delta != 0 {
                self.adjust_path(&key, found, delta, 0);
            }
            return Some(old);
        }
        if self.free == NIL && self.nodes.len() >= MAX_NODES {
            return None;
        }
        let prio = self.priority(&key);
        // Walk down past every node that outranks the new one (all of them
        // become its ancestors and gain it), then split the subtree found
        // there around the key; its halves become the new node's children.
        let (mut parent, mut is_right, mut cur) = (NIL, false, self.root);
        while let Some(node) = self.node_mut(cur) {
            if node.prio < prio {
                break;
            }
            node.adjust(state.digest, 1);
            parent = cur;
            // The key is absent, so it is never equal to this node's.
            is_right = *key > *node.key;
            cur = if is_right { node.right } else { node.left };
        }
        let agg = Fingerprint::of(&state).plus(self.agg(cur));
        let (left, right) = self.split(cur, &key);
        let mut node = Node {
            state,
            agg_xor: 0,
            key: key.into_boxed_slice(),
            agg_count: 0,
            left,
            right,
            prio,
        };
        node.set_agg(agg);
        let idx = self.alloc(node);
        self.set_link(parent, is_right, idx);
        None
    }

    /// Removes key, returning its state if it was present.
    pub fn remove(&mut self, key: &[u8]) -> Option<ItemState> {
        let target = self.find(key);
        let state = self.node(target)?.state;
        let (parent, is_right) = self.adjust_path(key, target, state.digest, -1);
        let (left, right) = self.node(target).map_or((NIL, NIL), |n| (n.left, n.right));
        let merged = self.merge(left, right);
        self.set_link(parent, is_right, merged);
        let free = self.free;
        if let Some(node) = self.node_mut(target) {
            node.key = Box::default();
            node.left = free;
            node.right = NIL;
            self.free = target;
        }
        Some(state)
    }

    /// The state stored for key, if any.
    pub fn get(&self, key: &[u8]) -> Option<&ItemState> {
        self.node(self.find(key)).map(|n| &n.state)
    }

    /// Fingerprint of keys in [lower, upper) where upper None = unbounded.
    /// O(log n). An inverted or empty range gives the default fingerprint
    /// (never panics).
    pub fn fingerprint(&self, lower: &[u8], upper: Option<&[u8]>) -> Fingerprint {
        match upper {
            Some(upper) if upper <= lower => Fingerprint::default(),
            Some(upper) => self.prefix(upper).minus(self.prefix(lower)),
            None => self.total().minus(self.prefix(lower)),
        }
    }

    /// The whole set's fingerprint, O(1).
    pub fn total(&self) -> Fingerprint {
        self.agg(self.root)
    }

    /// Number of keys strictly less than `key`. O(log n).
    pub fn rank(&self, key: &[u8]) -> u64 {
        self.prefix(key).count
    }

    /// The k-th smallest key (0-based), if k < len. O(log n).
    pub fn select(&self, k: u64) -> Option<&[u8]> {
        let mut k = k;
        let mut cur = self.root;
        while let Some(node) = self.node(cur) {
            let left = self.agg(node.left).count;
            match k.cmp(&left) {
                Ordering::Less => cur = node.left,
                Ordering::Equal => return Some(&node.key),
                Ordering::Greater => {
                    k -= left + 1;
                    cur = node.right;
                }
            }
        }
        None
    }

    /// Items in [lower, upper), in key order, lazily: O(log n) to start plus
    /// O(1) amortised per item. Inverted range: empty.
    ///
    /// The iterator borrows only the tree, not the bounds: the end is
    /// located up front as a node, so callers may drop the bound buffers.
    pub fn range<'a>(
        &'a self,
        lower: &[u8],
        upper: Option<&[u8]>,
    ) -> impl Iterator<Item = (&'a [u8], &'a ItemState)> + 'a + use<'a> {
        let mut iter = Range {
            tree: self,
            stack: Vec::new(),
            end: NIL,
        };
        if let Some(upper) = upper {
            if upper <= lower {
                return iter;
            }
            iter.end = self.lower_bound(upper);
        }
        // Leave on the stack every node ≥ lower where the search turned
        // left: exactly the in-order successors still to visit.
        let mut cur = self.root;
        while let Some(node) = self.node(cur) {
            if *node.key >= *lower {
                iter.stack.push(cur);
                cur = node.left;
            } else {
                cur = node.right;
            }
        }
        iter
    }

    fn node(&self, idx: u32) -> Option<&Node> {
        self.nodes.get(idx as usize)
    }

    fn node_mut(&mut self, idx: u32) -> Option<&mut Node> {
        self.nodes.get_mut(idx as usize)
    }

    /// Subtree aggregate, empty for [`NIL`].
    fn agg(&self, idx: u32) -> Fingerprint {
        self.node(idx).map_or_else(Fingerprint::default, Node::agg)
    }

    /// Recomputes a node's aggregate from its children's.
    fn pull(&mut self, idx: u32) {
        let Some(node) = self.node(idx) else { return };
        let agg = node
            .own()
            .plus(self.agg(node.left))
            .plus(self.agg(node.right));
        if let Some(node) = self.node_mut(idx) {
            node.set_agg(agg);
        }
    }

    /// The key's heap priority. Folding both halves keeps all 64 hash bits
    /// relevant.
    fn priority(&self, key: &[u8]) -> u32 {
        let h = self.hasher.hash_one(key);
        (h ^ (h >> 32)) as u32
    }

    /// Index of key's node, or [`NIL`].
    fn find(&self, key: &[u8]) -> u32 {
        let mut cur = self.root;
        while let Some(node) = self.node(cur) {
            match key.cmp(&node.key) {
                Ordering::Less => cur = node.left,
                Ordering::Greater => cur = node.right,
                Ordering::Equal => return cur,
            }
        }
        NIL
    }

    /// Index of the smallest key ≥ `key`, or [`NIL`].
    fn lower_bound(&self, key: &[u8]) -> u32 {
        let (mut best, mut cur) = (NIL, self.root);
        while let Some(node) = self.node(cur) {
            if *node.key >= *key {
                best = cur;
                cur = node.left;
            } else {
                cur = node.right;
            }
        }
        best
    }

    /// Fingerprint of the keys strictly below `key`.
    fn prefix(&self, key: &[u8]) -> Fingerprint {
        self.prefix_in(self.root, key)
    }

    /// Fingerprint of the keys strictly below `key` within a subtree.
    ///
    /// A node left behind on the way right contributes its subtree minus its
    /// right subtree; reading the right subtree's aggregate on arrival there
    /// avoids touching the unvisited left child, saving a cache miss per
    /// level.
    fn prefix_in(&self, subtree: u32, key: &[u8]) -> Fingerprint {
        let mut acc = Fingerprint::default();
        let mut arrived_right = false;
        let mut cur = subtree;
        while let Some(node) = self.node(cur) {
            if arrived_right {
                acc = acc.minus(node.agg());
            }
            arrived_right = *node.key < *key;
            if arrived_right {
                acc = acc.plus(node.agg());
                cur = node.right;
            } else {
                cur = node.left;
            }
        }
        acc
    }

    /// Applies a digest/count change to every proper ancestor of `target`
    /// (found by walking towards `key`), and the digest change to `target`
    /// itself when only its state changes. Returns where `target` hangs.
    fn adjust_path(&mut self, key: &[u8], target: u32, xor: u128, count_delta: i32) -> (u32, bool) {
        let (mut parent, mut is_right, mut cur) = (NIL, false, self.root);
        while let Some(node) = self.node_mut(cur) {
            if cur == target {
                if count_delta == 0 {
                    node.adjust(xor, 0);
                }
                break;
            }
            node.adjust(xor, count_delta);
            parent = cur;
            is_right = *key > *node.key;
            cur = if is_right { node.right } else { node.left };
        }
        (parent, is_right)
    }

    /// Hangs `child` under `parent` (or makes it the root when `parent` is
    /// [`NIL`]).
    fn set_link(&mut self, parent: u32, is_right: bool, child: u32) {
        if parent == NIL {
            self.root = child;
        } else {
            Self::link(&mut self.nodes, parent, is_right, child);
        }
    }

    fn link(nodes: &mut [Node], parent: u32, is_right: bool, child: u32) {
        if let Some(node) = nodes.get_mut(parent as usize) {
            if is_right {
                node.right = child;
            } else {
                node.left = child;
            }
        }
    }

    /// Stores a node in a free slot if there is one.
    fn alloc(&mut self, node: Node) -> u32 {
        let idx = self.free;
        if let Some(slot) = self.node_mut(idx) {
            let next = slot.left;
            *slot = node;
            self.free = next;
            idx
        } else {
            self.nodes.push(node);
            (self.nodes.len() - 1) as u32
        }
    }

    /// Splits a subtree into keys `< key` and keys `≥ key`, top-down.
    ///
    /// Nodes on the search path are peeled off alternately into the two
    /// halves. A peeled node's new aggregate is "what remains of its half
    /// below this point", which is known in advance from one read-only
    /// prefix walk, so no bottom-up pass (and no path stack) is needed.
    fn split(&mut self, subtree: u32, key: &[u8]) -> (u32, u32) {
        let mut lo_rest = self.prefix_in(subtree, key);
        let mut hi_rest = self.agg(subtree).minus(lo_rest);
        let (mut lo_root, mut lo_tail, mut hi_root, mut hi_tail) = (NIL, NIL, NIL, NIL);
        let mut cur = subtree;
        while let Some(node) = self.node(cur) {
            let goes_low = *node.key < *key;
            let (left, right, own) = (node.left, node.right, node.own());
            if goes_low {
                let kept = own.plus(self.agg(left));
                if let Some(node) = self.node_mut(cur) {
                    node.set_agg(lo_rest);
                }
                lo_rest = lo_rest.minus(kept);
                if lo_tail == NIL {
                    lo_root = cur;
                } else {
                    Self::link(&mut self.nodes, lo_tail, true, cur);
                }
                lo_tail = cur;
                cur = right;
            } else {
                let kept = own.plus(self.agg(right));
                if let Some(node) = self.node_mut(cur) {
                    node.set_agg(hi_rest);
                }
                hi_rest = hi_rest.minus(kept);
                if hi_tail == NIL {
                    hi_root = cur;
                } else {
                    Self::link(&mut self.nodes, hi_tail, false, cur);
                }
                hi_tail = cur;
                cur = left;
            }
        }
        Self::link(&mut self.nodes, lo_tail, true, NIL);
        Self::link(&mut self.nodes, hi_tail, false, NIL);
        (lo_root, hi_root)
    }

    /// Merges two subtrees, every key of `lo` below every key of `hi`,
    /// top-down. The node kept on top absorbs the whole other subtree, whose
    /// aggregate is known, so aggregates are fixed on the way down.
    fn merge(&mut self, lo: u32, hi: u32) -> u32 {
        let (mut lo, mut hi) = (lo, hi);
        let (mut root, mut parent, mut is_right) = (NIL, NIL, false);
        while let (Some(a), Some(b)) = (self.node(lo), self.node(hi)) {
            let (lo_prio, hi_prio) = (a.prio, b.prio);
            // The higher-priority root stays on top and absorbs the other
            // subtree; merging continues in its inner child.
            let (top, goes_right) = if lo_prio >= hi_prio {
                let gain = self.agg(hi);
                let Some(node) = self.node_mut(lo) else { break };
                node.set_agg(node.agg().plus(gain));
                let top = lo;
                lo = node.right;
                (top, true)
            } else {
                let gain = self.agg(lo);
                let Some(node) = self.node_mut(hi) else { break };
                node.set_agg(node.agg().plus(gain));
                let top = hi;
                hi = node.left;
                (top, false)
            };
            if parent == NIL {
                root = top;
            } else {
                Self::link(&mut self.nodes, parent, is_right, top);
            }
            parent = top;
            is_right = goes_right;
        }
        let rest = if lo == NIL { hi } else { lo };
        if parent == NIL {
            root = rest;
        } else {
            Self::link(&mut self.nodes, parent, is_right, rest);
        }
        root
    }
}

/// In-order iterator over a key range: the stack holds the pending
/// ancestors, so it never exceeds the tree height.
struct Range<'a> {
    tree: &'a ItemTree,
    stack: Vec<u32>,
    /// First node past the range ([`NIL`] = run to the end).
    end: u32,
}

impl<'a> Iterator for Range<'a> {
    type Item = (&'a [u8], &'a ItemState);

    fn next(&mut self) -> Option<Self::Item> {
        let idx = self.stack.pop()?;
        if idx == self.end {
            self.stack.clear();
            return None;
        }
        let tree = self.tree;
        let node = tree.node(idx)?;
        let mut cur = node.right;
        while let Some(child) = tree.node(cur) {
            self.stack.push(cur);
            cur = child.left;
        }
        Some((&node.key, &node.state))
    }
}

#[cfg(test)]
mod tests {
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
}
