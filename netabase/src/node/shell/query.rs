//! Remote queries: a node asks its peers for the records whose secondary
//! index holds a value (`Netabase::query_remote`), on a protocol of its
//! own, so peers of earlier releases, which do not speak it, are simply
//! not asked. Every answer is bounded (records, bytes) and every record in
//! it is checked as any record from a peer is, and against the query.

use std::io;
use std::sync::Arc;

use async_trait::async_trait;
use bincode::{Decode, Encode};
use futures::{AsyncRead, AsyncWrite};
use libp2p::{request_response, StreamProtocol};
use tokio::sync::Semaphore;

use super::catchup::{invalid, read_message, write_message};

/// The remote-query protocol.
pub const QUERY_PROTOCOL: StreamProtocol = StreamProtocol::new("/netabase/query/1.0.0");
/// Records one peer returns for one query, at most.
pub const MAX_QUERY_RESULTS: usize = 256;
/// Bytes of records one peer returns for one query, at most: a query asks
/// a few peers, and a phone holds every answer until it is checked.
pub(crate) const MAX_QUERY_RESPONSE_BYTES: usize = 1024 * 1024;
/// The longest index value a query carries (the store's key limit).
const MAX_QUERY_VALUE: usize = crate::sync::reconcile::MAX_KEY_BYTES;
/// Largest request read: a value and a few numbers.
const MAX_QUERY_REQUEST: usize = MAX_QUERY_VALUE + 64;
/// Largest response read: the records, with their length prefixes.
const MAX_QUERY_RESPONSE: usize = MAX_QUERY_RESPONSE_BYTES + 8 * MAX_QUERY_RESULTS + 64;
/// Bytes of query messages being read at once, over every peer.
const READ_BUDGET: usize = 8 * 1024 * 1024;

/// Which records a peer is asked for.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub(crate) struct QueryRequest {
    /// The model's id.
    pub(crate) model: u32,
    /// The index, a position in the model's `INDEXES`.
    pub(crate) index: u16,
    /// The encoded value the index must hold.
    pub(crate) value: Vec<u8>,
    /// Records wanted, at most (capped at [`MAX_QUERY_RESULTS`]).
    pub(crate) limit: u32,
}

/// A peer's answer: the signed envelopes of the records it holds that
/// match, in primary-key order, within the bounds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub(crate) struct QueryResponse {
    pub(crate) records: Vec<Vec<u8>>,
}

/// Length-prefixed bincode within the bounds above.
#[derive(Clone, Debug)]
pub(crate) struct QueryCodec {
    reading: Arc<Semaphore>,
}

impl Default for QueryCodec {
    fn default() -> Self {
        QueryCodec {
            reading: Arc::new(Semaphore::new(READ_BUDGET)),
        }
    }
}

#[async_trait]
impl request_response::Codec for QueryCodec {
    type Protocol = StreamProtocol;
    type Request = QueryRequest;
    type Response = QueryResponse;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<QueryRequest> {
        let request: QueryRequest = read_message(io, &self.reading, MAX_QUERY_REQUEST).await?;
        if request.value.len() > MAX_QUERY_VALUE {
            return Err(invalid("a query value over the key limit"));
        }
        Ok(request)
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<QueryResponse> {
        let response: QueryResponse = read_message(io, &self.reading, MAX_QUERY_RESPONSE).await?;
        let bytes: usize = response.records.iter().map(Vec::len).sum();
        if response.records.len() > MAX_QUERY_RESULTS || bytes > MAX_QUERY_RESPONSE_BYTES {
            return Err(invalid("a query answer over the bounds"));
        }
        Ok(response)
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: QueryRequest,
    ) -> io::Result<()> {
        write_message(io, &request, MAX_QUERY_REQUEST).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: QueryResponse,
    ) -> io::Result<()> {
        write_message(io, &response, MAX_QUERY_RESPONSE).await
    }
}
