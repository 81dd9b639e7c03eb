//! The top-level error: every layer's error converts into it.

pub use crate::codec::CodecError;
pub use crate::store::StoreError;

/// Any netabase error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// From the store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// From the codec.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// `Result` with [`enum@Error`] as the error.
pub type Result<T, E = Error> = core::result::Result<T, E>;
