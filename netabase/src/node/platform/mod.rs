//! What differs between a native node and one in a browser: spawning,
//! timers, blocking work, the transport, storage and time. The rest of the
//! node is shared code and calls only what this module exports.
//!
//! Natively, tasks run on tokio and storage work on its blocking pool. In a
//! browser (a dedicated Web Worker, one thread), tasks run on the worker's
//! event loop through `wasm-bindgen-futures`, timers are `futures-timer`'s,
//! and "blocking" work runs as a task of its own, in pieces small enough
//! that the worker keeps answering.

use std::fmt;
use std::time::Duration;

#[cfg(not(target_arch = "wasm32"))]
mod native;
#[cfg(not(target_arch = "wasm32"))]
pub(crate) use native::*;
#[cfg(not(target_arch = "wasm32"))]
mod nat_native;
#[cfg(not(target_arch = "wasm32"))]
pub(crate) use nat_native::*;

#[cfg(target_arch = "wasm32")]
mod web;
#[cfg(target_arch = "wasm32")]
pub(crate) use web::*;
#[cfg(target_arch = "wasm32")]
mod nat_web;
#[cfg(target_arch = "wasm32")]
pub(crate) use nat_web::*;

/// Time for timers and deadlines: std's natively; the browser's
/// `performance.now()` in wasm32, where std's panics.
pub(crate) use web_time::Instant;

/// A task that ended without an output: it panicked, or its runtime shut
/// down before it ran.
#[derive(Debug)]
pub struct TaskError(pub(crate) String);

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TaskError {}

/// What a behaviour's constructor may fail with.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A future that timed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Elapsed;

/// The swarm's settings on every platform: connections stay open `idle`
/// with no stream, and outbound streams settle their protocol lazily.
///
/// Lazily: a stream's first bytes carry the protocol's name and the
/// request together, and the peer's confirmation is read with its
/// answer. With libp2p's default, the request waits for the confirmation,
/// so every request (a get's fetch, a catch-up message) costs two round
/// trips instead of one. Every protocol here proposes one name per stream,
/// the case this is made for; a peer that does not speak it fails the
/// request when its answer is read instead of before it is sent.
pub(crate) fn swarm_config(config: libp2p::swarm::Config, idle: Duration) -> libp2p::swarm::Config {
    config
        .with_idle_connection_timeout(idle)
        .with_substream_upgrade_protocol_override(libp2p::core::upgrade::Version::V1Lazy)
}
