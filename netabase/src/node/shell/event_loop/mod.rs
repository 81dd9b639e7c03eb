//! The one task that owns the swarm. The handle talks to it through
//! [`Command`]s; it answers through channels and hands storage work to
//! blocking tasks, so neither redb nor signature checks run on its poll.
//! Catch-up's part of the loop is in [`sync`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use libp2p::kad::{self, QueryId, QueryResult, Quorum, Record};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, DialError, SwarmEvent};
use libp2p::{identify, request_response, Multiaddr, PeerId, Swarm};
use tokio::sync::{mpsc, oneshot};

use super::behaviour::{Behaviour, BehaviourEvent, KAD_PROTOCOL};
use super::catchup::{Fetches, SYNC_PROTOCOL};
use super::listening::{peer_of, Listening};
use super::query::QUERY_PROTOCOL;
use crate::node::platform;
use crate::node::replica::event::{CatchUpFailure, CatchUpOutcome, Event};
use crate::node::replica::inbound::Pushed;
use crate::node::replica::stats::Rejection;
use crate::node::replica::{health, horizon, intake, storage, Replica};
use crate::node::{NetabaseConfig, NodeError};

/// How often deletes past the horizon are collected (also at start).
const GC_INTERVAL: Duration = Duration::from_secs(60 * 60);

pub(crate) enum Command {
    /// Send a signed record to the peers closest to its key; each peer's
    /// answer is sent as it comes (see [`puts`]).
    Publish { record: Record, reply: PutsSender },
    /// Ask peers for a record: the connected peers closest to its key,
    /// then (if none has a copy) the closest peers Kademlia finds. Each copy
    /// is sent as it arrives (so the caller can check it while the others
    /// are asked), then `None` when every peer asked has answered or
    /// failed, or `query_timeout` has passed. A channel closed without
    /// `None` means the swarm stopped. See [`gets`].
    Get {
        key: kad::RecordKey,
        reply: CopiesSender,
    },
    /// Ask connected peers for the records a secondary index holds a value
    /// for; each answer is sent as it comes, then `None` (see [`queries`]).
    Query {
        request: crate::node::shell::query::QueryRequest,
        reply: QueryAnswers,
    },
    /// Store a record at these peers only (a newer version for stale peers).
    PutTo { record: Record, peers: Vec<PeerId> },
    /// Dial an address; the reply comes when the connection is up or failed.
    Dial {
        address: Multiaddr,
        reply: oneshot::Sender<Result<PeerId, NodeError>>,
    },
    /// Reconcile with every connected peer now; `done`, if any, gets how
    /// each of those catch-ups ended.
    CatchUp {
        reply: oneshot::Sender<Vec<PeerId>>,
        done: Option<oneshot::Sender<Vec<(PeerId, CatchUpOutcome)>>>,
    },
    /// Stop the loop.
    Shutdown,
}

mod answers;
mod ask;
mod gets;
mod nat;
mod peers;
mod publish;
mod puts;
mod queries;
mod query_events;
mod redial;
mod reservations;
mod slow;
mod sync;

pub(crate) use gets::CopiesSender;
use gets::Gets;
use peers::Peers;
use puts::Puts;
pub(crate) use puts::{PutAnswer, PutsSender};
use queries::Queries;
pub(crate) use queries::QueryAnswers;
use redial::Redial;
use reservations::Reservations;
use slow::Slow;
use sync::{CatchUpWaiter, Exchange, Internal};

/// How soon a peer whose pushes were dropped (its queue was full) is caught
/// up with, to fetch what was acknowledged and dropped.
const OVERLOAD_RETRY: Duration = Duration::from_secs(2);
/// How long a peer first reached through a relay waits for its catch-up:
/// time for hole punching (DCUtR: a round trip through the relay, then up
/// to three attempts) to make the connection direct.
const RELAYED_CATCH_UP_DELAY: Duration = Duration::from_secs(5);
/// How often bans are lifted and due catch-up retries started.
const HOUSEKEEPING: Duration = Duration::from_secs(1);

/// The loop's side of the store's health (see [`health`](crate::node::replica::health)).
struct Storage {
    /// Kademlia is in client mode: peers send us no records.
    refusing: bool,
    probing: bool,
    next_probe: platform::Instant,
    backoff: Duration,
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            refusing: false,
            probing: false,
            next_probe: platform::Instant::now(),
            backoff: health::FIRST_BACKOFF,
        }
    }
}

pub(crate) struct EventLoop {
    swarm: Swarm<Behaviour>,
    shared: Arc<Replica>,
    config: Arc<NetabaseConfig>,
    listening: Arc<Listening>,
    commands: mpsc::Receiver<Command>,
    puts: Puts,
    slow: Slow,
    reservations: Reservations,
    gets: Gets,
    queries: Queries,
    fetches: Fetches,
    exchanges: HashMap<PeerId, Exchange>,
    /// Callers of `catch_up_and_wait`, until each of their peers reports.
    catch_up_waiters: Vec<CatchUpWaiter>,
    reconciles: HashMap<request_response::OutboundRequestId, PeerId>,
    peers: Peers,
    /// The remote address of a peer that dialled us, kept in the routing
    /// table only until its real listen addresses are known, or, for a
    /// peer that listens nowhere, until its connection closes.
    ephemeral: HashMap<PeerId, Multiaddr>,
    /// Known peers and when to dial them again.
    redial: Redial,
    /// Dials a caller waits on, by connection.
    dials: HashMap<ConnectionId, (Multiaddr, oneshot::Sender<Result<PeerId, NodeError>>)>,
    /// Open relayed connections, by peer: closed once a direct one opens
    /// (the relay's bandwidth is its operator's).
    relayed: HashMap<PeerId, Vec<ConnectionId>>,
    /// Dials by peer id waiting for a lookup of the peer's addresses.
    lookups: HashMap<QueryId, (Multiaddr, oneshot::Sender<Result<PeerId, NodeError>>)>,
    storage: Storage,
    internal: mpsc::UnboundedSender<Internal>,
    internal_rx: mpsc::UnboundedReceiver<Internal>,
}

impl EventLoop {
    pub(crate) fn new(
        swarm: Swarm<Behaviour>,
        shared: Arc<Replica>,
        config: Arc<NetabaseConfig>,
        listening: Arc<Listening>,
        commands: mpsc::Receiver<Command>,
    ) -> Self {
        let (internal, internal_rx) = mpsc::unbounded_channel();
        // Bootstrap peers are dialled at the first tick, then redialled
        // until they answer and whenever they go away.
        let mut redial = Redial::default();
        let now = platform::Instant::now();
        for address in &config.bootstrap_peers {
            if let Some(peer) = peer_of(address) {
                redial.bootstrap(peer, address.clone(), now);
            }
        }
        EventLoop {
            swarm,
            shared,
            config,
            listening,
            commands,
            puts: Puts::default(),
            slow: Slow::default(),
            reservations: Reservations::default(),
            gets: Gets::default(),
            queries: Queries::default(),
            fetches: Fetches::default(),
            exchanges: HashMap::new(),
            catch_up_waiters: Vec::new(),
            reconciles: HashMap::new(),
            peers: Peers::default(),
            ephemeral: HashMap::new(),
            redial,
            dials: HashMap::new(),
            lookups: HashMap::new(),
            relayed: HashMap::new(),
            storage: Storage::default(),
            internal,
            internal_rx,
        }
    }

    pub(crate) async fn run(mut self) {
        // A period of "never" when periodic catch-up is off.
        let period = self
            .config
            .catch_up_interval
            .unwrap_or(Duration::from_secs(100 * 365 * 24 * 3600));
        let now = platform::Instant::now();
        let mut catch_up = platform::Interval::new(now + period, period);
        let mut gc = platform::Interval::new(now, GC_INTERVAL);
        let mut housekeeping = platform::Interval::new(now, HOUSEKEEPING);
        self.start_nat();
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown) | None => break,
                    Some(command) => self.on_command(command),
                },
                Some(internal) = self.internal_rx.recv() => self.on_internal(internal),
                _ = catch_up.tick() => { self.reconcile_with_all(); }
                _ = housekeeping.tick() => self.housekeeping(),
                _ = self.shared.health.changed.notified() => self.watch_storage(),
                // Records a revocation dropped: peers hold what came before.
                _ = self.shared.resync.notified() => { self.reconcile_with_all(); }
                _ = gc.tick() => {
                    let shared = self.shared.clone();
                    platform::background(move || {
                        if let Err(error) = horizon::collect_tombstones(&shared) {
                            tracing::warn!(%error, "could not collect deletes");
                        }
                    });
                }
            }
        }
        // Pending callers learn that the swarm stopped (their senders drop);
        // subscribers learn that running catch-ups ended.
        let running: Vec<PeerId> = self.exchanges.keys().copied().collect();
        for peer in running {
            self.fail(peer, CatchUpFailure::Disconnected);
        }
        tracing::debug!(peer_id = %self.shared.peer_id, "swarm stopped");
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Publish { record, reply } => self.start_put(record, reply),
            Command::Get { key, reply } => self.start_get(key, reply),
            Command::Query { request, reply } => self.start_query(request, reply),
            Command::PutTo { record, peers } => {
                let quorum = Quorum::One;
                self.swarm
                    .behaviour_mut()
                    .kad
                    .put_record_to(record, peers.into_iter(), quorum);
            }
            Command::Dial { address, reply } => self.dial(address, reply),
            Command::CatchUp { reply, done } => {
                let peers = self.reconcile_with_all();
                if let Some(done) = done {
                    self.wait_for_catch_ups(&peers, done);
                }
                let _ = reply.send(peers);
            }
            Command::Shutdown => {}
        }
    }

    fn dial(&mut self, address: Multiaddr, reply: oneshot::Sender<Result<PeerId, NodeError>>) {
        if let Some(peer) = peer_of(&address) {
            if self.swarm.is_connected(&peer) {
                let _ = reply.send(Ok(peer));
                return;
            }
            if address.iter().count() == 1 {
                // `/p2p/<id>` alone: wherever the network knows it to be.
                self.dial_by_id(peer, address, reply);
                return;
            }
        }
        let opts = DialOpts::from(address.clone());
        let id = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => {
                self.dials.insert(id, (address, reply));
            }
            Err(error) => {
                let _ = reply.send(Err(NodeError::Dial {
                    address,
                    reason: error.to_string(),
                }));
            }
        }
    }

    /// Follows the store's health: stops taking records from peers while it
    /// has failed, probes it with a backoff, and serves again (catching up
    /// with every peer) once it writes.
    fn watch_storage(&mut self) {
        let degraded = self.shared.health.degraded();
        if degraded && !self.storage.refusing {
            self.storage.refusing = true;
            self.storage.backoff = health::FIRST_BACKOFF;
            self.storage.next_probe = platform::Instant::now() + self.storage.backoff;
            // Client mode: peers stop sending records we could not store.
            self.swarm
                .behaviour_mut()
                .kad
                .set_mode(Some(kad::Mode::Client));
        }
        if degraded && !self.storage.probing && platform::Instant::now() >= self.storage.next_probe
        {
            self.storage.probing = true;
            let shared = self.shared.clone();
            let internal = self.internal.clone();
            platform::background(move || {
                let result = storage::probe(&shared).map_err(|error| crate::error::chain(&error));
                let _ = internal.send(Internal::Probed(result));
            });
        }
    }

    pub(super) fn on_probed(&mut self, result: Result<(), String>) {
        self.storage.probing = false;
        match result {
            Ok(()) => {
                self.storage.refusing = false;
                self.swarm
                    .behaviour_mut()
                    .kad
                    .set_mode(Some(platform::KAD_MODE));
                // Whatever arrived meanwhile (or was acknowledged and lost).
                self.reconcile_with_all();
            }
            Err(error) => {
                tracing::debug!(%error, "the store still fails");
                self.storage.backoff = (self.storage.backoff * 2).min(health::MAX_BACKOFF);
                self.storage.next_probe = platform::Instant::now() + self.storage.backoff;
            }
        }
    }

    fn housekeeping(&mut self) {
        self.watch_storage();
        self.reserve_due();
        let now = platform::Instant::now();
        self.gets.expire(now);
        for (peer, addresses) in self.redial.due(now) {
            if self.peers.is_banned(&peer) || self.swarm.is_connected(&peer) {
                continue;
            }
            let opts = DialOpts::peer_id(peer)
                .addresses(addresses)
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            let connection = opts.connection_id();
            match self.swarm.dial(opts) {
                Ok(()) => self.redial.dialling(peer, connection),
                Err(error) => {
                    tracing::debug!(%peer, %error, "could not redial a known peer");
                    let busy = matches!(error, DialError::DialPeerConditionFalse(_));
                    self.redial.not_started(peer, busy, now);
                }
            }
        }
        let (unbanned, due) = self.peers.tick(now);
        // Slots freed by requests whose end was never reported.
        self.serve_waiting();
        for peer in unbanned {
            self.swarm.behaviour_mut().blocked.unblock_peer(peer);
        }
        for peer in due {
            if self.exchanges.contains_key(&peer) {
                // One is running and may have passed the keys in question.
                self.peers.retry_after(peer, HOUSEKEEPING);
            } else if self.swarm.is_connected(&peer) {
                self.start_reconcile(peer);
            }
        }
    }

    /// Starts a catch-up with every connected peer; returns them.
    fn reconcile_with_all(&mut self) -> Vec<PeerId> {
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for &peer in &peers {
            self.start_reconcile(peer);
        }
        peers
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
                self.redial.learn(peer_id, &info.listen_addrs);
                self.gets
                    .identified(peer_id, info.protocols.contains(&SYNC_PROTOCOL));
                self.queries
                    .identified(peer_id, info.protocols.contains(&QUERY_PROTOCOL));
                if !info.protocols.contains(&KAD_PROTOCOL) {
                    // A Kademlia client (a browser): it answers no queries,
                    // and the address it came from is no place to reach it.
                    // Kept in the table, it would be handed to others as a
                    // closer peer that each of their queries waits on.
                    self.ephemeral.remove(&peer_id);
                    self.swarm.behaviour_mut().kad.remove_peer(&peer_id);
                    return;
                }
                if info.listen_addrs.is_empty() {
                    // It listens nowhere: its connection is the only way to
                    // it, and the ephemeral address goes when that closes.
                    return;
                }
                let ephemeral = self.ephemeral.remove(&peer_id);
                // With port reuse the remote address is a listen address.
                let ephemeral = ephemeral.filter(|e| !info.listen_addrs.contains(e));
                for address in info.listen_addrs {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer_id, address);
                }
                if let Some(ephemeral) = ephemeral {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .remove_address(&peer_id, &ephemeral);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(event)) => {
                for (peer_id, address) in platform::discovered(event) {
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
                connection_id,
                ..
            } => {
                if let Some((_, reply)) = self.dials.remove(&connection_id) {
                    let _ = reply.send(Ok(peer_id));
                }
                self.redial.connected(peer_id);
                // The routing table needs an address before Kademlia sends
                // the peer anything. The dialler knows where it reached the
                // peer; the dialled side sees only the remote's ephemeral
                // port, which still names the open connection, so a publish
                // right after `PeerConnected` reaches it. Identify brings
                // the real listen addresses and the ephemeral one is dropped.
                // A relayed connection accepted here names no address of
                // the peer's (only `/p2p/<peer>`).
                let relayed = endpoint.is_relayed();
                let address = endpoint.get_remote_address().clone();
                if !relayed || endpoint.is_dialer() {
                    if !endpoint.is_dialer() {
                        self.ephemeral.insert(peer_id, address.clone());
                    }
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer_id, address);
                }
                let _ = self.shared.events.send(Event::ConnectionOpened {
                    peer: peer_id,
                    relayed,
                });
                let was_relayed = self.relayed.contains_key(&peer_id);
                self.track_path(peer_id, connection_id, relayed);
                if num_established.get() == 1 {
                    let _ = self.shared.events.send(Event::PeerConnected(peer_id));
                    if relayed && platform::HOLE_PUNCHING {
                        // Hole punching may make it direct in a moment:
                        // the catch-up waits for that, so that it does not
                        // spend the relay's bandwidth (nor hit its limits).
                        // A browser cannot punch: it catches up at once.
                        self.peers.retry_after(peer_id, RELAYED_CATCH_UP_DELAY);
                    } else {
                        // Each side fetches only in the exchange it started.
                        self.start_reconcile(peer_id);
                    }
                } else if was_relayed && !relayed {
                    // Hole punched: the catch-up runs directly, now.
                    self.start_reconcile(peer_id);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } if num_established > 0 => self.path_closed(peer_id, connection_id),
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established: 0,
                ..
            } => {
                self.path_closed(peer_id, connection_id);
                self.fetches.drop_peer(peer_id);
                self.peers.drop_peer(&peer_id);
                self.gets.disconnected(&peer_id);
                self.queries.disconnected(&peer_id);
                // An address the peer dialled from and never said it
                // listens on (no Identify, or none of its listen addresses)
                // named only this connection: handed to others, it would
                // make their queries wait on a dial that cannot succeed.
                if let Some(ephemeral) = self.ephemeral.remove(&peer_id) {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .remove_address(&peer_id, &ephemeral);
                }
                self.redial.disconnected(peer_id, platform::Instant::now());
                self.fail(peer_id, CatchUpFailure::Disconnected);
                let _ = self.shared.events.send(Event::PeerDisconnected(peer_id));
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(event)) => self.on_sync_event(event),
            SwarmEvent::Behaviour(BehaviourEvent::Query(event)) => self.on_query_event(event),
            SwarmEvent::Behaviour(BehaviourEvent::RelayClient(event)) => {
                if let Some(notice) = crate::node::shell::nat::relay_client_notice(event) {
                    self.on_nat(notice);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Relay(event)) => {
                if let Some(notice) = platform::relay_server_notice(event) {
                    self.on_nat(notice);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(event)) => {
                self.on_nat(platform::dcutr_notice(event));
            }
            SwarmEvent::Behaviour(BehaviourEvent::Autonat(event)) => {
                if let Some(notice) = platform::autonat_notice(event) {
                    self.on_nat(notice);
                }
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                let reason = match reason {
                    Ok(()) => "closed".to_string(),
                    Err(error) => error.to_string(),
                };
                self.listener_closed(listener_id, reason);
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                error,
                peer_id,
            } => {
                if let Some(peer) = peer_id {
                    self.redial
                        .failed(peer, connection_id, platform::Instant::now());
                }
                if let Some((address, reply)) = self.dials.remove(&connection_id) {
                    let _ = reply.send(Err(NodeError::Dial {
                        address,
                        reason: error.to_string(),
                    }));
                }
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(peer_id = %self.shared.peer_id, %address, "listening");
                self.announce_if_relay(&address);
                self.listening.add(address);
            }
            _ => {}
        }
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
                if self.shared.health.degraded() {
                    // Acknowledged by Kademlia already: fetched back after recovery.
                    self.shared.counters.reject(Rejection::StorageFailed);
                    self.watch_storage();
                    return;
                }
                // Queued per peer; validated and stored in batches off the poll.
                match self
                    .shared
                    .pushed
                    .push(source, record.key.to_vec(), record.value)
                {
                    Pushed::Queued => {}
                    Pushed::StartWorker => {
                        let shared = self.shared.clone();
                        platform::background(move || intake::drain(&shared));
                    }
                    Pushed::Full => {
                        self.shared.counters.reject(Rejection::Overloaded);
                        tracing::debug!(peer = %source, "dropped a pushed record: that peer's queue is full");
                        // It was acknowledged: fetch it from that peer soon.
                        self.peers.retry_after(source, OVERLOAD_RETRY);
                    }
                }
            }
            kad::Event::OutboundQueryProgressed { id, result, .. } => match result {
                QueryResult::PutRecord(result) => {
                    // Kademlia's own puts (see `puts`) are not waited for.
                    self.put_finished(id, result);
                }
                QueryResult::GetClosestPeers(result) => {
                    if let Some((address, reply)) = self.lookups.remove(&id) {
                        self.looked_up(address, reply);
                    } else {
                        self.routed(id, result);
                    }
                }
                _ => {}
            },
            _ => {}
        }
    }
}
