//! Models and checks shared by the integration tests.
#![allow(dead_code)]

pub mod raw;

use std::collections::BTreeSet;
use std::fmt::Debug;

use std::time::Duration;

use netabase::model::IndexEntries;
use netabase::node::{Event, Multiaddr, Netabase, Protocol};
use netabase::store::Lookup;
use netabase::{KeyEncode, NetabaseModel};
pub use netabase_workspace::models::*;
use tokio::sync::broadcast;

/// Checks that every secondary index holds exactly the entries derived from
/// the records, in index order: nothing missing, nothing stale.
pub fn assert_indexes_consistent<M, T>(tree: &T)
where
    M: NetabaseModel + Debug + PartialEq,
    T: Lookup<M>,
{
    let records: Vec<M> = tree.iter().unwrap().collect::<Result<_, _>>().unwrap();
    for (index, spec) in M::INDEXES.iter().enumerate() {
        let mut expected = BTreeSet::new();
        for record in &records {
            let mut entries = IndexEntries::new();
            record.index_entries(&mut entries);
            let key = record.key().to_key_bytes().as_slice().to_vec();
            for (i, value) in entries.iter() {
                if i == index {
                    expected.insert((value.to_vec(), key.clone()));
                }
            }
        }
        let expected_keys: Vec<Vec<u8>> = expected.into_iter().map(|(_, k)| k).collect();
        let found: Vec<Vec<u8>> = tree
            .index_range::<u8, _>(index, ..)
            .unwrap()
            .iter()
            .map(|r| r.key().to_key_bytes().as_slice().to_vec())
            .collect();
        assert_eq!(found, expected_keys, "index `{}` out of step", spec.name);
    }
}

/// Bound on every wait for a network event.
pub const NET_WAIT: Duration = Duration::from_secs(60);

/// A started node's dialable address, `/ip4/../tcp/../p2p/<id>`.
pub fn address_of(node: &Netabase) -> Multiaddr {
    node.listen_addresses()[0]
        .clone()
        .with(Protocol::P2p(node.peer_id()))
}

/// Waits (bounded by [`NET_WAIT`]) for the first event that `pick` accepts.
pub async fn wait_for<T>(
    what: &str,
    events: &mut broadcast::Receiver<Event>,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> T {
    tokio::time::timeout(NET_WAIT, async {
        loop {
            match events.recv().await {
                Ok(event) => {
                    if let Some(found) = pick(&event) {
                        return found;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => panic!("event stream closed"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}
