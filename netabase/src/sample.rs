//! Deterministic sample values for tests and benches.
//!
//! `Sample::sample(seed, size)` builds a value from a seed, aiming at roughly
//! `size` encoded bytes. The same seed always gives the same value; integers
//! are the seed itself (truncated), strings start with the seed in hex, so
//! distinct seeds give distinct keys and unique indexes stay unique.

/// A type that can build a deterministic sample of itself.
pub trait Sample: Sized {
    /// Whether the value's size follows `size` (strings, vectors) rather than
    /// being fixed (integers). Models share their size budget among these fields.
    const VARIABLE: bool = false;

    /// A value determined by `seed`, of roughly `size` encoded bytes where the
    /// type's size can vary.
    fn sample(seed: u64, size: usize) -> Self;
}

/// SplitMix64: a bijective mixer, so distinct seeds stay distinct.
pub(crate) fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

macro_rules! int_sample {
    ($($t:ty),*) => {$(
        impl Sample for $t {
            fn sample(seed: u64, _size: usize) -> Self {
                // Truncation is the point: small types repeat, as real data does.
                seed as $t
            }
        }
    )*};
}

int_sample!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize);

impl Sample for bool {
    fn sample(seed: u64, _size: usize) -> Self {
        seed % 2 == 1
    }
}

impl Sample for char {
    fn sample(seed: u64, _size: usize) -> Self {
        char::from(b'a' + (seed % 26) as u8)
    }
}

impl Sample for f32 {
    fn sample(seed: u64, _size: usize) -> Self {
        (seed % 1_000_000) as f32 / 8.0
    }
}

impl Sample for f64 {
    fn sample(seed: u64, _size: usize) -> Self {
        (seed % 1_000_000_000) as f64 / 8.0
    }
}

impl Sample for String {
    const VARIABLE: bool = true;

    fn sample(seed: u64, size: usize) -> Self {
        let mut out = format!("{seed:016x}");
        let mut state = mix(seed);
        while out.len() < size {
            state = mix(state);
            for byte in state.to_le_bytes() {
                if out.len() >= size {
                    break;
                }
                out.push(char::from(b'a' + byte % 26));
            }
        }
        out
    }
}

impl Sample for Vec<u8> {
    const VARIABLE: bool = true;

    fn sample(seed: u64, size: usize) -> Self {
        let mut out = Vec::with_capacity(size.max(8));
        out.extend_from_slice(&seed.to_be_bytes());
        let mut state = mix(seed);
        while out.len() < size {
            state = mix(state);
            let take = (size - out.len()).min(8);
            out.extend_from_slice(&state.to_le_bytes()[..take]);
        }
        out
    }
}

impl<const N: usize> Sample for [u8; N] {
    fn sample(seed: u64, _size: usize) -> Self {
        let mut out = [0u8; N];
        let mut state = seed;
        for chunk in out.chunks_mut(8) {
            chunk.copy_from_slice(&state.to_be_bytes()[..chunk.len()]);
            state = mix(state);
        }
        out
    }
}

impl<T: Sample> Sample for Option<T> {
    const VARIABLE: bool = T::VARIABLE;

    fn sample(seed: u64, size: usize) -> Self {
        // One in four is None, so optional indexes see both cases.
        (mix(seed) % 4 != 0).then(|| T::sample(seed, size))
    }
}

/// Vectors other than bytes hold 1 to 8 elements; element `i` comes from
/// seed `seed * 8 + i`, so elements of different samples differ too.
impl<T: Sample> Sample for Vec<T>
where
    T: NotByte,
{
    const VARIABLE: bool = true;

    fn sample(seed: u64, size: usize) -> Self {
        let count = (size / 32).clamp(1, 8);
        (0..count as u64)
            .map(|i| T::sample(seed.wrapping_mul(8).wrapping_add(i), size / count))
            .collect()
    }
}

/// Marker keeping `Vec<u8>` (bytes) apart from other vectors in [`Sample`].
pub trait NotByte {}
macro_rules! not_byte {
    ($($t:ty),*) => {$( impl NotByte for $t {} )*};
}
not_byte!(u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, bool, char, f32, f64, String);
impl<T> NotByte for Vec<T> {}
impl<T> NotByte for Option<T> {}
impl<const N: usize> NotByte for [u8; N] {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_hit_the_size_and_stay_distinct() {
        let a = String::sample(1, 100);
        assert_eq!(a.len(), 100);
        assert_eq!(a, String::sample(1, 100));
        assert_ne!(a, String::sample(2, 100));
        assert!(String::sample(3, 0).starts_with("0000000000000003"));
    }

    #[test]
    fn bytes_hit_the_size() {
        assert_eq!(Vec::<u8>::sample(9, 1000).len(), 1000);
    }

    #[test]
    fn vectors_and_options() {
        let tags = Vec::<String>::sample(5, 256);
        assert_eq!(tags.len(), 8);
        let somes = (0..100)
            .filter(|&s| Option::<u32>::sample(s, 0).is_some())
            .count();
        assert!((50..95).contains(&somes), "{somes}");
    }
}
