//! The Netabase node: typed records in a local store, published to and
//! fetched from peers over libp2p Kademlia, validated on arrival.
//!
//! ```no_run
//! use netabase::node::{Netabase, NetabaseConfig};
//! use netabase::NetabaseModel;
//!
//! #[derive(NetabaseModel, Clone, Debug, PartialEq)]
//! pub struct Note {
//!     #[primary_key]
//!     pub id: u64,
//!     #[secondary_key]
//!     pub topic: String,
//!     pub text: String,
//! }
//!
//! # async fn run() -> Result<(), netabase::node::NodeError> {
//! let node = Netabase::new_with_path("./node-a", NetabaseConfig::loopback())?;
//! node.register::<Note>()?;
//! node.start_swarm().await?;
//! let mut events = node.subscribe_to_broadcasts();
//! node.put_record_locally(Note { id: 1, topic: "hello".into(), text: "first".into() }).await?;
//! # Ok(()) }
//! ```
//!
//! One task owns the swarm; [`Netabase`] is a cheap, cloneable handle to it.
//! Every redb access and every signature check runs in a blocking task, never
//! on the swarm's poll or on async worker threads.

mod config;
mod error;
mod handle;
mod platform;
mod replica;
mod shell;

pub use config::{NetabaseConfig, RelayLimits, WriteQuorum};
pub use error::NodeError;
pub use handle::{Netabase, Published, SHUTDOWN_WAIT};
pub use libp2p::multiaddr::{Multiaddr, Protocol};
pub use platform::TaskError;
pub use replica::event::{CatchUpFailure, CatchUpOutcome, ChangeKind, Event, Origin, Reachability};
pub use replica::stats::{NodeStats, Rejection};
pub use replica::subscriptions::{Subscription, MAX_SUBSCRIBED_RANGES};
pub use replica::watch::{NodeChange, NodeChanges};
pub use shell::behaviour::{IDENTIFY_PROTOCOL, KAD_PROTOCOL};
pub use shell::catchup::SYNC_PROTOCOL;
pub use shell::query::{MAX_QUERY_RESULTS, QUERY_PROTOCOL};
