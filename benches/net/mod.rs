//! What the network benches (`node`, `sync`) share: a small runtime, scratch
//! directories, bounded waits, node addresses, raw swarms and their
//! request-response codec, and paired groups.
#![allow(dead_code)]

use std::cell::RefCell;
use std::future::Future;
use std::time::Duration;

use std::io;

use criterion::{Criterion, SamplingMode};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{noise, request_response, tcp, yamux, StreamProtocol, Swarm};
use netabase::node::{Multiaddr, Netabase, Protocol};
use netabase::Keypair;
use tokio::runtime::Runtime;

/// Largest raw request-response message read.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

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
/// nodelay, Noise, Yamux, connections kept 60 s when idle, streams that
/// settle their protocol lazily (as a node's).
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
        // Streams settle their protocol lazily, as a node's do.
        .with_swarm_config(|c| {
            c.with_idle_connection_timeout(Duration::from_secs(60))
                .with_substream_upgrade_protocol_override(libp2p::core::upgrade::Version::V1Lazy)
        })
        .build()
}

// ---------------------------------------------------------------------------
// Paired groups.

/// Every time each side took over every iteration of a paired group.
#[derive(Default)]
struct Totals {
    times: RefCell<Vec<Vec<Duration>>>,
}

impl Totals {
    fn add(&self, side: usize, took: Duration) {
        let mut times = self.times.borrow_mut();
        if times.len() <= side {
            times.resize(side + 1, Vec::new());
        }
        times[side].push(took);
    }

    /// Prints each side's total against side 0's, and its median against
    /// side 0's: a few stalls of the machine weigh on a total, not on a
    /// median, so the two agreeing says the ratio is not the stalls'.
    fn report(&self, what: &str, names: &[&str]) {
        let mut times = self.times.borrow_mut();
        for side in times.iter_mut() {
            side.sort_unstable();
        }
        let total = |side: &Vec<Duration>| side.iter().sum::<Duration>().as_secs_f64();
        let median = |side: &Vec<Duration>| side[side.len() / 2].as_secs_f64();
        let Some(first) = times.first().filter(|side| !side.is_empty()) else {
            return;
        };
        let (first_total, first_median) = (total(first), median(first));
        let ratios = |of: &dyn Fn(&Vec<Duration>) -> f64, first: f64| -> String {
            names
                .iter()
                .zip(times.iter())
                .skip(1)
                .filter(|(_, side)| !side.is_empty())
                .map(|(name, side)| format!("{:.3}x {name}", first / of(side)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "{what}, paired over every iteration: {} is {}; medians: {}",
            names[0],
            ratios(&total, first_total),
            ratios(&median, first_median)
        );
        for (name, side) in names.iter().zip(times.iter()) {
            if let Some(median) = side.get(side.len() / 2) {
                println!(
                    "  {name}: {} iterations, median {median:?}, mean {:?}",
                    side.len(),
                    side.iter().sum::<Duration>() / side.len().max(1) as u32
                );
            }
        }
    }
}

/// `<side>/<what>` for each side, measured paired: every iteration runs all
/// sides once, in an order that rotates, and reports only its own side's
/// time; the totals over every iteration of every side's bench are printed
/// as ratios to side 0 (the figure to read: the machine's drift between
/// benches falls on every side alike).
pub fn paired(
    c: &mut Criterion,
    group: &str,
    rt: &Runtime,
    what: &str,
    names: &[&str],
    run: &mut impl AsyncSides,
) {
    let mut group = c.benchmark_group(group);
    group.sampling_mode(SamplingMode::Flat);
    let totals = Totals::default();
    for (k, name) in names.iter().enumerate() {
        group.bench_function(format!("{name}/{what}"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut own = Duration::ZERO;
                    for i in 0..iters as usize {
                        for j in 0..names.len() {
                            let side = (i + j) % names.len();
                            let took = run.run(side).await;
                            totals.add(side, took);
                            if side == k {
                                own += took;
                            }
                        }
                    }
                    own
                })
            })
        });
    }
    group.finish();
    totals.report(what, names);
}

/// The sides of a paired group: `run(side)` does one operation, timed.
pub trait AsyncSides {
    async fn run(&mut self, side: usize) -> Duration;
}

// ---------------------------------------------------------------------------
// A raw request-response codec.

/// A raw request: a list of byte strings (keys, or envelopes).
pub type RawRequest = Vec<Vec<u8>>;
/// A raw response: the same.
pub type RawResponse = Vec<Vec<u8>>;

/// Raw request-response messages framed as netabase's catch-up frames its
/// own (a 4-byte length, then bincode standard): the floors' catch-up
/// protocol, and the second protocol of peers that run what a node runs.
#[derive(Clone, Copy, Debug, Default)]
pub struct RawCodec;

async fn read_message<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<Vec<Vec<u8>>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_MESSAGE_BYTES {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "too large"));
    }
    let mut bytes = vec![0u8; len];
    io.read_exact(&mut bytes).await?;
    let config = bincode::config::standard().with_limit::<MAX_MESSAGE_BYTES>();
    let (message, read) = bincode::decode_from_slice(&bytes, config)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    if read != len {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "trailing bytes"));
    }
    Ok(message)
}

async fn write_message<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    message: &Vec<Vec<u8>>,
) -> io::Result<()> {
    let bytes = bincode::encode_to_vec(message, bincode::config::standard())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let len = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "too large"))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(&bytes).await?;
    io.close().await
}

#[async_trait::async_trait]
impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = RawRequest;
    type Response = RawResponse;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<RawRequest> {
        read_message(io).await
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<RawResponse> {
        read_message(io).await
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: RawRequest,
    ) -> io::Result<()> {
        write_message(io, &request).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: RawResponse,
    ) -> io::Result<()> {
        write_message(io, &response).await
    }
}
