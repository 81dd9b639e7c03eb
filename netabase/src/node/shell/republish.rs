//! Republishing this node's own records: streamed from the store a page at
//! a time (each page read in a blocking task), a bounded number in flight,
//! so a node with years of data neither floods the swarm nor copies its
//! records into memory.

use std::sync::Arc;

use tokio::sync::{mpsc, Semaphore};

use super::event_loop::Command;
use super::kad_store::kad_record;
use crate::codec::split::WrittenBy;
use crate::codec::Envelope;
use crate::node::platform;
use crate::node::replica::Replica;

/// Records read from the store at a time.
const PAGE: usize = 256;
/// Publications in flight at once.
const IN_FLIGHT: usize = 32;

/// The swarm stopped.
pub(crate) struct Stopped;

/// Publishes every record this node wrote, once. A page that cannot be
/// read ends the round (logged): the next round tries again.
pub(crate) async fn all(
    shared: &Arc<Replica>,
    commands: &mpsc::Sender<Command>,
) -> Result<(), Stopped> {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut after: Option<Vec<u8>> = None;
    let mut published = 0u64;
    // Others' records are told apart by their stored rest alone, without
    // reading their typed rows: most of what a node holds is not its own.
    let mine = Arc::new(WrittenBy::new(&shared.keypair.public().encode_protobuf()));
    loop {
        // Between pages: a stopped swarm ends the round at once, even if
        // none of the records scanned so far was this node's.
        if commands.is_closed() {
            return Err(Stopped);
        }
        let page = {
            let shared = shared.clone();
            let after = after.clone();
            let mine = mine.clone();
            platform::blocking(move || -> Result<_, crate::StoreError> {
                shared
                    .store
                    .begin_read()?
                    .envelopes_after_where(after.as_deref(), PAGE, |rest| mine.matches(rest))
            })
            .await
        };
        let (page, last) = match page {
            Ok(Ok(page)) => page,
            Ok(Err(error)) => {
                tracing::warn!(%error, "could not read records to republish");
                return Ok(());
            }
            Err(_) => return Ok(()),
        };
        let full = last.is_some();
        after = last;
        for (key, bytes) in page {
            let own = Envelope::from_trusted_bytes(&bytes)
                .is_ok_and(|envelope| envelope.writer() == shared.peer_id);
            if !own {
                continue;
            }
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return Err(Stopped);
            };
            let (reply, mut answers) = mpsc::unbounded_channel();
            let command = Command::Publish {
                record: kad_record(&key, &bytes),
                reply,
            };
            commands.send(command).await.map_err(|_| Stopped)?;
            published += 1;
            platform::spawn(async move {
                // Until every peer asked has answered; a failed republish
                // is retried at the next round.
                while answers.recv().await.is_some() {}
                drop(permit);
            });
        }
        if !full {
            break;
        }
    }
    if published > 0 {
        tracing::debug!(records = published, "republished own records");
    }
    Ok(())
}
