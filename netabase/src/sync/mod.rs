//! Versions and the one conflict rule every write path applies: the newer
//! version wins, by (hybrid logical clock timestamp, writer peer id).

mod clock;
mod item_tree;
pub mod reconcile;
mod version;

pub use clock::{Clock, ClockError, Timestamp};
pub use version::Version;
