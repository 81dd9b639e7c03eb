//! Opening a database file, and when every page is checked against its
//! checksum on the way.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[cfg(not(target_arch = "wasm32"))]
use super::error::EngineError;
use super::error::StoreError;

/// When [`StoreBuilder::open`](super::StoreBuilder::open) reads the whole
/// file to check every page against its checksum.
///
/// The check is what turns a damaged file into [`StoreError::Open`] rather
/// than a panic inside the storage engine later. It reads every page the
/// database uses (2.4-6 s for a 2.2 GB file of a million 1 KB rows here,
/// against 2-23 ms without it), so it is not run on every open by
/// default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum IntegrityCheck {
    /// Only when the last shutdown was unclean (a killed process, a power
    /// loss): the time pages get damaged. The default. The storage engine
    /// runs this check then anyway, as it must rebuild its allocator state
    /// from the pages it reads; a file closed cleanly opens without reading
    /// its pages. The trade-off: a cleanly closed file damaged on disk
    /// afterwards (a bad sector, another program writing into it) is not
    /// caught at open; a read of a damaged page then fails with
    /// [`StoreError::Storage`], or may panic inside the storage engine.
    #[default]
    AfterUncleanShutdown,
    /// On every open of an existing file, whatever happened before: for
    /// files that may have been damaged while closed (copied over a flaky
    /// link, kept on failing media).
    EveryOpen,
}

/// A database just opened, and whether every page was checked on the way.
pub(super) struct Opened {
    pub(super) db: redb::Database,
    /// The storage engine checked every page (see [`IntegrityCheck`]).
    pub(super) checked: bool,
}

/// A redb builder that records in the returned flag whether the open
/// checked every page: redb calls the repair callback exactly when it runs
/// its full check (after an unclean shutdown, or when asked every time).
fn tracked(mut builder: redb::Builder, check: IntegrityCheck) -> (redb::Builder, Arc<AtomicBool>) {
    let checked = Arc::new(AtomicBool::new(false));
    let seen = checked.clone();
    builder.set_repair_callback(move |_| seen.store(true, Ordering::Relaxed));
    builder.set_check_integrity_on_open(check == IntegrityCheck::EveryOpen);
    (builder, checked)
}

/// Opens (or creates) the database at `path` through `builder`.
#[cfg(not(target_arch = "wasm32"))]
pub(super) fn file(
    builder: redb::Builder,
    check: IntegrityCheck,
    path: &std::path::Path,
) -> Result<Opened, StoreError> {
    let open_error = |error: redb::DatabaseError| match error {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::AlreadyOpen,
        other => StoreError::Open {
            path: path.to_owned(),
            source: EngineError::new(other),
        },
    };
    let (builder, checked) = tracked(builder, check);
    // redb asserts (in debug builds) or panics (in some paths of every
    // build) on some damaged pages instead of returning an error. Its full
    // check reads every page against its checksum before anything else
    // does, so a damaged file is refused with an error; a panic in it is
    // contained here all the same.
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        builder.create(path).map_err(open_error)
    }));
    let db = opened.unwrap_or_else(|_| {
        Err(StoreError::Open {
            path: path.to_owned(),
            source: EngineError::new(redb::StorageError::Corrupted(
                "the storage engine failed on a damaged page".into(),
            )),
        })
    })?;
    let checked = checked.load(Ordering::Relaxed);
    if checked && check == IntegrityCheck::AfterUncleanShutdown {
        tracing::warn!(path = %path.display(), "the store was not shut down cleanly: checked every page and repaired it");
    } else {
        tracing::debug!(path = %path.display(), checked, "opened store");
    }
    Ok(Opened { db, checked })
}

/// Opens (or initialises) a database on `backend` through `builder`.
pub(super) fn backend(
    builder: redb::Builder,
    check: IntegrityCheck,
    backend: impl redb::StorageBackend,
) -> Result<Opened, StoreError> {
    let (builder, checked) = tracked(builder, check);
    let db = builder
        .create_with_backend(backend)
        .map_err(super::error::storage("create a database"))?;
    Ok(Opened {
        db,
        checked: checked.load(Ordering::Relaxed),
    })
}

/// Bytes written beside the database to see whether the disk takes writes
/// again: enough for reopening to write its header and repair what a
/// failed commit left, on a disk that was full.
#[cfg(not(target_arch = "wasm32"))]
const ROOM: usize = 1 << 20;

/// Whether the disk holding `path` takes [`ROOM`] bytes, made durable: a
/// file beside it, written, synced and removed.
#[cfg(not(target_arch = "wasm32"))]
pub(super) fn room_beside(path: &std::path::Path) -> std::io::Result<()> {
    use std::io::Write;
    let mut probe = path.as_os_str().to_owned();
    probe.push(".room");
    let probe = std::path::PathBuf::from(probe);
    let written = (|| {
        let mut file = std::fs::File::create(&probe)?;
        let chunk = vec![0u8; 64 * 1024];
        for _ in 0..ROOM / chunk.len() {
            file.write_all(&chunk)?;
        }
        file.sync_all()
    })();
    let removed = std::fs::remove_file(&probe);
    written.and(removed)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    #[test]
    fn room_is_probed_beside_the_database_and_nothing_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("netabase.redb");
        super::room_beside(&db).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(super::room_beside(&dir.path().join("missing/netabase.redb")).is_err());
    }
}
