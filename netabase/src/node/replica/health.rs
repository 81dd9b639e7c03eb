//! The store's health as the node sees it. A storage I/O error (a full disk)
//! leaves redb refusing every write until the database is reopened, so the
//! node marks itself degraded: it stops taking records from peers (Kademlia
//! goes to client mode, so peers stop pushing and no acknowledgement is
//! given for a record that cannot be stored), says so (an event, a stat, and
//! the whole cause chain in the log), and probes: reopen, then a test
//! write, backing off while the disk stays full. When a probe succeeds the
//! node serves again and catches up with every connected peer, so whatever
//! it missed meanwhile, or acknowledged and could not store, comes back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// The first wait between probes; it doubles up to [`MAX_BACKOFF`].
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest wait between probes.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
pub(crate) struct Health {
    pub(super) degraded: AtomicBool,
    /// Wakes the event loop when the store fails, so it stops taking records
    /// at once rather than at its next housekeeping tick.
    pub(crate) changed: tokio::sync::Notify,
}

impl Health {
    /// Whether the store failed and has not been reopened since.
    pub(crate) fn degraded(&self) -> bool {
        self.degraded.load(Ordering::Acquire)
    }
}
