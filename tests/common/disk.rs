//! A disk that fills up on command, for tests of what a full disk does.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// An in-memory disk that can be made to fail every write, as a full disk does.
#[derive(Debug, Clone)]
pub struct FullableDisk {
    inner: Arc<redb::backends::InMemoryBackend>,
    full: Arc<AtomicBool>,
}

impl FullableDisk {
    fn check(&self) -> io::Result<()> {
        if self.full.load(Ordering::SeqCst) {
            Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "no space left on device",
            ))
        } else {
            Ok(())
        }
    }
}

impl redb::StorageBackend for FullableDisk {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.check()?;
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.check()?;
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.check()?;
        self.inner.write(offset, data)
    }
}

impl FullableDisk {
    /// An empty disk with room.
    pub fn new() -> Self {
        FullableDisk {
            inner: Arc::new(redb::backends::InMemoryBackend::new()),
            full: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Every write fails from now on, as on a full disk.
    pub fn fill(&self) {
        self.full.store(true, Ordering::SeqCst);
    }

    /// There is room again.
    pub fn free(&self) {
        self.full.store(false, Ordering::SeqCst);
    }

    /// A store on this disk that can reopen in place.
    pub fn store(&self) -> netabase::store::Store {
        let disk = self.clone();
        netabase::store::Store::builder()
            .with_reopenable_backend(move || disk.clone())
            .unwrap()
    }
}
