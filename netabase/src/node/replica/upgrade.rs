//! Bringing a data directory written by an earlier version up to date when
//! a node opens it. Each step runs once, in bounded transactions, and a
//! crash part-way loses nothing: what was not moved yet is still where the
//! earlier version kept it, and the next open goes on.

use libp2p_identity::PeerId;

use super::cache;
use super::state::ISSUED;
use crate::codec::Envelope;
use crate::node::NodeError;
use crate::store::Store;

/// Envelopes moved per transaction.
const BATCH: usize = 10_000;

/// Moves envelopes of the earlier format (a table of envelopes alone, read
/// into memory at every open) into the records table and its index, and
/// records the latest version `peer` wrote. Blocking.
pub(crate) fn envelopes(store: &Store, peer: PeerId) -> Result<(), NodeError> {
    if !store.begin_read()?.has_old_envelopes()? {
        return Ok(());
    }
    let mut moved = 0;
    loop {
        let txn = store.begin_write()?;
        let issued = std::cell::Cell::new(txn_issued(&txn)?);
        let count = txn.upgrade_envelopes(BATCH, |bytes| {
            let envelope = Envelope::from_trusted_bytes(bytes).ok()?;
            if envelope.writer() == peer {
                issued.set(issued.get().max(envelope.version().timestamp.0));
            }
            Some(cache::state_of(&envelope))
        })?;
        txn.set_sync_meta(ISSUED, issued.get())?;
        txn.commit()?;
        moved += count;
        if count == 0 {
            break;
        }
    }
    tracing::info!(records = moved, "moved the records to this version's table");
    Ok(())
}

fn txn_issued(txn: &crate::store::WriteTransaction) -> Result<u64, NodeError> {
    Ok(txn.sync_meta(ISSUED)?.unwrap_or(0))
}
