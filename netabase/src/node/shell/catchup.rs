//! Catch-up: when two peers connect (and periodically), they reconcile their
//! record sets with range-based set reconciliation over a request-response
//! protocol, then fetch the records they lack in batches. Fetched records go
//! through the same validation as records pushed over Kademlia and are
//! committed a batch per transaction.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::sync::Arc;

use async_trait::async_trait;
use bincode::{Decode, Encode};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{request_response, PeerId, StreamProtocol};

use crate::model::ModelId;
use tokio::sync::Semaphore;

use crate::node::replica::stats::Traffic;
use crate::sync::reconcile::{self, Part, Watermarks};

/// The catch-up protocol.
pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/netabase/sync/1.0.0");
/// Largest request read (a reconciliation message or a fetch), on the wire
/// and decoded: every honest request is far smaller (see
/// [`reconcile::MAX_MESSAGE_COST`] and [`FETCH_BATCH_BYTES`]).
pub(crate) const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;
/// Largest response read; only responses to this node's own requests are
/// read, a few per peer at a time.
const MAX_RESPONSE_READ: usize = 16 * 1024 * 1024;
/// Bytes of inbound messages being read at once, over every peer: past it,
/// new streams fail until reads finish, so many peers cannot together pin
/// memory with half-sent messages.
const READ_BUDGET: usize = 64 * 1024 * 1024;
/// Keys answered in one fetch, at most (a peer may ask fewer: see
/// `platform::FETCH_KEYS`).
pub(crate) const FETCH_BATCH: usize = 512;
/// Key bytes asked for in one fetch (at least one key).
pub(crate) const FETCH_BATCH_BYTES: usize = 512 * 1024;
/// Encoded records sent in one fetch response, at most.
pub(crate) const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// Fetches in flight to one peer, counting batches still being stored, so
/// a slow disk slows the fetching instead of piling batches up in memory:
/// at most this many answers of at most [`MAX_RESPONSE_BYTES`] each are held
/// per peer. Eight, not four: with four, the slots sat behind the commit
/// and the serving peer's reads, and catch-up ran at 1.15-1.2x the same
/// work on raw parts (1.04-1.05x with eight; `benches/sync.rs`,
/// `catch_up_100k_paired`).
pub(crate) const FETCHES_IN_FLIGHT: usize = 8;
/// Keys queued to fetch from one peer, at most; wants past it are left to
/// the next catch-up.
pub(crate) const MAX_QUEUED: usize = 64 * 1024;
/// While more keys than this are queued, the next reconciliation message
/// waits: the fetching sets the pace, not the peer.
pub(crate) const HOLD_QUEUED: usize = 16 * 1024;
/// Reconciliation messages in one exchange this node started, at most.
pub(crate) const MAX_ROUNDS: u32 = 4096;

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

/// Length-prefixed bincode, bounded: a message is read only while the
/// node-wide read budget allows, and decoded within the same limit the
/// writer keeps to.
#[derive(Clone, Debug)]
pub(crate) struct SyncCodec {
    reading: Arc<Semaphore>,
    /// Where the bytes read and written are counted.
    traffic: Arc<Traffic>,
}

impl Default for SyncCodec {
    fn default() -> Self {
        SyncCodec::counting(Arc::default())
    }
}

impl SyncCodec {
    /// A codec that counts the bytes it reads and writes in `traffic`.
    pub(crate) fn counting(traffic: Arc<Traffic>) -> Self {
        SyncCodec {
            reading: Arc::new(Semaphore::new(READ_BUDGET)),
            traffic,
        }
    }

    fn read(&self, bytes: usize) {
        self.traffic
            .received
            .fetch_add(bytes as u64 + 4, std::sync::atomic::Ordering::Relaxed);
    }

    fn wrote(&self, bytes: usize) {
        self.traffic
            .sent
            .fetch_add(bytes as u64 + 4, std::sync::atomic::Ordering::Relaxed);
    }
}

pub(crate) fn invalid(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

/// One message: a 4-byte big-endian length, then bincode, within `limit`
/// and the node-wide read budget.
pub(crate) async fn read_message<T: AsyncRead + Unpin + Send, M: Decode<()>>(
    io: &mut T,
    reading: &Semaphore,
    limit: usize,
) -> io::Result<M> {
    read_sized(io, reading, limit)
        .await
        .map(|(message, _)| message)
}

/// [`read_message`], with the message's length.
async fn read_sized<T: AsyncRead + Unpin + Send, M: Decode<()>>(
    io: &mut T,
    reading: &Semaphore,
    limit: usize,
) -> io::Result<(M, usize)> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > limit {
        return Err(invalid(format!(
            "sync message of {len} bytes is over the {limit}-byte limit"
        )));
    }
    // Held while the message is read and decoded.
    let _permit = u32::try_from(len)
        .ok()
        .and_then(|n| reading.try_acquire_many(n).ok())
        // Our own limit, not the peer's fault: not `InvalidData`.
        .ok_or_else(|| io::Error::other("too many sync messages being read; try again later"))?;
    let mut bytes = vec![0u8; len];
    io.read_exact(&mut bytes).await?;
    let config = bincode::config::standard().with_limit::<MAX_RESPONSE_READ>();
    let (message, read) = bincode::decode_from_slice(&bytes, config).map_err(invalid)?;
    if read != len {
        return Err(invalid("trailing bytes in a sync message"));
    }
    Ok((message, len))
}

/// Writes one message as [`read_message`] reads it.
pub(crate) async fn write_message<T: AsyncWrite + Unpin + Send, M: Encode>(
    io: &mut T,
    message: &M,
    limit: usize,
) -> io::Result<()> {
    write_sized(io, message, limit).await.map(drop)
}

/// [`write_message`], returning the message's length.
async fn write_sized<T: AsyncWrite + Unpin + Send, M: Encode>(
    io: &mut T,
    message: &M,
    limit: usize,
) -> io::Result<usize> {
    let bytes = bincode::encode_to_vec(message, bincode::config::standard()).map_err(invalid)?;
    let len = u32::try_from(bytes.len())
        .ok()
        .filter(|len| *len as usize <= limit)
        .ok_or_else(|| invalid("sync message over the reader's limit"))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(&bytes).await?;
    io.close().await?;
    Ok(bytes.len())
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
        let (request, size): (SyncRequest, _) =
            read_sized(io, &self.reading, MAX_REQUEST_BYTES).await?;
        self.read(size);
        if request_cost(&request) > MAX_REQUEST_BYTES {
            return Err(invalid("a sync request over the decoded-size limit"));
        }
        Ok(request)
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<SyncResponse> {
        let (response, size): (SyncResponse, _) =
            read_sized(io, &self.reading, MAX_RESPONSE_READ).await?;
        self.read(size);
        if let SyncResponse::Reconcile(_, parts) = &response {
            if reconcile::message_cost(parts) > MAX_REQUEST_BYTES {
                return Err(invalid(
                    "a reconciliation answer over the decoded-size limit",
                ));
            }
        }
        Ok(response)
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: SyncRequest,
    ) -> io::Result<()> {
        if request_cost(&request) > MAX_REQUEST_BYTES {
            return Err(invalid(
                "a sync request over the reader's decoded-size limit",
            ));
        }
        let size = write_sized(io, &request, MAX_REQUEST_BYTES).await?;
        self.wrote(size);
        Ok(())
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: SyncResponse,
    ) -> io::Result<()> {
        let size = write_sized(io, &response, MAX_RESPONSE_READ).await?;
        self.wrote(size);
        Ok(())
    }
}

/// What a request costs its reader in memory once decoded (bincode reserves
/// each `Vec`'s length times its element size); reader and writer check the
/// same bound.
pub(crate) fn request_cost(request: &SyncRequest) -> usize {
    match request {
        SyncRequest::Reconcile(_, parts) => reconcile::message_cost(parts),
        SyncRequest::Fetch(keys) => keys
            .iter()
            .map(|key| std::mem::size_of::<Vec<u8>>() + key.len())
            .sum(),
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
    /// Keys queued or in flight per peer: a key is asked for once at a time,
    /// however often reconciliation names it.
    known: HashMap<PeerId, HashSet<Vec<u8>>>,
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
    /// Queues keys to fetch from `peer`, skipping keys already queued or in
    /// flight, up to [`MAX_QUEUED`]; returns the models they touch and
    /// whether keys were left out for lack of room.
    pub(crate) fn queue(&mut self, peer: PeerId, keys: Vec<Vec<u8>>) -> (Vec<ModelId>, bool) {
        let mut models = Vec::new();
        let mut overflow = false;
        let known = self.known.entry(peer).or_default();
        let queue = self.queued.entry(peer).or_default();
        for key in keys {
            if known.contains(&key) {
                continue;
            }
            if queue.len() >= MAX_QUEUED {
                overflow = true;
                break;
            }
            if let Some(model) = model_of(&key) {
                self.progress.entry((peer, model)).or_default().outstanding += 1;
                if !models.contains(&model) {
                    models.push(model);
                }
            }
            known.insert(key.clone());
            queue.push_back(key);
        }
        (models, overflow)
    }

    /// Keys queued for `peer`, not yet asked for.
    pub(crate) fn queued(&self, peer: PeerId) -> usize {
        self.queued.get(&peer).map_or(0, VecDeque::len)
    }

    /// The next batch to ask `peer` for, if any and if there is room: batches
    /// in flight and batches received but not yet stored count together
    /// (see [`FETCHES_IN_FLIGHT`]).
    pub(crate) fn next_batch(&mut self, peer: PeerId) -> Option<Vec<Vec<u8>>> {
        let in_flight = self.in_flight.values().filter(|(p, _)| *p == peer).count()
            + self.storing.get(&peer).copied().unwrap_or(0);
        if in_flight >= FETCHES_IN_FLIGHT {
            return None;
        }
        let queue = self.queued.get_mut(&peer)?;
        if queue.is_empty() {
            self.queued.remove(&peer);
            return None;
        }
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(key) = queue.front() {
            if batch.len() == crate::node::platform::FETCH_KEYS
                || (!batch.is_empty() && bytes + key.len() > FETCH_BATCH_BYTES)
            {
                break;
            }
            bytes += key.len();
            batch.extend(queue.pop_front());
        }
        Some(batch)
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

    /// The keys a finished fetch asked for. They stay known (not fetched
    /// again, however often reconciliation names them) and outstanding
    /// until [`forget`](Self::forget): until stored, they are not in the set
    /// reconciliation reads, and the next round would ask for them again.
    pub(crate) fn finished(
        &mut self,
        id: request_response::OutboundRequestId,
    ) -> Option<(PeerId, Vec<Vec<u8>>)> {
        self.in_flight.remove(&id)
    }

    /// Keys of a finished fetch that were stored, or that failed (the next
    /// reconciliation finds these again): they may be queued again, and no
    /// longer count as outstanding.
    pub(crate) fn forget(&mut self, peer: PeerId, keys: &[Vec<u8>]) {
        let Some(known) = self.known.get_mut(&peer) else {
            return;
        };
        for key in keys {
            if known.remove(key) {
                settle_one(&mut self.progress, peer, key);
            }
        }
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

    /// Forgets what was queued for `peer` (requests in flight still finish).
    pub(crate) fn clear_queue(&mut self, peer: PeerId) {
        if let Some(mut queue) = self.queued.remove(&peer) {
            self.forget(peer, queue.make_contiguous());
        }
    }

    /// Forgets a peer that disconnected.
    pub(crate) fn drop_peer(&mut self, peer: PeerId) {
        self.queued.remove(&peer);
        self.known.remove(&peer);
        self.in_flight.retain(|_, (p, _)| *p != peer);
        self.storing.remove(&peer);
        self.progress.retain(|(p, _), _| *p != peer);
    }
}

/// One key of `peer`'s is no longer outstanding: stored, refused, failed or
/// dropped from the queue. Outstanding keys are exactly the known ones, so a
/// key being stored still counts, and `received + outstanding` never runs
/// ahead of what the catch-up will bring.
fn settle_one(progress: &mut HashMap<(PeerId, ModelId), Progress>, peer: PeerId, key: &[u8]) {
    if let Some(progress) = model_of(key).and_then(|m| progress.get_mut(&(peer, m))) {
        progress.outstanding = progress.outstanding.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> Vec<u8> {
        let mut key = 7u32.to_be_bytes().to_vec();
        key.extend(i.to_be_bytes());
        key
    }

    #[test]
    fn a_key_is_queued_once_and_the_queue_is_capped() {
        let mut fetches = Fetches::default();
        let peer = PeerId::random();
        let keys: Vec<Vec<u8>> = (0..10).map(key).collect();
        let (models, overflow) = fetches.queue(peer, keys.clone());
        assert_eq!((models.len(), overflow), (1, false));
        // Named again, by another round or a replayed message: not queued again.
        fetches.queue(peer, keys.clone());
        assert_eq!(fetches.queued(peer), 10);
        assert_eq!(fetches.progress(peer, ModelId(7)).outstanding, 10);
        // Past the cap, the rest is left for the next catch-up.
        let many: Vec<Vec<u8>> = (10..MAX_QUEUED as u64 + 100).map(key).collect();
        let (_, overflow) = fetches.queue(peer, many);
        assert!(overflow);
        assert_eq!(fetches.queued(peer), MAX_QUEUED);
        fetches.clear_queue(peer);
        assert_eq!(fetches.queued(peer), 0);
        assert!(fetches.idle(peer));
        // Cleared keys may be queued again.
        fetches.queue(peer, keys);
        assert_eq!(fetches.queued(peer), 10);
    }

    #[test]
    fn no_fetch_is_sent_while_a_peer_has_its_most_batches_waiting_to_be_stored() {
        let mut fetches = Fetches::default();
        let peer = PeerId::random();
        fetches.queue(peer, (0..10_000).map(key).collect());
        for _ in 0..FETCHES_IN_FLIGHT {
            fetches.storing(peer);
        }
        assert!(
            fetches.next_batch(peer).is_none(),
            "the slow disk paces the fetching"
        );
        // Another peer's batches do not count against it.
        let other = PeerId::random();
        fetches.queue(other, (0..10).map(key).collect());
        assert!(fetches.next_batch(other).is_some());
        fetches.stored(peer, &[(ModelId(7), 512)]);
        let batch = fetches.next_batch(peer).map(|b| b.len());
        assert_eq!(batch, Some(crate::node::platform::FETCH_KEYS));
    }

    #[test]
    fn keys_being_stored_still_count_as_outstanding() {
        let mut fetches = Fetches::default();
        let peer = PeerId::random();
        let total = 3 * crate::node::platform::FETCH_KEYS;
        fetches.queue(peer, (0..total as u64).map(key).collect());
        // Asked for, answered and handed to storage: nothing is done yet.
        let batches: Vec<_> = (0..3).map(|_| fetches.next_batch(peer).unwrap()).collect();
        assert_eq!(fetches.queued(peer), 0);
        assert_eq!(fetches.progress(peer, ModelId(7)).outstanding, total);
        // Each stored batch moves its keys from outstanding to received.
        for (done, keys) in batches.iter().enumerate() {
            fetches.storing(peer);
            fetches.forget(peer, keys);
            fetches.stored(peer, &[(ModelId(7), keys.len() as u64)]);
            let progress = fetches.progress(peer, ModelId(7));
            let received = (done + 1) * keys.len();
            assert_eq!(progress.received, received as u64);
            assert_eq!(progress.outstanding, total - received);
        }
        // A key forgotten twice (stored, then a late failure) counts once.
        fetches.forget(peer, &batches[0]);
        assert_eq!(fetches.progress(peer, ModelId(7)).outstanding, 0);
    }

    #[test]
    fn a_fetch_asks_for_a_bounded_number_of_key_bytes() {
        let mut fetches = Fetches::default();
        let peer = PeerId::random();
        let long: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 64 * 1024]).collect();
        fetches.queue(peer, long);
        let batch = fetches.next_batch(peer).unwrap();
        assert_eq!(batch.len(), FETCH_BATCH_BYTES / (64 * 1024));
    }
}
