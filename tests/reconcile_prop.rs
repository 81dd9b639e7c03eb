//! Set reconciliation finds exactly the differences between any two sets,
//! and ends.

use std::collections::BTreeMap;

use netabase::sync::reconcile::{digest, initiate, respond, ItemSet, ItemState};
use proptest::prelude::*;

fn build(items: &BTreeMap<u16, u64>) -> ItemSet {
    let mut set = ItemSet::new();
    for (&key, &timestamp) in items {
        let key = key.to_be_bytes().to_vec();
        let digest = digest(&[&key[..], &timestamp.to_le_bytes()].concat());
        set.insert(key, ItemState { digest, timestamp });
    }
    set
}

/// What `me` should fetch from `other`: keys only they hold, or hold newer
/// (equal timestamps with different digests: both fetch, the conflict rule decides).
fn expected_wants(me: &BTreeMap<u16, u64>, other: &BTreeMap<u16, u64>) -> Vec<Vec<u8>> {
    other
        .iter()
        .filter(|(k, t)| match me.get(k) {
            None => true,
            Some(mine) => mine != *t && **t >= *mine,
        })
        .map(|(k, _)| k.to_be_bytes().to_vec())
        .collect()
}

proptest! {
    #[test]
    fn finds_exactly_the_differences(
        a in proptest::collection::btree_map(any::<u16>(), 0u64..3, 0..600),
        b in proptest::collection::btree_map(any::<u16>(), 0u64..3, 0..600),
        shared in proptest::collection::btree_map(any::<u16>(), 0u64..3, 0..2000),
    ) {
        let mut a_all = shared.clone();
        a_all.extend(a);
        let mut b_all = shared;
        b_all.extend(b);
        let (set_a, set_b) = (build(&a_all), build(&b_all));

        let (mut a_wants, mut b_wants) = (Vec::new(), Vec::new());
        let mut message = initiate(&set_a);
        let mut b_turn = true;
        let mut rounds = 0;
        while !message.is_empty() {
            rounds += 1;
            prop_assert!(rounds < 64, "exchange does not end");
            let (set, wants) = if b_turn { (&set_b, &mut b_wants) } else { (&set_a, &mut a_wants) };
            let outcome = respond(set, &message);
            wants.extend(outcome.want);
            message = outcome.reply;
            b_turn = !b_turn;
        }
        a_wants.sort();
        a_wants.dedup();
        b_wants.sort();
        b_wants.dedup();
        prop_assert_eq!(a_wants, expected_wants(&a_all, &b_all));
        prop_assert_eq!(b_wants, expected_wants(&b_all, &a_all));
    }
}
