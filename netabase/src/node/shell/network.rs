//! The network side of a node, as its handle sees it: starting and stopping
//! the swarm's task, and the commands sent to it. The task itself is the
//! [`event_loop`](super::event_loop).

use std::sync::Arc;
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};

use super::behaviour;
use super::event_loop::{Command, EventLoop, PutAnswer};
use super::kad_store::kad_record;
use super::listening::{peer_of, Listening};
use super::republish;
use crate::codec::Envelope;
use crate::node::platform;
use crate::node::replica::event::CatchUpOutcome;
use crate::node::replica::Replica;
use crate::node::{NetabaseConfig, NodeError, WriteQuorum};

const COMMAND_BUFFER: usize = 1024;
/// How long `start` waits for its first listen address.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

struct Running {
    commands: mpsc::Sender<Command>,
    task: platform::Task<()>,
}

/// The swarm's task, when it runs, and the way to it. Cheap to clone:
/// clones share it.
#[derive(Clone)]
pub(crate) struct Network {
    pub(crate) config: Arc<NetabaseConfig>,
    listening: Arc<Listening>,
    running: Arc<tokio::sync::Mutex<Option<Running>>>,
}

impl Network {
    pub(crate) fn new(config: NetabaseConfig) -> Self {
        Network {
            config: Arc::new(config),
            listening: Arc::default(),
            running: Arc::default(),
        }
    }

    /// How many handles share this network (each holds one clone).
    pub(crate) fn handles(&self) -> usize {
        Arc::strong_count(&self.running)
    }

    /// The addresses the swarm listens on (empty while it is stopped).
    pub(crate) fn listen_addresses(&self) -> Vec<Multiaddr> {
        self.listening.addresses()
    }

    /// Starts the swarm's task on `replica`: listens on the configured
    /// addresses (returning once the first is bound), dials the bootstrap
    /// peers and republishes the replica's own records.
    pub(crate) async fn start(&self, replica: &Arc<Replica>) -> Result<(), NodeError> {
        let mut running = self.running.lock().await;
        if running.is_some() {
            return Err(NodeError::AlreadyRunning);
        }
        let config = &self.config;
        let mut swarm = behaviour::build_swarm(
            &replica.keypair,
            config,
            replica.cache.clone(),
            replica.counters.traffic.clone(),
        )
        .await?;
        self.listening.clear();
        let listening = self.listening.added();
        tokio::pin!(listening);
        listening.as_mut().enable();
        for address in &config.listen_addresses {
            swarm
                .listen_on(address.clone())
                .map_err(|source| NodeError::Listen {
                    address: address.clone(),
                    source: Box::new(source),
                })?;
        }
        for address in &config.bootstrap_peers {
            match peer_of(address) {
                Some(peer) => {
                    // Dialled (and redialled) by the event loop.
                    swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer, address.clone());
                }
                None => {
                    tracing::warn!(%address, "a bootstrap address without /p2p/<peer id> is dialled once, never redialled");
                    if let Err(error) = swarm.dial(address.clone()) {
                        tracing::warn!(%address, %error, "could not dial a bootstrap peer");
                    }
                }
            }
        }
        let (commands, rx) = mpsc::channel(COMMAND_BUFFER);
        let event_loop = EventLoop::new(
            swarm,
            replica.clone(),
            config.clone(),
            self.listening.clone(),
            rx,
        );
        let task = platform::spawn(event_loop.run());
        if let Some(address) = config.listen_addresses.first() {
            // Binding is normally immediate; a listener that never comes up
            // must not hang the caller.
            if platform::timeout(LISTEN_TIMEOUT, listening).await.is_err() {
                let _ = commands.send(Command::Shutdown).await;
                let _ = task.await;
                return Err(NodeError::Listen {
                    address: address.clone(),
                    source: "no listen address came up in time".into(),
                });
            }
        }
        self.republish_own_records(replica.clone(), commands.clone());
        *running = Some(Running { commands, task });
        Ok(())
    }

    /// Stops the swarm's task and waits for it to end.
    pub(crate) async fn stop(&self) -> Result<(), NodeError> {
        let running = self
            .running
            .lock()
            .await
            .take()
            .ok_or(NodeError::NotRunning)?;
        // If the loop already ended, the send fails and the join returns at once.
        let _ = running.commands.send(Command::Shutdown).await;
        if let Err(error) = running.task.await {
            tracing::warn!(%error, "the swarm task ended abnormally");
        }
        // Nothing listens there any more.
        self.listening.clear();
        Ok(())
    }

    /// Dials `address` and waits (at most `query_timeout`) for the
    /// connection.
    pub(crate) async fn dial(&self, address: Multiaddr) -> Result<PeerId, NodeError> {
        let (reply, done) = oneshot::channel();
        self.send(Command::Dial {
            address: address.clone(),
            reply,
        })
        .await?;
        match platform::timeout(self.config.query_timeout, done).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(NodeError::Stopped),
            Err(_) => Err(NodeError::Dial {
                address,
                reason: format!(
                    "no connection within {:?} (query_timeout)",
                    self.config.query_timeout
                ),
            }),
        }
    }

    /// Publishes a committed envelope with the write quorum; returns
    /// whether peers took it. Returns as soon as the quorum is met; with
    /// [`WriteQuorum::Available`], once every peer waited for has answered,
    /// or `write_grace` after the first one stored it. The other answers
    /// arrive in the background.
    pub(crate) async fn publish(&self, envelope: &Envelope) -> Result<bool, NodeError> {
        let record = kad_record(&envelope.record_key(), envelope.as_bytes());
        let (reply, mut answers) = mpsc::unbounded_channel();
        self.send(Command::Publish { record, reply }).await?;
        let required = match self.config.write_quorum {
            WriteQuorum::AtLeast(n) => Some(n.get()),
            WriteQuorum::Available => None,
        };
        let deadline = platform::sleep(self.config.query_timeout);
        tokio::pin!(deadline);
        let mut tally = Tally::default();
        let mut grace = None;
        let timed_out = loop {
            let answer = match grace.as_mut() {
                Some(grace) => tokio::select! {
                    answer = answers.recv() => answer,
                    _ = &mut deadline => break true,
                    _ = grace => break false,
                },
                None => tokio::select! {
                    answer = answers.recv() => answer,
                    _ = &mut deadline => break true,
                },
            };
            let Some(answer) = answer else {
                // Every peer asked has answered.
                break false;
            };
            tally.take(answer);
            match required {
                Some(n) if tally.stored >= n => return Ok(true),
                Some(_) => {}
                None if tally.waited_for_all() => break false,
                None if tally.stored > 0 && grace.is_none() => {
                    grace = Some(Box::pin(platform::sleep(self.config.write_grace)));
                }
                None => {}
            }
        };
        match required {
            None => Ok(tally.stored > 0),
            Some(required) => Err(NodeError::Publish {
                stored: tally.stored,
                required,
                timed_out,
            }),
        }
    }

    /// Starts a catch-up with every connected peer; returns those peers.
    pub(crate) async fn catch_up(&self) -> Result<Vec<PeerId>, NodeError> {
        let (reply, peers) = oneshot::channel();
        self.send(Command::CatchUp { reply, done: None }).await?;
        peers.await.map_err(|_| NodeError::Stopped)
    }

    /// Starts a catch-up with every connected peer and waits for each to end.
    pub(crate) async fn catch_up_and_wait(
        &self,
    ) -> Result<Vec<(PeerId, CatchUpOutcome)>, NodeError> {
        let (reply, _) = oneshot::channel();
        let (done, outcomes) = oneshot::channel();
        self.send(Command::CatchUp {
            reply,
            done: Some(done),
        })
        .await?;
        outcomes.await.map_err(|_| NodeError::Stopped)
    }

    /// Republishes the replica's own records in the background now and
    /// every `publication_interval`, streamed from the store a page at a
    /// time and a bounded number in flight, so a large store neither floods
    /// the swarm nor is copied into memory. Ends when the swarm stops.
    fn republish_own_records(&self, replica: Arc<Replica>, commands: mpsc::Sender<Command>) {
        let period = self.config.publication_interval;
        platform::spawn(async move {
            loop {
                if republish::all(&replica, &commands).await.is_err() {
                    return;
                }
                let Some(period) = period else {
                    return;
                };
                // Ends with the swarm, not a period later: the task holds
                // the node's state, which `shutdown` waits for.
                tokio::select! {
                    _ = platform::sleep(period) => {}
                    _ = commands.closed() => return,
                }
            }
        });
    }

    pub(crate) async fn send(&self, command: Command) -> Result<(), NodeError> {
        let commands = self
            .running
            .lock()
            .await
            .as_ref()
            .map(|r| r.commands.clone())
            .ok_or(NodeError::NotRunning)?;
        commands.send(command).await.map_err(|_| NodeError::Stopped)
    }
}

/// A put's answers so far.
#[derive(Default)]
struct Tally {
    /// The peers waited for that have not answered; `None` until known.
    pending: Option<Vec<PeerId>>,
    stored: usize,
}

impl Tally {
    fn take(&mut self, answer: PutAnswer) {
        let peer = match answer {
            PutAnswer::Asked(waited) => {
                self.pending = Some(waited);
                return;
            }
            PutAnswer::Stored(peer) => {
                self.stored += 1;
                peer
            }
            PutAnswer::Failed(peer) => peer,
        };
        if let Some(pending) = &mut self.pending {
            pending.retain(|p| *p != peer);
        }
    }

    fn waited_for_all(&self) -> bool {
        self.pending.as_ref().is_some_and(Vec::is_empty)
    }
}
