//! The libp2p behaviour and how the swarm is built.

use std::sync::Arc;
use std::time::Duration;

use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    allow_block_list, connection_limits, identify, kad, request_response, StreamProtocol, Swarm,
};

use super::catchup::{SyncCodec, FETCHES_IN_FLIGHT, SYNC_PROTOCOL};
use super::kad_store::KadStore;
use super::query::{QueryCodec, QUERY_PROTOCOL};
use crate::node::platform;
use crate::node::replica::cache::RecordCache;
use crate::node::replica::stats::Traffic;
use crate::node::{NetabaseConfig, NodeError};
use crate::Keypair;

/// Our own Kademlia protocol: netabase peers form their own DHT, apart from IPFS's.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/netabase/kad/1.0.0");
/// Connections to one peer at once: a dial each way can cross, an AutoNAT
/// peer dials back on a connection of its own, and a relayed connection
/// stays open beside the direct one hole punching makes.
pub(crate) const CONNECTIONS_PER_PEER: u32 = 4;
/// Catch-up streams per connection at once, both ways (libp2p's
/// request-response counts a connection's inbound and outbound streams
/// together; its default is 100): room for two peers catching up with each
/// other at full speed, each with its fetches and one reconciliation
/// message out, and the other's waiting to be answered. A stream past it
/// fails. What a peer may keep waiting is bounded apart from this, per
/// peer (`event_loop::peers`).
const STREAMS_PER_CONNECTION: usize = 2 * (FETCHES_IN_FLIGHT + 1) + 4;
/// Remote-query streams per connection at once, both ways: a peer's
/// queries past it fail (each is answered by reading up to 256 records).
const QUERY_STREAMS_PER_CONNECTION: usize = 4;
/// How long a connection no protocol uses stays open. Long: peers that
/// sync keep their connection between catch-ups (libp2p's default of 60 s
/// would close it between two), and a peer that went away is redialled.
pub(crate) const IDLE_CONNECTION: Duration = Duration::from_secs(60 * 60);
/// The Identify protocol version string: peers announce their listen
/// addresses and protocols (whether they serve Kademlia) under it.
pub const IDENTIFY_PROTOCOL: &str = "/netabase/id/1.0.0";

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    /// Peers refused for a while for breaking the protocol.
    pub(crate) blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    pub(crate) limits: connection_limits::Behaviour,
    pub(crate) kad: kad::Behaviour<KadStore>,
    pub(crate) identify: identify::Behaviour,
    pub(crate) mdns: Toggle<platform::Mdns>,
    pub(crate) sync: request_response::Behaviour<SyncCodec>,
    /// Remote queries by secondary index, on a protocol of their own.
    pub(crate) query: request_response::Behaviour<QueryCodec>,
    /// Slots on relays, and connections through them.
    pub(crate) relay_client: super::nat::RelayClient,
    /// Relaying for others, when `NetabaseConfig::relay` says so.
    pub(crate) relay: Toggle<platform::RelayServer>,
    /// Hole punching: a relayed connection made direct.
    pub(crate) dcutr: platform::Dcutr,
    /// Whether peers can dial this node.
    pub(crate) autonat: platform::Autonat,
}

pub(crate) async fn build_swarm(
    keypair: &Keypair,
    config: &NetabaseConfig,
    cache: RecordCache,
    traffic: Arc<Traffic>,
) -> Result<Swarm<Behaviour>, NodeError> {
    platform::swarm(keypair, IDLE_CONNECTION, |key, relay_client| {
        behaviour(key, relay_client, config, cache, traffic)
    })
    .await
}

/// The behaviour, for the swarm's key, on any transport.
fn behaviour(
    key: &Keypair,
    relay_client: super::nat::RelayClient,
    config: &NetabaseConfig,
    cache: RecordCache,
    traffic: Arc<Traffic>,
) -> Result<Behaviour, platform::BoxError> {
    let local = key.public().to_peer_id();
    let mut kad_config = kad::Config::new(KAD_PROTOCOL);
    kad_config
        .set_max_packet_size(config.max_packet_bytes())
        // Inbound records are validated and stored by the node, not by Kademlia.
        .set_record_filtering(kad::StoreInserts::FilterBoth)
        .set_record_ttl(None)
        .set_provider_record_ttl(None)
        // Kademlia's store is a cache (see `kad_store`): catch-up
        // replicates, and the node republishes its own records from redb.
        .set_replication_interval(None)
        .set_publication_interval(None)
        .set_query_timeout(config.query_timeout)
        .set_replication_factor(
            std::num::NonZeroUsize::new(config.replication_factor).unwrap_or(kad::K_VALUE),
        );
    let store = KadStore::new(cache, local, config.max_record_bytes);
    let mut kad = kad::Behaviour::with_config(local, store, kad_config);
    // Client mode is the default until an external address is confirmed,
    // and clients are never sent records. A node that can be dialled serves.
    kad.set_mode(Some(platform::KAD_MODE));
    // Pushed on change: peers learn of a relay slot (a new listen
    // address) at once, not at the next periodic identify.
    let identify = identify::Behaviour::new(
        identify::Config::new(IDENTIFY_PROTOCOL.to_string(), key.public())
            .with_push_listen_addr_updates(true),
    );
    let mdns = if config.mdns {
        Some(platform::mdns(local)?)
    } else {
        None
    };
    let sync = request_response::Behaviour::with_codec(
        SyncCodec::counting(traffic),
        [(SYNC_PROTOCOL, request_response::ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(config.query_timeout)
            .with_max_concurrent_streams(STREAMS_PER_CONNECTION),
    );
    let query = request_response::Behaviour::with_codec(
        QueryCodec::default(),
        [(QUERY_PROTOCOL, request_response::ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(config.query_timeout)
            .with_max_concurrent_streams(QUERY_STREAMS_PER_CONNECTION),
    );
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established_per_peer(Some(CONNECTIONS_PER_PEER))
        .with_max_established(Some(config.max_connections))
        .with_max_pending_incoming(Some(config.max_connections.div_ceil(4).max(8)))
        .with_max_established_incoming(Some(config.max_connections));
    Ok(Behaviour {
        blocked: allow_block_list::Behaviour::default(),
        limits: connection_limits::Behaviour::new(limits),
        kad,
        identify,
        mdns: Toggle::from(mdns),
        sync,
        query,
        relay_client,
        relay: Toggle::from(
            config
                .relay
                .as_ref()
                .map(|limits| platform::relay_server(local, limits)),
        ),
        dcutr: platform::dcutr(local),
        autonat: platform::autonat(local),
    })
}
