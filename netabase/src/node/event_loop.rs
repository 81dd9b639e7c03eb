//! The one task that owns the swarm. The handle talks to it through
//! [`Command`]s; it answers through oneshot channels and hands storage work
//! to blocking tasks, so neither redb nor signature checks run on its poll.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use libp2p::kad::{self, GetRecordOk, PutRecordError, QueryId, QueryResult, Quorum, Record};
use libp2p::swarm::SwarmEvent;
use libp2p::{identify, mdns, request_response, Multiaddr, PeerId, Swarm};
use std::time::Duration;

use crate::model::ModelId;
use crate::sync::reconcile::{self, Watermarks};
use crate::sync::Timestamp;
use tokio::sync::{mpsc, oneshot};

use super::behaviour::{Behaviour, BehaviourEvent};
use super::catchup::{
    model_of, Fetches, SyncRequest, SyncResponse, FETCH_BATCH, MAX_RESPONSE_BYTES,
};
use super::event::{Event, Origin};
use super::stats::Rejection;
use super::{apply, horizon, NodeError, Shared};

/// How often deletes past the horizon are collected (also at start).
const GC_INTERVAL: Duration = Duration::from_secs(60 * 60);

/// Where a get sends the copies it finds (`None`: the query ended).
pub(crate) type CopiesSender = mpsc::UnboundedSender<Option<(Option<PeerId>, Vec<u8>)>>;

pub(crate) enum Command {
    /// Publish a committed record to the DHT.
    Publish {
        record: Record,
        quorum: Quorum,
        reply: oneshot::Sender<Result<(), NodeError>>,
    },
    /// Fetch every copy of a record the network holds: each is sent as it
    /// arrives (so the caller can check it while the query goes on), then
    /// `None` when the query has ended. A channel closed without `None`
    /// means the swarm stopped.
    Get {
        key: kad::RecordKey,
        reply: CopiesSender,
    },
    /// Store a record at these peers only (a newer version for stale peers).
    PutTo { record: Record, peers: Vec<PeerId> },
    /// Dial an address (e.g. a bootstrap peer).
    Dial { address: Multiaddr },
    /// Reconcile with every connected peer now.
    CatchUp,
    /// Stop the loop.
    Shutdown,
}

/// Work finished off the loop, coming back to it.
enum Internal {
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
struct Exchange {
    started: Timestamp,
    /// Reconciliation messages are still going back and forth.
    talking: bool,
    /// Nothing failed: a finished exchange means we hold all the peer held.
    complete: bool,
    received: u64,
}

pub(crate) struct EventLoop {
    swarm: Swarm<Behaviour>,
    shared: Arc<Shared>,
    commands: mpsc::Receiver<Command>,
    puts: HashMap<QueryId, (usize, oneshot::Sender<Result<(), NodeError>>)>,
    gets: HashMap<QueryId, CopiesSender>,
    fetches: Fetches,
    exchanges: HashMap<PeerId, Exchange>,
    reconciles: HashMap<request_response::OutboundRequestId, PeerId>,
    internal: mpsc::UnboundedSender<Internal>,
    internal_rx: mpsc::UnboundedReceiver<Internal>,
}

impl EventLoop {
    pub(crate) fn new(
        swarm: Swarm<Behaviour>,
        shared: Arc<Shared>,
        commands: mpsc::Receiver<Command>,
    ) -> Self {
        let (internal, internal_rx) = mpsc::unbounded_channel();
        EventLoop {
            swarm,
            shared,
            commands,
            puts: HashMap::new(),
            gets: HashMap::new(),
            fetches: Fetches::default(),
            exchanges: HashMap::new(),
            reconciles: HashMap::new(),
            internal,
            internal_rx,
        }
    }

    pub(crate) async fn run(mut self) {
        // A period of "never" when periodic catch-up is off.
        let period = self
            .shared
            .config
            .catch_up_interval
            .unwrap_or(Duration::from_secs(100 * 365 * 24 * 3600));
        let mut catch_up = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        let mut gc = tokio::time::interval(GC_INTERVAL);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown) | None => break,
                    Some(command) => self.on_command(command),
                },
                Some(internal) = self.internal_rx.recv() => self.on_internal(internal),
                _ = catch_up.tick() => self.reconcile_with_all(),
                _ = gc.tick() => {
                    let shared = self.shared.clone();
                    tokio::task::spawn_blocking(move || {
                        if let Err(error) = horizon::collect_tombstones(&shared) {
                            tracing::warn!(%error, "could not collect deletes");
                        }
                    });
                }
            }
        }
        // Pending callers learn that the swarm stopped (their senders drop).
        tracing::debug!(peer_id = %self.shared.peer_id, "swarm stopped");
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Publish {
                record,
                quorum,
                reply,
            } => {
                let required = match quorum {
                    Quorum::N(n) => n.get(),
                    _ => 1,
                };
                match self.swarm.behaviour_mut().kad.put_record(record, quorum) {
                    Ok(id) => {
                        self.puts.insert(id, (required, reply));
                    }
                    Err(_) => {
                        let _ = reply.send(Err(NodeError::Publish {
                            stored: 0,
                            required,
                            timed_out: false,
                        }));
                    }
                }
            }
            Command::Get { key, reply } => {
                let id = self.swarm.behaviour_mut().kad.get_record(key);
                self.gets.insert(id, reply);
            }
            Command::PutTo { record, peers } => {
                let quorum = Quorum::One;
                self.swarm
                    .behaviour_mut()
                    .kad
                    .put_record_to(record, peers.into_iter(), quorum);
            }
            Command::Dial { address } => {
                if let Err(error) = self.swarm.dial(address.clone()) {
                    tracing::warn!(%address, %error, "could not dial");
                }
            }
            Command::CatchUp => self.reconcile_with_all(),
            Command::Shutdown => {}
        }
    }

    fn reconcile_with_all(&mut self) {
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for peer in peers {
            self.start_reconcile(peer);
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Kad(event)) => self.on_kad_event(event),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                // Identify's addresses do not reach the routing table on their own.
                for address in info.listen_addrs {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer_id, address);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(peers))) => {
                for (peer_id, address) in peers {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer_id, address.clone());
                    if let Err(error) = self.swarm.dial(address) {
                        tracing::debug!(%peer_id, %error, "could not dial an mDNS peer");
                    }
                }
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                endpoint,
                ..
            } => {
                if endpoint.is_dialer() {
                    // We know where we reached it; a listener's view of the
                    // remote port is ephemeral, Identify brings the real one.
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer_id, endpoint.get_remote_address().clone());
                }
                if num_established.get() == 1 {
                    let _ = self.shared.events.send(Event::PeerConnected(peer_id));
                    // One side starts catch-up, so a pair reconciles once.
                    if endpoint.is_dialer() {
                        self.start_reconcile(peer_id);
                    }
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.fetches.drop_peer(peer_id);
                self.exchanges.remove(&peer_id);
                let _ = self.shared.events.send(Event::PeerDisconnected(peer_id));
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(event)) => self.on_sync_event(event),
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(peer_id = %self.shared.peer_id, %address, "listening");
                self.shared.listening_on(address);
            }
            _ => {}
        }
    }

    /// Starts a catch-up with `peer`, unless one is already running.
    fn start_reconcile(&mut self, peer: PeerId) {
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
        // Fingerprinting the whole set is O(records): off the loop.
        let shared = self.shared.clone();
        let internal = self.internal.clone();
        tokio::task::spawn_blocking(move || {
            let parts = shared.cache.with_items(reconcile::initiate);
            let request = SyncRequest::Reconcile(horizon::watermarks(&shared), parts);
            let _ = internal.send(Internal::Reconcile { peer, request });
        });
    }

    /// Answers a reconciliation message off the loop; `answering_ours` when
    /// it is a response to one of our messages.
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

    fn on_internal(&mut self, internal: Internal) {
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

    fn progress_event(&self, peer: PeerId, model: ModelId, progress: super::catchup::Progress) {
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

    fn on_sync_event(&mut self, event: request_response::Event<SyncRequest, SyncResponse>) {
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

    fn on_kad_event(&mut self, event: kad::Event) {
        match event {
            kad::Event::InboundRequest {
                request:
                    kad::InboundRequest::PutRecord {
                        source,
                        record: Some(record),
                        ..
                    },
            } => {
                // Validation (a signature check) and the redb write run off the poll.
                let Ok(permit) = self.shared.inbound.clone().try_acquire_owned() else {
                    self.shared.counters.reject(Rejection::Overloaded);
                    tracing::warn!(peer = %source, "dropped a record: too many in flight");
                    return;
                };
                let shared = self.shared.clone();
                tokio::task::spawn_blocking(move || {
                    apply::accept_remote(&shared, record.key.as_ref(), &record.value, source);
                    drop(permit);
                });
            }
            kad::Event::OutboundQueryProgressed {
                id, result, step, ..
            } => match result {
                QueryResult::PutRecord(result) => {
                    if let Some((required, reply)) = self.puts.remove(&id) {
                        let _ = reply.send(result.map(drop).map_err(|error| match error {
                            PutRecordError::QuorumFailed { success, .. } => NodeError::Publish {
                                stored: success.len(),
                                required,
                                timed_out: false,
                            },
                            PutRecordError::Timeout { success, .. } => NodeError::Publish {
                                stored: success.len(),
                                required,
                                timed_out: true,
                            },
                        }));
                    }
                }
                QueryResult::GetRecord(result) => {
                    if let Some(reply) = self.gets.get(&id) {
                        if let Ok(GetRecordOk::FoundRecord(found)) = result {
                            // A caller that gave up is fine: the query just ends.
                            let _ = reply.send(Some((found.peer, found.record.value)));
                        }
                        if step.last {
                            let _ = reply.send(None);
                            self.gets.remove(&id);
                        }
                    }
                }
                _ => {}
            },
            _ => {}
        }
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
