//! Reconciliation's view of the records held, kept in the database and
//! updated in the transaction that changes a record, so that opening a node
//! reads nothing and no memory grows with the data set.
//!
//! Range-based set reconciliation asks, over and over, for the fingerprint
//! (XOR of digests, and count) of a key range, and for points that split a
//! range into parts. Two tables answer both in O(levels x fanout) reads:
//!
//! - `netabase/sync/records`: record key -> a row: its state (digest,
//!   timestamp, whether it is a delete) and then the signed envelope, whole
//!   or split (see [`rows`](super::rows)), so the state costs no row of
//!   its own (see [`row`]);
//! - `netabase/sync/levels`: for each level L in 1..=[`LEVELS`], each
//!   *boundary* key of that level -> the fingerprint of the items from it up
//!   to the next boundary of that level (its *bucket*). The empty key is a
//!   boundary of every level, so every key falls in one bucket per level.
//!
//! A key is a boundary of level L when a keyed hash of it starts with L
//! zero nibbles, so a bucket at level L holds about 16^L items and each
//! level's buckets are made of about 16 of the level below. Whether a key
//! is a boundary depends on that key alone, never on the order keys
//! arrived in: inserting or removing a key touches one bucket per level
//! (splitting or merging it when the key is a boundary there). The hash is
//! keyed by a secret seed kept with the database: keys come from peers, and
//! an attacker who could choose keys that are all boundaries, or none,
//! would make buckets tiny or huge.
//!
//! This is the scheme of negentropy's B-tree and of prolly trees (content-
//! defined boundaries), laid out on redb tables rather than on pages of its
//! own.
//!
//! Cost: with every write updating six bucket rows (9.7 µs a record,
//! `index_write_cost`), a 100,000-record catch-up took 1.48x the same work
//! on raw parts: one storage worker does it all. So a write transaction
//! keeps the buckets it touched in memory, with where each ends, and
//! writes each changed one once, at [`WriteView::flush`]; the state lives
//! in the record's own row.

use std::cell::RefCell;
use std::ops::Bound;

use redb::{ReadableTable, TableDefinition};
use sha2::{Digest, Sha256};

use super::error::{storage, StoreError};
use super::tables::{Bytes, KeyBytes};
use crate::sync::reconcile::{Fingerprint, Item, ItemState, Items, KeyRange, BRANCHING};

/// The records table: record key -> [`row`].
pub(crate) const RECORDS: TableDefinition<'static, KeyBytes, Bytes> =
    TableDefinition::new("netabase/sync/records");
const LEVELS_TABLE: TableDefinition<'static, KeyBytes, Bytes> =
    TableDefinition::new("netabase/sync/levels");

/// Levels above the items: a bucket of the top level holds about 16^6 (16
/// million) items, so the top level holds a handful of buckets even at a
/// billion items, and each write updates six buckets.
pub(crate) const LEVELS: u8 = 6;
/// Boundaries listed at most when choosing split points: enough to pick
/// evenly spaced ones, bounded whatever the range.
const SPLIT_SCAN: usize = 4096;

/// Decides which keys are boundaries of which levels.
#[derive(Clone)]
pub(crate) struct Boundaries {
    seed: [u8; 16],
}

impl Boundaries {
    pub(crate) fn new(seed: [u8; 16]) -> Self {
        Boundaries { seed }
    }

    /// The highest level `key` is a boundary of (0: none).
    fn level(&self, key: &[u8]) -> u8 {
        let hash = Sha256::new()
            .chain_update(self.seed)
            .chain_update(key)
            .finalize();
        let zero_bits =
            u128::from_be_bytes(hash[..16].try_into().unwrap_or([0; 16])).leading_zeros();
        // Whole nibbles: 16 items a bucket per level.
        ((zero_bits / 4) as u8).min(LEVELS)
    }
}

fn level_key(level: u8, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 1);
    out.push(level);
    out.extend_from_slice(key);
    out
}

fn encode(fingerprint: Fingerprint) -> [u8; 24] {
    let mut out = [0; 24];
    out[..16].copy_from_slice(&fingerprint.xor.to_le_bytes());
    out[16..].copy_from_slice(&fingerprint.count.to_le_bytes());
    out
}

fn decode(bytes: &[u8]) -> Fingerprint {
    let xor = bytes
        .get(..16)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u128::from_le_bytes);
    let count = bytes
        .get(16..24)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes);
    Fingerprint { xor, count }
}

fn encode_state(state: ItemState) -> [u8; 24] {
    encode(Fingerprint {
        xor: state.digest,
        count: state.timestamp,
    })
}

fn decode_state(bytes: &[u8]) -> ItemState {
    let Fingerprint { xor, count } = decode(bytes);
    ItemState {
        digest: xor,
        timestamp: count,
    }
}

/// Bytes of a row before its envelope: the encoded state, then flags.
pub(crate) const STATE_BYTES: usize = 25;
const TOMBSTONE_FLAG: u8 = 1;

/// A records-table row: `state`, whether it is a delete, then `envelope`.
pub(crate) fn row(state: ItemState, tombstone: bool, envelope: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(STATE_BYTES + envelope.len());
    out.extend_from_slice(&encode_state(state));
    out.push(if tombstone { TOMBSTONE_FLAG } else { 0 });
    out.extend_from_slice(envelope);
    out
}

/// The state and delete flag at the start of a row.
pub(crate) fn row_state(row: &[u8]) -> (ItemState, bool) {
    let flags = row.get(STATE_BYTES - 1).copied().unwrap_or(0);
    (decode_state(row), flags & TOMBSTONE_FLAG != 0)
}

fn one(state: ItemState) -> Fingerprint {
    Fingerprint {
        xor: state.digest,
        count: 1,
    }
}

fn plus(a: Fingerprint, b: Fingerprint) -> Fingerprint {
    Fingerprint {
        xor: a.xor ^ b.xor,
        count: a.count.wrapping_add(b.count),
    }
}

fn minus(a: Fingerprint, b: Fingerprint) -> Fingerprint {
    Fingerprint {
        xor: a.xor ^ b.xor,
        count: a.count.wrapping_sub(b.count),
    }
}

/// The two tables, read-only or writable, and the questions reconciliation
/// asks of them.
pub(crate) struct View<T> {
    items: T,
    levels: T,
    boundaries: Boundaries,
    /// The first failure met answering through [`Items`], whose answers
    /// cannot carry one: the caller checks [`View::failure`] and drops
    /// what it built.
    failed: RefCell<Option<StoreError>>,
}

/// [`View`] over a read transaction's snapshot.
pub(crate) type ReadView = View<Option<redb::ReadOnlyTable<KeyBytes, Bytes>>>;

impl ReadView {
    /// The view of `txn`'s snapshot; empty if nothing was ever written.
    pub(crate) fn open(
        txn: &redb::ReadTransaction,
        boundaries: Boundaries,
    ) -> Result<Self, StoreError> {
        let open = |definition| match txn.open_table(definition) {
            Ok(table) => Ok(Some(table)),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(error) => Err(storage("open a sync table")(error)),
        };
        Ok(View {
            items: open(RECORDS)?,
            levels: open(LEVELS_TABLE)?,
            boundaries,
            failed: RefCell::new(None),
        })
    }
}

/// An entry read from one of the tables.
type Entry = Result<(Vec<u8>, Vec<u8>), StoreError>;

/// Read access to one of the two tables, present or not.
pub(crate) trait Source {
    /// The entries of a range in key order (or reversed), lazily.
    fn scan<'a>(
        &'a self,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        reverse: bool,
    ) -> Result<Box<dyn Iterator<Item = Entry> + 'a>, StoreError>;

    fn value(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Calls `f` on the entries of a range in order until it returns false.
    fn each(
        &self,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        reverse: bool,
        f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        for entry in self.scan(lower, upper, reverse)? {
            let (key, value) = entry?;
            if !f(&key, &value) {
                break;
            }
        }
        Ok(())
    }
}

fn scan_in<'a, T: ReadableTable<KeyBytes, Bytes>>(
    table: &'a T,
    lower: Bound<&[u8]>,
    upper: Bound<&[u8]>,
    reverse: bool,
) -> Result<Box<dyn Iterator<Item = Entry> + 'a>, StoreError> {
    let range = table
        .range::<&[u8]>((lower, upper))
        .map_err(storage("read a sync table"))?;
    let owned = |entry: Result<
        (
            redb::AccessGuard<'_, KeyBytes>,
            redb::AccessGuard<'_, Bytes>,
        ),
        redb::StorageError,
    >| {
        entry
            .map(|(key, value)| (key.value().to_vec(), prefix(value.value()).to_vec()))
            .map_err(storage("read a sync table"))
    };
    Ok(if reverse {
        Box::new(range.rev().map(owned))
    } else {
        Box::new(range.map(owned))
    })
}

fn value_in<T: ReadableTable<KeyBytes, Bytes>>(
    table: &T,
    key: &[u8],
) -> Result<Option<Vec<u8>>, StoreError> {
    let value = table.get(key).map_err(storage("read a sync table"))?;
    Ok(value.map(|v| prefix(v.value()).to_vec()))
}

/// The part of a value the index reads: a bucket's fingerprint, or a
/// record row's state, never the envelope after it.
fn prefix(value: &[u8]) -> &[u8] {
    &value[..value.len().min(STATE_BYTES)]
}

impl Source for Option<redb::ReadOnlyTable<KeyBytes, Bytes>> {
    fn scan<'a>(
        &'a self,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        reverse: bool,
    ) -> Result<Box<dyn Iterator<Item = Entry> + 'a>, StoreError> {
        match self {
            Some(table) => scan_in(table, lower, upper, reverse),
            None => Ok(Box::new(std::iter::empty())),
        }
    }

    fn value(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.as_ref().map_or(Ok(None), |table| value_in(table, key))
    }
}

impl Source for redb::Table<'_, KeyBytes, Bytes> {
    fn scan<'a>(
        &'a self,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        reverse: bool,
    ) -> Result<Box<dyn Iterator<Item = Entry> + 'a>, StoreError> {
        scan_in(self, lower, upper, reverse)
    }

    fn value(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        value_in(self, key)
    }
}

fn upper_bound(upper: Option<&[u8]>) -> Bound<&[u8]> {
    upper.map_or(Bound::Unbounded, Bound::Excluded)
}

impl<T: Source> View<T> {
    /// The state held for `key`.
    pub(crate) fn try_get(&self, key: &[u8]) -> Result<Option<ItemState>, StoreError> {
        Ok(self.items.value(key)?.map(|v| decode_state(&v)))
    }

    /// The fingerprint of `range`.
    pub(crate) fn try_fingerprint(&self, range: &KeyRange) -> Result<Fingerprint, StoreError> {
        self.sum(LEVELS, &range.lower, range.upper.as_deref())
    }

    /// How many items are held.
    pub(crate) fn len(&self) -> Result<u64, StoreError> {
        Ok(self.try_fingerprint(&KeyRange::all())?.count)
    }

    /// The items of `range` in key order, at most `limit`.
    pub(crate) fn try_items(
        &self,
        range: &KeyRange,
        limit: usize,
    ) -> Result<Vec<Item>, StoreError> {
        let mut out = Vec::new();
        self.items.each(
            Bound::Included(&range.lower),
            upper_bound(range.upper.as_deref()),
            false,
            &mut |key, value| {
                out.push(Item {
                    key: key.to_vec(),
                    state: decode_state(value),
                });
                out.len() < limit
            },
        )?;
        Ok(out)
    }

    /// The boundaries of `level` in `[lower, upper)`, with their buckets'
    /// fingerprints, and the first boundary at or past `upper` (`None`: the
    /// last bucket runs to the end of the key space). At most `limit`.
    #[allow(clippy::type_complexity)]
    fn boundaries(
        &self,
        level: u8,
        lower: &[u8],
        upper: Option<&[u8]>,
        limit: usize,
    ) -> Result<(Vec<(Vec<u8>, Fingerprint)>, Option<Vec<u8>>), StoreError> {
        let start = level_key(level, lower);
        let end = level_key(level + 1, &[]);
        let mut inside = Vec::new();
        let mut next = None;
        self.levels.each(
            Bound::Included(&start),
            Bound::Excluded(&end),
            false,
            &mut |key, value| {
                let key = &key[1..];
                if upper.is_some_and(|upper| key >= upper) {
                    next = Some(key.to_vec());
                    return false;
                }
                inside.push((key.to_vec(), decode(value)));
                inside.len() < limit
            },
        )?;
        Ok((inside, next))
    }

    /// The fingerprint of `[lower, upper)` using levels `level` and below.
    /// Only the edges of a range are read below the level it spans: the
    /// buckets between its first and last boundary count whole.
    fn sum(
        &self,
        level: u8,
        lower: &[u8],
        upper: Option<&[u8]>,
    ) -> Result<Fingerprint, StoreError> {
        if upper.is_some_and(|upper| upper <= lower) {
            return Ok(Fingerprint::default());
        }
        if level == 0 {
            let mut total = Fingerprint::default();
            self.items.each(
                Bound::Included(lower),
                upper_bound(upper),
                false,
                &mut |_, value| {
                    total = plus(total, one(decode_state(value)));
                    true
                },
            )?;
            return Ok(total);
        }
        let (inside, next) = self.boundaries(level, lower, upper, usize::MAX)?;
        let Some(((first, _), (last, last_bucket))) = inside.first().zip(inside.last()) else {
            return self.sum(level - 1, lower, upper);
        };
        let mut total = self.sum(level - 1, lower, Some(first))?;
        for (_, bucket) in &inside[..inside.len() - 1] {
            total = plus(total, *bucket);
        }
        // The last bucket counts whole if it ends by `upper`.
        let whole = match (upper, &next) {
            (None, _) => true,
            (Some(upper), Some(next)) => next.as_slice() <= upper,
            (Some(_), None) => false,
        };
        let last = if whole {
            *last_bucket
        } else {
            self.sum(level - 1, last, upper)?
        };
        Ok(plus(total, last))
    }

    /// Up to `parts` ranges covering `range`, split at boundaries of the
    /// highest level that has enough of them inside it (or at items, in a
    /// range inside one bucket of the lowest level), so that each part holds
    /// about as many items.
    pub(crate) fn try_split(
        &self,
        range: &KeyRange,
        parts: usize,
    ) -> Result<Vec<KeyRange>, StoreError> {
        let wanted = parts.saturating_sub(1).max(1);
        let mut points: Vec<Vec<u8>> = Vec::new();
        for level in (1..=LEVELS).rev() {
            let (inside, _) =
                self.boundaries(level, &range.lower, range.upper.as_deref(), SPLIT_SCAN)?;
            let inside: Vec<Vec<u8>> = inside
                .into_iter()
                .map(|(key, _)| key)
                .filter(|key| *key > range.lower)
                .collect();
            if inside.len() >= wanted || (level == 1 && !inside.is_empty()) {
                points = inside;
                break;
            }
        }
        if points.is_empty() {
            points = self
                .try_items(range, SPLIT_SCAN)?
                .into_iter()
                .map(|item| item.key)
                .filter(|key| *key > range.lower)
                .collect();
        }
        let chosen: Vec<Vec<u8>> = if points.len() > wanted {
            (1..=wanted)
                .map(|i| points[i * points.len() / (wanted + 1)].clone())
                .collect()
        } else {
            points
        };
        let mut ranges = Vec::with_capacity(chosen.len() + 1);
        let mut lower = range.lower.clone();
        for point in chosen {
            if point <= lower {
                continue;
            }
            ranges.push(KeyRange {
                lower: std::mem::replace(&mut lower, point.clone()),
                upper: Some(point),
            });
        }
        ranges.push(KeyRange {
            lower,
            upper: range.upper.clone(),
        });
        Ok(ranges)
    }
}

impl<T> View<T> {
    /// The failure met answering through [`Items`], if any: what was built
    /// from those answers must be dropped.
    pub(crate) fn failure(&self) -> Option<StoreError> {
        self.failed.borrow_mut().take()
    }

    fn note<V>(&self, result: Result<V, StoreError>) -> Option<V> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.failed.borrow_mut().get_or_insert(error);
                None
            }
        }
    }
}

impl<T: Source> Items for View<T> {
    fn fingerprint(&self, range: &KeyRange) -> Fingerprint {
        self.note(self.try_fingerprint(range)).unwrap_or_default()
    }

    fn items<'a>(&'a self, range: &'a KeyRange) -> Box<dyn Iterator<Item = Item> + 'a> {
        let entries = self.note(self.items.scan(
            Bound::Included(&range.lower),
            upper_bound(range.upper.as_deref()),
            false,
        ));
        Box::new(entries.into_iter().flatten().map_while(move |entry| {
            self.note(entry).map(|(key, value)| Item {
                key,
                state: decode_state(&value),
            })
        }))
    }

    fn split(&self, range: &KeyRange, _count: u64) -> Vec<KeyRange> {
        self.note(self.try_split(range, BRANCHING))
            .unwrap_or_else(|| vec![range.clone()])
    }

    fn get(&self, key: &[u8]) -> Option<ItemState> {
        self.note(self.try_get(key)).flatten()
    }
}

impl<T: Source> View<T> {
    /// The first boundary of `level` after `key`.
    fn next_boundary(&self, level: u8, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let start = level_key(level, key);
        let end = level_key(level + 1, &[]);
        let mut next = None;
        self.levels.each(
            Bound::Excluded(&start),
            Bound::Excluded(&end),
            false,
            &mut |k, _| {
                next = Some(k[1..].to_vec());
                false
            },
        )?;
        Ok(next)
    }
}

/// Rebuilds every level in `txn` from the records table (the check that
/// incremental upkeep and a rebuild agree), in one pass in key order:
/// each level's buckets are closed as the keys reach their next boundary.
/// Returns how many records it holds.
#[cfg(test)]
pub(crate) fn rebuild(
    txn: &redb::WriteTransaction,
    boundaries: Boundaries,
) -> Result<u64, StoreError> {
    txn.delete_table(LEVELS_TABLE)
        .map_err(storage("clear a sync table"))?;
    let records = txn
        .open_table(RECORDS)
        .map_err(storage("open a sync table"))?;
    let mut levels = txn
        .open_table(LEVELS_TABLE)
        .map_err(storage("open a sync table"))?;
    let mut put = |level: u8, boundary: &[u8], bucket: Fingerprint| {
        levels
            .insert(&level_key(level, boundary)[..], &encode(bucket)[..])
            .map(drop)
            .map_err(storage("write a sync table"))
    };
    // The bucket being filled at each level: its boundary and fingerprint.
    let mut open: Vec<(Vec<u8>, Fingerprint)> =
        vec![(Vec::new(), Fingerprint::default()); usize::from(LEVELS)];
    let mut count = 0;
    for entry in records.iter().map_err(storage("read a sync table"))? {
        let (key, value) = entry.map_err(storage("read a sync table"))?;
        let key = key.value();
        let (state, _) = row_state(value.value());
        for level in 1..=boundaries.level(key) {
            let (boundary, bucket) = std::mem::replace(
                &mut open[usize::from(level - 1)],
                (key.to_vec(), Fingerprint::default()),
            );
            put(level, &boundary, bucket)?;
        }
        for (_, bucket) in &mut open {
            *bucket = plus(*bucket, one(state));
        }
        count += 1;
    }
    for (level, (boundary, bucket)) in (1..=LEVELS).zip(open) {
        put(level, &boundary, bucket)?;
    }
    Ok(count)
}

#[cfg(test)]
mod tests;
mod write;

pub(crate) use write::WriteView;
