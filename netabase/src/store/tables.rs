//! How models are laid out in redb: one table of records per model
//! (`netabase/<Model>/records`, encoded primary key -> payload) and one table
//! per secondary index (`netabase/<Model>/index/<field>`). A unique index maps
//! the encoded value to the primary key; a non-unique one has the key
//! `value ++ primary key ++ u16 length of the primary key` and an empty
//! value, so entries of one value sort together and in primary-key order (the
//! trailing length never decides an order: primary-key encodings are
//! prefix-free, so two of them differ before either ends).

use std::borrow::Cow;
use std::cmp::Ordering;
use std::ops::Bound;

use redb::{TableDefinition, TypeName};

use super::error::StoreError;
use crate::key::{prefix_successor, KeyBuf, KeyEncode};
use crate::model::{IndexSpec, NetabaseModel};

/// Largest encoded primary key or index value: the length has to fit the
/// two-byte suffix of non-unique index entries.
pub const MAX_KEY_BYTES: usize = u16::MAX as usize;

/// The value type of every netabase table: raw bytes.
pub(crate) type Bytes = &'static [u8];
/// A redb range over a netabase table.
pub(crate) type RawRange<'a> = redb::Range<'a, KeyBytes, Bytes>;
/// A read-only netabase table.
pub(crate) type ReadTable = redb::ReadOnlyTable<KeyBytes, Bytes>;
/// One entry yielded by a [`RawRange`].
pub(crate) type RawEntry<'a> = Result<
    (
        redb::AccessGuard<'a, KeyBytes>,
        redb::AccessGuard<'a, Bytes>,
    ),
    redb::StorageError,
>;

/// The key type of every netabase table: order-preserving encoded keys,
/// compared as bytes. Same order as `&[u8]`, but compares the first eight
/// bytes as one big-endian integer, which spares a `memcmp` call per B-tree
/// step for the common integer keys.
#[derive(Debug)]
pub(crate) enum KeyBytes {}

impl redb::Value for KeyBytes {
    type SelfType<'a>
        = &'a [u8]
    where
        Self: 'a;
    type AsBytes<'a>
        = &'a [u8]
    where
        Self: 'a;

    fn fixed_width() -> Option<usize> {
        None
    }

    fn from_bytes<'a>(data: &'a [u8]) -> &'a [u8]
    where
        Self: 'a,
    {
        data
    }

    fn as_bytes<'a, 'b: 'a>(value: &'a &'b [u8]) -> &'a [u8]
    where
        Self: 'b,
    {
        value
    }

    fn type_name() -> TypeName {
        TypeName::new("netabase::KeyBytes")
    }
}

impl redb::Key for KeyBytes {
    #[inline]
    fn compare(a: &[u8], b: &[u8]) -> Ordering {
        if let (Some(x), Some(y)) = (a.first_chunk::<8>(), b.first_chunk::<8>()) {
            let (x, y) = (u64::from_be_bytes(*x), u64::from_be_bytes(*y));
            if x != y {
                return x.cmp(&y);
            }
            return a[8..].cmp(&b[8..]);
        }
        a.cmp(b)
    }

    fn separator<'a>(left: &'a [u8], right: &'a [u8]) -> Cow<'a, [u8]> {
        // The order is plain byte order, so byte-string separators apply.
        <&[u8] as redb::Key>::separator(left, right)
    }

    fn min_encoded_key() -> Option<Cow<'static, [u8]>> {
        Some(Cow::Borrowed(&[]))
    }
}
/// Byte bounds in the form redb's `range` takes.
pub(crate) type RawBounds<'b> = (Bound<&'b [u8]>, Bound<&'b [u8]>);

pub(crate) fn records_table<M: NetabaseModel>() -> TableDefinition<'static, KeyBytes, Bytes> {
    TableDefinition::new(M::TABLE)
}

pub(crate) fn index_table(spec: &IndexSpec) -> TableDefinition<'static, KeyBytes, Bytes> {
    TableDefinition::new(spec.table)
}

/// The key of an index entry: the value alone for unique indexes; value,
/// primary key and the primary key's length otherwise.
pub(crate) fn index_entry_key(spec: &IndexSpec, value: &[u8], primary: &[u8]) -> KeyBuf {
    let mut key = KeyBuf::new();
    key.extend_from_slice(value);
    if !spec.unique {
        key.extend_from_slice(primary);
        // `check_key_len` has bounded the primary key, so this cannot truncate.
        key.extend_from_slice(&(primary.len() as u16).to_be_bytes());
    }
    key
}

/// The value stored beside an index entry: the primary key for unique
/// indexes, nothing otherwise (the key carries it).
pub(crate) fn index_entry_value<'a>(spec: &IndexSpec, primary: &'a [u8]) -> &'a [u8] {
    if spec.unique {
        primary
    } else {
        &[]
    }
}

/// The primary key an index entry points at, or `None` if the entry is malformed.
pub(crate) fn index_entry_primary<'a>(
    spec: &IndexSpec,
    key: &'a [u8],
    value: &'a [u8],
) -> Option<&'a [u8]> {
    if spec.unique {
        return Some(value);
    }
    let (rest, len) = key.split_last_chunk::<2>()?;
    let len = usize::from(u16::from_be_bytes(*len));
    rest.get(rest.len().checked_sub(len)?..)
}

/// Refuses keys too long for the index layout.
pub(crate) fn check_key_len(model: &'static str, key: &[u8]) -> Result<(), StoreError> {
    if key.len() > MAX_KEY_BYTES {
        return Err(StoreError::KeyTooLarge {
            model,
            size: key.len(),
            limit: MAX_KEY_BYTES,
        });
    }
    Ok(())
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

    /// Whether `key` lies within the bounds.
    pub(crate) fn contains(&self, key: &[u8]) -> bool {
        if self.empty {
            return false;
        }
        let above_start = match &self.start {
            Bound::Included(s) => key >= s.as_slice(),
            Bound::Excluded(s) => key > s.as_slice(),
            Bound::Unbounded => true,
        };
        let below_end = match &self.end {
            Bound::Included(e) => key <= e.as_slice(),
            Bound::Excluded(e) => key < e.as_slice(),
            Bound::Unbounded => true,
        };
        above_start && below_end
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

#[cfg(test)]
mod tests {
    use super::*;
    use redb::Key;

    #[test]
    fn key_compare_is_byte_order() {
        let keys: [&[u8]; 9] = [
            b"",
            b"\x00",
            b"\x00\x00\x00\x00\x00\x00\x00\x00",
            b"\x00\x00\x00\x00\x00\x00\x00\x00\x00",
            b"\x00\x00\x00\x00\x00\x00\x00\x01",
            b"abcdefgh",
            b"abcdefgha",
            b"abcdefgi",
            b"\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        ];
        for a in keys {
            for b in keys {
                assert_eq!(KeyBytes::compare(a, b), a.cmp(b), "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn index_entries_carry_their_primary_key() {
        let unique = IndexSpec {
            name: "u",
            table: "t",
            unique: true,
        };
        let plain = IndexSpec {
            unique: false,
            ..unique
        };
        let key = index_entry_key(&plain, b"value\0\0", b"pk\0\0");
        assert_eq!(
            index_entry_primary(&plain, key.as_slice(), index_entry_value(&plain, b"pk\0\0")),
            Some(&b"pk\0\0"[..])
        );
        let key = index_entry_key(&unique, b"v", b"pk");
        assert_eq!(key.as_slice(), b"v");
        assert_eq!(index_entry_primary(&unique, b"v", b"pk"), Some(&b"pk"[..]));
        // Malformed entries are refused, not sliced out of bounds.
        assert_eq!(index_entry_primary(&plain, b"\x00", b""), None);
        assert_eq!(index_entry_primary(&plain, b"\x00\x09", b""), None);
    }
}
