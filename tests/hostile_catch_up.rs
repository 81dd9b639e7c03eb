//! A raw rust-libp2p peer speaking netabase's catch-up protocol
//! (`/netabase/sync/1.0.0`) lies to a node: it advertises records the node
//! lacks (and a newer version of one it holds), then answers the node's
//! fetches with every kind of bad record, too many records, oversized and
//! malformed messages and answers of the wrong kind. Each bad record is
//! refused and counted, nothing bad is stored, the record the node held stays
//! byte-identical, and afterwards the node still works and still catches up
//! with a good peer. Every wait is bounded; nothing sleeps a fixed time.

mod common;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bincode::Encode;
use common::raw::{SyncRequest, SyncResponse};
use common::*;
use futures::{AsyncRead, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::request_response::{self, ProtocolSupport, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm};
use netabase::codec::{record_key, Envelope, ENVELOPE_FORMAT_VERSIONED};
use netabase::model::ModelId;
use netabase::node::{
    CatchUpFailure, Event, Netabase, NetabaseConfig, Protocol, Rejection, SYNC_PROTOCOL,
};
use netabase::store::Lookup;
use netabase::sync::reconcile::{digest, Item, ItemState, KeyRange, Part, Watermarks};
use netabase::sync::Timestamp;
use netabase::{KeyEncode, Keypair, NetabaseModel};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::timeout;

/// The node's limit on one catch-up message.
const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// The bound on every wait.
const WAIT: Duration = Duration::from_secs(30);

/// A well-formed message: 4-byte big-endian length, then bincode (standard).
fn frame(message: &impl Encode) -> Vec<u8> {
    let bytes = bincode::encode_to_vec(message, bincode::config::standard()).unwrap();
    let mut out = u32::try_from(bytes.len()).unwrap().to_be_bytes().to_vec();
    out.extend(bytes);
    out
}

/// Reads the node's requests like the node does; writes responses as raw
/// frames, well-formed or not.
#[derive(Clone, Copy, Debug, Default)]
struct HostileCodec;

#[async_trait]
impl request_response::Codec for HostileCodec {
    type Protocol = StreamProtocol;
    type Request = SyncRequest;
    type Response = Vec<u8>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<SyncRequest> {
        common::raw::read_frame(io).await
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
    ) -> io::Result<Vec<u8>> {
        Err(io::Error::other("the hostile peer sends no requests"))
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
        _: SyncRequest,
    ) -> io::Result<()> {
        Err(io::Error::other("the hostile peer sends no requests"))
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        frame: Vec<u8>,
    ) -> io::Result<()> {
        io.write_all(&frame).await?;
        io.close().await
    }
}

type Channel = ResponseChannel<Vec<u8>>;

/// The hostile peer: a swarm with nothing but the catch-up protocol, driven
/// by the test itself.
struct Hostile {
    swarm: Swarm<request_response::Behaviour<HostileCodec>>,
    keypair: Keypair,
    address: Multiaddr,
    /// Requests that arrived while the test waited for something else.
    pending: VecDeque<(SyncRequest, Channel)>,
    /// Every key the node asked for.
    fetched: Vec<Vec<u8>>,
}

impl Hostile {
    async fn start() -> Self {
        let keypair = Keypair::generate_ed25519();
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair.clone())
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .unwrap()
            .with_behaviour(|_| {
                request_response::Behaviour::with_codec(
                    HostileCodec,
                    [(SYNC_PROTOCOL, ProtocolSupport::Inbound)],
                    request_response::Config::default(),
                )
            })
            .unwrap()
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
            .build();
        swarm
            .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
            .unwrap();
        let address = timeout(WAIT, async {
            loop {
                if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                    return address;
                }
            }
        })
        .await
        .expect("the hostile peer listens");
        let peer = *swarm.local_peer_id();
        Hostile {
            swarm,
            keypair,
            address: address.with(Protocol::P2p(peer)),
            pending: VecDeque::new(),
            fetched: Vec::new(),
        }
    }

    fn peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    fn on_event(&mut self, event: SwarmEvent<request_response::Event<SyncRequest, Vec<u8>>>) {
        use request_response::{Event as Rr, Message};
        match event {
            SwarmEvent::Behaviour(Rr::Message {
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            }) => {
                if let SyncRequest::Fetch(keys) = &request {
                    self.fetched.extend(keys.iter().cloned());
                }
                self.pending.push_back((request, channel));
            }
            // A request of the node's that we could not read would be a bug
            // in this test's mirror of the wire format.
            SwarmEvent::Behaviour(Rr::InboundFailure {
                error: request_response::InboundFailure::Io(e),
                ..
            }) => assert_ne!(
                e.kind(),
                io::ErrorKind::InvalidData,
                "could not read a request from the node: {e}"
            ),
            _ => {}
        }
    }

    /// The next request from the node, unbounded (callers bound it).
    async fn request(&mut self) -> (SyncRequest, Channel) {
        loop {
            if let Some(request) = self.pending.pop_front() {
                return request;
            }
            let event = self.swarm.select_next_some().await;
            self.on_event(event);
        }
    }

    async fn next_request(&mut self, what: &str) -> (SyncRequest, Channel) {
        timeout(WAIT, self.request())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for the node's {what}"))
    }

    /// Sends `frame` and drives the swarm until it is written (or the node
    /// hung up on it), queueing any request that arrives meanwhile.
    async fn answer(&mut self, channel: Channel, frame: Vec<u8>) {
        use request_response::Event as Rr;
        self.swarm
            .behaviour_mut()
            .send_response(channel, frame)
            .expect("the node still waits for the answer");
        timeout(WAIT, async {
            loop {
                match self.swarm.select_next_some().await {
                    SwarmEvent::Behaviour(Rr::ResponseSent { .. })
                    | SwarmEvent::Behaviour(Rr::InboundFailure { .. }) => return,
                    event => self.on_event(event),
                }
            }
        })
        .await
        .expect("the answer is sent");
    }

    /// Drives the swarm until `done` gives a value; `done` sees every node
    /// event (`Some`) and is also asked every 20 ms (`None`).
    async fn drive_until<T>(
        &mut self,
        events: &mut broadcast::Receiver<Event>,
        what: &str,
        mut done: impl FnMut(Option<&Event>) -> Option<T>,
    ) -> T {
        let run = async {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            loop {
                tokio::select! {
                    event = self.swarm.select_next_some() => self.on_event(event),
                    event = events.recv() => match event {
                        Ok(event) => {
                            if let Some(out) = done(Some(&event)) {
                                return out;
                            }
                        }
                        Err(RecvError::Lagged(_)) => {}
                        Err(RecvError::Closed) => panic!("the node's event stream closed"),
                    },
                    _ = tick.tick() => {
                        if let Some(out) = done(None) {
                            return out;
                        }
                    }
                }
            }
        };
        timeout(WAIT, run)
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
    }

    /// Asks the node to catch up until it opens an exchange with us, and
    /// returns its first message. A request is made again only after a
    /// quiet spell: `catch_up` does nothing while the node still counts its
    /// previous exchange with us as open (it learns that a broken answer
    /// failed without telling anyone).
    async fn reconcile_again(&mut self, node: &Netabase, what: &str) -> (SyncRequest, Channel) {
        assert!(self.pending.is_empty(), "{:?}", self.pending);
        let request = timeout(WAIT, async {
            loop {
                node.catch_up().await.expect("the node's swarm runs");
                if let Ok(request) = timeout(Duration::from_millis(250), self.request()).await {
                    return request;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the node never reconciled again after {what}"));
        assert!(
            matches!(request.0, SyncRequest::Reconcile(..)),
            "expected a reconciliation, got {:?}",
            request.0
        );
        request
    }

    /// Answers the node's reconciliation by advertising `items` as all we
    /// hold; returns the node's fetch that follows.
    async fn advertise(
        &mut self,
        reconcile: (SyncRequest, Channel),
        items: Vec<Item>,
    ) -> (Vec<Vec<u8>>, Channel) {
        let (SyncRequest::Reconcile(..), channel) = reconcile else {
            panic!("expected a reconciliation, got {:?}", reconcile.0)
        };
        // A reader refuses unordered items outright; these must get through
        // to the record checks.
        let mut items = items;
        items.sort_by(|a, b| a.key.cmp(&b.key));
        let parts = vec![Part::Items {
            range: KeyRange::all(),
            items,
            reply: false,
        }];
        self.answer(
            channel,
            frame(&SyncResponse::Reconcile(Watermarks::default(), parts)),
        )
        .await;
        match self.next_request("fetch").await {
            (SyncRequest::Fetch(keys), channel) => (keys, channel),
            (other, _) => panic!("expected a fetch, got {other:?}"),
        }
    }

    /// Has `node` dial this peer (its swarm is driven meanwhile: the
    /// dial waits for the handshake) and returns the node's first
    /// reconciliation message.
    async fn dialled_by(&mut self, node: &Netabase) -> (SyncRequest, Channel) {
        let dial = tokio::spawn({
            let node = node.clone();
            let address = self.address.clone();
            async move { node.dial(address).await }
        });
        let reconcile = self.next_request("first reconciliation").await;
        dial.await.unwrap().unwrap();
        reconcile
    }

    /// A new hostile peer the node has dialled, with the node's first
    /// reconciliation message.
    async fn connect(node: &Netabase) -> (Self, (SyncRequest, Channel)) {
        let mut hostile = Hostile::start().await;
        let reconcile = hostile.dialled_by(node).await;
        (hostile, reconcile)
    }

    /// A new peer the node has dialled that answers its catch-up with
    /// "nothing here"; returns it once the node reports the exchange
    /// complete, with what the node received.
    async fn nothing_to_say(
        node: &Netabase,
        events: &mut broadcast::Receiver<Event>,
    ) -> (Self, u64) {
        let (mut hostile, reconcile) = Hostile::connect(node).await;
        let me = hostile.peer_id();
        hostile
            .answer_reconcile_with(
                reconcile,
                frame(&SyncResponse::Reconcile(Watermarks::default(), Vec::new())),
            )
            .await;
        let received = hostile
            .drive_until(
                events,
                "a clean exchange with the hostile peer",
                |e| match e {
                    Some(Event::CaughtUp { peer, received, .. }) if *peer == me => Some(*received),
                    _ => None,
                },
            )
            .await;
        (hostile, received)
    }

    /// Drives the swarm until the node reports its exchange with us failed
    /// as off-protocol, with `refused` violations counted in all.
    async fn failed_off_protocol(
        &mut self,
        node: &Netabase,
        events: &mut broadcast::Receiver<Event>,
        refused: u64,
    ) {
        let me = self.peer_id();
        self.drive_until(events, "the exchange to fail as off-protocol", |e| {
            matches!(
                e,
                Some(Event::CatchUpFailed {
                    peer,
                    reason: CatchUpFailure::OffProtocol
                }) if *peer == me
            )
            .then_some(())
        })
        .await;
        assert_eq!(node.stats().sync_messages_refused, refused);
        assert_eq!(node.stats().peers_banned, 0);
    }

    /// Dials the node and checks the connection is refused.
    async fn refused_by(&mut self, node: &Netabase) {
        let address = node.listen_addresses()[0]
            .clone()
            .with(Protocol::P2p(node.peer_id()));
        self.swarm.dial(address).unwrap();
        timeout(WAIT, async {
            loop {
                match self.swarm.select_next_some().await {
                    SwarmEvent::OutgoingConnectionError { .. }
                    | SwarmEvent::ConnectionClosed { .. } => return,
                    SwarmEvent::Behaviour(request_response::Event::Message { .. }) => {
                        panic!("a banned peer was sent a request")
                    }
                    _ => {}
                }
            }
        })
        .await
        .expect("the banned peer's connection is refused");
    }

    /// Has the node catch up with us again, advertises `offers`, and answers
    /// its fetch with their records; returns the keys it asked for.
    async fn offer(&mut self, node: &Netabase, after: &str, offers: &[Offer]) -> Vec<Vec<u8>> {
        let reconcile = self.reconcile_again(node, after).await;
        let (keys, channel) = self
            .advertise(reconcile, offers.iter().map(Offer::item).collect())
            .await;
        self.answer(
            channel,
            frame(&SyncResponse::Records(records_for(offers, &keys))),
        )
        .await;
        keys
    }

    /// Answers the node's reconciliation with `frame`, whatever it holds.
    async fn answer_reconcile_with(&mut self, reconcile: (SyncRequest, Channel), frame: Vec<u8>) {
        let (SyncRequest::Reconcile(..), channel) = reconcile else {
            panic!("expected a reconciliation, got {:?}", reconcile.0)
        };
        self.answer(channel, frame).await;
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn user_key(id: u64) -> Vec<u8> {
    record_key(User::ID, UserKey(id).to_key_bytes().as_slice())
}

/// What the hostile peer serves for one key, and what it claims about it.
struct Offer {
    key: Vec<u8>,
    bytes: Vec<u8>,
    claimed: u64,
}

impl Offer {
    /// Bytes served under `key`, advertised with their digest and `claimed`
    /// as their timestamp.
    fn new(key: Vec<u8>, bytes: Vec<u8>, claimed: Timestamp) -> Self {
        Offer {
            key,
            bytes,
            claimed: claimed.0,
        }
    }

    fn envelope(key: Vec<u8>, envelope: &Envelope) -> Self {
        Offer::new(
            key,
            envelope.as_bytes().to_vec(),
            envelope.version().timestamp,
        )
    }

    fn item(&self) -> Item {
        Item {
            key: self.key.clone(),
            state: ItemState {
                digest: digest(&self.bytes),
                timestamp: self.claimed,
            },
        }
    }
}

/// The records answering `keys`, in order; an empty entry for any other key.
fn records_for(offers: &[Offer], keys: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let by_key: HashMap<&[u8], &[u8]> = offers
        .iter()
        .map(|o| (o.key.as_slice(), o.bytes.as_slice()))
        .collect();
    keys.iter()
        .map(|k| {
            by_key
                .get(k.as_slice())
                .map(|b| b.to_vec())
                .unwrap_or_default()
        })
        .collect()
}

fn sorted(mut keys: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    keys.sort();
    keys
}

/// Every stored envelope, as `(record key, bytes)`.
fn envelopes(node: &Netabase) -> Vec<(Vec<u8>, Vec<u8>)> {
    node.store().begin_read().unwrap().envelopes().unwrap()
}

fn user_count(node: &Netabase) -> u64 {
    node.store().tree::<User>().len().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_catch_up_peer_is_refused_counted_and_harmless() {
    let dir = tempfile::tempdir().unwrap();
    let node =
        Netabase::new_with_path(dir.path().join("node"), NetabaseConfig::loopback()).unwrap();
    node.register::<User>().unwrap();
    node.start_swarm().await.unwrap();
    let mut events = node.subscribe_to_broadcasts();
    let good = user(1, "ada@example.com", 36);
    let genuine = node.put_record_locally(good.clone()).await.unwrap();
    let held_before = envelopes(&node);
    let fingerprint_before = node.sync_fingerprint().unwrap();
    assert_eq!(held_before.len(), 1);

    let mut hostile = Hostile::start().await;
    let kp = hostile.keypair.clone();
    let now = || Timestamp::new(now_ms(), 0);

    // ---- Round 1: every kind of bad record, in one fetch. ----
    let unknown_key = record_key(ModelId(0xdead_beef), b"k");
    let offers = {
        let mut flipped = Envelope::seal(&kp, &user(13, "flip@x", 1), now())
            .unwrap()
            .as_bytes()
            .to_vec();
        let last = flipped.len() - 1;
        flipped[last] ^= 0xff;
        let lying = Envelope::seal_raw(
            &kp,
            User::ID,
            UserKey(14).to_key_bytes().as_slice(),
            netabase::codec::encode(&user(15, "evil15@x", 1)).unwrap(),
            now(),
            false,
        )
        .unwrap();
        let ahead = Timestamp::new(now_ms() + 10 * 60 * 1000, 0);
        let future = Envelope::seal(&kp, &user(16, "future@x", 1), ahead).unwrap();
        let huge = User {
            name: "x".repeat(62 * 1024),
            ..user(17, "huge@x", 1)
        };
        let huge = Envelope::seal(&kp, &huge, now()).unwrap();
        assert!(huge.as_bytes().len() > 60 * 1024);
        let foreign = Envelope::seal_raw(
            &kp,
            ModelId(0xdead_beef),
            UserKey(18).to_key_bytes().as_slice(),
            vec![0],
            now(),
            false,
        )
        .unwrap();
        let junk_payload = Envelope::seal_raw(
            &kp,
            User::ID,
            UserKey(20).to_key_bytes().as_slice(),
            b"junk".to_vec(),
            now(),
            false,
        )
        .unwrap();
        // Valid and signed, but ada's earlier record holds its unique email:
        // kept as a conflict, out of the typed tree.
        let squatter = Envelope::seal(&kp, &user(22, "ada@example.com", 1), now()).unwrap();
        // A validly signed older version of the record the node holds,
        // advertised as newer than the node's.
        let held = genuine.version().timestamp;
        let older = Envelope::seal(
            &kp,
            &user(1, "old@x", 99),
            Timestamp::new(held.millis() - 60_000, 0),
        )
        .unwrap();
        vec![
            Offer::new(
                user_key(10),
                b"\x01garbage that is no envelope".to_vec(),
                now(),
            ),
            Offer::envelope(
                user_key(11),
                &Envelope::seal(&kp, &user(12, "evil12@x", 1), now()).unwrap(),
            ),
            Offer::new(user_key(13), flipped, now()),
            Offer::envelope(user_key(14), &lying),
            // Advertised as stamped now: honestly advertised, it would not
            // even be fetched (see tests/clocks.rs).
            Offer::new(user_key(16), future.as_bytes().to_vec(), now()),
            Offer::envelope(user_key(17), &huge),
            Offer::envelope(user_key(18), &foreign),
            Offer::new(
                user_key(19),
                vec![ENVELOPE_FORMAT_VERSIONED + 1, 0, 0, 0],
                now(),
            ),
            Offer::envelope(user_key(20), &junk_payload),
            // Advertised, then answered "no longer held".
            Offer::new(user_key(21), Vec::new(), now()),
            Offer::envelope(user_key(22), &squatter),
            Offer::new(
                user_key(1),
                older.as_bytes().to_vec(),
                Timestamp(held.0 + 1),
            ),
            // A model the node does not sync: it must never ask for it.
            Offer::envelope(
                unknown_key.clone(),
                &Envelope::seal_raw(&kp, ModelId(0xdead_beef), b"k", vec![0], now(), false)
                    .unwrap(),
            ),
        ]
    };
    let reconcile = hostile.dialled_by(&node).await;
    // Sanity of the mirrored wire format: the node lists what it holds.
    match &reconcile.0 {
        // One part per model it syncs (their key ranges), each listed.
        SyncRequest::Reconcile(_, parts) => assert!(
            parts
                .iter()
                .all(|part| matches!(part, Part::Items { reply: true, .. }))
                && parts
                    .iter()
                    .flat_map(|part| match part {
                        Part::Items { items, .. } => items.iter().map(|i| &i.key).collect(),
                        _ => Vec::new(),
                    })
                    .eq([&user_key(1)]),
            "{parts:?}"
        ),
        other => panic!("expected a reconciliation, got {other:?}"),
    }
    let (keys, channel) = hostile
        .advertise(reconcile, offers.iter().map(Offer::item).collect())
        .await;
    let wanted: Vec<Vec<u8>> = offers
        .iter()
        .map(|o| o.key.clone())
        .filter(|k| *k != unknown_key)
        .collect();
    assert_eq!(sorted(keys.clone()), sorted(wanted));
    hostile
        .answer(
            channel,
            frame(&SyncResponse::Records(records_for(&offers, &keys))),
        )
        .await;
    let hostile_peer = hostile.peer_id();
    // Refused records do not make an exchange incomplete: it ends, with only
    // the squatter received (as a conflict).
    let received = hostile
        .drive_until(
            &mut events,
            "the exchange with the hostile peer to end",
            |e| match e {
                Some(Event::CaughtUp { peer, received, .. }) if *peer == hostile_peer => {
                    Some(*received)
                }
                _ => None,
            },
        )
        .await;
    assert_eq!(received, 1);
    let mut expected = BTreeMap::from([
        (Rejection::Malformed, 1),
        (Rejection::UnsupportedFormat, 1),
        // Wrong record key, payload not matching the key, and the unknown
        // model under a User key: the record-key check comes first, and the
        // node never asks for keys of models it does not sync.
        (Rejection::KeyMismatch, 3),
        (Rejection::BadSignature, 1),
        (Rejection::BadPayload, 1),
        (Rejection::FromTheFuture, 1),
        (Rejection::TooLarge, 1),
        (Rejection::Stale, 1),
    ]);
    let stats = node.stats();
    assert_eq!(stats.rejected, expected, "{stats:?}");
    assert_eq!(
        (stats.accepted, stats.unique_conflicts),
        (1, 1),
        "{stats:?}"
    );
    assert_eq!(
        node.unique_conflicts::<User>().await.unwrap(),
        vec![user(22, "ada@example.com", 1)]
    );

    // ---- Rounds 2-8: one protocol violation each, each from a new peer
    // (three from one peer get it banned: see the last round). ----
    let mut refused = 0;
    let valid = |id: u64| Envelope::seal(&kp, &user(id, &format!("{id}@x"), 1), now()).unwrap();

    // Round 2: more records than asked for, all valid: refused as a whole.
    let (mut hostile, reconcile) = Hostile::connect(&node).await;
    let offers: Vec<Offer> = (30..32)
        .map(|id| Offer::envelope(user_key(id), &valid(id)))
        .collect();
    let (keys, channel) = hostile
        .advertise(reconcile, offers.iter().map(Offer::item).collect())
        .await;
    let mut records = records_for(&offers, &keys);
    assert!(records.iter().all(|r| !r.is_empty()));
    records.push(valid(32).as_bytes().to_vec());
    hostile
        .answer(channel, frame(&SyncResponse::Records(records)))
        .await;
    *expected.get_mut(&Rejection::Malformed).unwrap() += 1;
    refused += 1;
    hostile
        .failed_off_protocol(&node, &mut events, refused)
        .await;

    // Round 2, again: the keys asked for, answered with more than the 4 MiB
    // an honest peer sends, every record within the record limit (the
    // answer is refused as a whole, before any signature is checked: each
    // fetch slot holds at most 4 MiB).
    let (mut hostile, reconcile) = Hostile::connect(&node).await;
    let offers: Vec<Offer> = (100..180)
        .map(|id| Offer::new(user_key(id), vec![id as u8; 60_000], now()))
        .collect();
    let (keys, channel) = hostile
        .advertise(reconcile, offers.iter().map(Offer::item).collect())
        .await;
    assert_eq!(keys.len(), offers.len(), "asked for in one fetch");
    let records = records_for(&offers, &keys);
    assert!(records.iter().map(Vec::len).sum::<usize>() > 4 * 1024 * 1024);
    hostile
        .answer(channel, frame(&SyncResponse::Records(records)))
        .await;
    *expected.get_mut(&Rejection::Malformed).unwrap() += 1;
    refused += 1;
    hostile
        .failed_off_protocol(&node, &mut events, refused)
        .await;

    // Round 3: a reconciliation answer over the 16 MiB limit.
    let (mut hostile, reconcile) = Hostile::connect(&node).await;
    let mut oversized = u32::try_from(MAX_MESSAGE_BYTES + 1)
        .unwrap()
        .to_be_bytes()
        .to_vec();
    oversized.extend_from_slice(&[0u8; 64]);
    hostile
        .answer_reconcile_with(reconcile, oversized.clone())
        .await;
    refused += 1;
    hostile
        .failed_off_protocol(&node, &mut events, refused)
        .await;

    // Round 4: a reconciliation answer that is no message at all.
    let (mut hostile, reconcile) = Hostile::connect(&node).await;
    let mut junk = 8u32.to_be_bytes().to_vec();
    junk.extend_from_slice(&[0xff; 8]);
    hostile.answer_reconcile_with(reconcile, junk).await;
    refused += 1;
    hostile
        .failed_off_protocol(&node, &mut events, refused)
        .await;

    // Round 5: a fetch answer with trailing garbage inside its length.
    let (mut hostile, reconcile) = Hostile::connect(&node).await;
    let valid40 = valid(40);
    let (keys, channel) = hostile
        .advertise(
            reconcile,
            vec![Offer::envelope(user_key(40), &valid40).item()],
        )
        .await;
    assert_eq!(keys, vec![user_key(40)]);
    let mut trailing = bincode::encode_to_vec(
        SyncResponse::Records(vec![valid40.as_bytes().to_vec()]),
        bincode::config::standard(),
    )
    .unwrap();
    trailing.extend_from_slice(b"trailing garbage");
    let mut framed = u32::try_from(trailing.len())
        .unwrap()
        .to_be_bytes()
        .to_vec();
    framed.extend(trailing);
    hostile.answer(channel, framed).await;
    refused += 1;
    hostile
        .failed_off_protocol(&node, &mut events, refused)
        .await;

    // Round 6: a fetch answer over the 16 MiB limit.
    let (mut hostile, reconcile) = Hostile::connect(&node).await;
    let valid41 = valid(41);
    let (keys, channel) = hostile
        .advertise(
            reconcile,
            vec![Offer::envelope(user_key(41), &valid41).item()],
        )
        .await;
    assert_eq!(keys, vec![user_key(41)]);
    hostile.answer(channel, oversized.clone()).await;
    refused += 1;
    hostile
        .failed_off_protocol(&node, &mut events, refused)
        .await;

    // Round 7: a reconciliation answered with records.
    let (mut hostile, reconcile) = Hostile::connect(&node).await;
    hostile
        .answer_reconcile_with(
            reconcile,
            frame(&SyncResponse::Records(vec![valid41.as_bytes().to_vec()])),
        )
        .await;
    refused += 1;
    hostile
        .failed_off_protocol(&node, &mut events, refused)
        .await;

    // Round 8: a fetch answered with a reconciliation.
    let (mut hostile, reconcile) = Hostile::connect(&node).await;
    let valid42 = valid(42);
    let (keys, channel) = hostile
        .advertise(
            reconcile,
            vec![Offer::envelope(user_key(42), &valid42).item()],
        )
        .await;
    assert_eq!(keys, vec![user_key(42)]);
    hostile
        .answer(
            channel,
            frame(&SyncResponse::Reconcile(
                Watermarks::default(),
                vec![Part::Items {
                    range: KeyRange::all(),
                    items: Vec::new(),
                    reply: true,
                }],
            )),
        )
        .await;
    refused += 1;
    hostile
        .failed_off_protocol(&node, &mut events, refused)
        .await;

    // Round 9: ranges out of order, then a fetch answer cut short (one of
    // two records, far under the response limit), then items outside their
    // range: the third violation bans this peer.
    let (mut hostile, reconcile) = Hostile::connect(&node).await;
    let unordered = vec![
        Part::Fingerprint {
            range: KeyRange {
                lower: vec![5],
                upper: Some(vec![9]),
            },
            fingerprint: Default::default(),
        },
        Part::Fingerprint {
            range: KeyRange {
                lower: vec![1],
                upper: Some(vec![3]),
            },
            fingerprint: Default::default(),
        },
    ];
    hostile
        .answer_reconcile_with(
            reconcile,
            frame(&SyncResponse::Reconcile(Watermarks::default(), unordered)),
        )
        .await;
    refused += 1;
    hostile
        .failed_off_protocol(&node, &mut events, refused)
        .await;
    let reconcile = hostile.reconcile_again(&node, "ranges out of order").await;
    let offers: Vec<Offer> = (43..45)
        .map(|id| Offer::envelope(user_key(id), &valid(id)))
        .collect();
    let (keys, channel) = hostile
        .advertise(reconcile, offers.iter().map(Offer::item).collect())
        .await;
    assert_eq!(keys.len(), 2);
    let mut short = records_for(&offers, &keys);
    short.pop();
    hostile
        .answer(channel, frame(&SyncResponse::Records(short)))
        .await;
    refused += 1;
    hostile
        .failed_off_protocol(&node, &mut events, refused)
        .await;
    // What it did send passed every check and is stored.
    let sender = hostile.peer_id();
    hostile
        .drive_until(&mut events, "the short answer's record to be stored", |e| {
            matches!(e, Some(Event::Record { origin: netabase::node::Origin::Peer(p), .. }) if *p == sender)
                .then_some(())
        })
        .await;
    let reconcile = hostile.reconcile_again(&node, "a short fetch answer").await;
    let outside = vec![Part::Items {
        range: KeyRange {
            lower: vec![0],
            upper: Some(vec![1]),
        },
        items: vec![Offer::envelope(user_key(45), &valid(45)).item()],
        reply: false,
    }];
    let banned_peer = hostile.peer_id();
    hostile
        .answer_reconcile_with(
            reconcile,
            frame(&SyncResponse::Reconcile(Watermarks::default(), outside)),
        )
        .await;
    refused += 1;
    hostile
        .drive_until(&mut events, "the banned peer to be disconnected", |e| {
            matches!(e, Some(Event::PeerDisconnected(p)) if *p == banned_peer).then_some(())
        })
        .await;
    let stats = node.stats();
    assert_eq!(stats.peers_banned, 1, "{stats:?}");
    assert_eq!(stats.sync_messages_refused, refused, "{stats:?}");
    // It cannot come back for a while: its new connection is refused.
    hostile.refused_by(&node).await;
    assert_eq!(node.stats().peers_banned, 1);

    // ---- Round 10: a peer with nothing to say ends its exchange cleanly. ----
    let (mut hostile, received) = Hostile::nothing_to_say(&node, &mut events).await;
    assert_eq!(received, 0);

    // Nothing bad was stored, the held record is byte-identical, and only
    // the bad records were counted.
    assert!(
        !hostile.fetched.contains(&unknown_key),
        "the node asked for a model it does not sync"
    );
    // (Besides the one valid record of the short answer, which passed every
    // check, and the squatter, held as a conflict.)
    let short_answer = [user_key(43), user_key(44), user_key(22)];
    let held_now: Vec<_> = envelopes(&node)
        .into_iter()
        .filter(|(k, _)| !short_answer.contains(k))
        .collect();
    assert_eq!(held_now, held_before);
    assert_eq!(user_count(&node), 2);
    let _ = fingerprint_before;
    assert_eq!(
        node.record_version::<User>(&UserKey(1)),
        Some(genuine.version())
    );
    assert_eq!(node.get_record::<User>(UserKey(1)).await.unwrap(), good);
    let all = node
        .query_local_records::<User, _, _>(|t| t.iter()?.collect::<Result<Vec<_>, _>>())
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0], good.clone());
    let users = node.store().tree::<User>();
    assert_eq!(
        users.by_email("ada@example.com").unwrap().map(|u| u.id),
        Some(1)
    );
    assert_indexes_consistent(&users);
    let stats = node.stats();
    assert_eq!(stats.rejected, expected, "{stats:?}");
    assert_eq!(stats.accepted, 2);

    // The node still works: local writes and reads...
    node.put_record_locally(user(60, "60@example.com", 60))
        .await
        .unwrap();
    assert_eq!(
        node.get_record::<User>(UserKey(60)).await.unwrap(),
        user(60, "60@example.com", 60)
    );
    // (A local batch is no inbound record: it is not counted as accepted.)
    let batch = vec![user(61, "61@example.com", 61)];
    assert_eq!(node.put_records_locally(batch).await.unwrap(), 1);
    assert_eq!(node.stats().accepted, 2, "{:?}", node.stats());
    // ...and catch-up with a good peer.
    let good_peer =
        Netabase::new_with_path(dir.path().join("good"), NetabaseConfig::loopback()).unwrap();
    good_peer.register::<User>().unwrap();
    good_peer.start_swarm().await.unwrap();
    let theirs = user(50, "50@example.com", 50);
    good_peer.put_record_locally(theirs.clone()).await.unwrap();
    let good_id = good_peer.peer_id();
    node.dial(
        good_peer.listen_addresses()[0]
            .clone()
            .with(Protocol::P2p(good_id)),
    )
    .await
    .unwrap();
    let received = hostile
        .drive_until(&mut events, "catch-up with the good peer", |e| match e {
            Some(Event::CaughtUp { peer, received, .. }) if *peer == good_id => Some(*received),
            _ => None,
        })
        .await;
    assert_eq!(received, 1);
    assert_eq!(users.get(&UserKey(50)).unwrap(), Some(theirs));
    assert_eq!(user_count(&node), 5);
    let stats = node.stats();
    assert_eq!(stats.accepted, 3);
    assert_eq!(stats.rejected, expected, "{stats:?}");
    assert!(hostile.pending.is_empty(), "{:?}", hostile.pending);

    node.stop_swarm().await.unwrap();
    good_peer.stop_swarm().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_older_than_the_floor_are_refused_on_every_path() {
    let dir = tempfile::tempdir().unwrap();
    let config = NetabaseConfig {
        tombstone_horizon: Some(Duration::from_secs(1)),
        ..NetabaseConfig::loopback()
    };
    let node = Netabase::new_with_path(dir.path().join("node"), config).unwrap();
    node.register::<User>().unwrap();
    node.start_swarm().await.unwrap();
    let mut events = node.subscribe_to_broadcasts();

    // A fresh node's floor is 0: anything validly signed is taken (see the
    // guide's sync chapter). One completed catch-up sets its floor to then minus the
    // horizon.
    let (mut hostile, _) = Hostile::nothing_to_say(&node, &mut events).await;
    let me = hostile.peer_id();

    // Records stamped 40 days ago and in 1970, offered by a peer claiming
    // watermarks (0, 0), as a collected delete's record would be replayed:
    // never fetched. Only the current record is.
    let kp = hostile.keypair.clone();
    let day = 24 * 60 * 60 * 1000;
    let old = Envelope::seal(
        &kp,
        &user(70, "70@x", 1),
        Timestamp::new(now_ms() - 40 * day, 0),
    )
    .unwrap();
    let ancient = Envelope::seal(&kp, &user(71, "71@x", 1), Timestamp::new(1, 0)).unwrap();
    let current = Envelope::seal(&kp, &user(72, "72@x", 1), Timestamp::new(now_ms(), 0)).unwrap();
    let offers = vec![
        Offer::envelope(user_key(70), &old),
        Offer::envelope(user_key(71), &ancient),
        Offer::envelope(user_key(72), &current),
    ];
    let keys = hostile.offer(&node, "the first catch-up", &offers).await;
    assert_eq!(keys, vec![user_key(72)]);
    let received = hostile
        .drive_until(&mut events, "the second catch-up", |e| match e {
            Some(Event::CaughtUp { peer, received, .. }) if *peer == me => Some(*received),
            _ => None,
        })
        .await;
    assert_eq!(received, 1);

    // Lying about the timestamp gets the old record fetched, and then
    // refused by the same check every path runs.
    let lie = vec![Offer::new(
        user_key(70),
        old.as_bytes().to_vec(),
        Timestamp::new(now_ms(), 0),
    )];
    let keys = hostile.offer(&node, "the second catch-up", &lie).await;
    assert_eq!(keys, vec![user_key(70)]);
    hostile
        .drive_until(&mut events, "the lie to be refused", |_| {
            (node.stats().rejected(Rejection::Expired) == 1).then_some(())
        })
        .await;

    // Pushed over Kademlia (by any peer): refused the same way.
    let mut swarm = common::raw::kad_swarm(&Keypair::generate_ed25519());
    common::raw::kad_dial(&mut swarm, &node);
    common::raw::push(
        &mut swarm,
        node.peer_id(),
        user_key(71),
        ancient.as_bytes().to_vec(),
        None,
    )
    .await;
    hostile
        .drive_until(&mut events, "the push to be refused", |_| {
            (node.stats().rejected(Rejection::Expired) == 2).then_some(())
        })
        .await;
    let ids: Vec<u64> = node
        .store()
        .tree::<User>()
        .iter()
        .unwrap()
        .map(|u| u.unwrap().id)
        .collect();
    assert_eq!(ids, vec![72]);
}
