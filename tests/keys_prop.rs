//! Key encoding keeps order and is prefix-free, for any values.

use std::cmp::Ordering;

use netabase::KeyEncode;
use proptest::prelude::*;

fn enc<K: KeyEncode + ?Sized>(k: &K) -> Vec<u8> {
    k.to_key_bytes().as_slice().to_vec()
}

fn same_order<T: Ord, K: KeyEncode + ?Sized>(
    a: &T,
    b: &T,
    ka: &K,
    kb: &K,
) -> Result<(), TestCaseError> {
    let want: Ordering = a.cmp(b);
    prop_assert_eq!(enc(ka).cmp(&enc(kb)), want);
    Ok(())
}

proptest! {
    #[test]
    fn i64_order(a: i64, b: i64) { same_order(&a, &b, &a, &b)?; }

    #[test]
    fn i32_order(a: i32, b: i32) { same_order(&a, &b, &a, &b)?; }

    #[test]
    fn u128_order(a: u128, b: u128) { same_order(&a, &b, &a, &b)?; }

    #[test]
    fn i8_order(a: i8, b: i8) { same_order(&a, &b, &a, &b)?; }

    #[test]
    fn char_order(a: char, b: char) { same_order(&a, &b, &a, &b)?; }

    #[test]
    fn string_order_and_prefix_free(a in "[\\x00-\\x02a-c\\u{ff}]{0,6}", b in "[\\x00-\\x02a-c\\u{ff}]{0,6}") {
        same_order(&a, &b, a.as_str(), b.as_str())?;
        if a != b {
            prop_assert!(!enc(b.as_str()).starts_with(&enc(a.as_str())));
        }
    }

    #[test]
    fn bytes_order_and_prefix_free(a in proptest::collection::vec(0u8..3, 0..6), b in proptest::collection::vec(prop_oneof![Just(0u8), Just(1), Just(0xff)], 0..6)) {
        same_order(&a, &b, &a, &b)?;
        if a != b {
            prop_assert!(!enc(&b).starts_with(&enc(&a)));
        }
    }
}
