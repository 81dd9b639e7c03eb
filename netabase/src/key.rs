//! Order-preserving key encoding.
//!
//! Keys are stored as bytes compared lexicographically, so the encoding keeps
//! the values' order: unsigned integers big-endian, signed integers big-endian
//! with the sign bit flipped (so `-1 < 0 < 1`), strings and byte strings with
//! `0x00` escaped as `0x00 0xFF` and terminated by `0x00 0x00`. The result is
//! prefix-free: no encoded value is a prefix of another, so an index entry can
//! be `value ++ primary key` and still sort by value first.

use core::fmt::Debug;
use core::hash::Hash;

use smallvec::SmallVec;

/// A reusable buffer that keys are encoded into; keys up to 64 bytes stay on
/// the stack.
#[derive(Clone, Default, Debug)]
pub struct KeyBuf(SmallVec<[u8; 64]>);

impl KeyBuf {
    /// An empty buffer.
    pub fn new() -> Self {
        KeyBuf(SmallVec::new())
    }

    /// Appends one byte.
    #[inline]
    pub fn push(&mut self, byte: u8) {
        self.0.push(byte);
    }

    /// Appends bytes verbatim.
    #[inline]
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    /// Empties the buffer, keeping its capacity.
    #[inline]
    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// The encoded bytes.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    /// Number of encoded bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if nothing was encoded.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A value that encodes to bytes whose lexicographic order is the value's order.
///
/// Implementations must be prefix-free (no encoding is a prefix of another) and
/// order-preserving; the provided impls are.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a netabase key",
    label = "not a key type",
    note = "keys are integers, bool, char, String, Vec<u8>, [u8; N], tuples of keys, or types implementing `netabase::KeyType`"
)]
pub trait KeyEncode {
    /// Appends this value's encoding to `out`.
    fn encode_key(&self, out: &mut KeyBuf);

    /// This value's encoding in a fresh buffer.
    fn to_key_bytes(&self) -> KeyBuf {
        let mut buf = KeyBuf::new();
        self.encode_key(&mut buf);
        buf
    }
}

/// A field type that can be a primary or secondary key.
///
/// `Ref` is the form lookups take: `u32` for `u32`, `&str` for `String`,
/// `&[u8]` for `Vec<u8>`, so `by_email("a@b.c")` needs no allocation.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a netabase key",
    label = "not a key type",
    note = "keys are integers, bool, char, String, Vec<u8>, [u8; N], tuples of keys, or types implementing `netabase::KeyType`"
)]
pub trait KeyType: KeyEncode + Clone + Ord + Hash + Debug + Send + Sync + 'static {
    /// The borrowed form used in lookups.
    type Ref<'a>: KeyEncode + Copy;

    /// Reads one encoded value from the front of `bytes`, advancing past
    /// it; `None` if the bytes are not an encoding of this type. Turns the
    /// key bytes of an event back into a typed key. The provided
    /// implementation decodes nothing: implement it for your own key types
    /// to make their keys decodable.
    fn decode_key(bytes: &mut &[u8]) -> Option<Self> {
        let _ = bytes;
        None
    }
}

/// The first `N` bytes of `bytes`, advancing past them.
fn take<const N: usize>(bytes: &mut &[u8]) -> Option<[u8; N]> {
    let (head, rest) = bytes.split_first_chunk::<N>()?;
    *bytes = rest;
    Some(*head)
}

/// Reverses [`encode_bytes`].
fn decode_bytes(bytes: &mut &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = *bytes;
    loop {
        let zero = rest.iter().position(|&b| b == 0)?;
        out.extend_from_slice(&rest[..zero]);
        match rest.get(zero + 1)? {
            0x00 => {
                *bytes = &rest[zero + 2..];
                return Some(out);
            }
            0xFF => {
                out.push(0);
                rest = &rest[zero + 2..];
            }
            _ => return None,
        }
    }
}

impl<T: KeyEncode + ?Sized> KeyEncode for &T {
    #[inline]
    fn encode_key(&self, out: &mut KeyBuf) {
        (**self).encode_key(out)
    }
}

macro_rules! unsigned {
    ($($t:ty),*) => {$(
        impl KeyEncode for $t {
            #[inline]
            fn encode_key(&self, out: &mut KeyBuf) {
                out.extend_from_slice(&self.to_be_bytes());
            }
        }
        impl KeyType for $t {
            type Ref<'a> = $t;

            fn decode_key(bytes: &mut &[u8]) -> Option<Self> {
                take(bytes).map(<$t>::from_be_bytes)
            }
        }
    )*};
}

macro_rules! signed {
    ($($t:ty => $u:ty),*) => {$(
        impl KeyEncode for $t {
            #[inline]
            fn encode_key(&self, out: &mut KeyBuf) {
                // Flipping the sign bit maps MIN..=MAX onto 0..=uMAX in order.
                let flipped = (*self as $u) ^ (1 << (<$u>::BITS - 1));
                out.extend_from_slice(&flipped.to_be_bytes());
            }
        }
        impl KeyType for $t {
            type Ref<'a> = $t;

            fn decode_key(bytes: &mut &[u8]) -> Option<Self> {
                let flipped = <$u>::from_be_bytes(take(bytes)?);
                Some((flipped ^ (1 << (<$u>::BITS - 1))) as $t)
            }
        }
    )*};
}

unsigned!(u8, u16, u32, u64, u128);
signed!(i8 => u8, i16 => u16, i32 => u32, i64 => u64, i128 => u128);

impl KeyEncode for bool {
    #[inline]
    fn encode_key(&self, out: &mut KeyBuf) {
        out.push(u8::from(*self));
    }
}
impl KeyType for bool {
    type Ref<'a> = bool;

    fn decode_key(bytes: &mut &[u8]) -> Option<Self> {
        match take::<1>(bytes)? {
            [0] => Some(false),
            [1] => Some(true),
            _ => None,
        }
    }
}

impl KeyEncode for char {
    #[inline]
    fn encode_key(&self, out: &mut KeyBuf) {
        out.extend_from_slice(&u32::from(*self).to_be_bytes());
    }
}
impl KeyType for char {
    type Ref<'a> = char;

    fn decode_key(bytes: &mut &[u8]) -> Option<Self> {
        char::from_u32(u32::from_be_bytes(take(bytes)?))
    }
}

/// Escapes `0x00` as `0x00 0xFF` and terminates with `0x00 0x00`: prefix-free,
/// and the terminator sorts below every escaped byte, so `"a" < "a\0" < "ab"`.
#[inline]
fn encode_bytes(bytes: &[u8], out: &mut KeyBuf) {
    let mut rest = bytes;
    while let Some(zero) = rest.iter().position(|&b| b == 0) {
        out.extend_from_slice(&rest[..zero]);
        out.extend_from_slice(&[0x00, 0xFF]);
        rest = &rest[zero + 1..];
    }
    out.extend_from_slice(rest);
    out.extend_from_slice(&[0x00, 0x00]);
}

impl KeyEncode for str {
    #[inline]
    fn encode_key(&self, out: &mut KeyBuf) {
        encode_bytes(self.as_bytes(), out);
    }
}
impl KeyEncode for String {
    #[inline]
    fn encode_key(&self, out: &mut KeyBuf) {
        encode_bytes(self.as_bytes(), out);
    }
}
impl KeyType for String {
    type Ref<'a> = &'a str;

    fn decode_key(bytes: &mut &[u8]) -> Option<Self> {
        String::from_utf8(decode_bytes(bytes)?).ok()
    }
}

impl KeyEncode for [u8] {
    #[inline]
    fn encode_key(&self, out: &mut KeyBuf) {
        encode_bytes(self, out);
    }
}
impl KeyEncode for Vec<u8> {
    #[inline]
    fn encode_key(&self, out: &mut KeyBuf) {
        encode_bytes(self, out);
    }
}
impl KeyType for Vec<u8> {
    type Ref<'a> = &'a [u8];

    fn decode_key(bytes: &mut &[u8]) -> Option<Self> {
        decode_bytes(bytes)
    }
}

/// Fixed-size byte arrays are stored verbatim: equal lengths need no terminator.
impl<const N: usize> KeyEncode for [u8; N] {
    #[inline]
    fn encode_key(&self, out: &mut KeyBuf) {
        out.extend_from_slice(self);
    }
}
impl<const N: usize> KeyType for [u8; N] {
    type Ref<'a> = &'a [u8; N];

    fn decode_key(bytes: &mut &[u8]) -> Option<Self> {
        take(bytes)
    }
}

/// Peer ids are keys (a profile keyed by its owner): their bytes (a
/// multihash), escaped and terminated like byte strings. Their order is
/// the order of those bytes, which is also `PeerId`'s own order.
impl KeyEncode for libp2p_identity::PeerId {
    #[inline]
    fn encode_key(&self, out: &mut KeyBuf) {
        encode_bytes(&self.to_bytes(), out);
    }
}
impl KeyType for libp2p_identity::PeerId {
    type Ref<'a> = libp2p_identity::PeerId;

    fn decode_key(bytes: &mut &[u8]) -> Option<Self> {
        libp2p_identity::PeerId::from_bytes(&decode_bytes(bytes)?).ok()
    }
}

/// Public keys are keys too: their protobuf encoding, escaped and
/// terminated. For ed25519 keys (netabase's own) that orders them by their
/// bytes, as `PublicKey`'s own order does.
impl KeyEncode for libp2p_identity::PublicKey {
    #[inline]
    fn encode_key(&self, out: &mut KeyBuf) {
        encode_bytes(&self.encode_protobuf(), out);
    }
}
impl KeyType for libp2p_identity::PublicKey {
    type Ref<'a> = &'a libp2p_identity::PublicKey;

    fn decode_key(bytes: &mut &[u8]) -> Option<Self> {
        libp2p_identity::PublicKey::try_decode_protobuf(&decode_bytes(bytes)?).ok()
    }
}

/// Tuples are keys: their parts' encodings one after another. Each part is
/// prefix-free, so tuples sort by their first part, then the next, and all
/// keys that share a first part are one range: a model keyed by
/// `(owner, id)` keeps each owner's records together (see
/// [`Subscription::key_prefix`](crate::node::Subscription::key_prefix)).
macro_rules! tuple {
    ($($part:ident),+) => {
        impl<$($part: KeyEncode),+> KeyEncode for ($($part,)+) {
            #[inline]
            fn encode_key(&self, out: &mut KeyBuf) {
                #[allow(non_snake_case)]
                let ($($part,)+) = self;
                $($part.encode_key(out);)+
            }
        }
        impl<$($part: KeyType),+> KeyType for ($($part,)+) {
            type Ref<'a> = ($($part::Ref<'a>,)+);

            fn decode_key(bytes: &mut &[u8]) -> Option<Self> {
                Some(($($part::decode_key(bytes)?,)+))
            }
        }
    };
}

tuple!(A, B);
tuple!(A, B, C);
tuple!(A, B, C, D);

/// The smallest byte string greater than every string that starts with
/// `prefix`, or `None` if there is none (all bytes `0xFF`).
pub(crate) fn prefix_successor(prefix: &[u8]) -> Option<KeyBuf> {
    let last = prefix.iter().rposition(|&b| b != 0xFF)?;
    let mut out = KeyBuf::new();
    out.extend_from_slice(&prefix[..last]);
    out.push(prefix[last] + 1);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc<T: KeyEncode + ?Sized>(v: &T) -> Vec<u8> {
        v.to_key_bytes().as_slice().to_vec()
    }

    #[test]
    fn tuples_sort_by_their_first_part_then_the_next() {
        let keys = [
            ("a".to_string(), 9u32),
            ("a\0".to_string(), 0),
            ("ab".to_string(), 0),
            ("ab".to_string(), 1),
            ("b".to_string(), 0),
        ];
        for pair in keys.windows(2) {
            assert!(pair[0] < pair[1]);
            assert!(enc(&pair[0]) < enc(&pair[1]), "{pair:?}");
        }
        // Every key with first part "ab" starts with its encoding.
        let prefix = enc(&"ab".to_string());
        assert!(enc(&keys[2]).starts_with(&prefix) && enc(&keys[3]).starts_with(&prefix));
        assert!(!enc(&keys[1]).starts_with(&prefix));
        let decoded = <(String, u32)>::decode_key(&mut enc(&keys[3]).as_slice());
        assert_eq!(decoded, Some(keys[3].clone()));
    }

    #[test]
    fn signed_order_includes_negatives() {
        let values = [i64::MIN, -1000, -1, 0, 1, 1000, i64::MAX];
        for pair in values.windows(2) {
            assert!(enc(&pair[0]) < enc(&pair[1]), "{pair:?}");
        }
        let small = [i8::MIN, -1, 0, 1, i8::MAX];
        for pair in small.windows(2) {
            assert!(enc(&pair[0]) < enc(&pair[1]), "{pair:?}");
        }
    }

    #[test]
    fn unsigned_big_endian() {
        assert_eq!(enc(&0x0102u16), vec![1, 2]);
        assert!(enc(&255u32) < enc(&256u32));
    }

    #[test]
    fn strings_are_prefix_free_and_ordered() {
        let values = ["", "\0", "\0\0", "a", "a\0", "a\0b", "a\u{1}", "ab", "b"];
        for pair in values.windows(2) {
            assert!(enc(pair[0]) < enc(pair[1]), "{pair:?}");
        }
        for a in values {
            for b in values {
                if a != b {
                    assert!(!enc(b).starts_with(&enc(a)), "{a:?} prefix of {b:?}");
                }
            }
        }
    }

    fn round_trip<T: KeyType + PartialEq>(values: &[T]) {
        for value in values {
            let bytes = enc(value);
            let mut rest = bytes.as_slice();
            assert_eq!(T::decode_key(&mut rest).as_ref(), Some(value));
            assert!(rest.is_empty(), "{value:?} left bytes");
            // A truncated encoding never reads back as the value, whole.
            let mut short = &bytes[..bytes.len().saturating_sub(1)];
            let decoded = T::decode_key(&mut short);
            assert!(bytes.is_empty() || !(decoded.as_ref() == Some(value) && short.is_empty()));
        }
    }

    #[test]
    fn every_provided_key_type_decodes_what_it_encodes() {
        round_trip(&[0u8, 7, u8::MAX]);
        round_trip(&[0u64, 1 << 40, u64::MAX]);
        round_trip(&[u128::MAX, 3]);
        round_trip(&[i64::MIN, -1, 0, 1, i64::MAX]);
        round_trip(&[i8::MIN, -1, 0, i8::MAX]);
        round_trip(&[i128::MIN, -5, i128::MAX]);
        round_trip(&[false, true]);
        round_trip(&['a', '\u{10FFFF}', '\0']);
        round_trip(&["".to_string(), "\0".into(), "a\0b\0".into(), "héllo".into()]);
        round_trip(&[vec![], vec![0u8, 0, 255, 0], vec![1, 2, 3]]);
        round_trip(&[[0u8; 16], [255u8; 16]]);
        let peers: Vec<libp2p_identity::PeerId> =
            (0..8).map(|_| libp2p_identity::PeerId::random()).collect();
        round_trip(&peers);
        let keys: Vec<libp2p_identity::PublicKey> = (0..8)
            .map(|_| libp2p_identity::Keypair::generate_ed25519().public())
            .collect();
        round_trip(&keys);
        // Encoded order is the types' own order.
        let mut sorted = peers.clone();
        sorted.sort();
        let mut by_bytes = peers.clone();
        by_bytes.sort_by_key(enc);
        assert_eq!(sorted, by_bytes);
        let mut sorted = keys.clone();
        sorted.sort();
        let mut by_bytes = keys.clone();
        by_bytes.sort_by_key(enc);
        assert_eq!(sorted, by_bytes);
        // Malformed bytes are refused.
        assert_eq!(String::decode_key(&mut &[b'a', 0, 7][..]), None);
        assert_eq!(String::decode_key(&mut &[0xC3, 0, 0][..]), None);
        assert_eq!(bool::decode_key(&mut &[2][..]), None);
        assert_eq!(char::decode_key(&mut &[0, 0, 0xD8, 0][..]), None);
        assert_eq!(u32::decode_key(&mut &[1, 2][..]), None);
    }

    #[test]
    fn prefix_successor_bounds_the_prefix() {
        assert_eq!(prefix_successor(&[1, 2]).unwrap().as_slice(), &[1, 3]);
        assert_eq!(prefix_successor(&[1, 0xFF]).unwrap().as_slice(), &[2]);
        assert!(prefix_successor(&[0xFF, 0xFF]).is_none());
    }
}
