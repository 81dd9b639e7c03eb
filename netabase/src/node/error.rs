//! Errors of the node layer.

use std::path::PathBuf;

use libp2p::Multiaddr;

use crate::codec::CodecError;
use crate::store::StoreError;

/// Errors of the node layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A record could not be encoded or signed.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// A [`Subscription`](super::Subscription) names more key ranges than
    /// a node takes.
    #[error("a subscription to {ranges} key ranges of {model} (at most {max})")]
    TooManyRanges {
        /// The model.
        model: &'static str,
        /// How many it named.
        ranges: usize,
        /// How many are allowed.
        max: usize,
    },
    /// A [`NetabaseConfig`](super::NetabaseConfig) value is out of range.
    #[error("invalid configuration: {field}: {reason}")]
    Config {
        /// The field (or fields) at fault.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The data directory or identity file could not be read or written.
    #[error("could not use {}", path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// What the OS reported.
        #[source]
        source: std::io::Error,
    },
    /// The identity file exists but does not hold a key.
    #[error("{} does not hold a valid identity key", path.display())]
    BadIdentity {
        /// The identity file.
        path: PathBuf,
    },
    /// The swarm could not be built or could not listen.
    #[error("could not start the network on {address}")]
    Listen {
        /// The address that failed.
        address: Multiaddr,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The swarm could not be built.
    #[error("could not build the network stack")]
    Transport(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A dial made no connection.
    #[error("could not connect to {address}: {reason}")]
    Dial {
        /// The address dialled.
        address: Multiaddr,
        /// Why, as the network stack reported it.
        reason: String,
    },
    /// The operation needs a running swarm: call `start_swarm` first.
    #[error("the swarm is not running; call start_swarm first")]
    NotRunning,
    /// `start_swarm` was called while the swarm runs.
    #[error("the swarm is already running")]
    AlreadyRunning,
    /// A record is larger than the configured limit; nothing was written.
    #[error("record of `{model}` is {size} bytes signed, over the {limit}-byte limit (NetabaseConfig::max_record_bytes)")]
    RecordTooLarge {
        /// The model's name.
        model: &'static str,
        /// Its signed size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The model was not registered with `register::<M>()`.
    #[error("model `{model}` is not registered with this node")]
    NotRegistered {
        /// The model's name.
        model: &'static str,
    },
    /// The record is held at a version of its model newer than this build
    /// knows: a peer on a newer release of the app wrote it. It is kept
    /// and served to peers as it is, and read once the app registers that
    /// version ([`Event::NewerVersionHeld`](crate::node::Event::NewerVersionHeld)).
    #[error("the `{model}` record is at version {version}, newer than this build's version {known}: a newer release of the app reads it")]
    NewerVersion {
        /// The model's name.
        model: &'static str,
        /// The version the record was written at.
        version: u32,
        /// The newest version this build knows.
        known: u32,
    },
    /// Two different models would be stored under one model id: the same
    /// name with different fields, or (rarely) two names whose ids collide.
    #[error("models `{first}` and `{second}` would share a model id (the same name with different fields, or colliding names); give one another name with #[netabase(name = \"..\")]")]
    ModelIdClash {
        /// The model registered first.
        first: &'static str,
        /// The model refused.
        second: &'static str,
    },
    /// The record was committed locally, but fewer peers than
    /// [`WriteQuorum::AtLeast`](super::WriteQuorum::AtLeast) asks for
    /// acknowledged it. It stays committed and reaches peers through
    /// catch-up and republication.
    #[error("committed locally, but replicated to only {stored} of the {required} peers the write quorum asks for{}; it stays committed and reaches peers through catch-up", if *timed_out { " before the query timed out" } else { "" })]
    Publish {
        /// Peers that acknowledged it. A peer acknowledges on receipt, then
        /// validates and stores the record on its own.
        stored: usize,
        /// The write quorum.
        required: usize,
        /// Whether the query timed out (rather than running out of peers).
        timed_out: bool,
    },
    /// A local write was refused by the rules every write follows (for
    /// example, a newer version of the record is already stored).
    #[error("the write was refused: {0:?}")]
    Refused(super::Rejection),
    /// The model's write rule refuses this write (see
    /// [`rules`](crate::rules)): nothing was written or published.
    #[error("the write rule of `{model}` refuses this write: {refusal}")]
    NotAllowed {
        /// The model's name.
        model: &'static str,
        /// Why.
        refusal: crate::rules::Refusal,
    },
    /// The record is neither local nor found on the network.
    #[error("record not found locally or on the network")]
    NotFound,
    /// The swarm stopped while the operation was in flight.
    #[error("the swarm stopped before the operation finished")]
    Stopped,
    /// A blocking storage task failed to run.
    #[error("a storage task failed")]
    Task(#[source] super::TaskError),
}
