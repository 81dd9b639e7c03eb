//! What the network benches (`node`, `sync`) share: a small runtime, scratch
//! directories, bounded waits and node addresses.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use libp2p::swarm::NetworkBehaviour;
use libp2p::{noise, tcp, yamux, Swarm};
use netabase::node::{Multiaddr, Netabase, Protocol};
use netabase::Keypair;
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

/// A raw rust-libp2p swarm for a floor, on netabase's transport: TCP with
/// nodelay, Noise, Yamux, connections kept 60 s when idle.
pub fn raw_swarm_with<B: NetworkBehaviour>(
    keypair: &Keypair,
    behaviour: impl FnOnce(&Keypair) -> B,
) -> Swarm<B> {
    libp2p::SwarmBuilder::with_existing_identity(keypair.clone())
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("a tcp transport")
        .with_behaviour(behaviour)
        .expect("a behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}
