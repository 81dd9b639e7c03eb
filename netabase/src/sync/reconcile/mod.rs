//! Range-based set reconciliation: how two peers find which records differ
//! without sending each other their whole key sets.
//!
//! Each peer holds a set of items, one per record: the record key, a digest of
//! the exact signed envelope it holds (equal digests mean equal versions) and
//! the version's timestamp. A range of keys has a fingerprint: the XOR of its
//! items' digests and their count. Peers exchange fingerprints of ranges;
//! equal ranges are done, differing ones are split into smaller ranges, and
//! ranges with few items are settled by listing the items. Two peers that
//! agree exchange one fingerprint each way.
//!
//! The protocol is symmetric and stateless: [`initiate`] makes the first
//! message, [`respond`] answers any message, and the exchange ends when a
//! message is empty. What each side learns is the list of keys it should
//! fetch from the other (`Outcome::want`).
//!
//! # Bounds
//!
//! Every message is answered with bounded work and a bounded reply, whatever
//! the other side sends, so no peer can make a node walk its whole set or
//! build an answer that grows with it:
//! - the set is a balanced tree that keeps each subtree's fingerprint, so a
//!   range's fingerprint, its item count and its split points cost
//!   O(log n), never a walk of the range;
//! - a message is refused ([`MessageError`]) unless its parts are at most
//!   [`MAX_PARTS`], in key order, disjoint and well-formed, and its
//!   [`message_cost`] is at most [`MAX_MESSAGE_COST`];
//! - a reply stops growing at its budget ([`MESSAGE_BUDGET`]): the parts not
//!   yet answered are handed back with this side's fingerprint, for the next
//!   round, up to half the budget again, and the rest are folded
//!   into one fingerprint of the key range they span, which the other side
//!   splits again. Parts are answered in key order, so every round settles
//!   the lowest unsettled ranges and the exchange always ends;
//! - a side that knows the other's whole content of a range (it was listed)
//!   lists its own items there in chunks of at most the budget, so a fresh
//!   peer learns a large set in messages of bounded size and total traffic
//!   about the size of what it learns;
//! - [`respond_each`] borrows the set for one part at a time, so a lock
//!   around it never stays held for a whole message.
//!
//! # Deletes past the horizon
//!
//! Deletes are collected after a horizon, so "the other side lacks this key"
//! can mean "it was deleted there and the delete was since collected". Each
//! side states its [`Watermarks`]: when it last completed a catch-up
//! (`synced`) and the floor below which it has collected deletes (`floor`).
//! A side never wants a key it lacks that is stamped below its own floor: it
//! refuses such records on every path. A key only one side holds is a
//! *ghost* ([`is_ghost`]) when the holder was away longer than the horizon
//! (its last catch-up is older than the other side's floor) and the key is
//! stamped below that floor: the holder learns it (`Outcome::ghosts`) and
//! drops it, so the two converge.

use std::mem::size_of;

use bincode::{Decode, Encode};

use super::item_tree::ItemTree;

/// Ranges with at most this many items are settled by listing them.
pub const ITEM_THRESHOLD: u64 = 32;
/// How many sub-ranges a differing range is split into.
pub const BRANCHING: usize = 16;
/// Parts in one message, at most.
pub const MAX_PARTS: usize = 1024;
/// What a reply may cost ([`message_cost`]) before the parts it has not
/// answered are handed back (or folded) for later rounds.
pub const MESSAGE_BUDGET: usize = 1024 * 1024;
/// The largest [`message_cost`] accepted. Past its budget a reply hands
/// unanswered ranges back up to half as much again, and may pass that by a
/// few parts (one item, a remainder and a folded range), each at most two
/// keys of [`MAX_KEY_BYTES`].
pub const MAX_MESSAGE_COST: usize = MESSAGE_BUDGET * 3 / 2 + 8 * MAX_KEY_BYTES + 1024;
/// The longest record key a message may carry (the store's key limit).
pub const MAX_KEY_BYTES: usize = 64 * 1024;
/// Items of its own a side checks for ghosts while answering one message.
const GHOST_SCAN: usize = 64 * 1024;

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

    /// Whether `key` is in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.lower.as_slice() && self.upper.as_deref().is_none_or(|upper| key < upper)
    }

    fn is_valid(&self) -> bool {
        self.upper
            .as_deref()
            .is_none_or(|upper| self.lower.as_slice() < upper)
    }

    fn bytes(&self) -> usize {
        self.lower.len() + self.upper.as_ref().map_or(0, Vec::len)
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

impl Part {
    /// The range the part is about.
    pub fn range(&self) -> &KeyRange {
        match self {
            Part::Fingerprint { range, .. } | Part::Items { range, .. } => range,
        }
    }
}

/// What a part costs a receiver in memory once decoded: the sizes bincode
/// reserves while decoding it (each `Vec` reserves its length times its
/// element size) plus the key bytes. Writers keep replies within a budget of
/// this cost and readers refuse messages over [`MAX_MESSAGE_COST`], so the
/// two limits agree.
pub fn part_cost(part: &Part) -> usize {
    size_of::<Part>()
        + part.range().bytes()
        + match part {
            Part::Fingerprint { .. } => 0,
            Part::Items { items, .. } => items
                .iter()
                .map(|item| size_of::<Item>() + item.key.len())
                .sum(),
        }
}

/// [`part_cost`] of a whole message.
pub fn message_cost(parts: &[Part]) -> usize {
    parts.iter().map(part_cost).sum()
}

/// Why a message was refused: it breaks the protocol's bounds or shape. Only
/// a broken or hostile peer sends one; the exchange ends.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// More parts than [`MAX_PARTS`].
    #[error("a reconciliation message has {0} parts (at most {MAX_PARTS})")]
    TooManyParts(usize),
    /// Its decoded size is over [`MAX_MESSAGE_COST`].
    #[error("a reconciliation message costs {0} bytes decoded (at most {MAX_MESSAGE_COST})")]
    TooLarge(usize),
    /// A range is empty or inverted, ranges overlap or are out of order, or
    /// a bound is longer than [`MAX_KEY_BYTES`].
    #[error("a reconciliation message has empty, overlapping or unordered ranges")]
    BadRanges,
    /// A listed item lies outside its part's range, items are out of order,
    /// or a key is longer than [`MAX_KEY_BYTES`].
    #[error("a reconciliation message lists items outside their range or out of order")]
    BadItems,
}

/// Checks a message's shape and size before any work is done for it.
///
/// # Errors
///
/// The first bound or rule the message breaks.
pub fn check_message(parts: &[Part]) -> Result<(), MessageError> {
    if parts.len() > MAX_PARTS {
        return Err(MessageError::TooManyParts(parts.len()));
    }
    let cost = message_cost(parts);
    if cost > MAX_MESSAGE_COST {
        return Err(MessageError::TooLarge(cost));
    }
    let mut previous_upper: Option<&[u8]> = None;
    for (i, part) in parts.iter().enumerate() {
        let range = part.range();
        if !range.is_valid()
            || range.lower.len() > MAX_KEY_BYTES
            || range
                .upper
                .as_ref()
                .is_some_and(|u| u.len() > MAX_KEY_BYTES)
        {
            return Err(MessageError::BadRanges);
        }
        if i > 0 {
            // Only the last part may run to the end of the key space.
            match previous_upper {
                Some(upper) if range.lower.as_slice() >= upper => {}
                _ => return Err(MessageError::BadRanges),
            }
        }
        previous_upper = range.upper.as_deref();
        if let Part::Items { items, .. } = part {
            let ordered = items.windows(2).all(|w| w[0].key < w[1].key);
            let inside = items
                .iter()
                .all(|item| item.key.len() <= MAX_KEY_BYTES && range.contains(&item.key));
            if !ordered || !inside {
                return Err(MessageError::BadItems);
            }
        }
    }
    Ok(())
}

/// What reconciliation asks of the items one side holds: an in-memory
/// [`ItemSet`], or the node's tables in its database. The answers must be
/// of one consistent state for the duration of a message.
pub trait Items {
    /// The fingerprint of `range`.
    fn fingerprint(&self, range: &KeyRange) -> Fingerprint;
    /// The items of `range` in key order, lazily (readers stop early).
    fn items<'a>(&'a self, range: &'a KeyRange) -> Box<dyn Iterator<Item = Item> + 'a>;
    /// Splits `range`, holding `count` items, into up to [`BRANCHING`]
    /// consecutive ranges covering it, of about equal item counts.
    fn split(&self, range: &KeyRange, count: u64) -> Vec<KeyRange>;
    /// The state held for `key`.
    fn get(&self, key: &[u8]) -> Option<ItemState>;
}

impl Items for ItemSet {
    fn fingerprint(&self, range: &KeyRange) -> Fingerprint {
        ItemSet::fingerprint(self, range)
    }

    fn items<'a>(&'a self, range: &'a KeyRange) -> Box<dyn Iterator<Item = Item> + 'a> {
        Box::new(ItemSet::items(self, range))
    }

    fn split(&self, range: &KeyRange, count: u64) -> Vec<KeyRange> {
        ItemSet::split(self, range, count)
    }

    fn get(&self, key: &[u8]) -> Option<ItemState> {
        ItemSet::get(self, key).copied()
    }
}

/// A peer's items, ordered by key, with the fingerprint of any range in
/// O(log n).
#[derive(Clone, Debug, Default)]
pub struct ItemSet {
    tree: ItemTree,
}

impl PartialEq for ItemSet {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && self
                .items(&KeyRange::all())
                .eq(other.items(&KeyRange::all()))
    }
}

impl Eq for ItemSet {}

impl ItemSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// A set of items given in strictly increasing key order, built in O(n);
    /// `None` if they are not.
    pub fn from_sorted(items: impl IntoIterator<Item = (Vec<u8>, ItemState)>) -> Option<Self> {
        ItemTree::from_sorted(items).map(|tree| ItemSet { tree })
    }

    /// Sets the state of `key`.
    pub fn insert(&mut self, key: Vec<u8>, state: ItemState) {
        self.tree.insert(key, state);
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &[u8]) -> Option<ItemState> {
        self.tree.remove(key)
    }

    /// The state of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&ItemState> {
        self.tree.get(key)
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.tree.len()
    }

    /// True if there are no items.
    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// The fingerprint of a range, in O(log n).
    pub fn fingerprint(&self, range: &KeyRange) -> Fingerprint {
        if range.lower.is_empty() && range.upper.is_none() {
            return self.tree.total();
        }
        self.tree.fingerprint(&range.lower, range.upper.as_deref())
    }

    /// The items of a range in key order, lazily.
    pub fn items<'a>(&'a self, range: &'a KeyRange) -> impl Iterator<Item = Item> + 'a {
        self.tree
            .range(&range.lower, range.upper.as_deref())
            .map(|(key, state)| Item {
                key: key.to_vec(),
                state: *state,
            })
    }

    /// Splits a range holding `count` items into up to [`BRANCHING`] ranges
    /// of about equal item counts, in O(BRANCHING log n).
    fn split(&self, range: &KeyRange, count: u64) -> Vec<KeyRange> {
        let step = count.div_ceil(BRANCHING as u64).max(1);
        let first = self.tree.rank(&range.lower);
        let mut ranges = Vec::with_capacity(BRANCHING);
        let mut lower = range.lower.clone();
        let mut at = step;
        while at < count {
            if let Some(bound) = self.tree.select(first + at) {
                let bound = bound.to_vec();
                ranges.push(KeyRange {
                    lower: std::mem::replace(&mut lower, bound.clone()),
                    upper: Some(bound),
                });
            }
            at += step;
        }
        ranges.push(KeyRange {
            lower,
            upper: range.upper.clone(),
        });
        ranges
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
    /// Keys the other side holds newer but stamped after
    /// [`Context::latest`]: this side's clock would refuse them, so they are
    /// not wanted yet.
    pub too_new: u64,
    /// The earliest timestamp among `too_new` (0 if none).
    pub earliest_too_new: u64,
}

/// What one side states about its sync history, as timestamps (`0`: never).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub struct Watermarks {
    /// When it last completed a catch-up with a peer.
    pub synced: u64,
    /// Deletes older than this may have been collected on it, and records
    /// older than this for keys it lacks are refused by it.
    pub floor: u64,
}

/// Whether a key stamped `timestamp`, held by `holder` and lacked by
/// `lacker`, is a ghost: the holder was away longer than the horizon (its
/// last catch-up is older than the lacker's floor) and the key is older than
/// that floor, so the lacker refuses it; it was deleted meanwhile (or written
/// while the holder was away, more than the horizon ago).
pub fn is_ghost(timestamp: u64, holder: Watermarks, lacker: Watermarks) -> bool {
    holder.synced < lacker.floor && timestamp < lacker.floor
}

/// How a side answers: both sides' watermarks, its clock's bound, and the
/// reply budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    /// This side's watermarks.
    pub ours: Watermarks,
    /// The other side's, as claimed (bound them first: see the node).
    pub theirs: Watermarks,
    /// Items stamped after this are not wanted (this side would refuse them
    /// as from the future); `u64::MAX`: no bound.
    pub latest: u64,
    /// What the reply may cost ([`message_cost`]) before the rest is folded.
    pub budget: usize,
    /// This side started the exchange and alone fetches in it: a list of
    /// the other side's items settles the range for it, so it never lists
    /// its own back. (Off, both sides learn their wants.)
    pub fetching: bool,
}

impl Default for Context {
    fn default() -> Self {
        Context {
            ours: Watermarks::default(),
            theirs: Watermarks::default(),
            latest: u64::MAX,
            budget: MESSAGE_BUDGET,
            fetching: false,
        }
    }
}

/// The first message of an exchange about every key.
pub fn initiate(set: &dyn Items) -> Vec<Part> {
    initiate_ranges(set, &[KeyRange::all()])
}

/// The first message of an exchange about `ranges` only (in key order and
/// disjoint; past half of [`MAX_PARTS`], the rest are left out): each range's fingerprint, or
/// its items if it holds few. The exchange stays inside them, except
/// where a reply over its budget folds ranges together (the keys between
/// them are then compared too: a side that wants only some keys filters
/// what it learns).
pub fn initiate_ranges(set: &dyn Items, ranges: &[KeyRange]) -> Vec<Part> {
    let mut built = Built::new(MESSAGE_BUDGET);
    let mut reply = Reply {
        set,
        out: &mut built,
    };
    // A cut list adds a fingerprint for the rest: two parts per range.
    for range in ranges.iter().take(MAX_PARTS / 2) {
        let held = set.fingerprint(range);
        // Past the budget, ranges go as fingerprints, which cost little.
        if held.count <= ITEM_THRESHOLD && !reply.full() {
            reply.list(range, true);
        } else {
            reply.push(Part::Fingerprint {
                range: range.clone(),
                fingerprint: held,
            });
        }
    }
    built.parts
}

/// Answers one message, with no deletes collected on either side.
///
/// # Errors
///
/// [`MessageError`] if the message breaks the protocol's bounds.
pub fn respond(set: &dyn Items, message: &[Part]) -> Result<Outcome, MessageError> {
    respond_in(set, message, &Context::default())
}

/// Answers one message; keys only one side holds are checked against both
/// sides' watermarks.
///
/// # Errors
///
/// [`MessageError`] if the message breaks the protocol's bounds.
pub fn respond_with(
    set: &dyn Items,
    message: &[Part],
    ours: Watermarks,
    theirs: Watermarks,
) -> Result<Outcome, MessageError> {
    respond_in(
        set,
        message,
        &Context {
            ours,
            theirs,
            ..Context::default()
        },
    )
}

/// Answers one message in `cx`. The work is bounded by the message's checked
/// size and the reply's budget, whatever the set's size.
///
/// # Errors
///
/// [`MessageError`] if the message breaks the protocol's bounds; nothing is
/// learned from it then.
pub fn respond_in(
    set: &dyn Items,
    message: &[Part],
    cx: &Context,
) -> Result<Outcome, MessageError> {
    respond_each(message, cx, |answer| answer(set))
}

/// [`respond_in`], borrowing the set anew for each part of the message
/// through `with` (which calls what it is given with the set), so a lock
/// around the set is held for one part at a time and writers get in between.
/// Parts are about disjoint ranges, so the set changing between them is
/// like it changing between messages.
///
/// # Errors
///
/// [`MessageError`] if the message breaks the protocol's bounds; nothing is
/// learned from it then.
pub fn respond_each(
    message: &[Part],
    cx: &Context,
    mut with: impl FnMut(&mut dyn FnMut(&dyn Items)),
) -> Result<Outcome, MessageError> {
    check_message(message)?;
    let mut outcome = Outcome::default();
    let mut built = Built::new(cx.budget);
    let mut ghost_scan = GHOST_SCAN;
    let mut folded = false;
    for i in 0..message.len() {
        if folded {
            break;
        }
        with(&mut |set| {
            let mut reply = Reply {
                set,
                out: &mut built,
            };
            folded = answer_part(&mut reply, message, i, cx, &mut outcome, &mut ghost_scan);
        });
    }
    outcome.reply = built.parts;
    Ok(outcome)
}

/// Answers part `i` of `message` into `reply`; true when the rest of the
/// message was folded into one range and nothing more is to be answered.
fn answer_part(
    reply: &mut Reply<'_>,
    message: &[Part],
    i: usize,
    cx: &Context,
    outcome: &mut Outcome,
    ghost_scan: &mut usize,
) -> bool {
    let set = reply.set;
    let part = &message[i];
    if i > 0 && reply.full() {
        // No room to answer: hand the range back with our fingerprint,
        // for a later round, while that fits; then fold the rest into
        // one range.
        let echo = KeyRange::clone(part.range());
        if reply.fits_echo(&echo, message.len() - i) {
            reply.fingerprint(echo);
            return false;
        }
        let last = message.last().map(Part::range).unwrap_or(part.range());
        reply.fingerprint(KeyRange {
            lower: part.range().lower.clone(),
            upper: last.upper.clone(),
        });
        return true;
    }
    match part {
        Part::Fingerprint { range, fingerprint } => {
            let held = set.fingerprint(range);
            if held != *fingerprint {
                reply.settle(range, held);
            }
        }
        Part::Items {
            range,
            items,
            reply: answer,
        } => {
            learn(set, items, cx, outcome);
            let theirs = items
                .iter()
                .fold(Fingerprint::default(), |fp, item| Fingerprint {
                    xor: fp.xor ^ item.state.digest,
                    count: fp.count + 1,
                });
            let held = set.fingerprint(range);
            if held == theirs {
                return false;
            }
            // They listed everything they hold here, so ours can only be
            // settled by listing it (in chunks when there is much),
            // unless only we fetch: then their list is all we need.
            let listed_up_to = if *answer && !cx.fetching {
                Some(reply.list(range, false))
            } else {
                None
            };
            if cx.ours.synced < cx.theirs.floor {
                let scanned = match &listed_up_to {
                    Some(Some(cut)) => KeyRange {
                        lower: range.lower.clone(),
                        upper: Some(cut.clone()),
                    },
                    _ => range.clone(),
                };
                find_ghosts(set, &scanned, items, cx, ghost_scan, outcome);
            }
        }
    }
    false
}

/// What `items`, listed by the other side, teach this side: keys to fetch.
fn learn(set: &dyn Items, items: &[Item], cx: &Context, outcome: &mut Outcome) {
    for item in items {
        let newer = match set.get(&item.key) {
            // Older than our floor: deleted here (the delete since collected),
            // and refused on every path.
            None => item.state.timestamp >= cx.ours.floor,
            Some(held) => {
                held.digest != item.state.digest && item.state.timestamp >= held.timestamp
            }
        };
        if !newer {
            continue;
        }
        if item.state.timestamp > cx.latest {
            outcome.too_new += 1;
            if outcome.earliest_too_new == 0 || item.state.timestamp < outcome.earliest_too_new {
                outcome.earliest_too_new = item.state.timestamp;
            }
        } else {
            outcome.want.push(item.key.clone());
        }
    }
}

/// Our ghosts in `range`: items the other side did not list and holds to be
/// deleted. Scans at most `budget` items across a message.
fn find_ghosts(
    set: &dyn Items,
    range: &KeyRange,
    listed: &[Item],
    cx: &Context,
    budget: &mut usize,
    outcome: &mut Outcome,
) {
    for item in set.items(range) {
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        let theirs = listed
            .binary_search_by(|other| other.key.as_slice().cmp(&item.key))
            .is_ok();
        if !theirs && is_ghost(item.state.timestamp, cx.ours, cx.theirs) {
            outcome.ghosts.push(item.key);
        }
    }
}

/// A reply being built, within its budget.
struct Built {
    parts: Vec<Part>,
    cost: usize,
    budget: usize,
}

impl Built {
    fn new(budget: usize) -> Self {
        Built {
            parts: Vec::new(),
            cost: 0,
            budget,
        }
    }
}

/// The reply, with the set it is built from (borrowed anew for each part).
struct Reply<'a> {
    set: &'a dyn Items,
    out: &'a mut Built,
}

impl Reply<'_> {
    /// No room for another range's answer: a split adds up to two parts per
    /// sub-range, plus the folded rest.
    fn full(&self) -> bool {
        self.out.cost >= self.out.budget || self.out.parts.len() + 2 * BRANCHING + 2 > MAX_PARTS
    }

    /// Whether `range` can be handed back as it is: up to half the budget
    /// again, leaving a part for one folded range after it (`left` parts,
    /// this one included, remain).
    fn fits_echo(&self, range: &KeyRange, left: usize) -> bool {
        let echo = size_of::<Part>() + range.bytes();
        let parts = self.out.parts.len() + if left > 1 { 2 } else { 1 };
        parts <= MAX_PARTS && self.out.cost + echo <= self.out.budget * 3 / 2
    }

    fn push(&mut self, part: Part) {
        self.out.cost += part_cost(&part);
        self.out.parts.push(part);
    }

    /// Our fingerprint of `range`.
    fn fingerprint(&mut self, range: KeyRange) {
        let fingerprint = self.set.fingerprint(&range);
        self.push(Part::Fingerprint { range, fingerprint });
    }

    /// Answers a range that differs: list it if small, else split it.
    fn settle(&mut self, range: &KeyRange, held: Fingerprint) {
        if held.count <= ITEM_THRESHOLD {
            self.list(range, true);
            return;
        }
        for (i, sub) in self.set.split(range, held.count).into_iter().enumerate() {
            if i > 0 && self.full() {
                self.fingerprint(KeyRange {
                    lower: sub.lower,
                    upper: range.upper.clone(),
                });
                return;
            }
            let fingerprint = self.set.fingerprint(&sub);
            if fingerprint.count <= ITEM_THRESHOLD {
                self.list(&sub, true);
            } else {
                self.push(Part::Fingerprint {
                    range: sub,
                    fingerprint,
                });
            }
        }
    }

    /// Lists our items of `range` from its start, as many as the budget
    /// allows (at least one); the rest of the range goes as a fingerprint,
    /// to be listed in a later round. Returns where the listing stopped, if
    /// it did not reach the end.
    fn list(&mut self, range: &KeyRange, answer: bool) -> Option<Vec<u8>> {
        let mut cost = size_of::<Part>() + range.bytes();
        let mut items = Vec::new();
        let mut cut = None;
        for item in self.set.items(range) {
            let item_cost = size_of::<Item>() + item.key.len();
            if !items.is_empty() && self.out.cost + cost + item_cost > self.out.budget {
                cut = Some(item.key);
                break;
            }
            cost += item_cost;
            items.push(item);
        }
        let listed = KeyRange {
            lower: range.lower.clone(),
            upper: cut.clone().or_else(|| range.upper.clone()),
        };
        self.push(Part::Items {
            range: listed,
            items,
            reply: answer,
        });
        if let Some(cut) = &cut {
            self.fingerprint(KeyRange {
                lower: cut.clone(),
                upper: range.upper.clone(),
            });
        }
        cut
    }
}

#[cfg(test)]
mod tests;
