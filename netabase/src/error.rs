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
    /// From the node.
    #[cfg(feature = "node")]
    #[error(transparent)]
    Node(#[from] crate::node::NodeError),
}

/// `Result` with [`enum@Error`] as the error.
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// `error` and every source under it, joined with ": ", for logs: a storage
/// failure's cause (`No space left on device`) sits several sources down.
#[cfg(feature = "node")]
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}
