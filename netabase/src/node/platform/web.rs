//! The browser platform: a dedicated Web Worker's event loop.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::channel::oneshot;
use futures::FutureExt;

use libp2p::{noise, yamux, Multiaddr, PeerId, Swarm};

use super::{BoxError, Elapsed, Instant, TaskError};
use crate::node::behaviour::Behaviour;
use crate::node::NodeError;
use crate::Keypair;

/// Whether this node serves Kademlia. A browser cannot be dialled, so it is
/// a client: it puts and gets, and gets others' records through catch-up.
pub(crate) const KAD_MODE: libp2p::kad::Mode = libp2p::kad::Mode::Client;

/// Whether this node can listen for connections.
pub(crate) const CAN_LISTEN: bool = false;
/// The default `listen_addresses`.
pub(crate) const DEFAULT_LISTEN: &[&str] = &[];
/// The default `catch_up_interval`.
pub(crate) const CATCH_UP_INTERVAL: Duration = Duration::from_secs(30);

/// Keys this node asks for in one fetch. Each fetched batch is verified and
/// stored in one go on the worker's only thread: ed25519 runs 3-6x slower
/// in a browser than natively, and 128 records keep that under about 30 ms,
/// so the worker answers the page and the network in between.
pub(crate) const FETCH_KEYS: usize = 128;

/// A spawned task's output. Dropping it detaches the task.
pub(crate) struct Task<T>(oneshot::Receiver<T>);

impl<T> Future for Task<T> {
    type Output = Result<T, TaskError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0
            .poll_unpin(cx)
            .map_err(|_| TaskError("the task ended without an output".into()))
    }
}

/// Runs `future` as a task of its own on the worker's event loop.
pub(crate) fn spawn<F>(future: F) -> Task<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let (done, output) = oneshot::channel();
    wasm_bindgen_futures::spawn_local(async move {
        let _ = done.send(future.await);
    });
    Task(output)
}

/// Runs storage work as a task of its own: the worker has one thread, so
/// the work runs there, between the node's other tasks, never inside the
/// swarm's poll. Each piece is bounded (see [`FETCH_KEYS`]), and the
/// worker's messages and timers run between pieces.
pub(crate) fn blocking<T: 'static>(work: impl FnOnce() -> T + 'static) -> Task<T> {
    spawn(async move { work() })
}

/// Waits for `duration`.
pub(crate) async fn sleep(duration: Duration) {
    futures_timer::Delay::new(duration).await
}

/// `future`'s output, or [`Elapsed`] after `duration`.
pub(crate) async fn timeout<F: Future>(
    duration: Duration,
    future: F,
) -> Result<F::Output, Elapsed> {
    let future = std::pin::pin!(future);
    match futures::future::select(future, futures_timer::Delay::new(duration)).await {
        futures::future::Either::Left((output, _)) => Ok(output),
        futures::future::Either::Right(_) => Err(Elapsed),
    }
}

/// Ticks every `period`, the first time at `first`; a tick that is late
/// delays the following ones instead of bursting to catch up.
pub(crate) struct Interval {
    next: Instant,
    period: Duration,
}

impl Interval {
    pub(crate) fn new(first: Instant, period: Duration) -> Self {
        Interval {
            next: first,
            period,
        }
    }

    pub(crate) async fn tick(&mut self) {
        let now = Instant::now();
        if self.next > now {
            futures_timer::Delay::new(self.next - now).await;
        }
        self.next = Instant::now() + self.period;
    }
}

/// No mDNS in a browser: a behaviour that does nothing, never built.
pub(crate) type Mdns = libp2p::swarm::dummy::Behaviour;

/// Never called: `NetabaseConfig::validate` refuses `mdns` in a browser.
pub(crate) fn mdns(_local: PeerId) -> Result<Mdns, BoxError> {
    Err("mDNS is not available in a browser".into())
}

/// The peers an mDNS event found: there are none.
pub(crate) fn discovered(event: std::convert::Infallible) -> Vec<(PeerId, Multiaddr)> {
    match event {}
}

/// The swarm: WebSocket through the browser's `WebSocket`, with noise and
/// yamux. A browser only dials (`/ip4/../tcp/N/ws`, or `/dns4/../tcp/443/wss`
/// from a page served over https).
pub(crate) async fn swarm(
    keypair: &Keypair,
    idle: Duration,
    behaviour: impl FnOnce(&Keypair) -> Result<Behaviour, BoxError>,
) -> Result<Swarm<Behaviour>, NodeError> {
    use libp2p::core::upgrade::Version;
    use libp2p::Transport as _;
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair.clone())
        .with_wasm_bindgen()
        .with_other_transport(|key| -> Result<_, BoxError> {
            Ok(libp2p::websocket_websys::Transport::default()
                .upgrade(Version::V1Lazy)
                .authenticate(noise::Config::new(key)?)
                .multiplex(yamux::Config::default()))
        })
        .map_err(transport_error)?
        .with_behaviour(behaviour)
        .map_err(transport_error)?
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
        .build();
    Ok(swarm)
}

fn transport_error(error: impl std::error::Error + Send + Sync + 'static) -> NodeError {
    NodeError::Transport(Box::new(error))
}
