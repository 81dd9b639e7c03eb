//! What the network benches (`node`, `sync`) share: a small runtime, scratch
//! directories, bounded waits and node addresses.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use netabase::node::{Multiaddr, Netabase, Protocol};
use tokio::runtime::Runtime;

/// Bound on every wait: a bench that hangs fails, saying what it waited for.
pub const WAIT: Duration = Duration::from_secs(120);

/// One multi-thread runtime per group, as small as the machine.
pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("build a tokio runtime")
}

/// A scratch directory (under `$TMPDIR`, which must be disk-backed for the
/// durable-commit numbers to mean anything).
pub fn tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create a temporary directory")
}

/// `fut`, or a panic naming `what` after [`WAIT`].
pub async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {WAIT:?} waiting for {what}"))
}

/// A started node's dialable address, `/ip4/../tcp/../p2p/<id>`.
pub fn address_of(node: &Netabase) -> Multiaddr {
    let address = node
        .listen_addresses()
        .first()
        .cloned()
        .expect("a started node listens");
    address.with(Protocol::P2p(node.peer_id()))
}
