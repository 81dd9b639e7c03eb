//! Versioned models: a model at `#[netabase(version = N, from = Previous)]`
//! reads records stored at any older version through the chain of `from`
//! models (each step the user's `From` or `TryFrom`), and a store migrates
//! a model's records to its newest version when it registers it.

/// The type of a model's primary key field, for the derive's check that a
/// `from` model keys its records the same way.
#[doc(hidden)]
pub trait PrimaryField {
    /// The `#[primary_key]` field's type.
    type Field;
}

/// Implemented by a type for itself only.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`from` must name a version of this model with the same primary key type",
    label = "the previous version's primary key is `{Self}`, this one's is `{T}`"
)]
pub trait SameType<T> {}

impl<T> SameType<T> for T {}

/// Compiles only if `A` and `B` have the same primary key type.
#[doc(hidden)]
#[inline(always)]
pub fn same_primary_key<A: PrimaryField, B: PrimaryField>()
where
    A::Field: SameType<B::Field>,
{
}

/// Whether two strings are equal, in a constant.
#[doc(hidden)]
pub const fn same_str(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}
