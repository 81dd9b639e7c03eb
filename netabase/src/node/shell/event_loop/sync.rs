//! The event loop's side of catch-up: starting exchanges, answering and
//! continuing reconciliation off the loop, fetching what differs with
//! backpressure, storing batches in blocking tasks, and telling subscribers
//! how far each peer's catch-up has come.
//!
//! Only exchanges this node started lead to fetches or drops: answering a
//! peer's reconciliation teaches this node nothing it acts on, so no peer
//! can make it fetch, queue or delete by sending unasked messages. Both
//! sides of a new connection start their own exchange.

use libp2p::{request_response, PeerId};
use tokio::sync::oneshot;

use crate::model::ModelId;
use crate::sync::reconcile::{self, Context, MessageError, Watermarks};
use crate::sync::Timestamp;

use super::answers::{
    answer_query, cached_records, context, records_for, respond_from_index, with_index,
};
use super::peers::Admit;
use super::EventLoop;
use crate::node::platform;
use crate::node::replica::event::{CatchUpFailure, CatchUpOutcome, Event};
use crate::node::replica::stats::{Counters, Rejection};
use crate::node::replica::{announce, fetched, horizon, intake, validate, watermarks};
use crate::node::shell::catchup::{
    model_of, Progress, SyncRequest, SyncResponse, HOLD_QUEUED, MAX_RESPONSE_BYTES, MAX_ROUNDS,
};

/// A caller of `catch_up_and_wait`: the peers whose catch-up has not ended
/// yet, and how the others ended.
pub(super) struct CatchUpWaiter {
    pending: Vec<PeerId>,
    ended: Vec<(PeerId, CatchUpOutcome)>,
    reply: oneshot::Sender<Vec<(PeerId, CatchUpOutcome)>>,
}

/// Work finished off the loop, coming back to it.
pub(super) enum Internal {
    /// Send the first reconciliation message of our exchange with `peer`.
    Reconcile { peer: PeerId, request: SyncRequest },
    /// Answer a peer's request; `None`: the request broke the protocol and
    /// goes unanswered.
    Respond {
        peer: PeerId,
        id: request_response::InboundRequestId,
        channel: request_response::ResponseChannel<SyncResponse>,
        response: Option<SyncResponse>,
    },
    /// What the peer's answer to our reconciliation message taught us.
    Learned {
        peer: PeerId,
        outcome: Result<reconcile::Outcome, MessageError>,
        marks: (Watermarks, Watermarks),
    },
    /// A storage probe finished (the error's whole chain if it failed).
    Probed(Result<(), String>),
    /// A fetched batch (or a drop of ghosts) was stored.
    Stored(fetched::Stored),
    /// A peer's remote query was answered: send it.
    QueryAnswered {
        channel: request_response::ResponseChannel<crate::node::shell::query::QueryResponse>,
        response: crate::node::shell::query::QueryResponse,
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
    /// Records the peer holds that this node did not take.
    refused: u64,
    /// Messages sent so far.
    rounds: u32,
    /// Our next message, held back while many keys wait to be fetched.
    held: Option<SyncRequest>,
    /// A catch-up was asked for while this one ran: it may have compared
    /// before the change that prompted the call, so another follows it.
    again: bool,
    /// Records the peer holds that our clock cannot accept yet, and the
    /// earliest of their timestamps.
    too_new: u64,
    earliest_too_new: u64,
    /// The models it compares (their subscribed ranges), and the watermarks
    /// this node states in it: the lowest of those models' own.
    models: Vec<ModelId>,
    ours: Watermarks,
    /// The subscriptions' change count when it began.
    subscriptions_seen: u64,
}

impl EventLoop {
    /// Starts a catch-up with `peer`, unless one is already running.
    pub(super) fn start_reconcile(&mut self, peer: PeerId) {
        if let Some(exchange) = self.exchanges.get_mut(&peer) {
            exchange.again = true;
            return;
        }
        if !self.config.catch_up || self.shared.health.degraded() || self.peers.is_banned(&peer) {
            return;
        }
        let models = self
            .shared
            .registry
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .ids();
        let subscriptions_seen = self.shared.subscriptions.changes();
        let ranges = self.shared.subscriptions.reconciled(&models);
        let ours = watermarks::for_models(&self.shared, &models);
        self.exchanges.insert(
            peer,
            Exchange {
                started: self.shared.clock.now(),
                talking: true,
                complete: true,
                received: 0,
                refused: 0,
                rounds: 0,
                held: None,
                again: false,
                too_new: 0,
                earliest_too_new: 0,
                models,
                ours,
                subscriptions_seen,
            },
        );
        self.fetches.reset_progress(peer);
        let shared = self.shared.clone();
        let internal = self.internal.clone();
        platform::background(move || {
            let parts =
                match with_index(&shared, |items| reconcile::initiate_ranges(items, &ranges)) {
                    Ok(parts) => parts,
                    Err(error) => {
                        tracing::warn!(%peer, %error, "could not read the sync index to catch up");
                        Vec::new()
                    }
                };
            let request = SyncRequest::Reconcile(ours, parts);
            let _ = internal.send(Internal::Reconcile { peer, request });
        });
    }

    /// Answers a peer's reconciliation request off the loop.
    fn answer(
        &self,
        peer: PeerId,
        id: request_response::InboundRequestId,
        theirs: Watermarks,
        parts: Vec<reconcile::Part>,
        channel: request_response::ResponseChannel<SyncResponse>,
    ) {
        let shared = self.shared.clone();
        let internal = self.internal.clone();
        platform::background(move || {
            let cx = context(&shared, theirs, &parts);
            let (response, failed) = respond_from_index(&shared, &parts, &cx);
            let response = response
                .inspect_err(
                    |error| tracing::debug!(%peer, %error, "refused a reconciliation request"),
                )
                .ok()
                .map(|outcome| SyncResponse::Reconcile(cx.ours, outcome.reply));
            // Our own store failed, not the peer: say nothing more (an
            // empty answer ends its exchange; it tries again later).
            let response = match failed {
                Some(error) => {
                    tracing::warn!(%peer, %error, "could not read the sync index to answer a peer");
                    Some(SyncResponse::Reconcile(cx.ours, Vec::new()))
                }
                None => response,
            };
            let _ = internal.send(Internal::Respond {
                peer,
                id,
                channel,
                response,
            });
        });
    }

    /// Answers a peer's remote query off the loop; the answer comes back
    /// as [`Internal::QueryAnswered`].
    pub(super) fn answer_query_off_loop(
        &self,
        request: crate::node::shell::query::QueryRequest,
        channel: request_response::ResponseChannel<crate::node::shell::query::QueryResponse>,
    ) {
        let shared = self.shared.clone();
        let internal = self.internal.clone();
        platform::background(move || {
            let response = answer_query(&shared, &request);
            let _ = internal.send(Internal::QueryAnswered { channel, response });
        });
    }

    /// Reads the peer's answer to our message off the loop; our reply
    /// comes back as [`Internal::Learned`].
    fn continue_off_loop(&self, peer: PeerId, theirs: Watermarks, parts: Vec<reconcile::Part>) {
        let Some(ours) = self.exchanges.get(&peer).map(|e| e.ours) else {
            return;
        };
        let shared = self.shared.clone();
        let internal = self.internal.clone();
        platform::background(move || {
            let cx = Context {
                fetching: true,
                ours,
                ..context(&shared, theirs, &parts)
            };
            let (outcome, failed) = respond_from_index(&shared, &parts, &cx);
            if let Some(error) = failed {
                tracing::warn!(%peer, %error, "could not read the sync index to catch up");
            }
            let _ = internal.send(Internal::Learned {
                peer,
                outcome,
                marks: (cx.ours, cx.theirs),
            });
        });
    }

    pub(super) fn on_internal(&mut self, internal: Internal) {
        match internal {
            Internal::Reconcile { peer, request } => self.send_reconcile(peer, request),
            Internal::Probed(result) => self.on_probed(result),
            Internal::QueryAnswered { channel, response } => {
                self.on_query_answered(channel, response)
            }
            Internal::Respond {
                peer,
                id,
                channel,
                response,
            } => match response {
                Some(response) => self.respond(peer, id, channel, response),
                None => {
                    // Dropping the channel resets the peer's stream.
                    drop(channel);
                    self.served(id);
                    self.strike(peer, "sent a reconciliation request off the protocol");
                }
            },
            Internal::Learned {
                peer,
                outcome,
                marks: (ours, theirs),
            } => {
                if !self.exchanges.contains_key(&peer) {
                    return;
                }
                let outcome = match outcome {
                    Ok(outcome) => outcome,
                    Err(error) => {
                        tracing::warn!(%peer, %error, "refused a reconciliation answer");
                        self.strike(peer, "answered a reconciliation off the protocol");
                        self.fail(peer, CatchUpFailure::OffProtocol);
                        return;
                    }
                };
                if let Some(exchange) = self.exchanges.get_mut(&peer) {
                    exchange.too_new += outcome.too_new;
                    if outcome.too_new > 0
                        && (exchange.earliest_too_new == 0
                            || outcome.earliest_too_new < exchange.earliest_too_new)
                    {
                        exchange.earliest_too_new = outcome.earliest_too_new;
                    }
                }
                self.want(peer, outcome.want);
                // Only where this node keeps the peer's records: a range
                // folded over keys it does not subscribe to says nothing
                // about those it holds there.
                let ghosts: Vec<Vec<u8>> = outcome
                    .ghosts
                    .into_iter()
                    .filter(|key| self.shared.subscriptions.wants(key))
                    .collect();
                if !ghosts.is_empty() {
                    self.drop_ghosts(peer, ghosts, ours, theirs);
                }
                if outcome.reply.is_empty() {
                    self.stop_talking(peer);
                } else {
                    self.send_reconcile(peer, SyncRequest::Reconcile(ours, outcome.reply));
                }
            }
            Internal::Stored(fetched::Stored {
                peer,
                keys,
                received,
                refused,
                failed,
                dropped,
            }) => {
                self.fetches.forget(peer, &keys);
                let total: u64 = received.iter().map(|(_, n)| n).sum();
                for (model, progress) in self.fetches.stored(peer, &received) {
                    self.progress_event(peer, model, progress);
                }
                if let Some(exchange) = self.exchanges.get_mut(&peer) {
                    exchange.received += total;
                    exchange.refused += refused;
                    exchange.complete &= !failed;
                    exchange.again |= dropped;
                }
                self.pump_fetches(peer);
                self.release_held(peer);
                self.check_done(peer);
            }
        }
    }

    /// Sends our next message to `peer`, or holds it while the fetch queue
    /// is long, or ends the exchange if it has gone on too long.
    fn send_reconcile(&mut self, peer: PeerId, request: SyncRequest) {
        let queued = self.fetches.queued(peer);
        let Some(exchange) = self.exchanges.get_mut(&peer) else {
            return;
        };
        if exchange.rounds >= MAX_ROUNDS {
            self.fail(peer, CatchUpFailure::TooManyRounds);
            return;
        }
        if queued > HOLD_QUEUED {
            exchange.held = Some(request);
            return;
        }
        exchange.rounds += 1;
        let id = self.swarm.behaviour_mut().sync.send_request(&peer, request);
        self.reconciles.insert(id, peer);
    }

    /// Sends a held message once the fetch queue has drained enough.
    fn release_held(&mut self, peer: PeerId) {
        if self.fetches.queued(peer) > HOLD_QUEUED {
            return;
        }
        if let Some(request) = self.exchanges.get_mut(&peer).and_then(|e| e.held.take()) {
            self.send_reconcile(peer, request);
        }
    }

    fn drop_ghosts(
        &mut self,
        peer: PeerId,
        ghosts: Vec<Vec<u8>>,
        ours: Watermarks,
        theirs: Watermarks,
    ) {
        self.fetches.storing(peer);
        let shared = self.shared.clone();
        let internal = self.internal.clone();
        platform::background(move || {
            let failed = horizon::drop_ghosts(&shared, peer, &ghosts, ours, theirs)
                .inspect_err(
                    |error| tracing::warn!(%peer, %error, "could not drop records deleted elsewhere"),
                )
                .is_err();
            let _ = internal.send(Internal::Stored(fetched::Stored {
                peer,
                keys: Vec::new(),
                received: Vec::new(),
                refused: 0,
                failed,
                dropped: false,
            }));
        });
    }

    fn progress_event(&self, peer: PeerId, model: ModelId, progress: Progress) {
        let Some(name) = announce::model_name(&self.shared, model) else {
            return;
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
            .is_some_and(|e| !e.talking && e.held.is_none() && self.fetches.idle(peer));
        if !done {
            return;
        }
        let Some(exchange) = self.exchanges.remove(&peer) else {
            return;
        };
        if exchange.again && self.swarm.is_connected(&peer) {
            // Reported once, when the follow-up ends, so an end seen after a
            // call to `catch_up` covers what the peer held at the call.
            // Records refused are the follow-up's to count: it meets them again.
            let received = exchange.received;
            self.start_reconcile(peer);
            if let Some(next) = self.exchanges.get_mut(&peer) {
                next.received += received;
                return;
            }
        }
        self.finish(peer, exchange);
    }

    /// Reports the end of an exchange whose work is all done.
    fn finish(&mut self, peer: PeerId, exchange: Exchange) {
        if exchange.too_new > 0 {
            let drift = self.shared.clock.max_drift_ms();
            let ahead_ms = Timestamp(exchange.earliest_too_new)
                .millis()
                .saturating_sub(self.shared.clock.wall_millis());
            // Acceptable once it is no more than the drift ahead; a second's margin.
            let retry_in_ms = ahead_ms.saturating_sub(drift) + 1000;
            self.shared
                .counters
                .clock_behind_ms
                .store(ahead_ms, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(%peer, ahead_ms, records = exchange.too_new, "the peer holds records stamped ahead of this node's clock; retrying when they are acceptable");
            self.peers
                .retry_after(peer, std::time::Duration::from_millis(retry_in_ms));
            self.emit_failure(
                peer,
                CatchUpFailure::ClockBehind {
                    ahead_ms,
                    retry_in_ms,
                },
            );
            return;
        }
        if !exchange.complete {
            tracing::debug!(%peer, "catch-up ended incomplete; the next one resumes it");
            self.emit_failure(peer, CatchUpFailure::Incomplete);
            return;
        }
        self.shared
            .counters
            .clock_behind_ms
            .store(0, std::sync::atomic::Ordering::Relaxed);
        let moved = watermarks::caught_up(&self.shared, exchange.started);
        let rows = self.shared.subscriptions.caught_up(
            &exchange.models,
            exchange.started.0,
            exchange.subscriptions_seen,
        );
        if moved || !rows.is_empty() {
            let shared = self.shared.clone();
            platform::background(move || {
                if let Err(error) = horizon::persist_synced(&shared, &rows) {
                    tracing::warn!(%error, "could not record a finished catch-up");
                }
            });
        }
        if exchange.refused > 0 {
            tracing::info!(%peer, refused = exchange.refused, "caught up, refusing some of the peer's records");
        }
        let _ = self.shared.events.send(Event::CaughtUp {
            peer,
            received: exchange.received,
            refused: exchange.refused,
        });
        self.report(
            peer,
            CatchUpOutcome::CaughtUp {
                received: exchange.received,
                refused: exchange.refused,
            },
        );
    }

    /// Ends our exchange with `peer` as failed.
    pub(super) fn fail(&mut self, peer: PeerId, reason: CatchUpFailure) {
        if self.exchanges.remove(&peer).is_none() {
            return;
        }
        if reason == CatchUpFailure::OffProtocol {
            // Nothing more is asked of a peer that broke the protocol.
            self.fetches.clear_queue(peer);
        }
        tracing::debug!(%peer, ?reason, "catch-up failed");
        self.emit_failure(peer, reason);
    }

    fn emit_failure(&mut self, peer: PeerId, reason: CatchUpFailure) {
        Counters::bump(&self.shared.counters.catch_ups_failed);
        let _ = self
            .shared
            .events
            .send(Event::CatchUpFailed { peer, reason });
        self.report(peer, CatchUpOutcome::Failed(reason));
    }

    /// Registers a caller waiting on the catch-ups just asked of `peers`.
    pub(super) fn wait_for_catch_ups(
        &mut self,
        peers: &[PeerId],
        reply: oneshot::Sender<Vec<(PeerId, CatchUpOutcome)>>,
    ) {
        let mut waiter = CatchUpWaiter {
            pending: Vec::new(),
            ended: Vec::new(),
            reply,
        };
        for &peer in peers {
            if self.exchanges.contains_key(&peer) {
                waiter.pending.push(peer);
            } else {
                waiter.ended.push((peer, CatchUpOutcome::NotStarted));
            }
        }
        if waiter.pending.is_empty() {
            let _ = waiter.reply.send(waiter.ended);
        } else {
            self.catch_up_waiters.push(waiter);
        }
    }

    /// Hands how `peer`'s catch-up ended to the callers waiting on it.
    fn report(&mut self, peer: PeerId, outcome: CatchUpOutcome) {
        if self.catch_up_waiters.is_empty() {
            return;
        }
        for waiter in &mut self.catch_up_waiters {
            if let Some(at) = waiter.pending.iter().position(|p| *p == peer) {
                waiter.pending.swap_remove(at);
                waiter.ended.push((peer, outcome));
            }
        }
        let (done, waiting) = std::mem::take(&mut self.catch_up_waiters)
            .into_iter()
            .partition(|w| w.pending.is_empty());
        self.catch_up_waiters = waiting;
        for waiter in done {
            let _ = waiter.reply.send(waiter.ended);
        }
    }

    /// Counts a protocol violation by `peer`; one that keeps at it is
    /// disconnected and refused for a while.
    pub(super) fn strike(&mut self, peer: PeerId, what: &str) {
        Counters::bump(&self.shared.counters.sync_messages_refused);
        tracing::warn!(%peer, "the peer {what}");
        if self.peers.strike(peer) {
            Counters::bump(&self.shared.counters.peers_banned);
            tracing::warn!(%peer, "disconnecting a peer that keeps breaking the catch-up protocol");
            self.swarm.behaviour_mut().blocked.block_peer(peer);
            self.redial.forget(&peer);
            self.fail(peer, CatchUpFailure::OffProtocol);
        }
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
                        request,
                        channel,
                        request_id,
                    },
                ..
            } => {
                match self.peers.admit(peer, request_id, request, channel) {
                    Admit::Now(request, channel) => self.serve(peer, request_id, request, channel),
                    Admit::Later => {}
                    Admit::Refused => {
                        // Over this peer's share: unanswered.
                        Counters::bump(&self.shared.counters.sync_requests_dropped);
                        tracing::debug!(%peer, "dropped a sync request: too many waiting");
                    }
                }
            }
            Rr::Message {
                peer,
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } if self.is_get_request(request_id) => self.get_answered(peer, request_id, response),
            Rr::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } if self.is_get_request(request_id) => self.get_failed(peer, request_id, error),
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
                            self.strike(peer, "answered a fetch with a reconciliation");
                            self.request_failed(peer, request_id, CatchUpFailure::OffProtocol);
                        }
                        return;
                    }
                    if parts.is_empty() {
                        self.stop_talking(peer);
                    } else {
                        self.continue_off_loop(peer, theirs, parts);
                    }
                }
                SyncResponse::Records(_) if self.reconciles.contains_key(&request_id) => {
                    // Records in answer to a reconciliation: a broken or
                    // hostile peer. Left waiting, the exchange would never end
                    // and no catch-up with this peer would start again.
                    self.strike(peer, "answered a reconciliation with records");
                    self.request_failed(peer, request_id, CatchUpFailure::OffProtocol);
                }
                SyncResponse::Records(records) => self.on_records(peer, request_id, records),
            },
            Rr::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                let malformed = matches!(
                    &error,
                    request_response::OutboundFailure::Io(e) if e.kind() == std::io::ErrorKind::InvalidData
                );
                if malformed {
                    // An answer over the limits or not decodable.
                    self.strike(peer, &format!("sent a malformed sync answer ({error})"));
                    self.request_failed(peer, request_id, CatchUpFailure::OffProtocol);
                } else {
                    tracing::debug!(%peer, %error, "a sync request failed");
                    self.request_failed(peer, request_id, CatchUpFailure::RequestFailed);
                }
            }
            Rr::InboundFailure {
                peer,
                error,
                request_id,
                ..
            } => {
                self.served(request_id);
                tracing::debug!(%peer, %error, "a sync request from a peer failed");
            }
            Rr::ResponseSent { request_id, .. } => self.served(request_id),
        }
    }

    /// Answers a request that was given a slot.
    fn serve(
        &mut self,
        peer: PeerId,
        id: request_response::InboundRequestId,
        request: SyncRequest,
        channel: request_response::ResponseChannel<SyncResponse>,
    ) {
        match request {
            SyncRequest::Reconcile(theirs, parts) => self.answer(peer, id, theirs, parts, channel),
            SyncRequest::Fetch(keys) => {
                if let Some(records) = cached_records(&self.shared, &keys) {
                    self.respond(peer, id, channel, SyncResponse::Records(records));
                    return;
                }
                // Copying up to a few MiB of envelopes: off the loop.
                let shared = self.shared.clone();
                let internal = self.internal.clone();
                platform::background(move || {
                    let response = SyncResponse::Records(records_for(&shared, &keys));
                    let _ = internal.send(Internal::Respond {
                        peer,
                        id,
                        channel,
                        response: Some(response),
                    });
                });
            }
        }
    }

    /// Sends the answer to request `id` of `peer`.
    fn respond(
        &mut self,
        peer: PeerId,
        id: request_response::InboundRequestId,
        channel: request_response::ResponseChannel<SyncResponse>,
        response: SyncResponse,
    ) {
        let sync = &mut self.swarm.behaviour_mut().sync;
        if sync.send_response(channel, response).is_err() {
            self.served(id);
            tracing::debug!(%peer, "a sync response could not be sent");
        }
    }

    /// A request slot was freed: answer the next waiting request, if any.
    fn served(&mut self, id: request_response::InboundRequestId) {
        self.peers.served(id);
        self.serve_waiting();
    }

    /// Answers waiting requests while slots are free.
    pub(super) fn serve_waiting(&mut self) {
        while let Some((peer, (id, request, channel))) = self.peers.next_waiting() {
            self.serve(peer, id, request, channel);
        }
    }

    /// Our request `id` to `peer` failed or got an answer of the wrong kind:
    /// a failed fetch leaves the exchange incomplete, a failed reconciliation
    /// ends it.
    fn request_failed(
        &mut self,
        peer: PeerId,
        id: request_response::OutboundRequestId,
        reason: CatchUpFailure,
    ) {
        // Keys of a failed fetch are found again by the next reconciliation.
        if let Some((_, keys)) = self.fetches.finished(id) {
            self.fetches.forget(peer, &keys);
            if reason == CatchUpFailure::OffProtocol {
                self.fail(peer, reason);
                return;
            }
            if let Some(exchange) = self.exchanges.get_mut(&peer) {
                exchange.complete = false;
            }
            // Its slot is free: the rest of the queue goes on.
            self.pump_fetches(peer);
            self.release_held(peer);
            self.check_done(peer);
        }
        if self.reconciles.remove(&id).is_some() {
            self.fail(peer, reason);
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
            // A key outside this node's subscriptions (met where a reply
            // folded ranges together) is not wanted, and not refused.
            keys.retain(|key| self.shared.subscriptions.wants(key));
            let offered = keys.len();
            keys.retain(|key| model_of(key).is_some_and(|model| registry.get(model).is_some()));
            if let Some(exchange) = self.exchanges.get_mut(&peer) {
                exchange.refused += (offered - keys.len()) as u64;
            }
        }
        if keys.is_empty() {
            return;
        }
        let (models, overflow) = self.fetches.queue(peer, keys);
        if overflow {
            // Left for the next catch-up, which finds them again.
            if let Some(exchange) = self.exchanges.get_mut(&peer) {
                exchange.complete = false;
            }
        }
        for model in models {
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
        let bytes: usize = records.iter().map(|r| r.len() + 8).sum();
        // More than asked for, or more bytes than an honest peer sends
        // (`records_for` stops before; so a fetch slot holds at most that
        // until stored): a broken or hostile peer. Drop it all.
        let off_protocol = if records.len() > keys.len() {
            Some("answered a fetch with more records than asked for")
        } else if bytes > MAX_RESPONSE_BYTES {
            Some("answered a fetch with more bytes than allowed")
        } else {
            None
        };
        if let Some(what) = off_protocol {
            self.fetches.forget(peer, &keys);
            self.shared.counters.reject(Rejection::Malformed);
            self.strike(peer, what);
            self.fail(peer, CatchUpFailure::OffProtocol);
            return;
        }
        if records.len() < keys.len() {
            // What is not stored from this answer may be asked for again.
            self.fetches.forget(peer, &keys[records.len()..]);
            // An honest peer stops short only when the next record would
            // not fit in the response: any record, whatever its limit, fits
            // an empty one. What it did send is still stored.
            if records.is_empty() || bytes + crate::codec::MAX_ENVELOPE_BYTES < MAX_RESPONSE_BYTES {
                self.strike(peer, "cut a fetch answer short");
                self.fail(peer, CatchUpFailure::OffProtocol);
            } else {
                let (_, overflow) = self.fetches.queue(peer, keys[records.len()..].to_vec());
                if overflow {
                    if let Some(exchange) = self.exchanges.get_mut(&peer) {
                        exchange.complete = false;
                    }
                }
            }
        }
        let (pairs, gone): (Vec<_>, Vec<_>) = keys
            .into_iter()
            .zip(records)
            .partition(|(_, bytes)| !bytes.is_empty());
        let gone: Vec<Vec<u8>> = gone.into_iter().map(|(key, _)| key).collect();
        self.fetches.forget(peer, &gone);
        if pairs.is_empty() {
            self.pump_fetches(peer);
            self.check_done(peer);
            return;
        }
        self.fetches.storing(peer);
        let shared = self.shared.clone();
        let internal = self.internal.clone();
        platform::background(move || {
            let mut refused = 0;
            let envelopes: Vec<_> = validate::validate_batch(&shared, &pairs)
                .into_iter()
                .filter_map(|checked| match checked {
                    Ok(envelope) => Some(envelope),
                    Err(why) => {
                        refused += 1;
                        shared.counters.reject(why.reason);
                        tracing::debug!(%peer, reason = ?why.reason, "dropped a fetched record");
                        None
                    }
                })
                .collect();
            let checked = fetched::Checked {
                peer,
                keys: pairs.into_iter().map(|(key, _)| key).collect(),
                envelopes,
                refused,
            };
            if shared.fetched.push(checked) {
                intake::store_queued(&shared, |stored| {
                    let _ = internal.send(Internal::Stored(stored));
                });
            }
        });
        self.pump_fetches(peer);
    }
}
