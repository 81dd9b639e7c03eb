//! Reading a model's tree, the same way in every kind of tree.

use std::ops::RangeBounds;

use redb::{ReadableTable, ReadableTableMetadata};

use super::error::{storage, StoreError};
use super::records::{get_record, Records};
use super::tables::{self, ByteBounds, Bytes, KeyBytes};
use crate::key::{KeyBuf, KeyEncode};
use crate::model::{NetabaseModel, SecondaryKey};

/// Reads on a model's tree. Implemented by [`Tree`](super::Tree) (each call in
/// its own read transaction), [`ReadTree`](super::ReadTree) and
/// [`WriteTree`](super::WriteTree) (within their transaction; a write tree sees
/// its own uncommitted writes).
///
/// The generated `<Model>Queries` trait adds lookups named after the indexed
/// fields on top of this one (`by_email`, `by_age_range`, ...).
pub trait Lookup<M: NetabaseModel> {
    /// The record with this primary key, if any.
    ///
    /// # Errors
    ///
    /// Fails if the database cannot be read or the stored record does not decode.
    fn get(&self, key: &M::Key) -> Result<Option<M>, StoreError>;

    /// Whether a record with this primary key exists (without decoding it).
    ///
    /// # Errors
    ///
    /// Fails if the database cannot be read.
    fn contains(&self, key: &M::Key) -> Result<bool, StoreError>;

    /// Number of records.
    ///
    /// # Errors
    ///
    /// Fails if the database cannot be read.
    fn len(&self) -> Result<u64, StoreError>;

    /// Whether there are no records.
    ///
    /// # Errors
    ///
    /// Fails if the database cannot be read.
    fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }

    /// Every record in primary-key order.
    ///
    /// # Errors
    ///
    /// Fails if the database cannot be read; each item fails if its record
    /// does not decode.
    fn iter(&self) -> Result<Records<'_, M>, StoreError>;

    /// The records whose primary key lies in `range`, in key order.
    ///
    /// # Errors
    ///
    /// As [`iter`](Self::iter).
    fn range<R: RangeBounds<M::Key>>(&self, range: R) -> Result<Records<'_, M>, StoreError>;

    /// The records holding this secondary-key value, in primary-key order.
    ///
    /// # Errors
    ///
    /// Fails if the database cannot be read or a record does not decode.
    fn find(&self, key: &M::SecondaryKey) -> Result<Vec<M>, StoreError> {
        let mut value = KeyBuf::new();
        key.encode_key(&mut value);
        self.index_get(key.index(), &RawKey(value.as_slice()))
    }

    /// The record with this primary key, given in any form that encodes
    /// as the key does. Used by generated lookups; prefer `by_<key field>`.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    #[doc(hidden)]
    fn get_by<K: KeyEncode + ?Sized>(&self, key: &K) -> Result<Option<M>, StoreError>;

    /// The records whose primary key, given in any form that encodes as
    /// the key does, lies in `range`. Used by generated lookups; prefer
    /// `by_<key field>_range`.
    ///
    /// # Errors
    ///
    /// As [`range`](Self::range).
    #[doc(hidden)]
    fn key_range<K: KeyEncode, R: RangeBounds<K>>(
        &self,
        range: R,
    ) -> Result<Records<'_, M>, StoreError>;

    /// Records whose index `index` holds `value`. Used by generated lookups;
    /// prefer `by_<field>` or [`find`](Self::find).
    ///
    /// # Errors
    ///
    /// Fails if the database cannot be read or a record does not decode.
    #[doc(hidden)]
    fn index_get<K: KeyEncode + ?Sized>(
        &self,
        index: usize,
        value: &K,
    ) -> Result<Vec<M>, StoreError>;

    /// The record whose unique index `index` holds `value`. Used by generated
    /// lookups; prefer `by_<field>`.
    ///
    /// # Errors
    ///
    /// Fails if the database cannot be read or the record does not decode.
    #[doc(hidden)]
    fn index_get_unique<K: KeyEncode + ?Sized>(
        &self,
        index: usize,
        value: &K,
    ) -> Result<Option<M>, StoreError>;

    /// Records whose index `index` holds a value in `range`, in value order.
    /// Used by generated lookups; prefer `by_<field>_range`.
    ///
    /// # Errors
    ///
    /// Fails if the database cannot be read or a record does not decode.
    #[doc(hidden)]
    fn index_range<K: KeyEncode, R: RangeBounds<K>>(
        &self,
        index: usize,
        range: R,
    ) -> Result<Vec<M>, StoreError>;
}

/// Already-encoded key bytes, passed through as they are.
struct RawKey<'a>(&'a [u8]);

impl KeyEncode for RawKey<'_> {
    fn encode_key(&self, out: &mut KeyBuf) {
        out.extend_from_slice(self.0);
    }
}

/// The tables a tree reads from; lets one implementation serve read and write
/// trees.
pub(crate) trait TableAccess<M: NetabaseModel> {
    type Table: ReadableTable<KeyBytes, Bytes>;

    /// The records table; `None` if it was never created (an empty tree).
    fn records(&self) -> Option<&Self::Table>;

    /// Index table `index`; `None` if it was never created.
    fn index(&self, index: usize) -> Result<Option<&Self::Table>, StoreError>;

    /// A range over the records table that lives as long as the tree.
    fn records_range(&self, bounds: &ByteBounds) -> Result<Records<'_, M>, StoreError> {
        let Some(records) = self.records() else {
            return Ok(Records::new(None));
        };
        let Some(range) = bounds.as_range() else {
            return Ok(Records::new(None));
        };
        let range = records
            .range::<&[u8]>(range)
            .map_err(storage("read records"))?;
        Ok(Records::new(Some(range)))
    }
}

pub(crate) fn get<M: NetabaseModel, A: TableAccess<M>, K: KeyEncode + ?Sized>(
    tree: &A,
    key: &K,
) -> Result<Option<M>, StoreError> {
    let mut buf = KeyBuf::new();
    key.encode_key(&mut buf);
    get_record(tree.records(), buf.as_slice())
}

pub(crate) fn contains<M: NetabaseModel, A: TableAccess<M>>(
    tree: &A,
    key: &M::Key,
) -> Result<bool, StoreError> {
    let Some(records) = tree.records() else {
        return Ok(false);
    };
    let mut buf = KeyBuf::new();
    key.encode_key(&mut buf);
    Ok(records
        .get(buf.as_slice())
        .map_err(storage("read a record"))?
        .is_some())
}

pub(crate) fn len<M: NetabaseModel, A: TableAccess<M>>(tree: &A) -> Result<u64, StoreError> {
    match tree.records() {
        Some(records) => records.len().map_err(storage("count records")),
        None => Ok(0),
    }
}

pub(crate) fn range<M: NetabaseModel, A: TableAccess<M>, K: KeyEncode, R: RangeBounds<K>>(
    tree: &A,
    range: R,
) -> Result<Records<'_, M>, StoreError> {
    tree.records_range(&ByteBounds::new(range.start_bound(), range.end_bound()))
}

pub(crate) fn index_get_unique<M: NetabaseModel, A: TableAccess<M>, K: KeyEncode + ?Sized>(
    tree: &A,
    index: usize,
    value: &K,
) -> Result<Option<M>, StoreError> {
    let spec = spec::<M>(index)?;
    let Some(table) = tree.index(index)? else {
        return Ok(None);
    };
    let mut buf = KeyBuf::new();
    value.encode_key(&mut buf);
    let Some(primary) = table
        .get(buf.as_slice())
        .map_err(storage("read an index"))?
    else {
        return Ok(None);
    };
    match get_record(tree.records(), primary.value())? {
        Some(record) => Ok(Some(record)),
        None => Err(StoreError::DanglingIndex {
            model: M::NAME,
            index: spec.name,
        }),
    }
}

pub(crate) fn index_get<M: NetabaseModel, A: TableAccess<M>, K: KeyEncode + ?Sized>(
    tree: &A,
    index: usize,
    value: &K,
) -> Result<Vec<M>, StoreError> {
    let mut buf = KeyBuf::new();
    value.encode_key(&mut buf);
    index_scan(tree, index, &ByteBounds::prefix(buf.as_slice()))
}

pub(crate) fn index_range<M: NetabaseModel, A: TableAccess<M>, K: KeyEncode, R: RangeBounds<K>>(
    tree: &A,
    index: usize,
    range: R,
) -> Result<Vec<M>, StoreError> {
    index_scan(
        tree,
        index,
        &ByteBounds::new(range.start_bound(), range.end_bound()),
    )
}

/// The encoded primary keys of up to `limit` records whose index `index`
/// holds exactly the encoded `value`, in key order, without reading the
/// records: what a node serves a peer's remote query from.
#[cfg_attr(not(feature = "node"), allow(dead_code))]
pub(crate) fn index_primaries<M: NetabaseModel, A: TableAccess<M>>(
    tree: &A,
    index: usize,
    value: &[u8],
    limit: usize,
) -> Result<Vec<Vec<u8>>, StoreError> {
    let spec = spec::<M>(index)?;
    let bounds = ByteBounds::prefix(value);
    let (Some(table), Some(range)) = (tree.index(index)?, bounds.as_range()) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for entry in table
        .range::<&[u8]>(range)
        .map_err(storage("read an index"))?
        .take(limit)
    {
        let (key, primary) = entry.map_err(storage("read an index"))?;
        let primary = tables::index_entry_primary(spec, key.value(), primary.value()).ok_or(
            StoreError::DanglingIndex {
                model: M::NAME,
                index: spec.name,
            },
        )?;
        out.push(primary.to_vec());
    }
    Ok(out)
}

/// Resolves every index entry within `bounds` to its record.
pub(crate) fn index_scan<M: NetabaseModel, A: TableAccess<M>>(
    tree: &A,
    index: usize,
    bounds: &ByteBounds,
) -> Result<Vec<M>, StoreError> {
    let spec = spec::<M>(index)?;
    let (Some(table), Some(range)) = (tree.index(index)?, bounds.as_range()) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for entry in table
        .range::<&[u8]>(range)
        .map_err(storage("read an index"))?
    {
        let (key, value) = entry.map_err(storage("read an index"))?;
        let dangling = || StoreError::DanglingIndex {
            model: M::NAME,
            index: spec.name,
        };
        let primary =
            tables::index_entry_primary(spec, key.value(), value.value()).ok_or_else(dangling)?;
        out.push(get_record(tree.records(), primary)?.ok_or_else(dangling)?);
    }
    Ok(out)
}

/// Index `index` of `M`. Generated code only passes valid indexes; a
/// hand-written `SecondaryKey` might not, so this is an error, not a panic.
pub(crate) fn spec<M: NetabaseModel>(
    index: usize,
) -> Result<&'static crate::model::IndexSpec, StoreError> {
    M::INDEXES.get(index).ok_or(StoreError::NoSuchIndex {
        model: M::NAME,
        index,
    })
}

/// Implements [`Lookup`] for a type that implements [`TableAccess`].
macro_rules! impl_lookup {
    ($($ty:tt)*) => {
        impl<M: $crate::model::NetabaseModel> $crate::store::Lookup<M> for $($ty)* {
            fn get(&self, key: &M::Key) -> Result<Option<M>, StoreError> {
                lookup::get(self, key)
            }
            fn contains(&self, key: &M::Key) -> Result<bool, StoreError> {
                lookup::contains(self, key)
            }
            fn len(&self) -> Result<u64, StoreError> {
                lookup::len(self)
            }
            fn iter(&self) -> Result<Records<'_, M>, StoreError> {
                self.records_range(&ByteBounds::new::<[u8]>(
                    std::ops::Bound::Unbounded,
                    std::ops::Bound::Unbounded,
                ))
            }
            fn range<R: std::ops::RangeBounds<M::Key>>(
                &self,
                range: R,
            ) -> Result<Records<'_, M>, StoreError> {
                lookup::range(self, range)
            }
            fn get_by<K: KeyEncode + ?Sized>(&self, key: &K) -> Result<Option<M>, StoreError> {
                lookup::get(self, key)
            }
            fn key_range<K: KeyEncode, R: std::ops::RangeBounds<K>>(
                &self,
                range: R,
            ) -> Result<Records<'_, M>, StoreError> {
                lookup::range(self, range)
            }
            fn index_get<K: KeyEncode + ?Sized>(
                &self,
                index: usize,
                value: &K,
            ) -> Result<Vec<M>, StoreError> {
                lookup::index_get(self, index, value)
            }
            fn index_get_unique<K: KeyEncode + ?Sized>(
                &self,
                index: usize,
                value: &K,
            ) -> Result<Option<M>, StoreError> {
                lookup::index_get_unique(self, index, value)
            }
            fn index_range<K: KeyEncode, R: std::ops::RangeBounds<K>>(
                &self,
                index: usize,
                range: R,
            ) -> Result<Vec<M>, StoreError> {
                lookup::index_range(self, index, range)
            }
        }
    };
}
pub(crate) use impl_lookup;
