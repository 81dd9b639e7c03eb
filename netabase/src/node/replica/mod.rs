//! The replica core: what a node holds and decides, with no network in it.
//!
//! It holds the store (records, their signed envelopes and the persistent
//! reconciliation index, all in redb), the bounded cache in front of it,
//! the registered models and their write rules, the delete horizon and
//! memberships, and the watchers. Every write, local or from a peer, goes
//! through one path ([`apply`]): judged by the conflict rule and the
//! model's write rule, committed, then announced.
//!
//! Nothing here imports `libp2p` (the writer's identity types come from
//! `libp2p-identity`, as the envelope's signature does), and nothing here
//! calls the network shell: the shell calls in, with what peers send, and
//! reads what to send them. Its tests run without a swarm.
//!
//! Files, lowest first: `state` (what a replica holds), `cache`,
//! `storage` (writes that watch the store's health), `watermarks`,
//! `members` (what a write rule may look up), `validate` (every check a
//! peer's record passes), `announce`, `horizon`, `revocation`, `apply`,
//! `intake` (storing what peers send), `local` (local writes).

pub(crate) mod announce;
pub(crate) mod apply;
pub(crate) mod cache;
pub(crate) mod event;
pub(crate) mod fetched;
pub(crate) mod health;
pub(crate) mod horizon;
pub(crate) mod identity;
pub(crate) mod inbound;
pub(crate) mod intake;
pub(crate) mod local;
pub(crate) mod members;
pub(crate) mod newer;
pub(crate) mod order;
pub(crate) mod promote;
pub(crate) mod registry;
pub(crate) mod revocation;
pub(crate) mod state;
pub(crate) mod stats;
pub(crate) mod storage;
pub(crate) mod subscribe;
pub(crate) mod subscriptions;
pub(crate) mod upgrade;
pub(crate) mod validate;
pub(crate) mod watch;
pub(crate) mod watermarks;

pub(crate) use state::{Replica, Settings};

#[cfg(test)]
pub(crate) mod tests;
