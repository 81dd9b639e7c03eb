//! The browser platform: a dedicated Web Worker's event loop.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::channel::oneshot;
use futures::FutureExt;

use libp2p::{noise, yamux, Multiaddr, PeerId, Swarm};

use super::{BoxError, Elapsed, Instant, TaskError};
use crate::node::shell::behaviour::Behaviour;
use crate::node::shell::nat::RelayClient;
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
/// stored in one go on the worker's only thread, and ed25519 runs 3-6x
/// slower in a browser than natively: 64 records take about 5 ms (128 took
/// 10), so with the turn [`blocking`] yields before each batch, a timer or
/// a page's message waits at most about 17 ms during a catch-up (29-46 ms
/// with 128, measured by `tests/browser/run --measure`).
pub(crate) const FETCH_KEYS: usize = 64;

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

/// Runs storage work a caller waits on as a task of its own: the worker
/// has one thread, so the work runs there, between the node's other tasks,
/// never inside the swarm's poll, after the worker's waiting tasks
/// (messages, timers, socket data).
pub(crate) fn blocking<T: 'static>(work: impl FnOnce() -> T + 'static) -> Task<T> {
    spawn(async move {
        next_turn().await;
        work()
    })
}

/// A short read a caller waits on: as [`blocking`] (the worker has one
/// thread to run it on).
pub(crate) async fn read_now<T: 'static>(
    work: impl FnOnce() -> T + 'static,
) -> Result<T, TaskError> {
    blocking(work).await
}

/// Storage work the node does on its own (storing fetched batches,
/// answering peers): one piece at a time, each bounded (see
/// [`FETCH_KEYS`]) and after a turn, so the worker's tasks wait behind at
/// most one piece, not behind every batch that arrived, and a caller's
/// work ([`blocking`]) does not queue behind them at all.
pub(crate) fn background<T: 'static>(work: impl FnOnce() -> T + 'static) -> Task<T> {
    spawn(async move {
        let lane = LANE.with(Rc::clone);
        let _held = lane.lock().await;
        next_turn().await;
        work()
    })
}

thread_local! {
    /// The node's own storage work, waiting in order.
    static LANE: Rc<futures::lock::Mutex<()>> = Rc::new(futures::lock::Mutex::new(()));
}

/// Lets the worker's event loop take its next task before going on.
///
/// Futures run as microtasks, and the browser runs every microtask queued
/// before it takes the next task: a page's message, a timer, a socket's
/// data. Awaiting a resolved promise yields only to other microtasks, and
/// storage work chained through them (fetched batches arriving while one
/// is stored) held a 5 ms timer back for 60 ms. A zero timer would yield,
/// but nested timers are clamped to 4 ms; a message to ourselves through a
/// `MessageChannel` is the next task at once.
async fn next_turn() {
    let Ok(channel) = web_sys::MessageChannel::new() else {
        return;
    };
    let turn = js_sys::Promise::new(&mut |resolve, _| {
        channel.port1().set_onmessage(Some(&resolve));
        if channel
            .port2()
            .post_message(&wasm_bindgen::JsValue::NULL)
            .is_err()
        {
            let _ = resolve.call0(&wasm_bindgen::JsValue::NULL);
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(turn).await;
    // Held until the message arrives: the ports must outlive it.
    channel.port1().set_onmessage(None);
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
/// yamux, and the relay client over it. A browser only dials
/// (`/ip4/../tcp/N/ws`, or `/dns4/../tcp/443/wss` from a page served over
/// https), and is reached through relays it holds a slot on.
pub(crate) async fn swarm(
    keypair: &Keypair,
    idle: Duration,
    behaviour: impl FnOnce(&Keypair, RelayClient) -> Result<Behaviour, BoxError>,
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
