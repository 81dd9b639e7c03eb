//! What a node keeps in sync for each model (`netabase/sync/subscriptions`:
//! model id, 4 bytes big-endian, to the node's encoding of what it
//! subscribes to). The node decides what a subscription means; the store
//! keeps its bytes, so a restart keeps it. A model with no row is synced
//! whole.

use redb::{ReadableTable, TableDefinition};

use super::error::{storage, StoreError};
use super::read::ReadTransaction;
use super::tables::{Bytes, KeyBytes};
use super::write::WriteTransaction;

const SUBSCRIPTIONS: TableDefinition<'static, KeyBytes, Bytes> =
    TableDefinition::new("netabase/sync/subscriptions");

impl WriteTransaction {
    /// Stores what the node subscribes to for model `model` (`None`: the
    /// default, everything).
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    #[doc(hidden)]
    pub fn set_subscription(&self, model: u32, encoded: Option<&[u8]>) -> Result<(), StoreError> {
        let mut table = self
            .raw()
            .open_table(SUBSCRIPTIONS)
            .map_err(storage("open the subscriptions"))?;
        let key = model.to_be_bytes();
        let written = match encoded {
            Some(encoded) => table.insert(&key[..], encoded).map(drop),
            None => table.remove(&key[..]).map(drop),
        };
        written.map_err(storage("write a subscription"))
    }
}

impl ReadTransaction {
    /// Every stored subscription, as `(model id, encoding)`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Storage`] if the database fails.
    #[doc(hidden)]
    pub fn subscriptions(&self) -> Result<Vec<(u32, Vec<u8>)>, StoreError> {
        let table = match self.raw().open_table(SUBSCRIPTIONS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(error) => return Err(storage("open the subscriptions")(error)),
        };
        let mut out = Vec::new();
        for entry in table.iter().map_err(storage("read the subscriptions"))? {
            let (key, value) = entry.map_err(storage("read the subscriptions"))?;
            if let Some(model) = key.value().first_chunk::<4>() {
                out.push((u32::from_be_bytes(*model), value.value().to_vec()));
            }
        }
        Ok(out)
    }
}
