//! What catch-up reads from the replica, off the event loop: answers from
//! the persistent sync index and the envelopes a peer asks for. Blocking.

use crate::model::ModelId;
use crate::node::replica::{watermarks, Replica};
use crate::node::shell::catchup::{FETCH_BATCH, MAX_RESPONSE_BYTES};
use crate::node::shell::query::{
    QueryRequest, QueryResponse, MAX_QUERY_RESPONSE_BYTES, MAX_QUERY_RESULTS,
};
use crate::sync::reconcile::{self, Context, MessageError, Watermarks};
use crate::sync::Timestamp;

/// How this node answers a reconciliation message (`parts`) from a peer
/// claiming `theirs`. Where the message asks about keys this node does not
/// subscribe to, its lacking one says nothing: it states no floor, so the
/// peer takes nothing it holds there for a delete collected here.
pub(super) fn context(shared: &Replica, theirs: Watermarks, parts: &[reconcile::Part]) -> Context {
    let latest = shared
        .clock
        .wall_millis()
        .saturating_add(shared.clock.max_drift_ms());
    let mut ours = watermarks::watermarks(shared);
    if !parts
        .iter()
        .all(|part| shared.subscriptions.covers(part.range()))
    {
        ours.floor = 0;
    }
    Context {
        ours,
        theirs: watermarks::bound_theirs(shared, theirs),
        latest: Timestamp::new(latest, u16::MAX).0,
        budget: reconcile::MESSAGE_BUDGET,
        fetching: false,
    }
}

/// Envelopes for a prefix of `keys` that fits one response. Blocking-safe.
/// Runs `f` on the sync index as of now (a read snapshot). A failure met
/// while `f` read through it is returned instead of what `f` built.
pub(super) fn with_index<T>(
    shared: &Replica,
    f: impl FnOnce(&dyn reconcile::Items) -> T,
) -> Result<T, crate::StoreError> {
    let read = shared.store.begin_read()?;
    let view = read.sync_index()?;
    let out = f(&view);
    match view.failure() {
        Some(error) => Err(error),
        None => Ok(out),
    }
}

/// Answers `parts` from the sync index, each part on a snapshot of its
/// own (writers get in between); with the first failure to read it, if
/// any, in which case the answer is not to be trusted.
pub(super) fn respond_from_index(
    shared: &Replica,
    parts: &[reconcile::Part],
    cx: &Context,
) -> (
    Result<reconcile::Outcome, MessageError>,
    Option<crate::StoreError>,
) {
    let mut failed = None;
    let outcome = reconcile::respond_each(parts, cx, |answer| {
        if let Err(error) = with_index(shared, |items| answer(items)) {
            failed.get_or_insert(error);
        }
    });
    (outcome, failed)
}

/// Keys a fetch may name and still be answered inside the loop.
const INLINE_KEYS: usize = 4;
/// Bytes of envelopes an answer inside the loop may copy, at most.
const INLINE_BYTES: usize = 64 * 1024;

/// The answer to a small fetch whose keys the cache knows (held, or known
/// not held), without reading the store: `None` if any key is not cached,
/// or the copies would be large. A get's fetch of a hot record is answered
/// at once, without a trip through the blocking pool and back.
pub(super) fn cached_records(shared: &Replica, keys: &[Vec<u8>]) -> Option<Vec<Vec<u8>>> {
    if keys.len() > INLINE_KEYS {
        return None;
    }
    let mut size = 0;
    keys.iter()
        .map(|key| {
            let bytes = shared.cache.cached(key)?.map(|c| c.bytes.to_vec());
            let bytes = bytes.unwrap_or_default();
            size += bytes.len();
            (size <= INLINE_BYTES).then_some(bytes)
        })
        .collect()
}

/// The envelopes `keys` asks for (empty: not held), as many as fit one
/// response: from the cache when there, the rest in one read of the store
/// (not put in the cache: a peer's catch-up would push out what this
/// node's own reads keep there). Blocking.
pub(super) fn records_for(shared: &Replica, keys: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let keys = &keys[..keys.len().min(FETCH_BATCH)];
    let cached: Vec<Option<Vec<u8>>> = keys
        .iter()
        .map(|key| shared.cache.peek(key).map(|c| c.bytes.to_vec()))
        .collect();
    let missing: Vec<&[u8]> = keys
        .iter()
        .zip(&cached)
        .filter(|(_, c)| c.is_none())
        .map(|(key, _)| key.as_slice())
        .collect();
    let read = if missing.is_empty() {
        Ok(Vec::new())
    } else {
        shared
            .store
            .begin_read()
            .and_then(|read| read.envelopes_of(missing))
    };
    let mut read = match read {
        Ok(read) => read.into_iter(),
        Err(error) => {
            // Said as not held: the peer finds them elsewhere or later.
            tracing::warn!(%error, "could not read records a peer asked for");
            Vec::new().into_iter()
        }
    };
    let mut out = Vec::with_capacity(keys.len());
    let mut size = 0;
    for cached in cached {
        let bytes = match cached {
            Some(bytes) => bytes,
            None => read.next().flatten().unwrap_or_default(),
        };
        size += bytes.len() + 8;
        if size > MAX_RESPONSE_BYTES && !out.is_empty() {
            break;
        }
        out.push(bytes);
    }
    out
}

/// A peer's remote query, answered from this node's typed tree: the
/// envelopes of up to the query's limit (and [`MAX_QUERY_RESULTS`]) records
/// whose index holds the value, in primary-key order, while they fit
/// [`MAX_QUERY_RESPONSE_BYTES`]. Nothing for a model or index this node
/// does not know. Blocking; reads at most that many index entries.
pub(super) fn answer_query(shared: &Replica, request: &QueryRequest) -> QueryResponse {
    let limit = (request.limit as usize).min(MAX_QUERY_RESULTS);
    let model = ModelId(request.model);
    let primaries = {
        let registry = shared.registry.read().unwrap_or_else(|e| e.into_inner());
        let Some(handler) = registry.get(model) else {
            return QueryResponse::default();
        };
        shared.store.begin_read().and_then(|read| {
            handler.index_primaries(&read, usize::from(request.index), &request.value, limit)
        })
    };
    let keys: Vec<Vec<u8>> = match primaries {
        Ok(primaries) => primaries
            .iter()
            .map(|primary| crate::codec::record_key(model, primary))
            .collect(),
        Err(error) => {
            tracing::warn!(%error, "could not read an index a peer queried");
            return QueryResponse::default();
        }
    };
    let mut records = Vec::new();
    let mut size = 0;
    for bytes in records_for(shared, &keys) {
        if bytes.is_empty() {
            continue;
        }
        size += bytes.len();
        if size > MAX_QUERY_RESPONSE_BYTES {
            break;
        }
        records.push(bytes);
    }
    QueryResponse { records }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Envelope;
    use crate::node::replica::tests::{note, replica};
    use libp2p_identity::Keypair;

    #[test]
    fn a_small_fetch_of_cached_keys_is_answered_without_the_store() {
        let replica = replica();
        let peer = Keypair::generate_ed25519();
        let now = replica.clock.now();
        let held = Envelope::seal(&peer, &note(1, "a"), now).unwrap();
        replica.cache.insert(&held);
        let gone = Envelope::seal(&peer, &note(2, "a"), now).unwrap();
        replica.cache.remove(&gone.record_key());
        let unknown = Envelope::seal(&peer, &note(3, "a"), now).unwrap();

        // Held, and known not held (an empty entry).
        assert_eq!(
            cached_records(&replica, &[held.record_key(), gone.record_key()]),
            Some(vec![held.as_bytes().to_vec(), Vec::new()])
        );
        // A key the cache does not know goes to the store.
        assert_eq!(
            cached_records(&replica, &[held.record_key(), unknown.record_key()]),
            None
        );
        // As do large fetches, by count...
        let five = vec![held.record_key(); INLINE_KEYS + 1];
        assert_eq!(cached_records(&replica, &five), None);
        // ...and by bytes.
        let big = Envelope::seal(&peer, &note(4, &"x".repeat(INLINE_BYTES / 2 + 1)), now).unwrap();
        replica.cache.insert(&big);
        assert!(cached_records(&replica, &[big.record_key()]).is_some());
        assert_eq!(
            cached_records(&replica, &[big.record_key(), big.record_key()]),
            None
        );
    }
}
