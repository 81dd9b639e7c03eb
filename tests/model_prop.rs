//! Random sequences of writes on two models, checked after every step against
//! a plain in-memory model of the same operations: records and every index
//! must agree exactly.

mod common;

use std::collections::BTreeMap;

use common::*;
use netabase::store::{Lookup, Store, StoreError};
use proptest::prelude::*;

const EMAILS: [&str; 5] = ["a@x", "b@x", "c@x", "d@x", "e@x"];
const TAGS: [&str; 4] = ["rust", "db", "p2p", ""];
const EDITORS: [&str; 3] = ["ada", "bob", "a\0b"];

#[derive(Clone, Debug)]
enum Op {
    PutUser(User),
    PutUsers(Vec<User>),
    RemoveUser(u64),
    PutPost(Post),
    PutPosts(Vec<Post>),
    RemovePost(String),
    /// One transaction writing both models.
    Both(User, Post),
}

fn arb_user() -> impl Strategy<Value = User> {
    (0u64..12, 0usize..EMAILS.len(), 0u32..4).prop_map(|(id, e, age)| user(id, EMAILS[e], age))
}

fn arb_post() -> impl Strategy<Value = Post> {
    (
        0u8..10,
        proptest::collection::vec(0usize..TAGS.len(), 0..4),
        proptest::option::of(0usize..EDITORS.len()),
        -3i64..3,
        0u8..6,
    )
        .prop_map(|(slug, tags, editor, score, checksum)| {
            let tags: Vec<&str> = tags.into_iter().map(|t| TAGS[t]).collect();
            let mut p = post(
                &format!("p{slug}"),
                &tags,
                editor.map(|e| EDITORS[e]),
                score * 1_000_000_007,
            );
            p.checksum = [checksum, 0, 0, 0];
            p
        })
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => arb_user().prop_map(Op::PutUser),
        1 => proptest::collection::vec(arb_user(), 0..5).prop_map(Op::PutUsers),
        1 => (0u64..12).prop_map(Op::RemoveUser),
        3 => arb_post().prop_map(Op::PutPost),
        1 => proptest::collection::vec(arb_post(), 0..5).prop_map(Op::PutPosts),
        1 => (0u8..10).prop_map(|s| Op::RemovePost(format!("p{s}"))),
        1 => (arb_user(), arb_post()).prop_map(|(u, p)| Op::Both(u, p)),
    ]
}

#[derive(Clone, Default)]
struct Reference {
    users: BTreeMap<u64, User>,
    posts: BTreeMap<String, Post>,
}

impl Reference {
    /// Applies a put the way the store must: refused if a unique value
    /// belongs to another record.
    fn put_user(&mut self, u: &User) -> bool {
        if self
            .users
            .values()
            .any(|o| o.email == u.email && o.id != u.id)
        {
            return false;
        }
        self.users.insert(u.id, u.clone());
        true
    }

    fn put_post(&mut self, p: &Post) -> bool {
        if self
            .posts
            .values()
            .any(|o| o.checksum == p.checksum && o.slug != p.slug)
        {
            return false;
        }
        self.posts.insert(p.slug.clone(), p.clone());
        true
    }

    /// Applies `op` all or nothing; returns whether it succeeded.
    fn apply(&mut self, op: &Op) -> bool {
        let mut next = self.clone();
        let ok = match op {
            Op::PutUser(u) => next.put_user(u),
            Op::PutUsers(us) => us.iter().all(|u| next.put_user(u)),
            Op::RemoveUser(id) => {
                next.users.remove(id);
                true
            }
            Op::PutPost(p) => next.put_post(p),
            Op::PutPosts(ps) => ps.iter().all(|p| next.put_post(p)),
            Op::RemovePost(slug) => {
                next.posts.remove(slug);
                true
            }
            Op::Both(u, p) => next.put_user(u) && next.put_post(p),
        };
        if ok {
            *self = next;
        }
        ok
    }
}

fn apply(store: &Store, op: &Op) -> Result<(), StoreError> {
    match op {
        Op::PutUser(u) => store.tree::<User>().put(u).map(drop),
        Op::PutUsers(us) => store.tree::<User>().put_many(us).map(drop),
        Op::RemoveUser(id) => store.tree::<User>().remove(&UserKey(*id)).map(drop),
        Op::PutPost(p) => store.tree::<Post>().put(p).map(drop),
        Op::PutPosts(ps) => store.tree::<Post>().put_many(ps).map(drop),
        Op::RemovePost(slug) => store
            .tree::<Post>()
            .remove(&PostKey(slug.clone()))
            .map(drop),
        Op::Both(u, p) => store.write(|txn| {
            txn.open_tree::<User>()?.put(u)?;
            txn.open_tree::<Post>()?.put(p)?;
            Ok(())
        }),
    }
}

fn check(store: &Store, reference: &Reference) -> Result<(), TestCaseError> {
    let snapshot = store.begin_read().unwrap();
    let users = snapshot.open_tree::<User>().unwrap();
    let posts = snapshot.open_tree::<Post>().unwrap();

    let stored: Vec<User> = users.iter().unwrap().map(Result::unwrap).collect();
    let expected: Vec<User> = reference.users.values().cloned().collect();
    prop_assert_eq!(stored, expected);
    let stored: Vec<Post> = posts.iter().unwrap().map(Result::unwrap).collect();
    let expected: Vec<Post> = reference.posts.values().cloned().collect();
    prop_assert_eq!(stored, expected);

    for email in EMAILS {
        let expected = reference.users.values().find(|u| u.email == email).cloned();
        prop_assert_eq!(users.by_email(email).unwrap(), expected);
    }
    for age in 0..4 {
        let expected: Vec<User> = reference
            .users
            .values()
            .filter(|u| u.age == age)
            .cloned()
            .collect();
        prop_assert_eq!(users.by_age(age).unwrap(), expected);
    }
    let mut by_age: Vec<&User> = reference
        .users
        .values()
        .filter(|u| (1..3).contains(&u.age))
        .collect();
    by_age.sort_by_key(|u| (u.age, u.id));
    let by_age: Vec<User> = by_age.into_iter().cloned().collect();
    prop_assert_eq!(users.by_age_range(1..3).unwrap(), by_age);

    for tag in TAGS {
        let expected: Vec<Post> = reference
            .posts
            .values()
            .filter(|p| p.tags.iter().any(|t| t == tag))
            .cloned()
            .collect();
        prop_assert_eq!(posts.by_tags(tag).unwrap(), expected);
    }
    for editor in EDITORS {
        let expected: Vec<Post> = reference
            .posts
            .values()
            .filter(|p| p.editor.as_deref() == Some(editor))
            .cloned()
            .collect();
        prop_assert_eq!(posts.by_editor(editor).unwrap(), expected);
    }
    let mut by_score: Vec<&Post> = reference.posts.values().filter(|p| p.score < 0).collect();
    by_score.sort_by(|a, b| (a.score, &a.slug).cmp(&(b.score, &b.slug)));
    let by_score: Vec<Post> = by_score.into_iter().cloned().collect();
    prop_assert_eq!(posts.by_score_range(..0).unwrap(), by_score);

    assert_indexes_consistent(&users);
    assert_indexes_consistent(&posts);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_reference_model(ops in proptest::collection::vec(arb_op(), 1..40)) {
        let store = Store::in_memory().unwrap();
        let mut reference = Reference::default();
        for op in &ops {
            let expected_ok = reference.apply(op);
            let result = apply(&store, op);
            match (&result, expected_ok) {
                (Ok(()), true) => {}
                (Err(StoreError::UniqueViolation { .. }), false) => {}
                _ => prop_assert!(false, "{:?}: store gave {:?}, reference ok={}", op, result, expected_ok),
            }
            check(&store, &reference)?;
        }
    }

    /// Decoding arbitrary bytes returns an error or a value, never panics,
    /// and a value that decodes survives a round trip.
    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(user) = netabase::codec::decode::<User>(&bytes) {
            let again = netabase::codec::encode(&user).unwrap();
            prop_assert_eq!(netabase::codec::decode::<User>(&again).unwrap(), user);
        }
        let _ = netabase::codec::decode::<Post>(&bytes);
    }
}
