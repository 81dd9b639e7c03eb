//! Models and checks shared by the integration tests.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fmt::Debug;

use netabase::model::IndexEntries;
use netabase::store::Lookup;
use netabase::{KeyEncode, NetabaseModel};
pub use netabase_workspace::models::*;

/// Checks that every secondary index holds exactly the entries derived from
/// the records, in index order: nothing missing, nothing stale.
pub fn assert_indexes_consistent<M, T>(tree: &T)
where
    M: NetabaseModel + Debug + PartialEq,
    T: Lookup<M>,
{
    let records: Vec<M> = tree.iter().unwrap().collect::<Result<_, _>>().unwrap();
    for (index, spec) in M::INDEXES.iter().enumerate() {
        let mut expected = BTreeSet::new();
        for record in &records {
            let mut entries = IndexEntries::new();
            record.index_entries(&mut entries);
            let key = record.key().to_key_bytes().as_slice().to_vec();
            for (i, value) in entries.iter() {
                if i == index {
                    expected.insert((value.to_vec(), key.clone()));
                }
            }
        }
        let expected_keys: Vec<Vec<u8>> = expected.into_iter().map(|(_, k)| k).collect();
        let found: Vec<Vec<u8>> = tree
            .index_range::<u8, _>(index, ..)
            .unwrap()
            .iter()
            .map(|r| r.key().to_key_bytes().as_slice().to_vec())
            .collect();
        assert_eq!(found, expected_keys, "index `{}` out of step", spec.name);
    }
}
