//! Iterating records straight out of redb's pages, decoding each on demand.

use std::marker::PhantomData;

use redb::ReadableTable;

use super::error::{storage, StoreError};
use super::tables::{Bytes, KeyBytes, RawEntry, RawRange};
use crate::codec;
use crate::model::NetabaseModel;

/// Records of one model in primary-key order, decoded as they are reached.
/// Iterates from either end (`.rev()` gives descending order).
pub struct Records<'a, M> {
    range: Option<RawRange<'a>>,
    _model: PhantomData<fn() -> M>,
}

impl<'a, M: NetabaseModel> Records<'a, M> {
    pub(crate) fn new(range: Option<RawRange<'a>>) -> Self {
        Records {
            range,
            _model: PhantomData,
        }
    }

    fn decode(item: Option<RawEntry<'a>>) -> Option<Result<M, StoreError>> {
        Some(match item? {
            Ok((_, value)) => codec::decode(value.value()).map_err(StoreError::from),
            Err(error) => Err(storage("read a record")(error)),
        })
    }
}

impl<M: NetabaseModel> Iterator for Records<'_, M> {
    type Item = Result<M, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        Self::decode(self.range.as_mut()?.next())
    }
}

impl<M: NetabaseModel> DoubleEndedIterator for Records<'_, M> {
    fn next_back(&mut self) -> Option<Self::Item> {
        Self::decode(self.range.as_mut()?.next_back())
    }
}

/// Decodes the record stored under `key`, if any.
pub(crate) fn get_record<M: NetabaseModel, T: ReadableTable<KeyBytes, Bytes>>(
    records: Option<&T>,
    key: &[u8],
) -> Result<Option<M>, StoreError> {
    let Some(records) = records else {
        return Ok(None);
    };
    match records.get(key).map_err(storage("read a record"))? {
        Some(value) => Ok(Some(codec::decode(value.value())?)),
        None => Ok(None),
    }
}
