//! The native platform: tokio.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use libp2p::{noise, tcp, yamux, Multiaddr, PeerId, Swarm};

use super::{BoxError, Elapsed, Instant, TaskError};
use crate::node::shell::behaviour::Behaviour;
use crate::node::shell::nat::RelayClient;
use crate::node::NodeError;
use crate::Keypair;

/// Whether this node serves Kademlia (answers and stores for peers). A
/// native node can be dialled, so it does.
pub(crate) const KAD_MODE: libp2p::kad::Mode = libp2p::kad::Mode::Server;

/// Whether this node can listen for connections.
pub(crate) const CAN_LISTEN: bool = true;
/// The default `listen_addresses`.
pub(crate) const DEFAULT_LISTEN: &[&str] = &["/ip4/0.0.0.0/tcp/0"];
/// The default `catch_up_interval`.
pub(crate) const CATCH_UP_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// Keys this node asks for in one fetch: as many as a peer answers.
pub(crate) const FETCH_KEYS: usize = 512;

/// A spawned task's output. Dropping it detaches the task.
pub(crate) struct Task<T>(tokio::task::JoinHandle<T>);

impl<T> Future for Task<T> {
    type Output = Result<T, TaskError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map_err(|error| TaskError(error.to_string()))
    }
}

/// Runs `future` as a task of its own on the tokio runtime.
pub(crate) fn spawn<F>(future: F) -> Task<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    Task(tokio::spawn(future))
}

/// Runs storage work (redb, signature checks) on tokio's blocking pool, off
/// the async workers.
pub(crate) fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Task<T> {
    Task(tokio::task::spawn_blocking(work))
}

/// Runs a short read a caller waits on (a lookup in redb, its pages
/// usually in the OS cache) on the caller's own thread, with the worker's
/// other tasks handed to another thread meanwhile (`block_in_place`): the
/// caller does not wait for a pool thread to wake, nor for its own task to
/// be woken back (on a 2-core machine after a pause, those two wake-ups
/// cost a remote `get_record` 0.2x the same work, paired bench). On a
/// current-thread runtime, which cannot hand its tasks over, on the
/// blocking pool.
pub(crate) async fn read_now<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, TaskError> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|handle| handle.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => Ok(tokio::task::block_in_place(work)),
        _ => blocking(work).await,
    }
}

/// Storage work the node does on its own (syncing, answering peers): on
/// the blocking pool too, which has threads enough for both.
pub(crate) fn background<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Task<T> {
    blocking(work)
}

/// Waits for `duration`.
pub(crate) async fn sleep(duration: Duration) {
    tokio::time::sleep(duration).await
}

/// `future`'s output, or [`Elapsed`] after `duration`.
pub(crate) async fn timeout<F: Future>(
    duration: Duration,
    future: F,
) -> Result<F::Output, Elapsed> {
    tokio::time::timeout(duration, future)
        .await
        .map_err(|_| Elapsed)
}

/// Ticks every `period`, the first time at `first`; a tick that is late
/// delays the following ones instead of bursting to catch up.
pub(crate) struct Interval(tokio::time::Interval);

impl Interval {
    pub(crate) fn new(first: Instant, period: Duration) -> Self {
        let mut interval = tokio::time::interval_at(first.into(), period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Interval(interval)
    }

    pub(crate) async fn tick(&mut self) {
        self.0.tick().await;
    }
}

/// mDNS discovery, natively.
pub(crate) type Mdns = libp2p::mdns::tokio::Behaviour;

/// An mDNS behaviour for `local`.
pub(crate) fn mdns(local: PeerId) -> std::io::Result<Mdns> {
    Mdns::new(libp2p::mdns::Config::default(), local)
}

/// The peers an mDNS event found.
pub(crate) fn discovered(event: libp2p::mdns::Event) -> Vec<(PeerId, Multiaddr)> {
    match event {
        libp2p::mdns::Event::Discovered(peers) => peers,
        libp2p::mdns::Event::Expired(_) => Vec::new(),
    }
}

/// The swarm: TCP and WebSocket (`/ip4/../tcp/N/ws`, what browsers dial),
/// each with noise and yamux, and circuits through relays, on tokio.
pub(crate) async fn swarm(
    keypair: &Keypair,
    idle: Duration,
    behaviour: impl FnOnce(&Keypair, RelayClient) -> Result<Behaviour, BoxError>,
) -> Result<Swarm<Behaviour>, NodeError> {
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair.clone())
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(transport_error)?
        .with_websocket(noise::Config::new, yamux::Config::default)
        .await
        .map_err(transport_error)?
        // Dials and listens through relays (`/p2p-circuit`).
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(transport_error)?
        .with_behaviour(behaviour)
        .map_err(transport_error)?
        .with_swarm_config(|c| super::swarm_config(c, idle))
        .build();
    Ok(swarm)
}

fn transport_error(error: impl std::error::Error + Send + Sync + 'static) -> NodeError {
    NodeError::Transport(Box::new(error))
}
