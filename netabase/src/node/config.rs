//! Node configuration, with defaults that work on a laptop.

use std::num::NonZeroUsize;
use std::time::Duration;

use libp2p::Multiaddr;

use super::platform;
use crate::store::Durability;

/// How many peers must acknowledge a write for it to succeed.
///
/// A peer acknowledges on receipt (Kademlia answers before the node has
/// checked the record), then validates and stores it; one that drops it
/// after acknowledging (overloaded, or killed first) gets it through
/// catch-up. Either way the write is committed locally first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteQuorum {
    /// Publish to the peers there are and succeed whatever they answer:
    /// with none connected (a lone node, offline) the write is local only,
    /// and [`Published::replicated`](super::Published::replicated) says so.
    /// Catch-up and republication bring it to peers later. The default.
    #[default]
    Available,
    /// At least this many peers must acknowledge, or the write returns
    /// [`NodeError::Publish`](super::NodeError::Publish) (it stays committed
    /// locally). More than the peers that exist always fails.
    AtLeast(NonZeroUsize),
}

/// What a relay lets its clients use: reservations (peers reachable
/// through it) and circuits (connections relayed for them). Every relayed
/// byte crosses the relay twice, once in and once out.
///
/// The defaults let a catch-up of tens of thousands of small records run
/// through the relay when hole punching fails, and bound the relay at
/// 64 circuits of at most 256 MiB and 30 minutes each.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RelayLimits {
    /// Peers holding a slot at once. Default 256.
    pub max_reservations: usize,
    /// Relayed connections at once. Default 64.
    pub max_circuits: usize,
    /// Relayed connections from or to one peer at once. Default 8.
    pub max_circuits_per_peer: usize,
    /// How long one relayed connection may last. Default 30 minutes.
    pub max_circuit_duration: Duration,
    /// How many bytes one relayed connection may carry (each way). Default
    /// 256 MiB.
    pub max_circuit_bytes: u64,
    /// How long a slot lasts before its holder renews it. Default 1 hour.
    pub reservation_duration: Duration,
}

impl Default for RelayLimits {
    fn default() -> Self {
        RelayLimits {
            max_reservations: 256,
            max_circuits: 64,
            max_circuits_per_peer: 8,
            max_circuit_duration: Duration::from_secs(30 * 60),
            max_circuit_bytes: 256 * 1024 * 1024,
            reservation_duration: Duration::from_secs(60 * 60),
        }
    }
}

/// How a [`Netabase`](super::Netabase) node listens, finds peers and syncs.
///
/// Start from `NetabaseConfig::default()` and change what you need:
///
/// ```
/// # use netabase::node::NetabaseConfig;
/// let config = NetabaseConfig {
///     listen_addresses: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
///     ..NetabaseConfig::default()
/// };
/// ```
#[derive(Clone, Debug)]
pub struct NetabaseConfig {
    /// Addresses to listen on: TCP (`/ip4/0.0.0.0/tcp/0`) and WebSocket,
    /// which browsers dial (`/ip4/0.0.0.0/tcp/8080/ws`). Default: TCP on
    /// every IPv4 interface, a free port. In a browser: none (it cannot
    /// listen), and the node refuses any.
    pub listen_addresses: Vec<Multiaddr>,
    /// Peers dialled at start, as `/ip4/../tcp/../p2p/<peer id>` addresses.
    pub bootstrap_peers: Vec<Multiaddr>,
    /// Relays to hold a slot on (`/ip4/../tcp/../p2p/<relay id>`): peers
    /// that cannot dial this node (it is behind NAT) reach it through them,
    /// at `<relay address>/p2p-circuit/p2p/<this node>`, and the two then
    /// try to connect directly (hole punching, DCUtR). Each is also a
    /// peer of the DHT once connected. A lost slot is reserved again.
    /// Default: none. In a browser too: give the relay's WebSocket
    /// address (`/dns4/relay.example/tcp/443/wss/p2p/<relay id>`); other
    /// tabs and native nodes then dial the tab through the relay, which
    /// carries all their traffic (a browser cannot hole punch).
    pub relays: Vec<Multiaddr>,
    /// Serve as a relay for other peers, within these limits. Default:
    /// `None` (off). A relay needs an address peers can dial it at: its
    /// `external_addresses`, else every address it listens on (see there).
    /// Refused in a browser, which cannot be dialled.
    pub relay: Option<RelayLimits>,
    /// Addresses this node is reachable at from outside (a public IP, or a
    /// router's forwarded port), announced to peers; a relay hands them
    /// out in its reservations. Default: none. A relay with none announces
    /// its listen addresses instead: right on a server with a public
    /// address, wrong behind NAT.
    pub external_addresses: Vec<Multiaddr>,
    /// Largest signed record (envelope: the encoded record plus about 120
    /// bytes and its key) this node writes, accepts or serves, in bytes.
    /// The one record limit of a node: every write path refuses a larger
    /// record with [`NodeError::RecordTooLarge`](super::NodeError) before
    /// anything is stored or published, and records from peers over it
    /// are refused. Default 60 KiB; from [`MIN_RECORD_BYTES`](Self::MIN_RECORD_BYTES)
    /// to [`MAX_RECORD_BYTES`](Self::MAX_RECORD_BYTES) (1 MiB), checked when
    /// the node is opened. Use the same value on every peer: a peer with a
    /// smaller limit refuses the larger records (and reports them in
    /// [`Event::CaughtUp`](super::Event::CaughtUp)'s `refused`).
    pub max_record_bytes: usize,
    /// How many peers must acknowledge a published record for `put_record`
    /// (and `remove_record`) to succeed. Default
    /// [`WriteQuorum::Available`]: whoever is reachable, none included.
    pub write_quorum: WriteQuorum,
    /// How many of the peers closest to a record's key a publication sends
    /// it to: the copies the network keeps beside its writer and the peers
    /// that [subscribe](crate::node::Subscription) to it. Default 20
    /// (Kademlia's k); 1 to 20. Lower it where many devices each subscribe
    /// to a part (each then holds about `replication_factor / peers` of
    /// everything written, besides its own and its subscriptions): see
    /// the [subscriptions chapter](crate::guide::subscriptions).
    pub replication_factor: usize,
    /// Ignored: Kademlia's re-replication of every stored record is off,
    /// since catch-up replicates (see `catch_up_interval`) and a node's
    /// records live in redb, not in Kademlia's store. Kept so that
    /// configurations naming it still build.
    pub replication_interval: Option<Duration>,
    /// How often this node republishes its own records, streamed from its
    /// store a bounded batch at a time. Default 12 hours; they are also
    /// republished whenever the swarm starts. `None`: only then.
    pub publication_interval: Option<Duration>,
    /// Bytes the node may keep in memory as caches of its store, whatever
    /// the data it holds: a quarter for the envelopes read or written
    /// lately (a hot `get_record` costs no disk), a sixteenth for copies of
    /// records outside this node's [subscriptions](crate::node::Subscription)
    /// read from peers (see `remote_copy_ttl`), the rest for redb's page
    /// cache (see [`StoreBuilder::cache_size`](crate::store::StoreBuilder::cache_size);
    /// redb's own default is 1 GiB). Default 32 MiB, in the browser too.
    pub cache_bytes: usize,
    /// Reconcile record sets with peers (on connect and every
    /// `catch_up_interval`). Default on; off leaves only Kademlia's push and
    /// `get_record`'s fetch (the node still answers peers' fetches).
    pub catch_up: bool,
    /// How often to reconcile with every connected peer (as well as on each
    /// new connection). Default 5 minutes natively, 30 s in a browser (the
    /// one way other peers' writes reach it); `None`: only on connect.
    pub catch_up_interval: Option<Duration>,
    /// How long a network query may take, and a `get_record`'s whole
    /// network path. Default 30 s.
    pub query_timeout: Duration,
    /// How long a copy of a record this node does not subscribe to, read
    /// from peers by `get_record`, answers the next `get_record` of it
    /// without asking the network again. Nothing keeps such a copy up to
    /// date, so this is how stale a read of it may be. Default 60 s;
    /// zero: always ask.
    pub remote_copy_ttl: Duration,
    /// How long `get_record`, once it holds a valid copy from a peer, waits
    /// for the other peers' answers before it returns the newest copy it
    /// has. Default 30 ms. Answers that come later are still checked, kept
    /// if newer, and sent back to peers that answered with an older
    /// version, in the background: one slow or frozen peer never sets the
    /// time of a read.
    pub read_grace: Duration,
    /// How long `put_record` with [`WriteQuorum::Available`], once a peer
    /// has stored the record, waits for the other peers it sent it to
    /// before it returns. Default 30 ms. It returns sooner when every peer
    /// has answered; later answers still arrive, in the background, and a
    /// peer that let a request time out lately is not waited for at all
    /// (for two minutes, or until it answers). With
    /// [`WriteQuorum::AtLeast`], `put_record` returns as soon as that many
    /// peers stored it.
    pub write_grace: Duration,
    /// How far ahead of this node's clock a record's timestamp may be; later
    /// records are refused. Default 5 minutes.
    pub max_clock_drift: Duration,
    /// How long a delete (tombstone) is kept before it is collected, counted
    /// back from this node's last completed catch-up. Default 30 days;
    /// `None` keeps deletes forever. Use the same value on every peer, longer
    /// than any peer stays away (see the [sync chapter](crate::guide::sync)).
    pub tombstone_horizon: Option<Duration>,
    /// Connections open at once, inbound and outbound together (and at most
    /// this many inbound); one peer may hold at most four (crossing dials, an AutoNAT dial-back, a relayed and a hole-punched connection). Default 256. Keep
    /// it well under the process's open-file limit.
    pub max_connections: u32,
    /// Find peers on the local network with mDNS. Default off.
    pub mdns: bool,
    /// Durability of local commits. Default [`Durability::Immediate`].
    pub durability: Durability,
    /// The admins of models under the members rule, by model name
    /// (`Doc::NAME`): the peers whose grants and revocations of
    /// memberships count. Give every peer the same. Default: none.
    pub admins: std::collections::BTreeMap<String, Vec<libp2p::PeerId>>,
    /// Milliseconds this node's clock reads ahead of the system clock
    /// (negative: behind). Simulates a machine with a wrong clock, in tests.
    #[doc(hidden)]
    pub clock_skew_ms: i64,
}

impl Default for NetabaseConfig {
    fn default() -> Self {
        NetabaseConfig {
            relays: Vec::new(),
            relay: None,
            external_addresses: Vec::new(),
            listen_addresses: platform::DEFAULT_LISTEN
                .iter()
                .map(|a| a.parse().expect("a valid literal address"))
                .collect(),
            bootstrap_peers: Vec::new(),
            max_record_bytes: 60 * 1024,
            write_quorum: WriteQuorum::Available,
            replication_factor: libp2p::kad::K_VALUE.get(),
            replication_interval: Some(Duration::from_secs(60 * 60)),
            publication_interval: Some(Duration::from_secs(12 * 60 * 60)),
            cache_bytes: 32 * 1024 * 1024,
            catch_up: true,
            catch_up_interval: Some(platform::CATCH_UP_INTERVAL),
            query_timeout: Duration::from_secs(30),
            remote_copy_ttl: Duration::from_secs(60),
            read_grace: Duration::from_millis(30),
            write_grace: Duration::from_millis(30),
            max_clock_drift: Duration::from_secs(5 * 60),
            tombstone_horizon: Some(Duration::from_secs(30 * 24 * 60 * 60)),
            max_connections: 256,
            mdns: false,
            durability: Durability::Immediate,
            admins: std::collections::BTreeMap::new(),
            clock_skew_ms: 0,
        }
    }
}

impl NetabaseConfig {
    /// The envelope cache's share of `cache_bytes`.
    pub(crate) fn record_cache_bytes(&self) -> usize {
        self.cache_bytes / 4
    }

    /// The share of `cache_bytes` for copies of unsubscribed records.
    pub(crate) fn remote_copy_bytes(&self) -> usize {
        self.cache_bytes / 16
    }

    /// redb's page cache's share of `cache_bytes`.
    pub(crate) fn page_cache_bytes(&self) -> usize {
        self.cache_bytes - self.record_cache_bytes() - self.remote_copy_bytes()
    }

    /// The largest `max_record_bytes` allowed: 1 MiB
    /// ([`codec::MAX_ENVELOPE_BYTES`](crate::codec::MAX_ENVELOPE_BYTES)).
    pub const MAX_RECORD_BYTES: usize = crate::codec::MAX_ENVELOPE_BYTES;
    /// The smallest `max_record_bytes` allowed: 1 KiB, room for a delete of
    /// a long key.
    pub const MIN_RECORD_BYTES: usize = 1024;

    /// Checks the values against their documented ranges; the node does
    /// this when it opens.
    ///
    /// # Errors
    ///
    /// [`NodeError::Config`](super::NodeError::Config) naming the first
    /// field out of range and why.
    pub fn validate(&self) -> Result<(), super::NodeError> {
        let invalid =
            |field: &'static str, reason: String| Err(super::NodeError::Config { field, reason });
        if !(Self::MIN_RECORD_BYTES..=Self::MAX_RECORD_BYTES).contains(&self.max_record_bytes) {
            return invalid(
                "max_record_bytes",
                format!(
                    "{} is outside {}..={} bytes; keep larger content outside the record",
                    self.max_record_bytes,
                    Self::MIN_RECORD_BYTES,
                    Self::MAX_RECORD_BYTES
                ),
            );
        }
        if !(1..=libp2p::kad::K_VALUE.get()).contains(&self.replication_factor) {
            return invalid(
                "replication_factor",
                format!(
                    "{} is outside 1..={} copies",
                    self.replication_factor,
                    libp2p::kad::K_VALUE.get()
                ),
            );
        }
        if self.max_connections == 0 {
            return invalid("max_connections", "0 would refuse every peer".into());
        }
        if self.query_timeout.is_zero() {
            return invalid("query_timeout", "0 would end every query at once".into());
        }
        if !platform::CAN_LISTEN && !self.listen_addresses.is_empty() {
            return invalid(
                "listen_addresses",
                "a browser cannot listen: leave it empty and dial a native node (it reaches you back over that connection)".into(),
            );
        }
        if !platform::CAN_LISTEN && self.mdns {
            return invalid("mdns", "a browser has no mDNS".into());
        }
        if !platform::CAN_LISTEN && self.relay.is_some() {
            return invalid(
                "relay",
                "a browser cannot relay (it cannot be dialled): hold a slot on a native relay with `relays`".into(),
            );
        }
        if let Some(limits) = &self.relay {
            if limits.max_circuit_duration.is_zero()
                || limits.max_circuit_duration.as_secs() > u64::from(u32::MAX)
                || limits.reservation_duration.is_zero()
            {
                return invalid(
                    "relay",
                    "max_circuit_duration and reservation_duration must be above 0 and fit in u32 seconds".into(),
                );
            }
        }
        if let Some(relay) = self
            .relays
            .iter()
            .find(|a| super::shell::listening::peer_of(a).is_none())
        {
            return invalid(
                "relays",
                format!("{relay} names no relay: end it in /p2p/<relay peer id>"),
            );
        }
        if self.catch_up_interval.is_some_and(|d| d.is_zero())
            || self.replication_interval.is_some_and(|d| d.is_zero())
            || self.publication_interval.is_some_and(|d| d.is_zero())
        {
            return invalid(
                "catch_up_interval, replication_interval or publication_interval",
                "an interval of 0 would run without pause; use None to turn it off".into(),
            );
        }
        Ok(())
    }

    /// A configuration listening on `127.0.0.1` only, on a free port: for
    /// tests and demos on one machine.
    pub fn loopback() -> Self {
        NetabaseConfig {
            listen_addresses: vec!["/ip4/127.0.0.1/tcp/0"
                .parse()
                .expect("a valid literal address")],
            ..Self::default()
        }
    }

    /// Kademlia's packet limit: a record plus room for the message around it.
    pub(crate) fn max_packet_bytes(&self) -> usize {
        self.max_record_bytes + 8 * 1024
    }
}
