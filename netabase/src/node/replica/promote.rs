//! Records held at a newer version, read into the typed tree once the app
//! registers a version that knows them (see [`newer`](super::newer)).

use std::sync::atomic::Ordering;

use crate::codec::Envelope;
use crate::model::NetabaseModel;
use crate::node::NodeError;
use crate::store::{Form, StoreError, WriteTransaction};

use super::apply::{announce_settled, settle};
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
    loop {
        let (page, listed, settled) = storage::write(shared, |txn| promote_page::<M>(shared, txn))?;
        if let Some(listed) = &listed {
            tell(shared, listed);
        }
        announce_settled(shared, [&settled], &std::collections::HashSet::new());
        if page == 0 {
            break;
        }
        promoted += page as u64;
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

/// One page of [`promote`]: returns how many listed records it took off
/// the list (0: none left), the list's change, and the conflicts settled.
fn promote_page<M: NetabaseModel>(
    shared: &Replica,
    txn: &WriteTransaction,
) -> Result<(usize, Option<Listed>, Settled), NodeError> {
    let page = txn
        .newer_table()?
        .up_to(M::ID.0, M::VERSION, PROMOTE_PAGE)?;
    if page.is_empty() {
        return Ok((0, None, Settled::default()));
    }
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
                Ok(Written::Split(rest)) => {
                    let form = Form::Split {
                        table: handler.table(),
                        rest: &rest,
                    };
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
    // Every listed key of the page leaves the list, read or not, so each
    // page makes progress.
    let unlisted: Vec<(&[u8], &Written)> = page
        .iter()
        .map(|(key, _)| (key.as_slice(), &Written::Whole))
        .collect();
    let listed = list(shared, txn, M::ID, unlisted.iter().copied())?;
    let settled = settle(shared, txn, handler, M::ID, &conflicting)?;
    Ok((page.len(), listed, settled))
}
