//! `get_record`'s network path: which peers are asked for a record, in
//! what order, and when a get has ended.
//!
//! A get asks peers with the catch-up protocol's `Fetch` of one key, which
//! they answer off their loop from their store. Kademlia's GET_VALUE is
//! answered inside the swarm's poll from what is in memory, so it could
//! only find records that happen to be cached; here Kademlia only routes:
//! when the connected peers closest to the key have no copy,
//! `get_closest_peers` names the peers to ask next.
//!
//! This file is bookkeeping only (no swarm): the loop's side is in
//! `ask.rs`.

use std::collections::{HashMap, HashSet, VecDeque};

use libp2p::kad::{KBucketKey, QueryId, RecordKey};
use libp2p::request_response::OutboundRequestId;
use libp2p::{Multiaddr, PeerId};

use crate::node::platform::Instant;

/// Where a get sends the copies it finds (`None`: the query ended).
pub(crate) type CopiesSender =
    tokio::sync::mpsc::UnboundedSender<Option<(Option<PeerId>, Vec<u8>)>>;

/// Peers a get has asked and not heard from, at most: Kademlia's alpha.
/// The closest few peers to a key are where puts stored it, and the first
/// copy usually settles the get; asking more at once would load peers for
/// answers that are rarely needed.
pub(super) const ALPHA: usize = 3;
/// Peers one get asks in all, at most. Puts store a record at the peers
/// closest to its key and catch-up spreads it between connected peers: if
/// the closest few do not hold it, it is almost surely held nowhere, and
/// asking on would only delay the not-found answer.
pub(super) const MAX_ASKED: usize = 3 * ALPHA;

/// Identifies a get in progress.
pub(super) type GetId = u64;

/// Where a get's routing query stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Routing {
    /// Not needed so far: a connected peer may hold the record.
    NotStarted,
    /// `get_closest_peers` is running.
    Running,
    /// Its peers are in the queue (or it found none).
    Done,
}

/// One get in progress.
struct Get {
    /// The record's key (its Kademlia key: model id, then encoded key).
    key: RecordKey,
    /// Where copies go, then `None` at the end.
    reply: CopiesSender,
    /// Every peer asked so far.
    asked: HashSet<PeerId>,
    /// Peers to ask next, closest to the key first, with addresses to dial
    /// them at if they are not connected.
    queue: VecDeque<(PeerId, Vec<Multiaddr>)>,
    /// Requests sent and not answered yet.
    in_flight: usize,
    /// A peer answered with a copy (valid or not: the caller checks).
    found: bool,
    routing: Routing,
    /// When the get ends, whatever is still out (`query_timeout` after it
    /// started: each stage's requests and query have that timeout too, and
    /// a get may have three stages).
    deadline: Instant,
}

/// What the loop does next for a get.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// Send `Fetch([key])` to this peer (dialling these addresses if needed).
    Ask(PeerId, Vec<Multiaddr>, RecordKey),
    /// Ask Kademlia for the peers closest to the key.
    Route(RecordKey),
    /// Nothing until an answer comes (or the get ended).
    Wait,
}

/// The gets in progress, and which request or query belongs to which.
#[derive(Default)]
pub(super) struct Gets {
    /// The id the next get gets.
    next: GetId,
    running: HashMap<GetId, Get>,
    /// Our `Fetch` requests that belong to a get, not to a catch-up.
    requests: HashMap<OutboundRequestId, (GetId, PeerId)>,
    routes: HashMap<QueryId, GetId>,
    /// Connected peers whose Identify did not list the catch-up protocol.
    no_sync: HashSet<PeerId>,
}

impl Gets {
    /// Starts a get of `key` that first asks `near` (known peers, with
    /// addresses to dial those not connected), and ends by `deadline` at
    /// the latest.
    pub(super) fn start(
        &mut self,
        key: RecordKey,
        reply: CopiesSender,
        near: Vec<(PeerId, Vec<Multiaddr>)>,
        deadline: Instant,
    ) -> GetId {
        let id = self.next;
        self.next += 1;
        self.running.insert(
            id,
            Get {
                key,
                reply,
                asked: HashSet::new(),
                queue: near.into_iter().collect(),
                in_flight: 0,
                found: false,
                routing: Routing::NotStarted,
                deadline,
            },
        );
        id
    }

    /// The next thing to do for get `id`; a get with nothing left to wait
    /// for ends here (its caller gets `None`).
    pub(super) fn step(&mut self, id: GetId) -> Step {
        let Some(get) = self.running.get_mut(&id) else {
            return Step::Wait;
        };
        // After a copy, no one new is asked: the caller answers with the
        // first valid copy, and peers behind are repaired by write-back.
        while !get.found && get.in_flight < ALPHA && get.asked.len() < MAX_ASKED {
            let Some((peer, addresses)) = get.queue.pop_front() else {
                break;
            };
            if get.asked.insert(peer) {
                get.in_flight += 1;
                return Step::Ask(peer, addresses, get.key.clone());
            }
        }
        if get.in_flight > 0 || get.routing == Routing::Running {
            return Step::Wait;
        }
        if !get.found && get.routing == Routing::NotStarted && get.asked.len() < MAX_ASKED {
            get.routing = Routing::Running;
            return Step::Route(get.key.clone());
        }
        self.end(id);
        Step::Wait
    }

    /// Our request `request` to `peer` is part of get `id`.
    pub(super) fn sent(&mut self, id: GetId, peer: PeerId, request: OutboundRequestId) {
        self.requests.insert(request, (id, peer));
    }

    /// Whether `request` is a get's (not a catch-up's).
    pub(super) fn owns(&self, request: OutboundRequestId) -> bool {
        self.requests.contains_key(&request)
    }

    /// A get's request was answered (`copy`: with a copy; `None`: not, or
    /// it failed). Returns the get, if it is still running.
    pub(super) fn answered(
        &mut self,
        request: OutboundRequestId,
        copy: Option<Vec<u8>>,
    ) -> Option<GetId> {
        let (id, peer) = self.requests.remove(&request)?;
        let get = self.running.get_mut(&id)?;
        get.in_flight = get.in_flight.saturating_sub(1);
        if let Some(bytes) = copy {
            get.found = true;
            // A caller that gave up is fine: the get just ends.
            let _ = get.reply.send(Some((Some(peer), bytes)));
        }
        Some(id)
    }

    /// Registers the routing query of get `id`.
    pub(super) fn routing(&mut self, id: GetId, query: QueryId) {
        self.routes.insert(query, id);
    }

    /// The routing query `query` ended with these peers; returns its get,
    /// if that is still running.
    pub(super) fn routed(
        &mut self,
        query: QueryId,
        peers: Vec<(PeerId, Vec<Multiaddr>)>,
        local: &PeerId,
    ) -> Option<GetId> {
        let id = self.routes.remove(&query)?;
        let get = self.running.get_mut(&id)?;
        get.routing = Routing::Done;
        let target = KBucketKey::new(get.key.clone());
        let mut peers: Vec<_> = peers
            .into_iter()
            .filter(|(peer, _)| peer != local && !get.asked.contains(peer))
            .collect();
        peers.sort_by_key(|(peer, _)| target.distance(&KBucketKey::from(*peer)));
        get.queue.extend(peers);
        Some(id)
    }

    /// Ends the gets whose deadline has passed: their callers get `None`,
    /// and answers that come later are ignored.
    pub(super) fn expire(&mut self, now: Instant) {
        let late: Vec<GetId> = self
            .running
            .iter()
            .filter(|(_, get)| get.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            self.end(id);
        }
        // Requests and queries of ended gets: their answers still come
        // (every request times out), and are dropped then.
        let running = &self.running;
        self.routes.retain(|_, id| running.contains_key(id));
    }

    fn end(&mut self, id: GetId) {
        if let Some(get) = self.running.remove(&id) {
            let _ = get.reply.send(None);
        }
    }

    /// Whether `peer` may serve the catch-up protocol (Identify did not say
    /// otherwise; before Identify, a connected peer is given the benefit).
    pub(super) fn may_serve(&self, peer: &PeerId) -> bool {
        !self.no_sync.contains(peer)
    }

    /// What Identify said about `peer`.
    pub(super) fn identified(&mut self, peer: PeerId, serves_sync: bool) {
        if serves_sync {
            self.no_sync.remove(&peer);
        } else {
            self.no_sync.insert(peer);
        }
    }

    /// `peer` is no longer connected.
    pub(super) fn disconnected(&mut self, peer: &PeerId) {
        self.no_sync.remove(peer);
    }
}

/// `peers`, closest to `key` first but slow ones last, at most `n` of them.
pub(super) fn closest(
    key: &RecordKey,
    mut peers: Vec<(PeerId, Vec<Multiaddr>)>,
    n: usize,
    is_slow: impl Fn(&PeerId) -> bool,
) -> Vec<(PeerId, Vec<Multiaddr>)> {
    let target = KBucketKey::new(key.clone());
    // Each key hashes the peer id: once per peer, not per comparison.
    peers
        .sort_by_cached_key(|(peer, _)| (is_slow(peer), target.distance(&KBucketKey::from(*peer))));
    peers.truncate(n);
    peers
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    type Received = mpsc::UnboundedReceiver<Option<(Option<PeerId>, Vec<u8>)>>;

    fn get(near: usize) -> (Gets, GetId, Vec<PeerId>, Received) {
        let mut gets = Gets::default();
        let (reply, rx) = mpsc::unbounded_channel();
        let peers: Vec<PeerId> = (0..near).map(|_| PeerId::random()).collect();
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        let near = peers.iter().map(|p| (*p, Vec::new())).collect();
        let id = gets.start(RecordKey::new(b"k"), reply, near, deadline);
        (gets, id, peers, rx)
    }

    /// Hands out request ids as a behaviour does (they cannot be built
    /// outside libp2p).
    struct Ids(libp2p::request_response::Behaviour<crate::node::shell::catchup::SyncCodec>);

    impl Ids {
        fn new() -> Self {
            use libp2p::request_response::{Behaviour, Config, ProtocolSupport};
            Ids(Behaviour::with_codec(
                Default::default(),
                [(
                    crate::node::shell::catchup::SYNC_PROTOCOL,
                    ProtocolSupport::Full,
                )],
                Config::default(),
            ))
        }

        fn next(&mut self) -> OutboundRequestId {
            let request = crate::node::shell::catchup::SyncRequest::Fetch(Vec::new());
            self.0.send_request(&PeerId::random(), request)
        }
    }

    /// Takes every `Ask` the get has to send now, registering their requests.
    fn asks(
        gets: &mut Gets,
        id: GetId,
        fake: &mut Ids,
        ids: &mut Vec<OutboundRequestId>,
    ) -> Vec<PeerId> {
        let mut asked = Vec::new();
        while let Step::Ask(peer, _, _) = gets.step(id) {
            let request = fake.next();
            gets.sent(id, peer, request);
            ids.push(request);
            asked.push(peer);
        }
        asked
    }

    #[test]
    fn a_copy_from_a_connected_peer_ends_the_get_without_routing() {
        let (mut gets, id, near, mut rx) = get(2);
        let (mut fake, mut ids) = (Ids::new(), Vec::new());
        assert_eq!(asks(&mut gets, id, &mut fake, &mut ids).len(), 2);
        assert_eq!(gets.answered(ids[0], Some(vec![1])), Some(id));
        assert_eq!(gets.step(id), Step::Wait);
        assert_eq!(gets.answered(ids[1], None), Some(id));
        assert_eq!(gets.step(id), Step::Wait);
        assert_eq!(rx.try_recv().unwrap(), Some((Some(near[0]), vec![1])));
        assert_eq!(rx.try_recv().unwrap(), None, "ended");
    }

    #[test]
    fn no_copy_nearby_routes_then_asks_the_routed_peers_alpha_at_a_time() {
        let (mut gets, id, _, mut rx) = get(1);
        let (mut fake, mut ids) = (Ids::new(), Vec::new());
        asks(&mut gets, id, &mut fake, &mut ids);
        gets.answered(ids[0], None);
        assert!(matches!(gets.step(id), Step::Route(_)));
        let routed: Vec<_> = (0..20).map(|_| (PeerId::random(), Vec::new())).collect();
        let me = PeerId::random();
        let query = fake_query_id();
        gets.routing(id, query);
        assert_eq!(gets.routed(query, routed, &me), Some(id));
        let first = asks(&mut gets, id, &mut fake, &mut ids);
        assert_eq!(first.len(), ALPHA);
        // Each empty answer lets the next peer be asked, up to the bound.
        let mut asked = 1 + first.len();
        let mut next = 1;
        while next < ids.len() {
            gets.answered(ids[next], None);
            next += 1;
            asked += asks(&mut gets, id, &mut fake, &mut ids).len();
        }
        assert_eq!(asked, MAX_ASKED);
        assert_eq!(rx.try_recv().unwrap(), None, "not found");
    }

    #[test]
    fn a_get_past_its_deadline_ends() {
        let (mut gets, id, _, mut rx) = get(1);
        let (mut fake, mut ids) = (Ids::new(), Vec::new());
        asks(&mut gets, id, &mut fake, &mut ids);
        gets.expire(Instant::now() + std::time::Duration::from_secs(31));
        assert_eq!(rx.try_recv().unwrap(), None);
        // Its late answer is dropped.
        assert_eq!(gets.answered(ids[0], Some(vec![1])), None);
    }

    #[test]
    fn closest_orders_by_xor_distance() {
        let key = RecordKey::new(b"k");
        let peers: Vec<PeerId> = (0..10).map(|_| PeerId::random()).collect();
        let with_addresses = peers.iter().map(|p| (*p, Vec::new())).collect();
        let picked: Vec<PeerId> = closest(&key, with_addresses, 3, |_| false)
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        let target = KBucketKey::new(key);
        let worst = picked
            .iter()
            .map(|p| target.distance(&KBucketKey::from(*p)))
            .max()
            .unwrap();
        let mut others = peers.iter().filter(|p| !picked.contains(p));
        assert!(others.all(|p| target.distance(&KBucketKey::from(*p)) >= worst));
    }

    fn fake_query_id() -> QueryId {
        let peer = PeerId::random();
        let mut kad = libp2p::kad::Behaviour::new(peer, libp2p::kad::store::MemoryStore::new(peer));
        kad.get_closest_peers(PeerId::random())
    }
}
