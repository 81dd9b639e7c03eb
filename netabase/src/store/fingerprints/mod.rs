//! Reconciliation's view of the records held, kept in the database and
//! updated in the transaction that changes a record, so that opening a node
//! reads nothing and no memory grows with the data set.
//!
//! Range-based set reconciliation asks, over and over, for the fingerprint
//! (XOR of digests, and count) of a key range, and for points that split a
//! range into parts. Two tables answer both in O(levels x fanout) reads:
//!
//! - `netabase/sync/records`: record key -> a row: its state (digest,
//!   timestamp, whether it is a delete) and then the signed envelope, so
//!   the state costs no row of its own (see [`row`]);
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
use std::collections::BTreeMap;
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

/// The envelope in a row.
pub(crate) fn row_envelope(row: &[u8]) -> &[u8] {
    row.get(STATE_BYTES..).unwrap_or_default()
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

/// [`View`] over a write transaction: the same questions, and the writes
/// that keep every level in step with the records.
pub(crate) struct WriteView<'txn> {
    view: View<redb::Table<'txn, KeyBytes, Bytes>>,
    /// Per level, the buckets this transaction looked up, by boundary:
    /// each with where it ends, so the next key that falls in it needs no
    /// table lookup (a catch-up's batch arrives in key order: most keys
    /// fall in the bucket before them), and whether it changed. Changed
    /// buckets are written once, at [`flush`](Self::flush). Bounded by
    /// what the transaction writes.
    known: Vec<BTreeMap<Vec<u8>, Bucket>>,
}

/// A bucket as a write transaction knows it.
struct Bucket {
    fingerprint: Fingerprint,
    /// The next boundary of its level (`None`: it runs to the end).
    end: Option<Vec<u8>>,
    changed: bool,
}

impl<'txn> WriteView<'txn> {
    /// Opens the tables in `txn`, creating them on first use.
    pub(crate) fn open(
        txn: &'txn redb::WriteTransaction,
        boundaries: Boundaries,
    ) -> Result<Self, StoreError> {
        let items = txn
            .open_table(RECORDS)
            .map_err(storage("open a sync table"))?;
        let mut levels = txn
            .open_table(LEVELS_TABLE)
            .map_err(storage("open a sync table"))?;
        // Every level's first bucket starts at the empty key.
        if levels
            .get(&[1u8][..])
            .map_err(storage("read a sync table"))?
            .is_none()
        {
            for level in 1..=LEVELS {
                levels
                    .insert(&[level][..], &encode(Fingerprint::default())[..])
                    .map_err(storage("write a sync table"))?;
            }
        }
        Ok(WriteView {
            view: View {
                items,
                levels,
                boundaries,
                failed: RefCell::new(None),
            },
            known: (0..LEVELS).map(|_| BTreeMap::new()).collect(),
        })
    }

    /// The view, with every change in the table: what it answers is up to
    /// date.
    #[cfg(test)]
    pub(crate) fn read(&mut self) -> Result<&View<redb::Table<'txn, KeyBytes, Bytes>>, StoreError> {
        self.flush()?;
        Ok(&self.view)
    }

    /// The records table, for reads of whole rows.
    pub(crate) fn records(&self) -> &redb::Table<'txn, KeyBytes, Bytes> {
        &self.view.items
    }

    /// Writes the changed buckets held in memory. Call it before the
    /// transaction commits: dropping the view writes them too, but can
    /// only log a failure.
    pub(crate) fn flush(&mut self) -> Result<(), StoreError> {
        self.flush_below(LEVELS + 1)
    }

    /// Writes the changed buckets of the levels below `level`.
    fn flush_below(&mut self, level: u8) -> Result<(), StoreError> {
        for (index, known) in self
            .known
            .iter_mut()
            .enumerate()
            .take(usize::from(level - 1))
        {
            for (boundary, bucket) in known.iter_mut() {
                if std::mem::take(&mut bucket.changed) {
                    let key = level_key(index as u8 + 1, boundary);
                    self.view
                        .levels
                        .insert(&key[..], &encode(bucket.fingerprint)[..])
                        .map_err(storage("write a sync table"))?;
                }
            }
        }
        Ok(())
    }

    /// Sets the state of `key` (a row with no envelope); returns the state
    /// it replaced.
    #[cfg(test)]
    pub(crate) fn insert(
        &mut self,
        key: &[u8],
        state: ItemState,
    ) -> Result<Option<ItemState>, StoreError> {
        Ok(self
            .insert_row(key, &row(state, false, &[]))?
            .map(|(old, _)| old))
    }

    /// Writes `row` (see [`row`]) under `key`; returns the state and delete
    /// flag of the row it replaced.
    pub(crate) fn insert_row(
        &mut self,
        key: &[u8],
        row: &[u8],
    ) -> Result<Option<(ItemState, bool)>, StoreError> {
        let (state, _) = row_state(row);
        let old = self
            .view
            .items
            .insert(key, row)
            .map_err(storage("write a sync table"))?
            .map(|old| row_state(old.value()));
        match old {
            Some((old, _)) => {
                // The same key: only its buckets' XOR changes.
                let delta = Fingerprint {
                    xor: old.digest ^ state.digest,
                    count: 0,
                };
                if delta.xor != 0 {
                    for level in 1..=LEVELS {
                        self.add_to_bucket(level, key, delta, false)?;
                    }
                }
            }
            None => {
                let top = self.view.boundaries.level(key);
                for level in 1..=LEVELS {
                    if level <= top {
                        self.split_at(level, key, one(state))?;
                    } else {
                        self.add_to_bucket(level, key, one(state), false)?;
                    }
                }
            }
        }
        Ok(old)
    }

    /// Removes `key`; returns the state it had.
    #[cfg(test)]
    pub(crate) fn remove(&mut self, key: &[u8]) -> Result<Option<ItemState>, StoreError> {
        Ok(self.remove_row(key)?.map(|(state, _)| state))
    }

    /// Removes `key`'s row; returns its state and delete flag.
    pub(crate) fn remove_row(
        &mut self,
        key: &[u8],
    ) -> Result<Option<(ItemState, bool)>, StoreError> {
        let removed = self
            .view
            .items
            .remove(key)
            .map_err(storage("write a sync table"))?
            .map(|old| row_state(old.value()));
        let Some((old, _)) = removed else {
            return Ok(None);
        };
        let top = self.view.boundaries.level(key);
        for level in 1..=LEVELS {
            if level <= top {
                self.merge_at(level, key, one(old))?;
            } else {
                self.add_to_bucket(level, key, one(old), true)?;
            }
        }
        Ok(removed)
    }

    /// The boundary of `level` whose bucket holds `key` (`strictly`: holds
    /// the position just before it), and that bucket's fingerprint. Known
    /// from this transaction, or read from the table and remembered.
    fn bucket_of(
        &mut self,
        level: u8,
        key: &[u8],
        strictly: bool,
    ) -> Result<(Vec<u8>, Fingerprint), StoreError> {
        let known = &self.known[usize::from(level - 1)];
        let upper = if strictly {
            Bound::Excluded(key)
        } else {
            Bound::Included(key)
        };
        if let Some((boundary, bucket)) = known
            .range::<[u8], _>((Bound::Unbounded, upper))
            .next_back()
        {
            let inside = match &bucket.end {
                None => true,
                Some(end) if strictly => key <= end.as_slice(),
                Some(end) => key < end.as_slice(),
            };
            if inside {
                return Ok((boundary.clone(), bucket.fingerprint));
            }
        }
        let start = level_key(level, &[]);
        let at = level_key(level, key);
        let mut found = None;
        self.view.levels.each(
            Bound::Included(&start),
            if strictly {
                Bound::Excluded(&at)
            } else {
                Bound::Included(&at)
            },
            true,
            &mut |k, v| {
                found = Some((k[1..].to_vec(), decode(v)));
                false
            },
        )?;
        let (boundary, fingerprint) = found.ok_or_else(lost_first_bucket)?;
        let known = &mut self.known[usize::from(level - 1)];
        if let Some(bucket) = known.get(&boundary) {
            return Ok((boundary, bucket.fingerprint));
        }
        let end = self.view.next_boundary(level, &boundary)?;
        self.known[usize::from(level - 1)].insert(
            boundary.clone(),
            Bucket {
                fingerprint,
                end,
                changed: false,
            },
        );
        Ok((boundary, fingerprint))
    }

    /// Sets the fingerprint of the bucket at `boundary` of `level`, found
    /// by [`bucket_of`](Self::bucket_of) just before.
    fn put_bucket(&mut self, level: u8, boundary: &[u8], fingerprint: Fingerprint) {
        if let Some(bucket) = self.known[usize::from(level - 1)].get_mut(boundary) {
            bucket.fingerprint = fingerprint;
            bucket.changed = true;
        }
    }

    /// Adds (or, `remove`, takes away) `item` in the bucket of `level`
    /// holding `key`.
    fn add_to_bucket(
        &mut self,
        level: u8,
        key: &[u8],
        item: Fingerprint,
        remove: bool,
    ) -> Result<(), StoreError> {
        let change = |bucket: Fingerprint| {
            if remove {
                minus(bucket, item)
            } else {
                plus(bucket, item)
            }
        };
        // Most writes of a batch land in a bucket it touched already:
        // updated in place, no lookup in the table, no key copied.
        let known = &mut self.known[usize::from(level - 1)];
        if let Some((_, bucket)) = known
            .range_mut::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()
        {
            if bucket.end.as_deref().is_none_or(|end| key < end) {
                bucket.fingerprint = change(bucket.fingerprint);
                bucket.changed = true;
                return Ok(());
            }
        }
        let (boundary, bucket) = self.bucket_of(level, key, false)?;
        self.put_bucket(level, &boundary, change(bucket));
        Ok(())
    }

    /// `key`, just inserted (levels below already updated), is a boundary
    /// of `level`: the bucket it fell in splits at it.
    fn split_at(&mut self, level: u8, key: &[u8], item: Fingerprint) -> Result<(), StoreError> {
        let (before, bucket) = self.bucket_of(level, key, true)?;
        let next = self.known[usize::from(level - 1)]
            .get(&before)
            .and_then(|b| b.end.clone());
        // The sum below reads the levels under this one from the table.
        self.flush_below(level)?;
        let moved = self.view.sum(level - 1, key, next.as_deref())?;
        self.put_bucket(level, &before, minus(bucket, minus(moved, item)));
        if let Some(bucket) = self.known[usize::from(level - 1)].get_mut(&before) {
            bucket.end = Some(key.to_vec());
        }
        // A new boundary goes in the table at once, so that lookups in the
        // table (`next_boundary`, sums) find it.
        self.view
            .levels
            .insert(&level_key(level, key)[..], &encode(moved)[..])
            .map_err(storage("write a sync table"))?;
        self.known[usize::from(level - 1)].insert(
            key.to_vec(),
            Bucket {
                fingerprint: moved,
                end: next,
                changed: false,
            },
        );
        Ok(())
    }

    /// `key`, being removed, is a boundary of `level`: its bucket joins the
    /// one before it.
    fn merge_at(&mut self, level: u8, key: &[u8], item: Fingerprint) -> Result<(), StoreError> {
        let stored = self
            .view
            .levels
            .remove(&level_key(level, key)[..])
            .map_err(storage("write a sync table"))?
            .map(|v| decode(v.value()))
            .unwrap_or_default();
        let (bucket, end) = match self.known[usize::from(level - 1)].remove(key) {
            Some(known) => (known.fingerprint, known.end),
            None => (stored, self.view.next_boundary(level, key)?),
        };
        let (before, previous) = self.bucket_of(level, key, true)?;
        self.put_bucket(level, &before, minus(plus(previous, bucket), item));
        if let Some(bucket) = self.known[usize::from(level - 1)].get_mut(&before) {
            bucket.end = end;
        }
        Ok(())
    }
}

fn lost_first_bucket() -> StoreError {
    // The empty key is a boundary of every level, written at open.
    StoreError::Storage {
        op: "find a sync bucket",
        source: super::error::EngineError::new(redb::StorageError::Corrupted(
            "a sync level lost its first bucket".into(),
        )),
    }
}

impl Drop for WriteView<'_> {
    fn drop(&mut self) {
        if let Err(error) = self.flush() {
            tracing::error!(%error, "could not write the sync index's buffered buckets");
        }
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
