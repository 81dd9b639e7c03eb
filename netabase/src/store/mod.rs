//! The embedded store: typed trees in one redb database.
//!
//! ```
//! use netabase::store::{Lookup, Store};
//! use netabase::NetabaseModel;
//!
//! #[derive(NetabaseModel, Clone, Debug, PartialEq)]
//! pub struct User {
//!     #[primary_key]
//!     pub id: u64,
//!     #[secondary_key(unique)]
//!     pub email: String,
//!     #[secondary_key]
//!     pub age: u32,
//! }
//!
//! # fn main() -> Result<(), netabase::Error> {
//! let store = Store::in_memory()?;
//! let users = store.tree::<User>();
//! users.put(&User { id: 1, email: "ada@example.com".into(), age: 36 })?;
//! users.put(&User { id: 2, email: "alan@example.com".into(), age: 41 })?;
//!
//! assert_eq!(users.get(&UserKey(1))?.map(|u| u.age), Some(36));
//! assert_eq!(users.by_email("alan@example.com")?.map(|u| u.id), Some(2));
//! assert_eq!(users.by_age_range(30..40)?.len(), 1);
//! # Ok(())
//! # }
//! ```
//!
//! Each model has a table of records and one table per secondary index; see
//! the crate documentation for the layout and its guarantees.

mod changes;
mod database;
mod durability;
mod envelopes;
mod error;
// Read by the node; without it, only its writes are kept up.
#[cfg_attr(not(feature = "node"), allow(dead_code))]
pub(crate) mod fingerprints;
mod layout;
pub(crate) mod lookup;
mod migrate;
mod newer;
mod open;
#[cfg(all(target_arch = "wasm32", feature = "node"))]
mod opfs;
mod read;
mod records;
pub(crate) mod rows;
mod subscriptions;
pub(crate) mod tables;
mod tree;
mod watch;
mod write;

pub use changes::{Change, Changes, WatchError, WATCH_BUFFER};
pub use database::{Store, StoreBuilder};
pub use durability::Durability;
#[doc(hidden)]
pub use envelopes::{EnvelopeState, StoredEnvelope};
pub use error::{EngineError, StoreError};
pub use lookup::Lookup;
pub use newer::NewerTable;
pub use open::IntegrityCheck;
#[cfg(all(target_arch = "wasm32", feature = "node"))]
pub use opfs::OpfsFile;
pub use read::{ReadTransaction, ReadTree};
pub use records::Records;
pub use rows::Form;
pub use tables::MAX_KEY_BYTES;
pub use tree::Tree;
pub use watch::{LiveChange, LiveError, LiveQuery};
pub use write::{WriteTransaction, WriteTree};
