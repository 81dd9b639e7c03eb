//! Reconciliation's view of what this node holds: the index its database
//! keeps of the envelopes, updated in the transaction of every write, read
//! here in one snapshot. Writers never wait for a reader, and nothing of it
//! lives in memory.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::sync::reconcile::Items;

use super::{health, NodeError, Shared};

/// Runs `f` on a snapshot of the index. Blocking: call from a blocking task.
///
/// # Errors
///
/// A store error met opening or reading the index; whatever `f` built from
/// its answers is dropped then, as it may rest on a partial read.
pub(crate) fn with_items<T>(
    shared: &Shared,
    f: impl FnOnce(&dyn Items) -> T,
) -> Result<T, NodeError> {
    let read = || {
        let snapshot = shared.publishing.settled(|| shared.store.begin_read())?;
        let view = snapshot.sync_index()?;
        let value = f(&view);
        match view.failure() {
            Some(error) => Err(NodeError::Store(error)),
            None => Ok(value),
        }
    };
    read().inspect_err(|error| health::check(shared, error))
}

/// Commits of envelopes whose in-memory view (the record cache, read by
/// `members`, `record_version` and the swarm) is not updated yet. The index
/// changes in the commit itself, the view just after it; a snapshot taken
/// in between would call a record held before the node shows it, and a
/// catch-up could end on it. Snapshots wait for those moments to pass.
#[derive(Debug, Default)]
pub(crate) struct Publishing {
    pending: Mutex<usize>,
    settled: Condvar,
}

/// How long a snapshot waits for commits to be shown: past it (writers that
/// never pause), it is taken anyway, at worst a moment early.
const SETTLE_WAIT: Duration = Duration::from_secs(1);

impl Publishing {
    /// Marks a commit and its view's update as under way, until the guard
    /// drops. Take it before the commit, drop it after the view is updated.
    pub(crate) fn begin(&self) -> Showing<'_> {
        *lock(&self.pending) += 1;
        Showing(self)
    }

    /// Runs `take` once no commit is between its commit and its view's
    /// update, with new ones held off meanwhile.
    fn settled<T>(&self, take: impl FnOnce() -> T) -> T {
        let mut pending = lock(&self.pending);
        // Only ever waits with another thread publishing (never in a
        // browser's single-threaded worker, whose commits and views update
        // without yielding in between).
        if *pending > 0 {
            let deadline = std::time::Instant::now() + SETTLE_WAIT;
            while *pending > 0 {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                pending = self
                    .settled
                    .wait_timeout(pending, left)
                    .map(|(guard, _)| guard)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
        }
        take()
    }
}

/// A commit being shown: see [`Publishing::begin`].
#[must_use]
pub(crate) struct Showing<'a>(&'a Publishing);

impl Drop for Showing<'_> {
    fn drop(&mut self) {
        let mut pending = lock(&self.0.pending);
        *pending = pending.saturating_sub(1);
        if *pending == 0 {
            self.0.settled.notify_all();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
