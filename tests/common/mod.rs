//! Models and checks shared by the integration tests.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fmt::Debug;

use netabase::model::IndexEntries;
use netabase::store::Lookup;
use netabase::{KeyEncode, NetabaseModel};

/// A nested field type: derives bincode through netabase's re-export, so the
/// test crate has no bincode dependency of its own.
#[derive(Clone, Debug, PartialEq, Eq, netabase::Encode, netabase::Decode)]
#[bincode(crate = "netabase::bincode")]
pub struct Address {
    pub city: String,
    pub zip: u32,
}

#[derive(NetabaseModel, Clone, Debug, PartialEq, Eq)]
pub struct User {
    #[primary_key]
    pub id: u64,
    pub name: String,
    #[secondary_key(unique)]
    pub email: String,
    #[secondary_key]
    pub age: u32,
    pub address: Option<Address>,
}

#[derive(NetabaseModel, Clone, Debug, PartialEq, Eq)]
pub struct Post {
    #[primary_key]
    pub slug: String,
    pub body: String,
    #[secondary_key]
    pub tags: Vec<String>,
    #[secondary_key]
    pub editor: Option<String>,
    #[secondary_key]
    pub score: i64,
    #[secondary_key(unique)]
    pub checksum: [u8; 4],
}

pub fn user(id: u64, email: &str, age: u32) -> User {
    User {
        id,
        name: format!("user {id}"),
        email: email.to_string(),
        age,
        address: None,
    }
}

pub fn post(slug: &str, tags: &[&str], editor: Option<&str>, score: i64) -> Post {
    let mut checksum = [0u8; 4];
    for (i, b) in slug.bytes().enumerate() {
        checksum[i % 4] = checksum[i % 4].wrapping_mul(31).wrapping_add(b);
    }
    Post {
        slug: slug.to_string(),
        body: format!("body of {slug}"),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        editor: editor.map(str::to_string),
        score,
        checksum,
    }
}

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
