//! Migrating a model's records to its newest version, in the transaction
//! that finds them stored at an older one (see [`layout`](super::layout)):
//! each record is read through the model's chain of versions, written back
//! as the newest, and its index entries made from the result, in one pass.
//! All or nothing: a record the chain refuses fails the whole migration,
//! naming its key and the reason, and the file keeps its old version.

use super::error::{storage, StoreError};
use super::tables;
use crate::model::NetabaseModel;

/// Readies `txn` for `M`'s records to be rewritten: the envelopes a node
/// keeps split with them are kept whole (they are joined with the typed
/// rows about to change, see `rows`), and `M`'s indexes are emptied, to be
/// filled from the rewritten records.
pub(crate) fn prepare<M: NetabaseModel>(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    super::rows::keep_whole(txn, &M::ID.0.to_be_bytes())?;
    for spec in M::INDEXES {
        txn.delete_table(tables::index_table(spec))
            .map_err(storage("clear an index"))?;
    }
    Ok(())
}

/// What a record of `M` stored at version `from` becomes (from its key and
/// bytes): read through the chain; refused, naming the key, if the chain
/// refuses it or it changes the record's key.
pub(crate) fn converter<M: NetabaseModel>(
    from: u32,
) -> impl FnMut(&[u8], &[u8]) -> Result<M, StoreError> {
    move |key, bytes| {
        let failed = |reason: String| StoreError::Migration {
            model: M::NAME,
            from,
            to: M::VERSION,
            key: describe::<M>(key),
            reason,
        };
        let record = M::decode_version(from, bytes).map_err(|e| failed(e.to_string()))?;
        let mut own_key = crate::key::KeyBuf::new();
        record.encode_key(&mut own_key);
        if own_key.as_slice() != key {
            return Err(failed(
                "the conversion changed the record's primary key".into(),
            ));
        }
        Ok(record)
    }
}

/// A record's key as errors show it: the typed key, else its bytes in hex.
fn describe<M: NetabaseModel>(key: &[u8]) -> String {
    match M::key_from_bytes(key) {
        Some(key) => format!("{key:?}"),
        None => super::rows::hex(key),
    }
}
