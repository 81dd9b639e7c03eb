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
mod tests;
