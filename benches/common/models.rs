//! The bench models and their hand-written floors.
//!
//! Each floor keeps what a careful hand-written layer over redb would keep for
//! the same model: a records table `u64 -> &[u8]` of bincode payloads, a
//! unique index `&str -> u64`, and non-unique indexes as `(value, id) -> ()`
//! tables, so one value's entries sort together and in id order. `Sample`
//! fills integer fields with the seed truncated, so `u8` fields repeat every
//! 256 records and range lookups find several.

use std::ops::RangeInclusive;

use redb::{ReadOnlyTable, ReadableTable, Table, TableDefinition};

use super::{BenchModel, RawRecords};

/// A model with a unique and a non-unique index.
#[derive(netabase::NetabaseModel, Clone, Debug, PartialEq)]
pub struct User {
    #[primary_key]
    pub id: u64,
    pub name: String,
    #[secondary_key(unique)]
    pub email: String,
    #[secondary_key]
    pub age: u8,
    pub bio: String,
}

#[derive(bincode::Encode, bincode::Decode)]
pub struct RawUser {
    id: u64,
    name: String,
    email: String,
    age: u8,
    bio: String,
}

const USER_EMAIL: TableDefinition<&str, u64> = TableDefinition::new("raw/User/email");
const USER_AGE: TableDefinition<(u8, u64), ()> = TableDefinition::new("raw/User/age");

impl BenchModel for User {
    type Raw = RawUser;
    const RAW_RECORDS: RawRecords = TableDefinition::new("raw/User/records");

    const UNIQUE_FIELD: &'static str = "email";
    type UniqueValue = String;
    const RANGE_FIELD: &'static str = "age";
    type RangeValue = u8;

    fn to_raw(&self) -> RawUser {
        RawUser {
            id: self.id,
            name: self.name.clone(),
            email: self.email.clone(),
            age: self.age,
            bio: self.bio.clone(),
        }
    }

    fn raw_id(raw: &RawUser) -> u64 {
        raw.id
    }

    fn unique_value(&self) -> String {
        self.email.clone()
    }

    fn range() -> RangeInclusive<u8> {
        10..=12
    }

    type RawIndexes<'txn> = (Table<'txn, &'static str, u64>, Table<'txn, (u8, u64), ()>);

    fn raw_open_indexes(txn: &redb::WriteTransaction) -> Self::RawIndexes<'_> {
        (
            txn.open_table(USER_EMAIL).expect("open email index"),
            txn.open_table(USER_AGE).expect("open age index"),
        )
    }

    fn raw_unique_ok(
        (email, _): &Self::RawIndexes<'_>,
        old: Option<&RawUser>,
        new: &RawUser,
    ) -> bool {
        if old.is_some_and(|old| old.email == new.email) {
            return true;
        }
        email
            .get(new.email.as_str())
            .expect("read email index")
            .is_none_or(|owner| owner.value() == new.id)
    }

    fn raw_reindex((email, age): &mut Self::RawIndexes<'_>, old: Option<&RawUser>, new: &RawUser) {
        if let Some(old) = old {
            if old.email != new.email {
                email
                    .remove(old.email.as_str())
                    .expect("update email index");
            }
            if old.age != new.age {
                age.remove((old.age, old.id)).expect("update age index");
            }
        }
        if old.is_none_or(|old| old.email != new.email) {
            email
                .insert(new.email.as_str(), new.id)
                .expect("update email index");
        }
        if old.is_none_or(|old| old.age != new.age) {
            age.insert((new.age, new.id), ()).expect("update age index");
        }
    }

    type RawUnique = ReadOnlyTable<&'static str, u64>;

    fn raw_open_unique(txn: &redb::ReadTransaction) -> Self::RawUnique {
        txn.open_table(USER_EMAIL).expect("open email index")
    }

    fn raw_unique_get(index: &Self::RawUnique, value: &String) -> Option<u64> {
        index
            .get(value.as_str())
            .expect("read email index")
            .map(|id| id.value())
    }

    type RawRange = ReadOnlyTable<(u8, u64), ()>;

    fn raw_open_range(txn: &redb::ReadTransaction) -> Self::RawRange {
        txn.open_table(USER_AGE).expect("open age index")
    }

    fn raw_range_each(index: &Self::RawRange, f: impl FnMut(u64)) {
        range_each(index, Self::range(), f);
    }
}

/// A model with a unique index, a `Vec` index (one entry per element) and an
/// `Option` index (`None` not indexed).
#[derive(netabase::NetabaseModel, Clone, Debug, PartialEq)]
pub struct Post {
    #[primary_key]
    pub id: u64,
    #[secondary_key(unique)]
    pub slug: String,
    pub title: String,
    #[secondary_key]
    pub tags: Vec<String>,
    #[secondary_key]
    pub category: Option<u8>,
    pub body: String,
}

#[derive(bincode::Encode, bincode::Decode)]
pub struct RawPost {
    id: u64,
    slug: String,
    title: String,
    tags: Vec<String>,
    category: Option<u8>,
    body: String,
}

const POST_SLUG: TableDefinition<&str, u64> = TableDefinition::new("raw/Post/slug");
const POST_TAGS: TableDefinition<(&str, u64), ()> = TableDefinition::new("raw/Post/tags");
const POST_CATEGORY: TableDefinition<(u8, u64), ()> = TableDefinition::new("raw/Post/category");

impl BenchModel for Post {
    type Raw = RawPost;
    const RAW_RECORDS: RawRecords = TableDefinition::new("raw/Post/records");

    const UNIQUE_FIELD: &'static str = "slug";
    type UniqueValue = String;
    const RANGE_FIELD: &'static str = "category";
    type RangeValue = u8;

    fn to_raw(&self) -> RawPost {
        RawPost {
            id: self.id,
            slug: self.slug.clone(),
            title: self.title.clone(),
            tags: self.tags.clone(),
            category: self.category,
            body: self.body.clone(),
        }
    }

    fn raw_id(raw: &RawPost) -> u64 {
        raw.id
    }

    fn unique_value(&self) -> String {
        self.slug.clone()
    }

    fn range() -> RangeInclusive<u8> {
        10..=12
    }

    type RawIndexes<'txn> = (
        Table<'txn, &'static str, u64>,
        Table<'txn, (&'static str, u64), ()>,
        Table<'txn, (u8, u64), ()>,
    );

    fn raw_open_indexes(txn: &redb::WriteTransaction) -> Self::RawIndexes<'_> {
        (
            txn.open_table(POST_SLUG).expect("open slug index"),
            txn.open_table(POST_TAGS).expect("open tags index"),
            txn.open_table(POST_CATEGORY).expect("open category index"),
        )
    }

    fn raw_unique_ok(
        (slug, _, _): &Self::RawIndexes<'_>,
        old: Option<&RawPost>,
        new: &RawPost,
    ) -> bool {
        if old.is_some_and(|old| old.slug == new.slug) {
            return true;
        }
        slug.get(new.slug.as_str())
            .expect("read slug index")
            .is_none_or(|owner| owner.value() == new.id)
    }

    fn raw_reindex(
        (slug, tags, category): &mut Self::RawIndexes<'_>,
        old: Option<&RawPost>,
        new: &RawPost,
    ) {
        if let Some(old) = old {
            if old.slug != new.slug {
                slug.remove(old.slug.as_str()).expect("update slug index");
            }
            for tag in old.tags.iter().filter(|tag| !new.tags.contains(tag)) {
                tags.remove((tag.as_str(), old.id))
                    .expect("update tags index");
            }
            if let Some(value) = old.category.filter(|_| old.category != new.category) {
                category
                    .remove((value, old.id))
                    .expect("update category index");
            }
        }
        if old.is_none_or(|old| old.slug != new.slug) {
            slug.insert(new.slug.as_str(), new.id)
                .expect("update slug index");
        }
        for tag in &new.tags {
            if old.is_none_or(|old| !old.tags.contains(tag)) {
                tags.insert((tag.as_str(), new.id), ())
                    .expect("update tags index");
            }
        }
        if let Some(value) = new.category {
            if old.is_none_or(|old| old.category != new.category) {
                category
                    .insert((value, new.id), ())
                    .expect("update category index");
            }
        }
    }

    type RawUnique = ReadOnlyTable<&'static str, u64>;

    fn raw_open_unique(txn: &redb::ReadTransaction) -> Self::RawUnique {
        txn.open_table(POST_SLUG).expect("open slug index")
    }

    fn raw_unique_get(index: &Self::RawUnique, value: &String) -> Option<u64> {
        index
            .get(value.as_str())
            .expect("read slug index")
            .map(|id| id.value())
    }

    type RawRange = ReadOnlyTable<(u8, u64), ()>;

    fn raw_open_range(txn: &redb::ReadTransaction) -> Self::RawRange {
        txn.open_table(POST_CATEGORY).expect("open category index")
    }

    fn raw_range_each(index: &Self::RawRange, f: impl FnMut(u64)) {
        range_each(index, Self::range(), f);
    }
}

/// Every id of a `(u8, id) -> ()` index whose value lies in `range`.
fn range_each(
    index: &ReadOnlyTable<(u8, u64), ()>,
    range: RangeInclusive<u8>,
    mut f: impl FnMut(u64),
) {
    let bounds = (*range.start(), 0)..=(*range.end(), u64::MAX);
    for entry in index.range(bounds).expect("scan an index") {
        let (key, _) = entry.expect("read an index entry");
        f(key.value().1);
    }
}
