//! Range-based set reconciliation: how two peers find which records differ
//! without sending each other their whole key sets.
//!
//! Each peer holds a set of items, one per record: the record key, a digest of
//! the exact signed envelope it holds (equal digests mean equal versions) and
//! the version's timestamp. A range of keys has a fingerprint: the XOR of its
//! items' digests and their count. Peers exchange fingerprints of ranges;
//! equal ranges are done, differing ones are split into smaller ranges, and
//! ranges with few items are settled by sending the items themselves. Two
//! peers that agree exchange one fingerprint each way.
//!
//! The protocol is symmetric and stateless: [`initiate`] makes the first
//! message, [`respond`] answers any message, and the exchange ends when a
//! message is empty. What each side learns is the list of keys it should
//! fetch from the other (`Outcome::want`).
//!
//! Deletes are collected after a horizon, so "the other side lacks this key"
//! can mean "it was deleted there and the delete was since collected". Each
//! side states its [`Watermarks`]: when it last completed a catch-up
//! (`synced`) and the floor below which it has collected deletes (`floor`).
//! A key only one side holds is a *ghost* when the holder already held it at
//! its last catch-up and that catch-up is older than the other side's floor:
//! the holder was away longer than the horizon, and the record was deleted
//! meanwhile. [`respond_with`] applies that one predicate on both sides: the
//! side lacking a ghost does not fetch it, the side holding it learns it
//! (`Outcome::ghosts`) and drops it, so the two still converge.

use std::collections::BTreeMap;
use std::ops::Bound;

use bincode::{Decode, Encode};

/// Ranges with at most this many items are settled by listing them.
pub const ITEM_THRESHOLD: u64 = 32;
/// How many sub-ranges a differing range is split into.
pub const BRANCHING: usize = 16;
/// Items listed in one message, at most (unless a single range needs more);
/// ranges past it are answered with their fingerprint and settled in later
/// rounds, so no message grows with the size of the set.
pub const MAX_LISTED_ITEMS: usize = 4096;

/// A digest of one signed envelope.
pub fn digest(envelope: &[u8]) -> u128 {
    xxhash_rust::xxh3::xxh3_128(envelope)
}

/// One record as reconciliation sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub struct ItemState {
    /// Digest of the envelope held.
    pub digest: u128,
    /// The version's timestamp, to tell which side is newer.
    pub timestamp: u64,
}

/// A record key with its state, as listed in a message.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Item {
    /// The record key.
    pub key: Vec<u8>,
    /// Its state.
    pub state: ItemState,
}

/// The keys `[lower, upper)`; `upper: None` is the end of the key space.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct KeyRange {
    /// Inclusive lower bound.
    pub lower: Vec<u8>,
    /// Exclusive upper bound, or none.
    pub upper: Option<Vec<u8>>,
}

impl KeyRange {
    /// Every key.
    pub fn all() -> Self {
        KeyRange {
            lower: Vec::new(),
            upper: None,
        }
    }

    fn bounds(&self) -> (Bound<&[u8]>, Bound<&[u8]>) {
        (
            Bound::Included(self.lower.as_slice()),
            match &self.upper {
                Some(upper) => Bound::Excluded(upper.as_slice()),
                None => Bound::Unbounded,
            },
        )
    }
}

/// XOR of digests and count of the items of a range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub struct Fingerprint {
    /// XOR of the digests.
    pub xor: u128,
    /// Number of items.
    pub count: u64,
}

/// One part of a message, about one range.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum Part {
    /// "My items in this range have this fingerprint."
    Fingerprint {
        /// The range.
        range: KeyRange,
        /// Its fingerprint on the sender's side.
        fingerprint: Fingerprint,
    },
    /// "These are all my items in this range."
    Items {
        /// The range.
        range: KeyRange,
        /// Every item of the sender in it.
        items: Vec<Item>,
        /// Whether the receiver should answer with its own items.
        reply: bool,
    },
}

/// A peer's items, ordered by key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ItemSet {
    items: BTreeMap<Vec<u8>, ItemState>,
    /// The whole set's fingerprint, kept up to date: two peers that agree
    /// learn it without walking their sets.
    total: Fingerprint,
}

impl ItemSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the state of `key`.
    pub fn insert(&mut self, key: Vec<u8>, state: ItemState) {
        match self.items.insert(key, state) {
            Some(old) => self.total.xor ^= old.digest,
            None => self.total.count += 1,
        }
        self.total.xor ^= state.digest;
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &[u8]) -> Option<ItemState> {
        let old = self.items.remove(key)?;
        self.total.xor ^= old.digest;
        self.total.count -= 1;
        Some(old)
    }

    /// The state of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&ItemState> {
        self.items.get(key)
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True if there are no items.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    fn range(&self, range: &KeyRange) -> impl Iterator<Item = (&Vec<u8>, &ItemState)> + '_ {
        let (lower, upper) = range.bounds();
        let empty = match (&range.upper, lower) {
            (Some(upper), Bound::Included(lower)) => lower >= upper.as_slice(),
            _ => false,
        };
        // BTreeMap panics on an inverted range; a hostile message may send one.
        let bounds = if empty {
            (Bound::Excluded(&[][..]), Bound::Excluded(&[][..]))
        } else {
            (lower, upper)
        };
        let iter = if empty {
            None
        } else {
            Some(self.items.range::<[u8], _>(bounds))
        };
        iter.into_iter().flatten()
    }

    /// The fingerprint of a range.
    pub fn fingerprint(&self, range: &KeyRange) -> Fingerprint {
        if range.lower.is_empty() && range.upper.is_none() {
            return self.total;
        }
        self.range(range)
            .fold(Fingerprint::default(), |fp, (_, s)| Fingerprint {
                xor: fp.xor ^ s.digest,
                count: fp.count + 1,
            })
    }

    fn items(&self, range: &KeyRange) -> Vec<Item> {
        self.range(range)
            .map(|(key, state)| Item {
                key: key.clone(),
                state: *state,
            })
            .collect()
    }

    /// Splits a range into up to [`BRANCHING`] ranges of about equal item counts.
    fn split(&self, range: &KeyRange, count: u64) -> Vec<KeyRange> {
        let step = (count as usize).div_ceil(BRANCHING).max(1);
        let mut bounds: Vec<Vec<u8>> = self
            .range(range)
            .enumerate()
            .filter(|(i, _)| *i > 0 && i % step == 0)
            .map(|(_, (key, _))| key.clone())
            .collect();
        let mut ranges = Vec::with_capacity(bounds.len() + 1);
        let mut lower = range.lower.clone();
        for bound in bounds.drain(..) {
            ranges.push(KeyRange {
                lower: std::mem::replace(&mut lower, bound.clone()),
                upper: Some(bound),
            });
        }
        ranges.push(KeyRange {
            lower,
            upper: range.upper.clone(),
        });
        ranges
    }

    /// The part describing `range` from this side: its items if few, else
    /// its fingerprint.
    fn describe(&self, range: KeyRange, reply: bool) -> Part {
        let fingerprint = self.fingerprint(&range);
        if fingerprint.count <= ITEM_THRESHOLD {
            Part::Items {
                items: self.items(&range),
                range,
                reply,
            }
        } else {
            Part::Fingerprint { range, fingerprint }
        }
    }
}

/// What answering a message produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The answer; empty when this side has nothing more to say.
    pub reply: Vec<Part>,
    /// Keys the other side holds newer (or only there): fetch them.
    pub want: Vec<Vec<u8>>,
    /// Keys this side holds that the other side lacks and considers gone
    /// (older than its floor): drop them.
    pub ghosts: Vec<Vec<u8>>,
}

/// What one side states about its sync history, as timestamps (`0`: never).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub struct Watermarks {
    /// When it last completed a catch-up with a peer.
    pub synced: u64,
    /// Deletes older than this may have been collected on it.
    pub floor: u64,
}

/// Whether a key held by `holder` at `timestamp` and lacked by `lacker` is a
/// ghost: deleted while the holder was away, its delete since collected.
pub fn is_ghost(timestamp: u64, holder: Watermarks, lacker: Watermarks) -> bool {
    timestamp <= holder.synced && holder.synced < lacker.floor
}

/// The first message of an exchange.
pub fn initiate(set: &ItemSet) -> Vec<Part> {
    vec![set.describe(KeyRange::all(), true)]
}

/// Answers one message, with no deletes collected on either side.
pub fn respond(set: &ItemSet, message: &[Part]) -> Outcome {
    respond_with(set, message, Watermarks::default(), Watermarks::default())
}

/// Answers one message; keys only one side holds are checked with
/// [`is_ghost`] against both sides' watermarks.
pub fn respond_with(
    set: &ItemSet,
    message: &[Part],
    ours: Watermarks,
    theirs: Watermarks,
) -> Outcome {
    respond_within(set, message, ours, theirs, MAX_LISTED_ITEMS)
}

/// [`respond_with`] listing at most `budget` items in the reply.
#[doc(hidden)]
pub fn respond_within(
    set: &ItemSet,
    message: &[Part],
    ours: Watermarks,
    theirs: Watermarks,
    budget: usize,
) -> Outcome {
    let mut outcome = Outcome::default();
    let mut reply = Reply {
        set,
        parts: Vec::new(),
        listed: 0,
        budget,
    };
    for part in message {
        match part {
            Part::Fingerprint { range, fingerprint } => {
                let held = set.fingerprint(range);
                if held != *fingerprint {
                    reply.settle(range, held, true);
                }
            }
            Part::Items {
                range,
                items,
                reply: answer,
            } => {
                for item in items {
                    let newer = match set.get(&item.key) {
                        None => !is_ghost(item.state.timestamp, theirs, ours),
                        Some(ours) => {
                            ours.digest != item.state.digest
                                && item.state.timestamp >= ours.timestamp
                        }
                    };
                    if newer {
                        outcome.want.push(item.key.clone());
                    }
                }
                if ours.synced < theirs.floor {
                    let listed: std::collections::HashSet<&[u8]> =
                        items.iter().map(|item| item.key.as_slice()).collect();
                    outcome.ghosts.extend(
                        set.range(range)
                            .filter(|(key, state)| {
                                is_ghost(state.timestamp, ours, theirs)
                                    && !listed.contains(key.as_slice())
                            })
                            .map(|(key, _)| key.clone()),
                    );
                }
                let theirs = items
                    .iter()
                    .fold(Fingerprint::default(), |fp, item| Fingerprint {
                        xor: fp.xor ^ item.state.digest,
                        count: fp.count + 1,
                    });
                let held = set.fingerprint(range);
                // Equal sets: the other side would want nothing, so say nothing.
                if *answer && held != theirs {
                    if held.count <= ITEM_THRESHOLD {
                        reply.list(range, held, false);
                    } else {
                        // Many here, few there: narrow down rather than list
                        // everything in one message.
                        reply.settle(range, held, true);
                    }
                }
            }
        }
    }
    outcome.reply = reply.parts;
    outcome
}

/// A reply being built, with its listing budget.
struct Reply<'a> {
    set: &'a ItemSet,
    parts: Vec<Part>,
    listed: usize,
    budget: usize,
}

impl Reply<'_> {
    /// Answers a range that differs: list it if small, else split it.
    fn settle(&mut self, range: &KeyRange, held: Fingerprint, answer: bool) {
        if held.count <= ITEM_THRESHOLD {
            self.list(range, held, answer);
            return;
        }
        for sub in self.set.split(range, held.count) {
            let fingerprint = self.set.fingerprint(&sub);
            if fingerprint.count <= ITEM_THRESHOLD {
                self.list(&sub, fingerprint, answer);
            } else {
                self.parts.push(Part::Fingerprint {
                    range: sub,
                    fingerprint,
                });
            }
        }
    }

    /// Lists a range's items, or, past the budget, sends its fingerprint so
    /// the other side asks again next round.
    fn list(&mut self, range: &KeyRange, held: Fingerprint, answer: bool) {
        let count = held.count as usize;
        if self.listed > 0 && self.listed + count > self.budget {
            self.parts.push(Part::Fingerprint {
                range: range.clone(),
                fingerprint: held,
            });
            return;
        }
        self.listed += count;
        self.parts.push(Part::Items {
            range: range.clone(),
            items: self.set.items(range),
            reply: answer,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[(u32, u64)]) -> ItemSet {
        let mut set = ItemSet::new();
        for &(key, timestamp) in items {
            let key = key.to_be_bytes().to_vec();
            let digest = digest(&[&key[..], &timestamp.to_le_bytes()].concat());
            set.insert(key, ItemState { digest, timestamp });
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
            assert!(messages < 100, "exchange does not end");
            let (side, wants) = if b_turn {
                (b, &mut b_wants)
            } else {
                (a, &mut a_wants)
            };
            let outcome = respond(side, &message);
            wants.extend(outcome.want);
            message = outcome.reply;
            bytes += bincode::encode_to_vec(&message, config).unwrap().len();
            messages += 1;
            b_turn = !b_turn;
        }
        a_wants.sort();
        b_wants.sort();
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
    fn a_peer_away_past_the_horizon_drops_its_ghosts_and_the_other_does_not_fetch_them() {
        // b was last in sync at 100; a synced at 1000 and collected deletes
        // older than 500. Key 1 (written at 50) was deleted meanwhile; key 2
        // was written by b after its last catch-up (at 200): not a ghost.
        let a = set(&[(3, 900)]);
        let b = set(&[(1, 50), (2, 200), (3, 900)]);
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
            };
            if b_turn {
                b_ghosts.extend(outcome.ghosts);
            } else {
                a_wants.extend(outcome.want);
                a_ghosts.extend(outcome.ghosts);
            }
            message = outcome.reply;
            b_turn = !b_turn;
        }
        assert_eq!(a_wants, keys(&[2]));
        assert_eq!(b_ghosts, keys(&[1]));
        assert!(a_ghosts.is_empty());
        assert!(is_ghost(50, b_marks, a_marks));
        assert!(!is_ghost(200, b_marks, a_marks));
        assert!(!is_ghost(50, a_marks, b_marks));
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
            .range(&KeyRange::all())
            .fold(Fingerprint::default(), |fp, (_, s)| Fingerprint {
                xor: fp.xor ^ s.digest,
                count: fp.count + 1,
            });
        assert_eq!(set.fingerprint(&KeyRange::all()), walked);
        assert_eq!(walked.count, 2);
    }

    #[test]
    fn inverted_ranges_from_a_hostile_peer_are_empty() {
        let full = set(&[(1, 1), (2, 1)]);
        let range = KeyRange {
            lower: vec![9],
            upper: Some(vec![1]),
        };
        assert_eq!(full.fingerprint(&range), Fingerprint::default());
        let outcome = respond(
            &full,
            &[Part::Fingerprint {
                range,
                fingerprint: Fingerprint { xor: 1, count: 1 },
            }],
        );
        assert_eq!(outcome.reply.len(), 1);
    }
}
