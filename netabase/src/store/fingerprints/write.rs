//! The index's write side: a [`View`] over a write transaction that keeps
//! every level in step with the records, bucket by bucket.

use std::collections::BTreeMap;

use super::*;

/// [`View`] over a write transaction: the same questions, and the writes
/// that keep every level in step with the records.
pub(crate) struct WriteView<'txn> {
    pub(super) view: View<redb::Table<'txn, KeyBytes, Bytes>>,
    /// Per level, the buckets this transaction looked up, by boundary:
    /// each with where it ends, so the next key that falls in it needs no
    /// table lookup (a catch-up's batch arrives in key order: most keys
    /// fall in the bucket before them), and whether it changed. Changed
    /// buckets are written once, at [`flush`](Self::flush). Bounded by
    /// what the transaction writes.
    known: Vec<BTreeMap<Vec<u8>, Bucket>>,
}

/// A bucket as a write transaction knows it.
struct Bucket {
    fingerprint: Fingerprint,
    /// The next boundary of its level (`None`: it runs to the end).
    end: Option<Vec<u8>>,
    changed: bool,
}

impl<'txn> WriteView<'txn> {
    /// Opens the tables in `txn`, creating them on first use.
    pub(crate) fn open(
        txn: &'txn redb::WriteTransaction,
        boundaries: Boundaries,
    ) -> Result<Self, StoreError> {
        let items = txn
            .open_table(RECORDS)
            .map_err(storage("open a sync table"))?;
        let mut levels = txn
            .open_table(LEVELS_TABLE)
            .map_err(storage("open a sync table"))?;
        // Every level's first bucket starts at the empty key.
        if levels
            .get(&[1u8][..])
            .map_err(storage("read a sync table"))?
            .is_none()
        {
            for level in 1..=LEVELS {
                levels
                    .insert(&[level][..], &encode(Fingerprint::default())[..])
                    .map_err(storage("write a sync table"))?;
            }
        }
        Ok(WriteView {
            view: View {
                items,
                levels,
                boundaries,
                failed: RefCell::new(None),
            },
            known: (0..LEVELS).map(|_| BTreeMap::new()).collect(),
        })
    }

    /// The view, with every change in the table: what it answers is up to
    /// date.
    #[cfg(test)]
    pub(crate) fn read(&mut self) -> Result<&View<redb::Table<'txn, KeyBytes, Bytes>>, StoreError> {
        self.flush()?;
        Ok(&self.view)
    }

    /// The records table, for reads of whole rows.
    pub(crate) fn records(&self) -> &redb::Table<'txn, KeyBytes, Bytes> {
        &self.view.items
    }

    /// Writes the changed buckets held in memory. Call it before the
    /// transaction commits: dropping the view writes them too, but can
    /// only log a failure.
    pub(crate) fn flush(&mut self) -> Result<(), StoreError> {
        self.flush_below(LEVELS + 1)
    }

    /// Writes the changed buckets of the levels below `level`.
    fn flush_below(&mut self, level: u8) -> Result<(), StoreError> {
        for (index, known) in self
            .known
            .iter_mut()
            .enumerate()
            .take(usize::from(level - 1))
        {
            for (boundary, bucket) in known.iter_mut() {
                if std::mem::take(&mut bucket.changed) {
                    let key = level_key(index as u8 + 1, boundary);
                    self.view
                        .levels
                        .insert(&key[..], &encode(bucket.fingerprint)[..])
                        .map_err(storage("write a sync table"))?;
                }
            }
        }
        Ok(())
    }

    /// Sets the state of `key` (a row with no envelope); returns the state
    /// it replaced.
    #[cfg(test)]
    pub(crate) fn insert(
        &mut self,
        key: &[u8],
        state: ItemState,
    ) -> Result<Option<ItemState>, StoreError> {
        Ok(self
            .insert_row(key, &row(state, false, &[]))?
            .map(|(old, _)| old))
    }

    /// Writes `row` (see [`row`]) under `key`; returns the state and delete
    /// flag of the row it replaced.
    pub(crate) fn insert_row(
        &mut self,
        key: &[u8],
        row: &[u8],
    ) -> Result<Option<(ItemState, bool)>, StoreError> {
        let (state, _) = row_state(row);
        let old = self
            .view
            .items
            .insert(key, row)
            .map_err(storage("write a sync table"))?
            .map(|old| row_state(old.value()));
        match old {
            Some((old, _)) => {
                // The same key: only its buckets' XOR changes.
                let delta = Fingerprint {
                    xor: old.digest ^ state.digest,
                    count: 0,
                };
                if delta.xor != 0 {
                    for level in 1..=LEVELS {
                        self.add_to_bucket(level, key, delta, false)?;
                    }
                }
            }
            None => {
                let top = self.view.boundaries.level(key);
                for level in 1..=LEVELS {
                    if level <= top {
                        self.split_at(level, key, one(state))?;
                    } else {
                        self.add_to_bucket(level, key, one(state), false)?;
                    }
                }
            }
        }
        Ok(old)
    }

    /// Removes `key`; returns the state it had.
    #[cfg(test)]
    pub(crate) fn remove(&mut self, key: &[u8]) -> Result<Option<ItemState>, StoreError> {
        Ok(self.remove_row(key)?.map(|(state, _)| state))
    }

    /// Removes `key`'s row; returns its state and delete flag.
    pub(crate) fn remove_row(
        &mut self,
        key: &[u8],
    ) -> Result<Option<(ItemState, bool)>, StoreError> {
        let removed = self
            .view
            .items
            .remove(key)
            .map_err(storage("write a sync table"))?
            .map(|old| row_state(old.value()));
        let Some((old, _)) = removed else {
            return Ok(None);
        };
        let top = self.view.boundaries.level(key);
        for level in 1..=LEVELS {
            if level <= top {
                self.merge_at(level, key, one(old))?;
            } else {
                self.add_to_bucket(level, key, one(old), true)?;
            }
        }
        Ok(removed)
    }

    /// The boundary of `level` whose bucket holds `key` (`strictly`: holds
    /// the position just before it), and that bucket's fingerprint. Known
    /// from this transaction, or read from the table and remembered.
    fn bucket_of(
        &mut self,
        level: u8,
        key: &[u8],
        strictly: bool,
    ) -> Result<(Vec<u8>, Fingerprint), StoreError> {
        let known = &self.known[usize::from(level - 1)];
        let upper = if strictly {
            Bound::Excluded(key)
        } else {
            Bound::Included(key)
        };
        if let Some((boundary, bucket)) = known
            .range::<[u8], _>((Bound::Unbounded, upper))
            .next_back()
        {
            let inside = match &bucket.end {
                None => true,
                Some(end) if strictly => key <= end.as_slice(),
                Some(end) => key < end.as_slice(),
            };
            if inside {
                return Ok((boundary.clone(), bucket.fingerprint));
            }
        }
        let start = level_key(level, &[]);
        let at = level_key(level, key);
        let mut found = None;
        self.view.levels.each(
            Bound::Included(&start),
            if strictly {
                Bound::Excluded(&at)
            } else {
                Bound::Included(&at)
            },
            true,
            &mut |k, v| {
                found = Some((k[1..].to_vec(), decode(v)));
                false
            },
        )?;
        let (boundary, fingerprint) = found.ok_or_else(lost_first_bucket)?;
        let known = &mut self.known[usize::from(level - 1)];
        if let Some(bucket) = known.get(&boundary) {
            return Ok((boundary, bucket.fingerprint));
        }
        let end = self.view.next_boundary(level, &boundary)?;
        self.known[usize::from(level - 1)].insert(
            boundary.clone(),
            Bucket {
                fingerprint,
                end,
                changed: false,
            },
        );
        Ok((boundary, fingerprint))
    }

    /// Sets the fingerprint of the bucket at `boundary` of `level`, found
    /// by [`bucket_of`](Self::bucket_of) just before.
    fn put_bucket(&mut self, level: u8, boundary: &[u8], fingerprint: Fingerprint) {
        if let Some(bucket) = self.known[usize::from(level - 1)].get_mut(boundary) {
            bucket.fingerprint = fingerprint;
            bucket.changed = true;
        }
    }

    /// Adds (or, `remove`, takes away) `item` in the bucket of `level`
    /// holding `key`.
    fn add_to_bucket(
        &mut self,
        level: u8,
        key: &[u8],
        item: Fingerprint,
        remove: bool,
    ) -> Result<(), StoreError> {
        let change = |bucket: Fingerprint| {
            if remove {
                minus(bucket, item)
            } else {
                plus(bucket, item)
            }
        };
        // Most writes of a batch land in a bucket it touched already:
        // updated in place, no lookup in the table, no key copied.
        let known = &mut self.known[usize::from(level - 1)];
        if let Some((_, bucket)) = known
            .range_mut::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()
        {
            if bucket.end.as_deref().is_none_or(|end| key < end) {
                bucket.fingerprint = change(bucket.fingerprint);
                bucket.changed = true;
                return Ok(());
            }
        }
        let (boundary, bucket) = self.bucket_of(level, key, false)?;
        self.put_bucket(level, &boundary, change(bucket));
        Ok(())
    }

    /// `key`, just inserted (levels below already updated), is a boundary
    /// of `level`: the bucket it fell in splits at it.
    fn split_at(&mut self, level: u8, key: &[u8], item: Fingerprint) -> Result<(), StoreError> {
        let (before, bucket) = self.bucket_of(level, key, true)?;
        let next = self.known[usize::from(level - 1)]
            .get(&before)
            .and_then(|b| b.end.clone());
        // The sum below reads the levels under this one from the table.
        self.flush_below(level)?;
        let moved = self.view.sum(level - 1, key, next.as_deref())?;
        self.put_bucket(level, &before, minus(bucket, minus(moved, item)));
        if let Some(bucket) = self.known[usize::from(level - 1)].get_mut(&before) {
            bucket.end = Some(key.to_vec());
        }
        // A new boundary goes in the table at once, so that lookups in the
        // table (`next_boundary`, sums) find it.
        self.view
            .levels
            .insert(&level_key(level, key)[..], &encode(moved)[..])
            .map_err(storage("write a sync table"))?;
        self.known[usize::from(level - 1)].insert(
            key.to_vec(),
            Bucket {
                fingerprint: moved,
                end: next,
                changed: false,
            },
        );
        Ok(())
    }

    /// `key`, being removed, is a boundary of `level`: its bucket joins the
    /// one before it.
    fn merge_at(&mut self, level: u8, key: &[u8], item: Fingerprint) -> Result<(), StoreError> {
        let stored = self
            .view
            .levels
            .remove(&level_key(level, key)[..])
            .map_err(storage("write a sync table"))?
            .map(|v| decode(v.value()))
            .unwrap_or_default();
        let (bucket, end) = match self.known[usize::from(level - 1)].remove(key) {
            Some(known) => (known.fingerprint, known.end),
            None => (stored, self.view.next_boundary(level, key)?),
        };
        let (before, previous) = self.bucket_of(level, key, true)?;
        self.put_bucket(level, &before, minus(plus(previous, bucket), item));
        if let Some(bucket) = self.known[usize::from(level - 1)].get_mut(&before) {
            bucket.end = end;
        }
        Ok(())
    }
}

fn lost_first_bucket() -> StoreError {
    // The empty key is a boundary of every level, written at open.
    StoreError::Storage {
        op: "find a sync bucket",
        source: crate::store::error::EngineError::new(redb::StorageError::Corrupted(
            "a sync level lost its first bucket".into(),
        )),
    }
}

impl Drop for WriteView<'_> {
    fn drop(&mut self) {
        if let Err(error) = self.flush() {
            tracing::error!(%error, "could not write the sync index's buffered buckets");
        }
    }
}
