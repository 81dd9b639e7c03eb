//! The network shell: the swarm in one event-loop task, its behaviours
//! (Kademlia for routing and publication, Identify, mDNS, the catch-up
//! protocol), redial, and the way `get_record` finds copies. It calls the
//! replica core with what peers send and reads from it what to send them;
//! the core never calls it.

pub(crate) mod behaviour;
pub(crate) mod catchup;
pub(crate) mod copies;
pub(crate) mod event_loop;
pub(crate) mod kad_store;
pub(crate) mod listening;
pub(crate) mod nat;
pub(crate) mod network;
pub(crate) mod query;
pub(crate) mod remote_query;
pub(crate) mod republish;

pub(crate) use network::Network;
