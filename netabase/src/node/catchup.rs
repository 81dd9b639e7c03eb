//! Catch-up: when two peers connect (and periodically), they reconcile their
//! record sets with range-based set reconciliation over a request-response
//! protocol, then fetch the records they lack in batches. Fetched records go
//! through the same validation as records pushed over Kademlia and are
//! committed a batch per transaction.

use std::collections::{HashMap, VecDeque};
use std::io;

use async_trait::async_trait;
use bincode::{Decode, Encode};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{request_response, PeerId, StreamProtocol};

use crate::model::ModelId;
use crate::sync::reconcile::{Part, Watermarks};

/// The catch-up protocol.
pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/netabase/sync/1.0.0");
/// Largest message read; larger ones end the stream with an error.
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// Keys asked for in one fetch.
pub(crate) const FETCH_BATCH: usize = 512;
/// Encoded records sent in one fetch response, at most.
pub(crate) const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// Fetches in flight to one peer, counting batches still being stored.
pub(crate) const FETCHES_IN_FLIGHT: usize = 4;

/// A catch-up request.
#[derive(Debug, Encode, Decode)]
pub(crate) enum SyncRequest {
    /// A reconciliation message, with the sender's watermarks.
    Reconcile(Watermarks, Vec<Part>),
    /// Send me the envelopes of these record keys.
    Fetch(Vec<Vec<u8>>),
}

/// A catch-up response.
#[derive(Debug, Encode, Decode)]
pub(crate) enum SyncResponse {
    /// The answer to a reconciliation message (empty: nothing more to say),
    /// with the sender's watermarks.
    Reconcile(Watermarks, Vec<Part>),
    /// Envelopes for a prefix of the keys asked for, in order; an empty entry
    /// for a key no longer held. Keys past the prefix did not fit: ask again.
    Records(Vec<Vec<u8>>),
}

/// Length-prefixed bincode, bounded.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SyncCodec;

async fn read_message<T: AsyncRead + Unpin + Send, M: Decode<()>>(io: &mut T) -> io::Result<M> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_MESSAGE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("sync message of {len} bytes is over the {MAX_MESSAGE_BYTES}-byte limit"),
        ));
    }
    let mut bytes = vec![0u8; len];
    io.read_exact(&mut bytes).await?;
    let config = bincode::config::standard().with_limit::<MAX_MESSAGE_BYTES>();
    let (message, read) = bincode::decode_from_slice(&bytes, config)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    if read != len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "trailing bytes in a sync message",
        ));
    }
    Ok(message)
}

async fn write_message<T: AsyncWrite + Unpin + Send, M: Encode>(
    io: &mut T,
    message: &M,
) -> io::Result<()> {
    let bytes = bincode::encode_to_vec(message, bincode::config::standard())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let len = u32::try_from(bytes.len())
        .ok()
        .filter(|len| *len as usize <= MAX_MESSAGE_BYTES)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "sync message too large"))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(&bytes).await?;
    io.close().await
}

#[async_trait]
impl request_response::Codec for SyncCodec {
    type Protocol = StreamProtocol;
    type Request = SyncRequest;
    type Response = SyncResponse;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<SyncRequest> {
        read_message(io).await
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<SyncResponse> {
        read_message(io).await
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: SyncRequest,
    ) -> io::Result<()> {
        write_message(io, &request).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: SyncResponse,
    ) -> io::Result<()> {
        write_message(io, &response).await
    }
}

/// The model a record key belongs to (its first four bytes).
pub(crate) fn model_of(record_key: &[u8]) -> Option<ModelId> {
    record_key
        .first_chunk::<4>()
        .map(|id| ModelId(u32::from_be_bytes(*id)))
}

/// Keys to fetch from each peer, fetches in flight, and per-model progress.
#[derive(Default)]
pub(crate) struct Fetches {
    queued: HashMap<PeerId, VecDeque<Vec<u8>>>,
    in_flight: HashMap<request_response::OutboundRequestId, (PeerId, Vec<Vec<u8>>)>,
    /// Batches received and being validated and stored.
    storing: HashMap<PeerId, usize>,
    progress: HashMap<(PeerId, ModelId), Progress>,
}

/// Catch-up progress with one peer for one model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Progress {
    pub(crate) received: u64,
    pub(crate) outstanding: usize,
}

impl Fetches {
    /// Queues keys to fetch from `peer`; returns the models they touch.
    pub(crate) fn queue(&mut self, peer: PeerId, keys: Vec<Vec<u8>>) -> Vec<ModelId> {
        let mut models = Vec::new();
        for key in &keys {
            if let Some(model) = model_of(key) {
                self.progress.entry((peer, model)).or_default().outstanding += 1;
                if !models.contains(&model) {
                    models.push(model);
                }
            }
        }
        self.queued.entry(peer).or_default().extend(keys);
        models
    }

    /// The next batch to ask `peer` for, if any and if there is room: batches
    /// in flight and batches received but not yet stored count together, so
    /// a slow disk slows the fetching instead of piling up batches.
    pub(crate) fn next_batch(&mut self, peer: PeerId) -> Option<Vec<Vec<u8>>> {
        let in_flight = self.in_flight.values().filter(|(p, _)| *p == peer).count()
            + self.storing.get(&peer).copied().unwrap_or(0);
        if in_flight >= FETCHES_IN_FLIGHT {
            return None;
        }
        let queue = self.queued.get_mut(&peer)?;
        let take = queue.len().min(FETCH_BATCH);
        if take == 0 {
            self.queued.remove(&peer);
            return None;
        }
        Some(queue.drain(..take).collect())
    }

    pub(crate) fn sent(
        &mut self,
        id: request_response::OutboundRequestId,
        peer: PeerId,
        keys: Vec<Vec<u8>>,
    ) {
        self.in_flight.insert(id, (peer, keys));
    }

    /// Whether fetch `id` awaits its answer.
    pub(crate) fn is_in_flight(&self, id: request_response::OutboundRequestId) -> bool {
        self.in_flight.contains_key(&id)
    }

    /// The keys a finished fetch asked for; they no longer count as
    /// outstanding (the caller queues again those it must ask again).
    pub(crate) fn finished(
        &mut self,
        id: request_response::OutboundRequestId,
    ) -> Option<(PeerId, Vec<Vec<u8>>)> {
        let (peer, keys) = self.in_flight.remove(&id)?;
        for key in &keys {
            if let Some(progress) = model_of(key).and_then(|m| self.progress.get_mut(&(peer, m))) {
                progress.outstanding = progress.outstanding.saturating_sub(1);
            }
        }
        Some((peer, keys))
    }

    /// A batch from `peer` went to be stored.
    pub(crate) fn storing(&mut self, peer: PeerId) {
        *self.storing.entry(peer).or_default() += 1;
    }

    /// A batch from `peer` was stored: `received` records of each model.
    /// Returns the progress of every model touched.
    pub(crate) fn stored(
        &mut self,
        peer: PeerId,
        received: &[(ModelId, u64)],
    ) -> Vec<(ModelId, Progress)> {
        if let Some(n) = self.storing.get_mut(&peer) {
            *n = n.saturating_sub(1);
        }
        received
            .iter()
            .map(|(model, n)| {
                let progress = self.progress.entry((peer, *model)).or_default();
                progress.received += n;
                (*model, *progress)
            })
            .collect()
    }

    pub(crate) fn progress(&self, peer: PeerId, model: ModelId) -> Progress {
        self.progress
            .get(&(peer, model))
            .copied()
            .unwrap_or_default()
    }

    /// Nothing queued, in flight or being stored for `peer`.
    pub(crate) fn idle(&self, peer: PeerId) -> bool {
        self.queued.get(&peer).is_none_or(VecDeque::is_empty)
            && !self.in_flight.values().any(|(p, _)| *p == peer)
            && self.storing.get(&peer).is_none_or(|n| *n == 0)
    }

    /// Starts counting received records for `peer` from zero.
    pub(crate) fn reset_progress(&mut self, peer: PeerId) {
        self.progress
            .retain(|(p, _), progress| *p != peer || progress.outstanding > 0);
        for ((p, _), progress) in self.progress.iter_mut() {
            if *p == peer {
                progress.received = 0;
            }
        }
    }

    /// Forgets a peer that disconnected.
    pub(crate) fn drop_peer(&mut self, peer: PeerId) {
        self.queued.remove(&peer);
        self.in_flight.retain(|_, (p, _)| *p != peer);
        self.storing.remove(&peer);
        self.progress.retain(|(p, _), _| *p != peer);
    }
}
