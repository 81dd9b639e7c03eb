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

use crate::sync::reconcile;
use tokio::sync::{mpsc, oneshot};

use super::behaviour::{Behaviour, BehaviourEvent};
use super::catchup::{Fetches, SyncRequest, SyncResponse, FETCH_BATCH, MAX_RESPONSE_BYTES};
use super::event::{Event, Origin};
use super::stats::Rejection;
use super::{apply, NodeError, Shared};

pub(crate) enum Command {
    /// Publish a committed record to the DHT.
    Publish {
        record: Record,
        quorum: Quorum,
        reply: oneshot::Sender<Result<(), NodeError>>,
    },
    /// Fetch every copy of a record the network holds.
    Get {
        key: kad::RecordKey,
        reply: oneshot::Sender<Vec<(Option<PeerId>, Vec<u8>)>>,
    },
    /// Store a record at these peers only (a newer version for stale peers).
    PutTo { record: Record, peers: Vec<PeerId> },
    /// Dial an address (e.g. a bootstrap peer).
    Dial { address: Multiaddr },
    /// Stop the loop.
    Shutdown,
}

struct PendingGet {
    found: Vec<(Option<PeerId>, Vec<u8>)>,
    reply: oneshot::Sender<Vec<(Option<PeerId>, Vec<u8>)>>,
}

pub(crate) struct EventLoop {
    swarm: Swarm<Behaviour>,
    shared: Arc<Shared>,
    commands: mpsc::Receiver<Command>,
    puts: HashMap<QueryId, (usize, oneshot::Sender<Result<(), NodeError>>)>,
    gets: HashMap<QueryId, PendingGet>,
    fetches: Fetches,
}

impl EventLoop {
    pub(crate) fn new(
        swarm: Swarm<Behaviour>,
        shared: Arc<Shared>,
        commands: mpsc::Receiver<Command>,
    ) -> Self {
        EventLoop {
            swarm,
            shared,
            commands,
            puts: HashMap::new(),
            gets: HashMap::new(),
            fetches: Fetches::default(),
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
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown) | None => break,
                    Some(command) => self.on_command(command),
                },
                _ = catch_up.tick() => {
                    let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
                    for peer in peers {
                        self.start_reconcile(peer);
                    }
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
                self.gets.insert(
                    id,
                    PendingGet {
                        found: Vec::new(),
                        reply,
                    },
                );
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
            Command::Shutdown => {}
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

    fn start_reconcile(&mut self, peer: PeerId) {
        if !self.shared.config.catch_up {
            return;
        }
        let message = self.shared.cache.with_items(reconcile::initiate);
        self.swarm
            .behaviour_mut()
            .sync
            .send_request(&peer, SyncRequest::Reconcile(message));
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
            } => {
                let response = match request {
                    SyncRequest::Reconcile(parts) => {
                        let outcome = self
                            .shared
                            .cache
                            .with_items(|items| reconcile::respond(items, &parts));
                        self.want(peer, outcome.want);
                        SyncResponse::Reconcile(outcome.reply)
                    }
                    SyncRequest::Fetch(keys) => SyncResponse::Records(self.records_for(&keys)),
                };
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
            Rr::Message {
                peer,
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => match response {
                SyncResponse::Reconcile(parts) => {
                    if parts.is_empty() {
                        return;
                    }
                    let outcome = self
                        .shared
                        .cache
                        .with_items(|items| reconcile::respond(items, &parts));
                    if !outcome.reply.is_empty() {
                        self.swarm
                            .behaviour_mut()
                            .sync
                            .send_request(&peer, SyncRequest::Reconcile(outcome.reply));
                    }
                    self.want(peer, outcome.want);
                }
                SyncResponse::Records(records) => self.on_records(peer, request_id, records),
            },
            Rr::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                // Keys of a failed fetch are found again by the next reconciliation.
                self.fetches.finished(request_id);
                tracing::debug!(%peer, %error, "a sync request failed");
            }
            Rr::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "a sync request from a peer failed");
            }
            Rr::ResponseSent { .. } => {}
        }
    }

    fn want(&mut self, peer: PeerId, keys: Vec<Vec<u8>>) {
        if keys.is_empty() {
            return;
        }
        self.fetches.queue(peer, keys);
        let outstanding = self.fetches.outstanding(peer);
        let received = self.fetches.count_received(peer, 0);
        let _ = self.shared.events.send(Event::CatchUp {
            peer,
            received,
            outstanding,
        });
        self.pump_fetches(peer);
    }

    /// Envelopes for a prefix of `keys` that fits one response.
    fn records_for(&self, keys: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut out = Vec::with_capacity(keys.len());
        let mut size = 0;
        for key in keys.iter().take(FETCH_BATCH) {
            let bytes = self
                .shared
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
        let received = self.fetches.count_received(peer, pairs.len() as u64);
        let outstanding = self.fetches.outstanding(peer);
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let valid: Vec<_> = pairs
                .iter()
                .filter_map(|(key, bytes)| match apply::validate_remote(&shared, key, bytes) {
                    Ok(envelope) => Some(envelope),
                    Err(refused) => {
                        shared.counters.reject(refused.reason);
                        tracing::debug!(%peer, reason = ?refused.reason, "dropped a fetched record");
                        None
                    }
                })
                .collect();
            if let Err(error) = apply::apply_batch(&shared, &valid, Origin::Peer(peer)) {
                tracing::warn!(%peer, %error, "could not store fetched records");
            }
            let _ = shared.events.send(Event::CatchUp {
                peer,
                received,
                outstanding,
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
                    if let Some(pending) = self.gets.get_mut(&id) {
                        if let Ok(GetRecordOk::FoundRecord(found)) = result {
                            pending.found.push((found.peer, found.record.value));
                        }
                        if step.last {
                            if let Some(pending) = self.gets.remove(&id) {
                                let _ = pending.reply.send(pending.found);
                            }
                        }
                    }
                }
                _ => {}
            },
            _ => {}
        }
    }
}
