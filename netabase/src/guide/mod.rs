//! The guide: how to use Netabase, one chapter per topic, in the order a
//! new user meets them. Every Rust example here is compiled as a doctest;
//! the ones that need no network run too, and the network ones (`no_run`)
//! are mirrored by the integration test each chapter names.
//!
//! | chapter | read it when you want to |
//! |---|---|
//! | [`install`] | add Netabase to a crate, and keep debug builds fast |
//! | [`models`] | declare a model: keys, indexes, names, what the derive generates |
//! | [`store`] | store and query records without a network: trees, transactions, guarantees |
//! | [`node`] | run a node: the calls, the configuration, events, validation, connections |
//! | [`watch`] | follow changes: typed change streams and live queries |
//! | [`rules`] | decide who may write a model: owners, immutable records, members, your own rule |
//! | [`sync`] | know how peers converge: the conflict rule, deletes, catch-up, hostile peers |
//! | [`subscriptions`] | keep only part of the data in sync on a device, and read the rest on demand |
//! | [`changing_models`] | change a model that already has stored records |
//! | [`browser`] | run a node in a browser tab |
//! | [`benchmarks`] | benchmark your own models |
//!
//! The figures in these chapters were measured on a 2-core machine; how the
//! benchmarks are built and what they measured is in the repository's
//! `benches/README.md`.

#[doc = include_str!("install.md")]
pub mod install {}

#[doc = include_str!("models.md")]
pub mod models {}

#[doc = include_str!("store.md")]
pub mod store {}

#[doc = include_str!("node.md")]
pub mod node {}

#[doc = include_str!("watch.md")]
pub mod watch {}

#[doc = include_str!("rules.md")]
pub mod rules {}

#[doc = include_str!("subscriptions.md")]
pub mod subscriptions {}

#[doc = include_str!("sync.md")]
pub mod sync {}

#[doc = include_str!("changing_models.md")]
pub mod changing_models {}

#[doc = include_str!("browser.md")]
pub mod browser {}

#[doc = include_str!("benchmarks.md")]
pub mod benchmarks {}
