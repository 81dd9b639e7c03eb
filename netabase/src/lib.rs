//! # Netabase
//!
//! A typed, peer-to-peer data layer. Annotate a struct with
//! `#[derive(NetabaseModel)]`, mark its `#[primary_key]` and any
//! `#[secondary_key]` fields, and store it in typed trees of an embedded
//! [redb](https://docs.rs/redb) database, with secondary indexes kept in the
//! same transaction as their record.
//!
//! ```
//! use netabase::{NetabaseModel, Store};
//! use netabase::store::Lookup;
//!
//! #[derive(NetabaseModel, Clone, Debug, PartialEq)]
//! pub struct Post {
//!     #[primary_key]
//!     pub id: u64,
//!     pub title: String,
//!     #[secondary_key]
//!     pub tags: Vec<String>,
//!     #[secondary_key]
//!     pub editor: Option<String>,
//! }
//!
//! # fn main() -> netabase::Result<()> {
//! let store = Store::in_memory()?;
//! let posts = store.tree::<Post>();
//! posts.put(&Post { id: 1, title: "Hello".into(), tags: vec!["intro".into(), "rust".into()], editor: None })?;
//! posts.put(&Post { id: 2, title: "Keys".into(), tags: vec!["rust".into()], editor: Some("ada".into()) })?;
//!
//! assert_eq!(posts.by_tags("rust")?.len(), 2); // each element of a Vec is indexed
//! assert_eq!(posts.by_editor("ada")?.len(), 1); // None is not indexed
//! # Ok(())
//! # }
//! ```
//!
//! ## The node
//!
//! [`node::Netabase`] keeps those trees on every device: each write is
//! signed, committed locally, and shared with peers over libp2p (Kademlia
//! for pushes and fetches, set reconciliation to catch up after time
//! apart). Every record from a peer is validated before it is stored, and
//! every change, local or remote, is an [`node::Event`] and, typed, a
//! [`node::NodeChange`] on [`node::Netabase::watch`].
//!
//! ```no_run
//! # #[cfg(feature = "node")]
//! # async fn run() -> netabase::Result<()> {
//! use netabase::node::{Netabase, NetabaseConfig};
//! # #[derive(netabase::NetabaseModel, Clone, Debug, PartialEq)]
//! # pub struct Note { #[primary_key] pub id: u64, pub text: String }
//!
//! let node = Netabase::new_with_path("./my-node", NetabaseConfig::default())?;
//! node.register::<Note>()?;
//! node.start_swarm().await?;
//! let written = node.put_record(Note { id: 1, text: "hello".into() }).await?;
//! let mut events = node.subscribe_to_broadcasts(); // every change, typed keys via `event.key::<Note>()`
//! let note = node.get_record::<Note>(NoteKey(1)).await?; // local, else from peers
//! let mut notes = node.watch::<Note>()?; // typed changes: key, record, version, origin
//! node.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! The [`guide`] has the rest, one chapter per topic: models, the store,
//! the node and its configuration, typed changes, write rules, how sync
//! works and what it withstands, changing models, the browser, benchmarks.
//!
//! ## What the derive generates
//!
//! For `struct User` with `#[primary_key] id: u64` and `#[secondary_key] email: String`:
//! - `UserKey(pub u64)`: the primary-key newtype;
//! - `UserEmailKey(pub String)`, one per indexed field, and
//!   `UserSecondaryKey::{Email(UserEmailKey), ..}` over them;
//! - `impl NetabaseModel for User` and the bincode encoding of `User`;
//! - `UserQueries`: `by_email(..)` and `by_email_range(..)` on every tree of `User`;
//! - `UserWatch`: live queries `watch_by_email(..)` and
//!   `watch_by_email_range(..)` on a [`Store`]: the matching set, then each
//!   record that enters, changes within or leaves it;
//! - `impl Sample for User` when every field type implements [`Sample`].
//!
//! Companion names are the model's ident plus a suffix, with the model's
//! visibility. Field types that are themselves structs need bincode's
//! `Encode`/`Decode`: derive them with `netabase::Encode`/`netabase::Decode`
//! and `#[bincode(crate = "netabase::bincode")]`; no bincode dependency needed.
//!
//! ## Keys
//!
//! Keys may be integers, `bool`, `char`, `String`, `Vec<u8>`, `[u8; N]`, or any
//! type implementing [`KeyType`]. A secondary key may also be `Option<T>`
//! (`None` is not indexed) or `Vec<T>` (each element is indexed). Keys are
//! encoded so their byte order is their value order (negative numbers
//! included), so ranges come back sorted.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

// The derive names `::netabase`; this lets the crate derive its own models.
extern crate self as netabase;

#[cfg(feature = "bench")]
pub mod bench;
pub mod codec;
mod error;
pub mod guide;
pub mod key;
pub mod model;
#[cfg(feature = "node")]
pub mod node;
pub mod rules;
pub mod sample;
pub mod store;
pub mod sync;
pub mod version;

pub use error::{Error, Result};
pub use key::{KeyEncode, KeyType};
pub use model::VersionError;
pub use model::{IndexKey, ModelId, NetabaseModel, SecondaryKey};
pub use rules::{Refusal, WriteRule};
pub use sample::Sample;
pub use store::{Durability, Lookup, Store, StoreError};

/// libp2p identity types used in netabase's API (peer ids, keypairs).
pub use libp2p_identity::{Keypair, PeerId, PublicKey};

/// Derives [`NetabaseModel`] and the companion key types; see the crate docs.
pub use netabase_macros::NetabaseModel;

/// bincode, re-exported so nested field types can derive its traits without a
/// bincode dependency: `#[derive(netabase::Encode, netabase::Decode)]` with
/// `#[bincode(crate = "netabase::bincode")]`.
pub use bincode;
pub use bincode::{Decode, Encode};

/// What generated code refers to. Not public API: it may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::codec::field::{
        DecodeAny, DecodeIdentity, EncodeAny, EncodeIdentity, Field, Tag,
    };
    pub use crate::key::{KeyBuf, KeyEncode, KeyType};
    pub use crate::model::{decode_own, VersionError};
    pub use crate::model::{IndexEntries, IndexKey, IndexSpec, NetabaseModel, SecondaryKey};
    pub use crate::rules;
    pub use crate::sample::Sample;
    pub use crate::store::{LiveQuery, Lookup, Records, Store, StoreError};
    pub use crate::version::{same_primary_key, same_str, PrimaryField};
    pub use bincode;
    pub use libp2p_identity::PeerId;
    pub use std::vec::Vec;
}
