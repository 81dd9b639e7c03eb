//! The event loop's side of catch-up: starting exchanges, answering and
//! continuing reconciliation off the loop, fetching what differs with
//! backpressure, storing batches in blocking tasks, and telling subscribers
//! how far each peer's catch-up has come.

use libp2p::{request_response, PeerId};

use crate::model::ModelId;
use crate::sync::reconcile::{self, Watermarks};
use crate::sync::Timestamp;

use super::EventLoop;
use crate::node::catchup::{
    model_of, Progress, SyncRequest, SyncResponse, FETCH_BATCH, MAX_RESPONSE_BYTES,
};
use crate::node::event::{Event, Origin};
use crate::node::stats::Rejection;
use crate::node::{apply, horizon, Shared};

/// Work finished off the loop, coming back to it.
pub(super) enum Internal {
    /// Send a reconciliation message to `peer`.
    Reconcile { peer: PeerId, request: SyncRequest },
    /// Answer a peer's request.
    Respond {
        peer: PeerId,
        channel: request_response::ResponseChannel<SyncResponse>,
        response: SyncResponse,
    },
    /// What answering a reconciliation message taught us. `next` is set
    /// when the message answered one of ours: our next message (empty: done).
    Learned {
        peer: PeerId,
        want: Vec<Vec<u8>>,
        ghosts: Vec<Vec<u8>>,
        marks: (Watermarks, Watermarks),
        next: Option<SyncRequest>,
    },
    /// A batch from `peer` was stored: records received per model.
    Stored {
        peer: PeerId,
        received: Vec<(ModelId, u64)>,
        failed: bool,
    },
}

/// A catch-up this node started with a peer.
pub(super) struct Exchange {
    pub(super) started: Timestamp,
    /// Reconciliation messages are still going back and forth.
    pub(super) talking: bool,
    /// Nothing failed: a finished exchange means we hold all the peer held.
    pub(super) complete: bool,
    pub(super) received: u64,
}

impl EventLoop {
    /// Starts a catch-up with `peer`, unless one is already running.
    pub(super) fn start_reconcile(&mut self, peer: PeerId) {
        if !self.shared.config.catch_up || self.exchanges.contains_key(&peer) {
            return;
        }
        self.exchanges.insert(
            peer,
            Exchange {
                started: self.shared.clock.now(),
                talking: true,
                complete: true,
                received: 0,
            },
        );
        self.fetches.reset_progress(peer);
        // A small set is listed whole, an O(records) copy: off the loop.
        let shared = self.shared.clone();
        let internal = self.internal.clone();
        tokio::task::spawn_blocking(move || {
            let parts = shared.cache.with_items(reconcile::initiate);
            let request = SyncRequest::Reconcile(horizon::watermarks(&shared), parts);
            let _ = internal.send(Internal::Reconcile { peer, request });
        });
    }

    /// Answers a reconciliation message off the loop: with `channel`, a
    /// peer's request; without, a response to one of our messages, whose
    /// answer becomes our next request.
    fn reconcile_off_loop(
        &self,
        peer: PeerId,
        theirs: Watermarks,
        parts: Vec<reconcile::Part>,
        channel: Option<request_response::ResponseChannel<SyncResponse>>,
    ) {
        let shared = self.shared.clone();
        let internal = self.internal.clone();
        tokio::task::spawn_blocking(move || {
            let ours = horizon::watermarks(&shared);
            let theirs = horizon::bound_theirs(&shared, theirs);
            let outcome = shared
                .cache
                .with_items(|items| reconcile::respond_with(items, &parts, ours, theirs));
            let next = match channel {
                Some(channel) => {
                    let response = SyncResponse::Reconcile(ours, outcome.reply);
                    let _ = internal.send(Internal::Respond {
                        peer,
                        channel,
                        response,
                    });
                    None
                }
                None => Some(SyncRequest::Reconcile(ours, outcome.reply)),
            };
            let _ = internal.send(Internal::Learned {
                peer,
                want: outcome.want,
                ghosts: outcome.ghosts,
                marks: (ours, theirs),
                next,
            });
        });
    }

    pub(super) fn on_internal(&mut self, internal: Internal) {
        match internal {
            Internal::Reconcile { peer, request } => {
                let id = self.swarm.behaviour_mut().sync.send_request(&peer, request);
                self.reconciles.insert(id, peer);
            }
            Internal::Respond {
                peer,
                channel,
                response,
            } => {
                if self
                    .swarm
                    .behaviour_mut()
                    .sync
                    .send_response(channel, response)
                    .is_err()
                {
                    tracing::debug!(%peer, "a sync response could not be sent");
                }
            }
            Internal::Learned {
                peer,
                want,
                ghosts,
                marks: (ours, theirs),
                next,
            } => {
                self.want(peer, want);
                if !ghosts.is_empty() {
                    self.fetches.storing(peer);
                    let shared = self.shared.clone();
                    let internal = self.internal.clone();
                    tokio::task::spawn_blocking(move || {
                        let failed = horizon::drop_ghosts(&shared, peer, &ghosts, ours, theirs)
                            .inspect_err(|error| tracing::warn!(%peer, %error, "could not drop records deleted elsewhere"))
                            .is_err();
                        let _ = internal.send(Internal::Stored {
                            peer,
                            received: Vec::new(),
                            failed,
                        });
                    });
                }
                match next {
                    Some(SyncRequest::Reconcile(_, parts)) if parts.is_empty() => {
                        self.stop_talking(peer)
                    }
                    Some(request) => self.on_internal(Internal::Reconcile { peer, request }),
                    None => {}
                }
            }
            Internal::Stored {
                peer,
                received,
                failed,
            } => {
                let total: u64 = received.iter().map(|(_, n)| n).sum();
                for (model, progress) in self.fetches.stored(peer, &received) {
                    self.progress_event(peer, model, progress);
                }
                if let Some(exchange) = self.exchanges.get_mut(&peer) {
                    exchange.received += total;
                    exchange.complete &= !failed;
                }
                self.pump_fetches(peer);
                self.check_done(peer);
            }
        }
    }

    fn progress_event(&self, peer: PeerId, model: ModelId, progress: Progress) {
        let name = {
            let registry = self
                .shared
                .registry
                .read()
                .unwrap_or_else(|e| e.into_inner());
            match registry.get(model) {
                Some(handler) => handler.name(),
                None => return,
            }
        };
        let _ = self.shared.events.send(Event::CatchUp {
            peer,
            model: name,
            received: progress.received,
            outstanding: progress.outstanding,
        });
    }

    fn stop_talking(&mut self, peer: PeerId) {
        if let Some(exchange) = self.exchanges.get_mut(&peer) {
            exchange.talking = false;
        }
        self.check_done(peer);
    }

    /// Ends our exchange with `peer` once nothing is left to say, fetch or store.
    fn check_done(&mut self, peer: PeerId) {
        let done = self
            .exchanges
            .get(&peer)
            .is_some_and(|e| !e.talking && self.fetches.idle(peer));
        if !done {
            return;
        }
        let Some(exchange) = self.exchanges.remove(&peer) else {
            return;
        };
        if !exchange.complete {
            tracing::debug!(%peer, "catch-up ended incomplete; the next one resumes it");
            return;
        }
        if horizon::caught_up(&self.shared, exchange.started) {
            let shared = self.shared.clone();
            tokio::task::spawn_blocking(move || {
                if let Err(error) = horizon::persist_synced(&shared) {
                    tracing::warn!(%error, "could not record a finished catch-up");
                }
            });
        }
        let _ = self.shared.events.send(Event::CaughtUp {
            peer,
            received: exchange.received,
        });
    }

    /// Asks `peer` for queued keys, as many batches as may be in flight.
    fn pump_fetches(&mut self, peer: PeerId) {
        while let Some(keys) = self.fetches.next_batch(peer) {
            let id = self
                .swarm
                .behaviour_mut()
                .sync
                .send_request(&peer, SyncRequest::Fetch(keys.clone()));
            self.fetches.sent(id, peer, keys);
        }
    }

    pub(super) fn on_sync_event(
        &mut self,
        event: request_response::Event<SyncRequest, SyncResponse>,
    ) {
        use request_response::{Event as Rr, Message};
        match event {
            Rr::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => match request {
                SyncRequest::Reconcile(theirs, parts) => {
                    self.reconcile_off_loop(peer, theirs, parts, Some(channel))
                }
                SyncRequest::Fetch(keys) => {
                    // Copying up to a few MiB of envelopes: off the loop.
                    let shared = self.shared.clone();
                    let internal = self.internal.clone();
                    tokio::task::spawn_blocking(move || {
                        let response = SyncResponse::Records(records_for(&shared, &keys));
                        let _ = internal.send(Internal::Respond {
                            peer,
                            channel,
                            response,
                        });
                    });
                }
            },
            Rr::Message {
                peer,
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => match response {
                SyncResponse::Reconcile(theirs, parts) => {
                    if self.reconciles.remove(&request_id).is_none() {
                        // A fetch answered with a reconciliation (a broken or
                        // hostile peer): the fetch failed. Left in flight, it
                        // would keep the exchange open for good.
                        if self.fetches.is_in_flight(request_id) {
                            tracing::warn!(%peer, "a fetch was answered with a reconciliation");
                            self.request_failed(peer, request_id);
                        }
                        return;
                    }
                    if parts.is_empty() {
                        self.stop_talking(peer);
                    } else {
                        self.reconcile_off_loop(peer, theirs, parts, None);
                    }
                }
                SyncResponse::Records(_) if self.reconciles.contains_key(&request_id) => {
                    // Records in answer to a reconciliation: a broken or
                    // hostile peer. Left waiting, the exchange would never end
                    // and no catch-up with this peer would start again.
                    tracing::warn!(%peer, "a reconciliation was answered with records");
                    self.request_failed(peer, request_id);
                }
                SyncResponse::Records(records) => self.on_records(peer, request_id, records),
            },
            Rr::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                tracing::debug!(%peer, %error, "a sync request failed");
                self.request_failed(peer, request_id);
            }
            Rr::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "a sync request from a peer failed");
            }
            Rr::ResponseSent { .. } => {}
        }
    }

    /// Our request `id` to `peer` failed or got an answer of the wrong kind:
    /// a failed fetch leaves the exchange incomplete, a failed reconciliation
    /// ends it.
    fn request_failed(&mut self, peer: PeerId, id: request_response::OutboundRequestId) {
        // Keys of a failed fetch are found again by the next reconciliation.
        if self.fetches.finished(id).is_some() {
            if let Some(exchange) = self.exchanges.get_mut(&peer) {
                exchange.complete = false;
            }
            self.check_done(peer);
        }
        if self.reconciles.remove(&id).is_some() {
            self.exchanges.remove(&peer);
        }
    }

    /// Queues keys `peer` holds newer, for models this node syncs.
    fn want(&mut self, peer: PeerId, mut keys: Vec<Vec<u8>>) {
        {
            let registry = self
                .shared
                .registry
                .read()
                .unwrap_or_else(|e| e.into_inner());
            keys.retain(|key| model_of(key).is_some_and(|model| registry.contains(model)));
        }
        if keys.is_empty() {
            return;
        }
        for model in self.fetches.queue(peer, keys) {
            self.progress_event(peer, model, self.fetches.progress(peer, model));
        }
        self.pump_fetches(peer);
    }

    fn on_records(
        &mut self,
        peer: PeerId,
        id: request_response::OutboundRequestId,
        records: Vec<Vec<u8>>,
    ) {
        let Some((_, keys)) = self.fetches.finished(id) else {
            return;
        };
        if records.len() > keys.len() {
            // More than asked for: a broken or hostile peer. Drop it all.
            self.shared.counters.reject(Rejection::Malformed);
            tracing::warn!(%peer, "a fetch response had more records than asked for");
            if let Some(exchange) = self.exchanges.get_mut(&peer) {
                exchange.complete = false;
            }
            self.check_done(peer);
            return;
        }
        if !records.is_empty() && records.len() < keys.len() {
            self.fetches.queue(peer, keys[records.len()..].to_vec());
        }
        let pairs: Vec<(Vec<u8>, Vec<u8>)> = keys
            .into_iter()
            .zip(records)
            .filter(|(_, bytes)| !bytes.is_empty())
            .collect();
        self.fetches.storing(peer);
        let shared = self.shared.clone();
        let internal = self.internal.clone();
        tokio::task::spawn_blocking(move || {
            let valid: Vec<_> =
                apply::validate_batch(&shared, &pairs, apply::Horizon::Reconciled)
                    .into_iter()
                    .filter_map(|checked| match checked {
                        Ok(envelope) => Some(envelope),
                        Err(refused) => {
                            shared.counters.reject(refused.reason);
                            tracing::debug!(%peer, reason = ?refused.reason, "dropped a fetched record");
                            None
                        }
                    })
                    .collect();
            let (received, failed) = match apply::apply_batch(&shared, &valid, Origin::Peer(peer)) {
                Ok(models) => (count_by_model(&models), false),
                Err(error) => {
                    tracing::warn!(%peer, %error, "could not store fetched records");
                    (Vec::new(), true)
                }
            };
            let _ = internal.send(Internal::Stored {
                peer,
                received,
                failed,
            });
        });
        self.pump_fetches(peer);
    }
}

/// Envelopes for a prefix of `keys` that fits one response. Blocking-safe.
fn records_for(shared: &Shared, keys: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(keys.len().min(FETCH_BATCH));
    let mut size = 0;
    for key in keys.iter().take(FETCH_BATCH) {
        let bytes = shared
            .cache
            .get(key)
            .map(|c| c.bytes.to_vec())
            .unwrap_or_default();
        size += bytes.len() + 8;
        if size > MAX_RESPONSE_BYTES && !out.is_empty() {
            break;
        }
        out.push(bytes);
    }
    out
}

fn count_by_model(models: &[ModelId]) -> Vec<(ModelId, u64)> {
    let mut counts: Vec<(ModelId, u64)> = Vec::new();
    for model in models {
        match counts.iter_mut().find(|(m, _)| m == model) {
            Some((_, n)) => *n += 1,
            None => counts.push((*model, 1)),
        }
    }
    counts
}
