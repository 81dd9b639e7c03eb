//! The one task that owns the swarm. The handle talks to it through
//! [`Command`]s; it answers through oneshot channels and hands storage work
//! to blocking tasks, so neither redb nor signature checks run on its poll.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use libp2p::kad::{self, GetRecordOk, PutRecordError, QueryId, QueryResult, Quorum, Record};
use libp2p::swarm::SwarmEvent;
use libp2p::{identify, mdns, Multiaddr, PeerId, Swarm};
use tokio::sync::{mpsc, oneshot};

use super::behaviour::{Behaviour, BehaviourEvent};
use super::event::Event;
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
        }
    }

    pub(crate) async fn run(mut self) {
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown) | None => break,
                    Some(command) => self.on_command(command),
                },
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
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                let _ = self.shared.events.send(Event::PeerDisconnected(peer_id));
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(peer_id = %self.shared.peer_id, %address, "listening");
                self.shared.listening_on(address);
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
