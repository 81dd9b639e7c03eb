//! How models are laid out in redb: one table of records per model
//! (`netabase/<Model>/records`, encoded primary key -> payload) and one table
//! per secondary index (`netabase/<Model>/index/<field>`). A unique index maps
//! the encoded value to the primary key; a non-unique one maps
//! `value ++ primary key` to the primary key, so entries of one value sort
//! together and in primary-key order.

use std::ops::Bound;

use redb::TableDefinition;

use crate::key::{prefix_successor, KeyBuf, KeyEncode};
use crate::model::{IndexSpec, NetabaseModel};

/// The key and value type of every netabase table: raw bytes.
pub(crate) type Bytes = &'static [u8];
/// A redb range over a netabase table.
pub(crate) type RawRange<'a> = redb::Range<'a, Bytes, Bytes>;
/// A read-only netabase table.
pub(crate) type ReadTable = redb::ReadOnlyTable<Bytes, Bytes>;
/// One entry yielded by a [`RawRange`].
pub(crate) type RawEntry<'a> =
    Result<(redb::AccessGuard<'a, Bytes>, redb::AccessGuard<'a, Bytes>), redb::StorageError>;
/// Byte bounds in the form redb's `range` takes.
pub(crate) type RawBounds<'b> = (Bound<&'b [u8]>, Bound<&'b [u8]>);

pub(crate) fn records_table<M: NetabaseModel>() -> TableDefinition<'static, Bytes, Bytes> {
    TableDefinition::new(M::TABLE)
}

pub(crate) fn index_table(spec: &IndexSpec) -> TableDefinition<'static, Bytes, Bytes> {
    TableDefinition::new(spec.table)
}

/// The key of an index entry: the value alone for unique indexes, value then
/// primary key otherwise.
pub(crate) fn index_entry_key(spec: &IndexSpec, value: &[u8], primary: &[u8]) -> KeyBuf {
    let mut key = KeyBuf::new();
    key.extend_from_slice(value);
    if !spec.unique {
        key.extend_from_slice(primary);
    }
    key
}

/// Encoded byte bounds covering exactly the keys whose value lies within the
/// given bounds. Works for both index layouts because encodings are
/// prefix-free: every entry of value `v` starts with `enc(v)` and sorts below
/// `prefix_successor(enc(v))`.
pub(crate) struct ByteBounds {
    start: Bound<KeyBuf>,
    end: Bound<KeyBuf>,
    /// Set when the bounds admit nothing, e.g. "above the largest value".
    empty: bool,
}

impl ByteBounds {
    pub(crate) fn new<K: KeyEncode + ?Sized>(start: Bound<&K>, end: Bound<&K>) -> Self {
        let mut empty = false;
        let start = match start {
            Bound::Included(v) => Bound::Included(v.to_key_bytes()),
            Bound::Excluded(v) => match prefix_successor(v.to_key_bytes().as_slice()) {
                Some(succ) => Bound::Included(succ),
                // Nothing sorts above an all-0xFF encoding's entries.
                None => {
                    empty = true;
                    Bound::Unbounded
                }
            },
            Bound::Unbounded => Bound::Unbounded,
        };
        let end = match end {
            Bound::Included(v) => match prefix_successor(v.to_key_bytes().as_slice()) {
                Some(succ) => Bound::Excluded(succ),
                None => Bound::Unbounded,
            },
            Bound::Excluded(v) => Bound::Excluded(v.to_key_bytes()),
            Bound::Unbounded => Bound::Unbounded,
        };
        ByteBounds { start, end, empty }
    }

    /// Every key that starts with `prefix`.
    pub(crate) fn prefix(prefix: &[u8]) -> Self {
        let mut start = KeyBuf::new();
        start.extend_from_slice(prefix);
        let end = match prefix_successor(prefix) {
            Some(succ) => Bound::Excluded(succ),
            None => Bound::Unbounded,
        };
        ByteBounds {
            start: Bound::Included(start),
            end,
            empty: false,
        }
    }

    /// The bounds as redb takes them; `None` if the range is empty (redb
    /// panics on a start above the end).
    pub(crate) fn as_range(&self) -> Option<RawBounds<'_>> {
        let start = as_ref(&self.start);
        let end = as_ref(&self.end);
        let empty = self.empty
            || match (start, end) {
                (Bound::Included(s), Bound::Included(e)) => s > e,
                (Bound::Included(s) | Bound::Excluded(s), Bound::Excluded(e))
                | (Bound::Excluded(s), Bound::Included(e)) => s >= e,
                _ => false,
            };
        (!empty).then_some((start, end))
    }
}

fn as_ref(bound: &Bound<KeyBuf>) -> Bound<&[u8]> {
    match bound {
        Bound::Included(k) => Bound::Included(k.as_slice()),
        Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}
