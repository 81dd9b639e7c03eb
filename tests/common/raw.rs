//! Raw rust-libp2p peers speaking netabase's protocols, for tests that play
//! a peer the node cannot trust: a plain Kademlia peer that pushes records,
//! and a catch-up peer that sends requests of its own making.

use std::io;
use std::time::Duration;

use async_trait::async_trait;
use bincode::{Decode, Encode};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::kad::{self, store::MemoryStore, Quorum, Record, RecordKey};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{noise, tcp, yamux, PeerId, StreamProtocol, Swarm};
use netabase::node::{Netabase, KAD_PROTOCOL, SYNC_PROTOCOL};
use netabase::sync::reconcile::{Part, Watermarks};
use netabase::Keypair;

/// A raw peer on netabase's transport (TCP, Noise, Yamux) running
/// `behaviour`, closing connections idle for `idle`.
pub fn tcp_swarm<B: NetworkBehaviour>(
    keypair: &Keypair,
    idle: Duration,
    behaviour: impl FnOnce(&Keypair) -> B,
) -> Swarm<B> {
    libp2p::SwarmBuilder::with_existing_identity(keypair.clone())
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(behaviour)
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
        .build()
}

/// A plain Kademlia peer on netabase's DHT protocol.
pub fn kad_swarm(keypair: &Keypair) -> Swarm<kad::Behaviour<MemoryStore>> {
    tcp_swarm(keypair, Duration::from_secs(30), |key| {
        let mut config = kad::Config::new(KAD_PROTOCOL);
        config.set_max_packet_size(256 * 1024);
        let peer = key.public().to_peer_id();
        kad::Behaviour::with_config(peer, MemoryStore::new(peer), config)
    })
}

/// Points a Kademlia peer at `node` and dials it.
pub fn kad_dial(swarm: &mut Swarm<kad::Behaviour<MemoryStore>>, node: &Netabase) {
    let address = node.listen_addresses()[0].clone();
    swarm
        .behaviour_mut()
        .add_address(&node.peer_id(), address.clone());
    swarm.dial(address).unwrap();
}

/// Sends `value` under `key` straight to `target` and waits for the ack.
pub async fn push(
    swarm: &mut Swarm<kad::Behaviour<MemoryStore>>,
    target: PeerId,
    key: Vec<u8>,
    value: Vec<u8>,
    publisher: Option<PeerId>,
) {
    let record = Record {
        key: RecordKey::new(&key),
        value,
        publisher,
        expires: None,
    };
    let id = swarm
        .behaviour_mut()
        .put_record_to(record, std::iter::once(target), Quorum::One);
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let SwarmEvent::Behaviour(kad::Event::OutboundQueryProgressed {
                id: done,
                result,
                ..
            }) = swarm.select_next_some().await
            {
                if done == id {
                    assert!(
                        matches!(result, kad::QueryResult::PutRecord(Ok(_))),
                        "{result:?}"
                    );
                    return;
                }
            }
        }
    })
    .await
    .expect("the node acknowledges the put");
}

// The node's catch-up messages (pub(crate) there), mirrored variant for variant.

/// A catch-up request, as the node encodes it.
#[derive(Debug, Encode, Decode)]
pub enum SyncRequest {
    Reconcile(Watermarks, Vec<Part>),
    Fetch(Vec<Vec<u8>>),
}

/// A catch-up response, as the node encodes it.
#[derive(Debug, Encode, Decode)]
pub enum SyncResponse {
    Reconcile(Watermarks, Vec<Part>),
    Records(Vec<Vec<u8>>),
}

/// Reads and writes messages like the node (a 4-byte big-endian length,
/// then bincode): catch-up's (`RawSyncCodec`) or remote queries'
/// (`RawQueryCodec`). With `read_answers` off, a response is never read,
/// so the node's answer stays unread in the stream.
pub struct RawCodec<Req, Resp> {
    pub read_answers: bool,
    messages: std::marker::PhantomData<fn() -> (Req, Resp)>,
}

impl<Req, Resp> RawCodec<Req, Resp> {
    pub fn new(read_answers: bool) -> Self {
        RawCodec {
            read_answers,
            messages: std::marker::PhantomData,
        }
    }
}

impl<Req, Resp> Clone for RawCodec<Req, Resp> {
    fn clone(&self) -> Self {
        Self::new(self.read_answers)
    }
}

/// Catch-up's messages.
pub type RawSyncCodec = RawCodec<SyncRequest, SyncResponse>;

/// The largest message the node reads.
const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

fn invalid(error: impl ToString) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error.to_string())
}

/// Reads one message as the node does: within its limit, with no bytes
/// left over.
pub async fn read_frame<T: AsyncRead + Unpin + Send, M: Decode<()>>(io: &mut T) -> io::Result<M> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(invalid(format!("a message of {len} bytes")));
    }
    let mut bytes = vec![0u8; len];
    io.read_exact(&mut bytes).await?;
    let (message, read) =
        bincode::decode_from_slice(&bytes, bincode::config::standard()).map_err(invalid)?;
    if read != len {
        return Err(invalid("trailing bytes in a message"));
    }
    Ok(message)
}

async fn write_frame<T: AsyncWrite + Unpin + Send, M: Encode>(
    io: &mut T,
    message: &M,
) -> io::Result<()> {
    let bytes = bincode::encode_to_vec(message, bincode::config::standard()).map_err(invalid)?;
    io.write_all(&(bytes.len() as u32).to_be_bytes()).await?;
    io.write_all(&bytes).await?;
    io.close().await
}

#[async_trait]
impl<Req, Resp> request_response::Codec for RawCodec<Req, Resp>
where
    Req: Encode + Decode<()> + Send + Sync + 'static,
    Resp: Encode + Decode<()> + Send + Sync + 'static,
{
    type Protocol = StreamProtocol;
    type Request = Req;
    type Response = Resp;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Req> {
        read_frame(io).await
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Resp> {
        if !self.read_answers {
            futures::future::pending::<()>().await;
        }
        read_frame(io).await
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Req,
    ) -> io::Result<()> {
        write_frame(io, &request).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: Resp,
    ) -> io::Result<()> {
        write_frame(io, &response).await
    }
}

/// A raw catch-up peer.
pub type SyncSwarm = Swarm<request_response::Behaviour<RawSyncCodec>>;

/// A raw catch-up peer that dials nobody yet; `read_answers` as in
/// [`RawSyncCodec`]. Its requests time out after `timeout`.
pub fn sync_swarm(read_answers: bool, timeout: Duration) -> SyncSwarm {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| {
            request_response::Behaviour::with_codec(
                RawSyncCodec::new(read_answers),
                [(SYNC_PROTOCOL, ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(timeout)
                    .with_max_concurrent_streams(1000),
            )
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build()
}

/// Dials `node` and waits for the connection.
pub async fn sync_connect(swarm: &mut SyncSwarm, node: &Netabase) {
    swarm.dial(super::address_of(node)).unwrap();
    tokio::time::timeout(super::NET_WAIT, async {
        loop {
            if let SwarmEvent::ConnectionEstablished { .. } = swarm.select_next_some().await {
                return;
            }
        }
    })
    .await
    .expect("the raw peer connects");
}

/// A remote query, as the node encodes it.
#[derive(Clone, Debug, Encode, Decode)]
pub struct QueryRequest {
    pub model: u32,
    pub index: u16,
    pub value: Vec<u8>,
    pub limit: u32,
}

/// A remote query's answer, as the node encodes it.
#[derive(Clone, Debug, Default, Encode, Decode)]
pub struct QueryResponse {
    pub records: Vec<Vec<u8>>,
}

/// Remote queries' messages.
pub type RawQueryCodec = RawCodec<QueryRequest, QueryResponse>;

/// A raw peer that answers remote queries as its test says.
pub type QuerySwarm = Swarm<request_response::Behaviour<RawQueryCodec>>;

/// A raw remote-query peer with `keypair`, dialling nobody yet.
pub fn query_swarm(keypair: &Keypair) -> QuerySwarm {
    tcp_swarm(keypair, Duration::from_secs(120), |_| {
        request_response::Behaviour::with_codec(
            RawQueryCodec::new(true),
            [(netabase::node::QUERY_PROTOCOL, ProtocolSupport::Full)],
            request_response::Config::default(),
        )
    })
}
