//! Set reconciliation finds exactly the differences between any two sets,
//! and ends.

use std::collections::BTreeMap;

use netabase::sync::reconcile::{
    check_message, digest, initiate, message_cost, respond_in, Context, ItemSet, ItemState,
};
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

/// Runs an exchange to its end, `a` answering in `a_cx` and `b` in
/// `b_cx`; returns what each side wants and the number of messages, after
/// checking every message is well-formed and kept to its sender's budget.
fn run(
    a: &ItemSet,
    b: &ItemSet,
    a_cx: &Context,
    b_cx: &Context,
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>, usize) {
    let (mut a_wants, mut b_wants) = (Vec::new(), Vec::new());
    let mut message = initiate(a);
    let mut b_turn = true;
    let mut rounds = 0;
    while !message.is_empty() {
        rounds += 1;
        assert!(rounds < 5_000, "exchange does not end");
        let (set, cx, wants) = if b_turn {
            (b, b_cx, &mut b_wants)
        } else {
            (a, a_cx, &mut a_wants)
        };
        let outcome = respond_in(set, &message, cx).unwrap();
        check_message(&outcome.reply).unwrap();
        // Ranges handed back take up to half the budget again; past that,
        // at most one item, a remainder and a folded range.
        let cost = message_cost(&outcome.reply);
        assert!(cost <= cx.budget * 3 / 2 + 1024, "{cost} > {}", cx.budget);
        wants.extend(outcome.want);
        message = outcome.reply;
        b_turn = !b_turn;
    }
    for wants in [&mut a_wants, &mut b_wants] {
        wants.sort();
        wants.dedup();
    }
    (a_wants, b_wants, rounds)
}

/// [`run`] with both sides on the default context, or on a reply budget.
fn exchange(
    a: &ItemSet,
    b: &ItemSet,
    budget: Option<usize>,
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>, usize) {
    let cx = Context {
        budget: budget.unwrap_or(Context::default().budget),
        ..Context::default()
    };
    run(a, b, &cx, &cx)
}

/// An exchange in which only the initiator fetches (as a node runs its own
/// catch-up): returns what it wants.
fn fetching_exchange(a: &ItemSet, b: &ItemSet) -> Vec<Vec<u8>> {
    let fetching = Context {
        fetching: true,
        ..Context::default()
    };
    run(a, b, &fetching, &Context::default()).0
}

proptest! {
    #[test]
    fn finds_exactly_the_differences(
        a in proptest::collection::btree_map(any::<u16>(), 0u64..3, 0..600),
        b in proptest::collection::btree_map(any::<u16>(), 0u64..3, 0..600),
        shared in proptest::collection::btree_map(any::<u16>(), 0u64..3, 0..2000),
        budget in prop_oneof![Just(None), (200usize..8_000).prop_map(Some)],
    ) {
        let mut a_all = shared.clone();
        a_all.extend(a);
        let mut b_all = shared;
        b_all.extend(b);
        let (set_a, set_b) = (build(&a_all), build(&b_all));
        let (a_wants, b_wants, _) = exchange(&set_a, &set_b, budget);
        prop_assert_eq!(a_wants, expected_wants(&a_all, &b_all));
        prop_assert_eq!(b_wants, expected_wants(&b_all, &a_all));
    }
}

#[test]
fn an_empty_peer_catching_up_on_a_large_set_gets_bounded_messages() {
    let big: BTreeMap<u16, u64> = (0..u16::MAX).map(|k| (k, 1)).collect();
    let (set_a, set_b) = (build(&BTreeMap::new()), build(&big));
    let (a_wants, b_wants, rounds) = exchange(&set_a, &set_b, Some(256 * 1024));
    assert_eq!(a_wants.len(), big.len());
    assert!(b_wants.is_empty());
    assert!(rounds < 64, "{rounds} messages");
}

proptest! {
    #[test]
    fn the_fetching_side_finds_exactly_what_it_lacks(
        a in proptest::collection::btree_map(any::<u16>(), 0u64..3, 0..600),
        b in proptest::collection::btree_map(any::<u16>(), 0u64..3, 0..600),
        shared in proptest::collection::btree_map(any::<u16>(), 0u64..3, 0..2000),
    ) {
        let mut a_all = shared.clone();
        a_all.extend(a);
        let mut b_all = shared;
        b_all.extend(b);
        let (set_a, set_b) = (build(&a_all), build(&b_all));
        prop_assert_eq!(fetching_exchange(&set_a, &set_b), expected_wants(&a_all, &b_all));
    }
}
