//! The traits `#[derive(NetabaseModel)]` implements.

use core::fmt::Debug;
use core::hash::Hash;

use crate::key::{KeyBuf, KeyEncode};

/// A type stored in a netabase tree. Implement it with
/// `#[derive(NetabaseModel)]`; hand-written impls must keep `index_entries`
/// consistent with `INDEXES`.
pub trait NetabaseModel:
    bincode::Encode + bincode::Decode<()> + Sized + Send + Sync + 'static
{
    /// The model's stored name, its identity on disk and on the wire: the
    /// one given with `#[netabase(name = "..")]`, else the module path and
    /// the struct's ident (`my_app::models::User`). Moving or renaming a
    /// model without an explicit name gives it a new identity (and new,
    /// empty tables); name it explicitly to keep its data and its peers.
    const NAME: &'static str;
    /// Name of the redb table holding the records.
    const TABLE: &'static str;
    /// Short stable id derived from [`NAME`](Self::NAME).
    const ID: ModelId = ModelId::from_name(Self::NAME);
    /// A hash of the model's fields (names, types and key roles, in order):
    /// two different types registered under one name are told apart by it.
    const SCHEMA: u64 = 0;
    /// The secondary indexes, in field order; entry `i` is index number `i`.
    const INDEXES: &'static [IndexSpec];
    /// This model's version: 1, unless the derive is given
    /// `#[netabase(version = N, from = Previous)]`. A store holding records
    /// of an older version migrates them to this one when the model is
    /// registered (see [`decode_version`](Self::decode_version)).
    const VERSION: u32 = 1;

    /// The primary-key newtype (`UserKey`).
    type Key: KeyEncode + Clone + Debug + Eq + Ord + Hash + Send + Sync + 'static;
    /// The enum over this model's secondary keys (`UserSecondaryKey`).
    type SecondaryKey: SecondaryKey<Model = Self>;
    /// Who may write records of this model, checked by every peer: the
    /// rule named with `#[netabase(write = "..")]` ([`rules`](crate::rules)),
    /// [`Anyone`](crate::rules::Anyone) by default.
    type Rule: crate::rules::WriteRule<Self>;

    /// Decodes a record stored at `version` of this model: this version's
    /// payload, or an older version's read through the chain of `from`
    /// models (each step its `From` or `TryFrom`). The derive writes it for
    /// versioned models; the default reads this version only.
    ///
    /// # Errors
    ///
    /// [`VersionError`]: bytes that are not a record of
    /// that version, a version this build does not know, or a conversion
    /// that refused the record.
    fn decode_version(version: u32, bytes: &[u8]) -> Result<Self, VersionError> {
        if version == Self::VERSION {
            decode_own(bytes)
        } else {
            Err(VersionError::Unknown {
                model: Self::NAME,
                version,
                known: Self::VERSION,
            })
        }
    }

    /// This record's primary key.
    fn key(&self) -> Self::Key;
    /// Encodes this record's primary key without building the newtype.
    fn encode_key(&self, out: &mut KeyBuf);
    /// Appends one entry per secondary-index value of this record.
    fn index_entries(&self, out: &mut IndexEntries);
    /// This record's secondary keys, typed.
    fn secondary_keys(&self) -> Vec<Self::SecondaryKey>;

    /// The owner its `#[owner]` field names (for the owner rule); `None`
    /// for a model without one.
    fn owner(&self) -> Option<libp2p_identity::PeerId> {
        None
    }

    /// The typed primary key from its encoding (an event's `key`); `None`
    /// if the bytes are not exactly one key of this model, or its key type
    /// cannot decode (see [`KeyType::decode_key`](crate::KeyType::decode_key)).
    fn key_from_bytes(bytes: &[u8]) -> Option<Self::Key> {
        let _ = bytes;
        None
    }
}

/// One secondary index of a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexSpec {
    /// The indexed field's name.
    pub name: &'static str,
    /// Name of the redb table holding the index.
    pub table: &'static str,
    /// Whether a value may belong to at most one record.
    pub unique: bool,
}

/// A value of one of a model's secondary indexes (the generated
/// `UserSecondaryKey` enum).
pub trait SecondaryKey: Clone + Debug + Eq + Hash + Send + Sync + 'static {
    /// The model this key belongs to.
    type Model: NetabaseModel;
    /// The index this value belongs to (a position in `Model::INDEXES`).
    fn index(&self) -> usize;
    /// Appends the order-preserving encoding of the value.
    fn encode_key(&self, out: &mut KeyBuf);
}

/// A per-field key type (`UserEmailKey`), tied to its model and index.
pub trait IndexKey: KeyEncode {
    /// The model this key belongs to.
    type Model: NetabaseModel;
    /// The index this key type belongs to (a position in `Model::INDEXES`).
    const INDEX: usize;
}

/// A model's short id: FNV-1a of its name. Two registered models with the same
/// id are refused (see the node), so ids are unambiguous where they are used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModelId(pub u32);

impl ModelId {
    /// The id of a model with this name.
    pub const fn from_name(name: &str) -> Self {
        let bytes = name.as_bytes();
        let mut hash: u32 = 0x811c_9dc5;
        let mut i = 0;
        while i < bytes.len() {
            hash ^= bytes[i] as u32;
            hash = hash.wrapping_mul(0x0100_0193);
            i += 1;
        }
        ModelId(hash)
    }
}

/// The encoded secondary-index values of one record, in one reusable buffer.
#[derive(Default, Debug, Clone)]
pub struct IndexEntries {
    // Values are encoded straight into this buffer, no copy.
    bytes: KeyBuf,
    spans: Vec<(usize, usize, usize)>,
}

impl IndexEntries {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the value `key` of index `index`.
    #[inline]
    pub fn push<K: KeyEncode + ?Sized>(&mut self, index: usize, key: &K) {
        let start = self.bytes.len();
        key.encode_key(&mut self.bytes);
        self.spans.push((index, start, self.bytes.len()));
    }

    /// Removes every entry, keeping capacity.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.spans.clear();
    }

    /// `(index, encoded value)` pairs in the order pushed.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &[u8])> + '_ {
        self.spans
            .iter()
            .map(|&(index, start, end)| (index, &self.bytes.as_slice()[start..end]))
    }

    /// Whether `(index, value)` is among the entries.
    pub fn contains(&self, index: usize, value: &[u8]) -> bool {
        self.iter().any(|(i, v)| i == index && v == value)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// True if there are no entries.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_id_is_stable() {
        // FNV-1a reference values: changing them would change on-disk keys.
        assert_eq!(ModelId::from_name("").0, 0x811c_9dc5);
        assert_eq!(ModelId::from_name("a").0, 0xe40c_292c);
        assert_ne!(ModelId::from_name("User"), ModelId::from_name("Post"));
    }

    #[test]
    fn index_entries_round_trip() {
        let mut entries = IndexEntries::new();
        entries.push(0, "a");
        entries.push(1, &7u32);
        let collected: Vec<_> = entries.iter().map(|(i, v)| (i, v.to_vec())).collect();
        assert_eq!(
            collected,
            vec![(0, vec![b'a', 0, 0]), (1, vec![0, 0, 0, 7])]
        );
        assert!(entries.contains(1, &[0, 0, 0, 7]));
        assert!(!entries.contains(0, &[0, 0, 0, 7]));
        entries.clear();
        assert!(entries.is_empty());
    }
}

/// Why a record stored at some version of a model could not be read as the
/// version this build knows.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VersionError {
    /// The bytes are not a record of the version they were stored at.
    #[error("the bytes are not a `{model}` record of version {version}: {detail}")]
    Decode {
        /// The model's stored name.
        model: &'static str,
        /// The version they were read as.
        version: u32,
        /// What the decoder said.
        detail: String,
    },
    /// A version this build does not know: newer than its newest, or older
    /// than the chain of `from` models reaches.
    #[error("`{model}` version {version} is not one this build reads (its newest is {known})")]
    Unknown {
        /// The model's stored name.
        model: &'static str,
        /// The version the record was stored at.
        version: u32,
        /// The newest version this build knows.
        known: u32,
    },
    /// The conversion into version `to` (the user's `TryFrom`) refused it.
    #[error("`{model}` version {to} refused a record of the version before it: {reason}")]
    Refused {
        /// The model's stored name.
        model: &'static str,
        /// The version it was converted into.
        to: u32,
        /// What the conversion said.
        reason: String,
    },
}

/// Largest payload encoded or decoded (`codec::MAX_PAYLOAD_BYTES`).
pub(crate) const PAYLOAD_LIMIT: usize = 64 * 1024 * 1024;

/// Decodes a payload of `M`'s own version, as the store encodes it (bincode's
/// standard configuration, every byte consumed, within the payload limit,
/// so a damaged length cannot ask for more memory).
#[doc(hidden)]
pub fn decode_own<M: NetabaseModel>(bytes: &[u8]) -> Result<M, VersionError> {
    const LIMIT: usize = PAYLOAD_LIMIT;
    let failed = |detail: String| VersionError::Decode {
        model: M::NAME,
        version: M::VERSION,
        detail,
    };
    let config = bincode::config::standard().with_limit::<LIMIT>();
    let (record, read) =
        bincode::decode_from_slice::<M, _>(bytes, config).map_err(|e| failed(e.to_string()))?;
    if read != bytes.len() {
        return Err(failed(format!("{} bytes left over", bytes.len() - read)));
    }
    Ok(record)
}
