//! Records held at a newer version, read into the typed tree once the app
//! registers a version that knows them (see [`newer`](super::newer)).

use std::sync::atomic::Ordering;

use crate::codec::Envelope;
use crate::model::NetabaseModel;
use crate::node::NodeError;
use crate::store::{StoreError, WriteTransaction};

use super::apply::{announce_settled, form, settle};
use super::cache::state_of;
use super::members::NodeContext;
use super::newer::{list, tell, Listed};
use super::registry::{ApplyError, Settled, Written};
use super::state::Replica;
use super::storage;

/// Listed records one promotion transaction reads into the typed tree.
const PROMOTE_PAGE: usize = 1024;

/// Reads the records of `M` held at a version `M` knows (newer than the
/// version registered when they came) into its typed tree, with their
/// index entries, a page per transaction. Each is judged by `M`'s write
/// rule once more, now that it can be read, against nothing held (it was
/// judged unread when it came); one the rule or its conversion refuses
/// stays held as signed, out of the typed tree, with a warning, as does
/// one that loses a unique value (listed as a conflict). Blocking.
pub(crate) fn promote<M: NetabaseModel>(shared: &Replica) -> Result<(), NodeError> {
    if !shared.newer_listed.load(Ordering::Acquire) {
        return Ok(());
    }
    let mut promoted = 0u64;
    // The last key of the page before: the records of versions newer still
    // stay listed, and are not read again.
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = storage::write(shared, |txn| {
            promote_page::<M>(shared, txn, after.as_deref())
        })?;
        let Some(page) = page else {
            break;
        };
        if let Some(listed) = &page.listed {
            tell(shared, listed);
        }
        announce_settled(shared, [&page.settled], &std::collections::HashSet::new());
        promoted += page.read as u64;
        after = Some(page.last);
    }
    if promoted > 0 {
        tracing::info!(
            model = M::NAME,
            version = M::VERSION,
            promoted,
            "read records held at a newer version into the typed tree"
        );
    }
    Ok(())
}

/// What one page of [`promote`] did.
struct Page {
    /// Listed records it took off the list, read or not.
    read: usize,
    /// The last key it looked at.
    last: Vec<u8>,
    listed: Option<Listed>,
    settled: Settled,
}

/// One page of [`promote`], after the key `after`; `None` when nothing
/// of `M` that `M` reads is listed there (the counts tell, at start-up,
/// without reading the list).
fn promote_page<M: NetabaseModel>(
    shared: &Replica,
    txn: &WriteTransaction,
    after: Option<&[u8]>,
) -> Result<Option<Page>, NodeError> {
    let page = {
        let newer = txn.newer_table()?;
        if !newer.any_up_to(M::ID.0, M::VERSION)? {
            return Ok(None);
        }
        newer.up_to(M::ID.0, M::VERSION, after, PROMOTE_PAGE)?
    };
    let Some((last, _)) = page.last() else {
        return Ok(None);
    };
    let last = last.clone();
    let registry = shared.registry.read().unwrap_or_else(|e| e.into_inner());
    let handler = registry
        .get(M::ID)
        .ok_or(NodeError::NotRegistered { model: M::NAME })?;
    let mut envelopes = Vec::with_capacity(page.len());
    {
        let table = txn.envelope_table()?;
        for (key, _) in &page {
            let Some(bytes) = table.get(key)? else {
                continue;
            };
            // Stored envelopes were verified on the way in.
            let Ok(envelope) = Envelope::from_trusted_bytes(&bytes) else {
                continue;
            };
            match handler.allow(&envelope, None, &NodeContext(shared)) {
                Ok(()) => envelopes.push((key.clone(), envelope)),
                Err(refusal) => tracing::warn!(
                    model = M::NAME,
                    writer = %envelope.writer(),
                    %refusal,
                    "a record of a newer version, now read, breaks the model's write rule: kept out of the typed tree"
                ),
            }
        }
    }
    let batch: Vec<&Envelope> = envelopes.iter().map(|(_, e)| e).collect();
    let results = handler.apply_many(txn, &batch)?;
    let mut conflicting = Vec::new();
    {
        let mut table = txn.envelope_table()?;
        for ((key, envelope), result) in envelopes.iter().zip(results) {
            match result {
                // Held whole so far: only a split row changes.
                Ok(written @ Written::Split(_)) => {
                    let form = form(handler, &written);
                    table.insert(key, envelope.as_bytes(), state_of(envelope), form)?;
                }
                Ok(Written::Whole | Written::Newer(_)) => {}
                Err(ApplyError::Store(StoreError::UniqueViolation { .. })) => {
                    conflicting.push(key.clone());
                }
                Err(ApplyError::Store(error)) => return Err(error.into()),
                Err(ApplyError::Envelope(error)) => tracing::warn!(
                    model = M::NAME,
                    %error,
                    "a record of a newer version does not read as this version: kept out of the typed tree"
                ),
            }
        }
        table.flush()?;
    }
    // Every listed key of the page leaves the list, read or not.
    let unlisted = page
        .iter()
        .map(|(key, _)| (key.as_slice(), &Written::Whole));
    let listed = list(shared, txn, unlisted)?;
    let settled = settle(shared, txn, handler, M::ID, &conflicting)?;
    Ok(Some(Page {
        read: page.len(),
        last,
        listed,
        settled,
    }))
}
