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

/// The first message of an exchange.
pub fn initiate(set: &dyn Items) -> Vec<Part> {
    let mut built = Built::new(MESSAGE_BUDGET);
    let mut reply = Reply {
        set,
        out: &mut built,
    };
    let all = KeyRange::all();
    let held = set.fingerprint(&all);
    if held.count <= ITEM_THRESHOLD {
        reply.list(&all, true);
    } else {
        reply.push(Part::Fingerprint {
            range: all,
            fingerprint: held,
        });
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
mod tests {
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
}
