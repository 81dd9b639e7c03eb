//! What a node keeps in sync, per model: everything (the default), some
//! ranges of primary keys, or nothing. Catch-up reconciles only what is
//! subscribed; records outside it are read from peers on demand.
//!
//! Each subscription keeps its own catch-up watermark: a range subscribed
//! today has never been caught up with, so records in it older than the
//! node's delete horizon are still taken (the node-wide floor would refuse
//! them as deletes it may have collected).

use std::collections::HashMap;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::sync::RwLock;

use bincode::{Decode, Encode};

use crate::codec;
use crate::model::{ModelId, NetabaseModel};
use crate::store::{ReadTransaction, StoreError};
use crate::sync::reconcile::KeyRange;
use crate::KeyEncode;

/// Key ranges one subscription may name, at most: each is a part of every
/// catch-up's first message.
pub const MAX_SUBSCRIBED_RANGES: usize = 64;

/// What a node keeps in sync for model `M`: which of its records catch-up
/// reconciles with peers. Records outside it are still one
/// [`get_record`](crate::node::Netabase::get_record) away (fetched from
/// peers, kept in a bounded cache, not stored); the node's own writes are
/// stored whatever it subscribes to. See
/// [`Netabase::subscribe`](crate::node::Netabase::subscribe).
pub struct Subscription<M: NetabaseModel> {
    /// Record-key ranges, in order and disjoint; `None`: every key.
    ranges: Option<Vec<KeyRange>>,
    model: PhantomData<fn() -> M>,
}

impl<M: NetabaseModel> Clone for Subscription<M> {
    fn clone(&self) -> Self {
        Subscription {
            ranges: self.ranges.clone(),
            model: PhantomData,
        }
    }
}

impl<M: NetabaseModel> std::fmt::Debug for Subscription<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.ranges {
            None => write!(f, "Subscription<{}>::all()", M::NAME),
            Some(ranges) if ranges.is_empty() => write!(f, "Subscription<{}>::nothing()", M::NAME),
            Some(ranges) => write!(f, "Subscription<{}>({} key ranges)", M::NAME, ranges.len()),
        }
    }
}

impl<M: NetabaseModel> PartialEq for Subscription<M> {
    fn eq(&self, other: &Self) -> bool {
        self.ranges == other.ranges
    }
}

impl<M: NetabaseModel> Eq for Subscription<M> {}

impl<M: NetabaseModel> Default for Subscription<M> {
    fn default() -> Self {
        Self::all()
    }
}

impl<M: NetabaseModel> Subscription<M> {
    /// Every record of `M`: the default.
    pub fn all() -> Self {
        Subscription {
            ranges: None,
            model: PhantomData,
        }
    }

    /// No record of `M` is kept in sync: the node stores its own writes
    /// and what peers place on it, and reads the rest on demand.
    pub fn nothing() -> Self {
        Subscription {
            ranges: Some(Vec::new()),
            model: PhantomData,
        }
    }

    /// The records whose primary key is in `range` (`a..b`, `a..=b`,
    /// `a..`, `..b`), in the keys' order.
    pub fn keys(range: impl RangeBounds<M::Key>) -> Self {
        Self::nothing().or_keys(range)
    }

    /// The records whose primary key starts with `prefix`: with a tuple
    /// key such as `(owner, id)`, `key_prefix(&owner)` is every record of
    /// that owner (a key's first part, or first parts, given as a value of
    /// their type or a tuple of them). Catch-up compares such a subscription
    /// as any key range: it costs what that range holds, not the model.
    pub fn key_prefix<P: KeyEncode + ?Sized>(prefix: &P) -> Self {
        Self::nothing().or_key_prefix(prefix)
    }

    /// This subscription and the records whose primary key starts with
    /// `prefix` (see [`key_prefix`](Self::key_prefix)).
    pub fn or_key_prefix<P: KeyEncode + ?Sized>(self, prefix: &P) -> Self {
        let lower = codec::record_key(M::ID, prefix.to_key_bytes().as_slice());
        let upper = crate::key::prefix_successor(&lower).map(|u| u.as_slice().to_vec());
        self.with(Some(KeyRange { lower, upper }))
    }

    /// This subscription and the records whose primary key is in `range`.
    pub fn or_keys(self, range: impl RangeBounds<M::Key>) -> Self {
        self.with(record_range(M::ID, &range))
    }

    /// This subscription and `range` (none: unchanged).
    fn with(self, range: Option<KeyRange>) -> Self {
        let Some(mut ranges) = self.ranges else {
            return self;
        };
        ranges.extend(range);
        Subscription {
            ranges: Some(normalize(ranges)),
            model: PhantomData,
        }
    }

    /// Whether this subscribes to every record of `M`.
    pub fn is_all(&self) -> bool {
        self.ranges.is_none()
    }

    /// Whether this subscribes to no record of `M`.
    pub fn is_nothing(&self) -> bool {
        self.ranges.as_ref().is_some_and(Vec::is_empty)
    }

    /// Whether the record under `key` is subscribed to.
    pub fn contains(&self, key: &M::Key) -> bool {
        let record_key = codec::record_key(M::ID, key.to_key_bytes().as_slice());
        self.ranges
            .as_ref()
            .is_none_or(|ranges| ranges.iter().any(|r| r.contains(&record_key)))
    }

    /// The record-key ranges subscribed to (every key of `M` for `all`).
    pub(crate) fn record_ranges(&self) -> Vec<KeyRange> {
        self.ranges
            .clone()
            .unwrap_or_else(|| vec![model_range(M::ID)])
    }

    pub(crate) fn from_record_ranges(ranges: Vec<KeyRange>) -> Self {
        let all = ranges == [model_range(M::ID)];
        Subscription {
            ranges: (!all).then_some(ranges),
            model: PhantomData,
        }
    }
}

/// Every record key of `model`.
pub(crate) fn model_range(model: ModelId) -> KeyRange {
    KeyRange {
        lower: model.0.to_be_bytes().to_vec(),
        upper: model
            .0
            .checked_add(1)
            .map(|next| next.to_be_bytes().to_vec()),
    }
}

/// The record keys of `model` whose primary key is in `range`; `None` if
/// it is empty. Key encodings are order-preserving and prefix-free, so the
/// keys after an encoded key `k` start at `k ++ 0x00`.
fn record_range<K: KeyEncode>(model: ModelId, range: &impl RangeBounds<K>) -> Option<KeyRange> {
    let whole = model_range(model);
    let at = |key: &K| codec::record_key(model, key.to_key_bytes().as_slice());
    let after = |key: &K| {
        let mut bytes = at(key);
        bytes.push(0);
        bytes
    };
    let lower = match range.start_bound() {
        Bound::Included(key) => at(key),
        Bound::Excluded(key) => after(key),
        Bound::Unbounded => whole.lower,
    };
    let upper = match range.end_bound() {
        Bound::Included(key) => Some(after(key)),
        Bound::Excluded(key) => Some(at(key)),
        Bound::Unbounded => whole.upper,
    };
    let range = KeyRange { lower, upper };
    range
        .upper
        .as_deref()
        .is_none_or(|upper| range.lower.as_slice() < upper)
        .then_some(range)
}

/// `ranges` sorted, with overlapping and touching ones merged.
fn normalize(mut ranges: Vec<KeyRange>) -> Vec<KeyRange> {
    ranges.sort_by(|a, b| a.lower.cmp(&b.lower));
    let mut out: Vec<KeyRange> = Vec::with_capacity(ranges.len());
    for range in ranges {
        match out.last_mut() {
            Some(last)
                if last
                    .upper
                    .as_deref()
                    .is_none_or(|u| range.lower.as_slice() <= u) =>
            {
                last.upper = match (last.upper.take(), range.upper) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                };
            }
            _ => out.push(range),
        }
    }
    out
}

/// Whether `a` and `b` share a key.
fn overlap(a: &KeyRange, b: &KeyRange) -> bool {
    let below = |lower: &[u8], upper: &Option<Vec<u8>>| upper.as_deref().is_none_or(|u| lower < u);
    below(&a.lower, &b.upper) && below(&b.lower, &a.upper)
}

/// Whether every key of `inner` is in one of `outer` (normalized).
fn within(inner: &KeyRange, outer: &[KeyRange]) -> bool {
    outer.iter().any(|o| {
        o.lower <= inner.lower
            && match (&o.upper, &inner.upper) {
                (None, _) => true,
                (Some(_), None) => false,
                (Some(ou), Some(iu)) => iu <= ou,
            }
    })
}

/// One model's subscription as stored: its ranges and when a catch-up
/// that covered them last completed.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
struct Row {
    ranges: Vec<KeyRange>,
    /// A timestamp (0: never).
    synced: u64,
}

/// The stored rows, by model.
#[derive(Default)]
struct Rows {
    by_model: HashMap<ModelId, Row>,
}

/// The node's subscriptions. A model with none is synced whole, with the
/// node's own watermark.
#[derive(Default)]
pub(crate) struct Subscriptions {
    rows: RwLock<Rows>,
    /// Held while rows are stored and put in force, so the file and
    /// memory never disagree on which change came last.
    storing: std::sync::Mutex<()>,
    /// Bumped by every change, so a catch-up that began before one does
    /// not move the watermark of ranges it did not compare.
    changes: std::sync::atomic::AtomicU64,
}

/// A change to one model's subscription, planned and not yet in force.
pub(crate) struct Changed {
    pub(crate) model: ModelId,
    /// The ranges subscribed to before.
    pub(crate) before: Vec<KeyRange>,
    row: Row,
}

impl Changed {
    /// What to store.
    pub(crate) fn encoded(&self) -> Vec<u8> {
        bincode::encode_to_vec(&self.row, bincode::config::standard())
            .expect("a subscription always encodes")
    }
}

impl Subscriptions {
    /// The subscriptions stored in the node's file. Blocking.
    pub(crate) fn load(read: &ReadTransaction) -> Result<Self, StoreError> {
        let mut rows = Rows::default();
        for (model, bytes) in read.subscriptions()? {
            match bincode::decode_from_slice::<Row, _>(&bytes, bincode::config::standard()) {
                Ok((row, _)) => {
                    rows.by_model.insert(ModelId(model), row);
                }
                // Written by this code: unreadable only if the file is damaged;
                // syncing the model whole loses nothing.
                Err(error) => {
                    tracing::warn!(model, %error, "an unreadable subscription; syncing that model whole")
                }
            }
        }
        Ok(Subscriptions {
            rows: RwLock::new(rows),
            ..Subscriptions::default()
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Rows> {
        self.rows.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The record-key ranges of `model` subscribed to.
    pub(crate) fn ranges(&self, model: ModelId) -> Vec<KeyRange> {
        self.read()
            .by_model
            .get(&model)
            .map_or_else(|| vec![model_range(model)], |row| row.ranges.clone())
    }

    /// Plans subscribing `model` to `ranges` (normalized). A subscription
    /// that takes in keys it did not cover starts with no catch-up behind
    /// it (see the module docs); one that only narrows keeps its watermark.
    pub(crate) fn plan(&self, model: ModelId, ranges: Vec<KeyRange>, node_synced: u64) -> Changed {
        let before = self.read().by_model.get(&model).cloned();
        let (before, before_synced) = match before {
            Some(row) => (row.ranges, row.synced),
            None => (vec![model_range(model)], node_synced),
        };
        let widened = ranges.iter().any(|r| !within(r, &before));
        let row = Row {
            synced: if widened { 0 } else { before_synced },
            ranges,
        };
        Changed { model, before, row }
    }

    /// Puts a planned change in force (once stored).
    pub(crate) fn install(&self, changed: Changed) {
        let mut rows = self.rows.write().unwrap_or_else(|e| e.into_inner());
        rows.by_model.insert(changed.model, changed.row);
        self.changes
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Held around storing rows and putting them in force.
    pub(crate) fn storing(&self) -> std::sync::MutexGuard<'_, ()> {
        self.storing.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many changes were made so far (see [`caught_up`](Self::caught_up)).
    pub(crate) fn changes(&self) -> u64 {
        self.changes.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The stored form of `models`' rows, as in force now.
    pub(crate) fn encoded(&self, models: &[ModelId]) -> Vec<(ModelId, Vec<u8>)> {
        let rows = self.read();
        models
            .iter()
            .filter_map(|model| {
                let row = rows.by_model.get(model)?;
                let encoded = bincode::encode_to_vec(row, bincode::config::standard())
                    .expect("a subscription always encodes");
                Some((*model, encoded))
            })
            .collect()
    }

    /// Whether the record under `record_key` is subscribed to.
    pub(crate) fn wants(&self, record_key: &[u8]) -> bool {
        let Some(model) = crate::store::rows::model_of(record_key) else {
            return false;
        };
        self.read()
            .by_model
            .get(&ModelId(u32::from_be_bytes(model)))
            .is_none_or(|row| row.ranges.iter().any(|r| r.contains(record_key)))
    }

    /// Whether this node keeps every key of `range` in sync (so its lacking
    /// one there says something).
    pub(crate) fn covers(&self, range: &KeyRange) -> bool {
        self.read().by_model.iter().all(|(model, row)| {
            let whole = model_range(*model);
            // Only this model's part of `range` is in question.
            !overlap(range, &whole) || {
                let part = KeyRange {
                    lower: range.lower.clone().max(whole.lower),
                    upper: match (&range.upper, whole.upper) {
                        (None, w) => w,
                        (Some(r), None) => Some(r.clone()),
                        (Some(r), Some(w)) => Some(r.clone().min(w)),
                    },
                };
                within(&part, &row.ranges)
            }
        })
    }

    /// The ranges a catch-up about `models` (registered, in id order)
    /// compares, in key order.
    pub(crate) fn reconciled(&self, models: &[ModelId]) -> Vec<KeyRange> {
        let rows = self.read();
        let mut out = Vec::new();
        for model in models {
            match rows.by_model.get(model) {
                Some(row) => out.extend(row.ranges.iter().cloned()),
                None => out.push(model_range(*model)),
            }
        }
        normalize(out)
    }

    /// When a catch-up covering `model` last completed: its own watermark,
    /// or the node's if the model has no subscription of its own.
    pub(crate) fn synced(&self, model: ModelId, node_synced: u64) -> u64 {
        self.read()
            .by_model
            .get(&model)
            .map_or(node_synced, |row| row.synced.min(node_synced))
    }

    /// The lowest watermark among `models`.
    pub(crate) fn synced_all(&self, models: &[ModelId], node_synced: u64) -> u64 {
        models
            .iter()
            .map(|model| self.synced(*model, node_synced))
            .min()
            .unwrap_or(node_synced)
    }

    /// A catch-up that started at `started`, when [`changes`](Self::changes)
    /// was `seen`, compared `models` and completed; returns the models whose
    /// watermark moved (to store again). Nothing moves if the subscriptions
    /// changed meanwhile: the catch-up compared what they were.
    pub(crate) fn caught_up(&self, models: &[ModelId], started: u64, seen: u64) -> Vec<ModelId> {
        let mut rows = self.rows.write().unwrap_or_else(|e| e.into_inner());
        if self.changes() != seen {
            return Vec::new();
        }
        let mut moved = Vec::new();
        for model in models {
            if let Some(row) = rows.by_model.get_mut(model) {
                if row.synced < started {
                    row.synced = started;
                    moved.push(*model);
                }
            }
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(lower: &[u8], upper: Option<&[u8]>) -> KeyRange {
        KeyRange {
            lower: lower.to_vec(),
            upper: upper.map(<[u8]>::to_vec),
        }
    }

    #[test]
    fn ranges_merge_when_they_overlap_or_touch() {
        let merged = normalize(vec![
            range(b"d", Some(b"f")),
            range(b"a", Some(b"b")),
            range(b"b", Some(b"c")),
            range(b"e", None),
        ]);
        assert_eq!(merged, vec![range(b"a", Some(b"c")), range(b"d", None)]);
    }

    #[test]
    fn key_bounds_map_to_record_key_ranges() {
        let model = ModelId(7);
        let inclusive = record_range(model, &(5u32..=9)).unwrap();
        let key = |k: u32| codec::record_key(model, k.to_key_bytes().as_slice());
        assert!(inclusive.contains(&key(5)) && inclusive.contains(&key(9)));
        assert!(!inclusive.contains(&key(4)) && !inclusive.contains(&key(10)));
        let exclusive = record_range(model, &(5u32..9)).unwrap();
        assert!(!exclusive.contains(&key(9)));
        let open = record_range(model, &(5u32..)).unwrap();
        assert!(open.contains(&key(u32::MAX)));
        assert!(!open.contains(&codec::record_key(ModelId(8), &[])));
        let reversed = (Bound::Included(9u32), Bound::Excluded(5u32));
        assert!(record_range(model, &reversed).is_none(), "empty");
    }

    #[test]
    fn coverage_is_per_model_and_a_new_range_starts_unsynced() {
        let subscriptions = Subscriptions::default();
        let (a, b) = (ModelId(1), ModelId(2));
        let first = record_range(a, &(10u32..20)).unwrap();
        subscriptions.install(subscriptions.plan(a, vec![first.clone()], 500));
        // Narrowed from everything: the node's watermark is kept.
        assert_eq!(subscriptions.synced(a, 900), 500);
        assert!(subscriptions.covers(&first));
        assert!(subscriptions.covers(&model_range(b)), "b is synced whole");
        assert!(!subscriptions.covers(&model_range(a)));
        assert!(!subscriptions.covers(&KeyRange::all()));
        // Widened: nothing behind it yet.
        let wider = record_range(a, &(10u32..30)).unwrap();
        subscriptions.install(subscriptions.plan(a, vec![wider.clone()], 900));
        assert_eq!(subscriptions.synced(a, 900), 0);
        assert_eq!(subscriptions.synced_all(&[a, b], 900), 0);
        let seen = subscriptions.changes();
        assert_eq!(subscriptions.caught_up(&[a, b], 950, seen), vec![a]);
        assert_eq!(subscriptions.synced(a, 1000), 950);
        // A catch-up that began before a change moves nothing.
        subscriptions.install(subscriptions.plan(a, vec![wider.clone()], 1000));
        assert!(subscriptions.caught_up(&[a], 990, seen).is_empty());
        assert_eq!(
            subscriptions.reconciled(&[a, b]),
            vec![wider, model_range(b)]
        );
        let key = |k: u32| codec::record_key(a, k.to_key_bytes().as_slice());
        assert!(subscriptions.wants(&key(29)) && !subscriptions.wants(&key(30)));
    }
}
