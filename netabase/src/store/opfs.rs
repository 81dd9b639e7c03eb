//! Durable storage in a browser: redb on a file of the origin private file
//! system (OPFS), through its synchronous access handle.
//!
//! That handle exists only in a dedicated Web Worker, and is an exclusive
//! lock on the file: a second tab (or worker) opening the same storage gets
//! [`StoreError::AlreadyOpen`] until the first closes it.

use std::io;

use send_wrapper::SendWrapper;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    FileSystemDirectoryHandle, FileSystemFileHandle, FileSystemGetDirectoryOptions,
    FileSystemGetFileOptions, FileSystemReadWriteOptions, FileSystemSyncAccessHandle,
};

use super::StoreError;

/// One OPFS file, open for synchronous reads and writes. Only usable on the
/// worker thread that opened it (a worker has one).
#[derive(Debug)]
pub struct OpfsFile {
    handle: SendWrapper<FileSystemSyncAccessHandle>,
}

impl OpfsFile {
    /// Opens (creating it and its directory if needed) `file` in the OPFS
    /// directory `dir`. Only in a dedicated Web Worker.
    ///
    /// # Errors
    ///
    /// [`StoreError::AlreadyOpen`] if another tab or worker holds the file;
    /// [`StoreError::Browser`] if the browser has no OPFS here (the main
    /// thread, a private window that refuses it) or refuses the file.
    pub async fn open(dir: &str, file: &str) -> Result<OpfsFile, StoreError> {
        let failed = |op: &'static str| move |error: JsValue| browser_error(op, &error);
        let scope: web_sys::WorkerGlobalScope = js_sys::global().dyn_into().map_err(|_| {
            StoreError::Browser {
                op: "find the worker",
                detail: "browser storage needs a dedicated Web Worker (the main thread has no OPFS synchronous access)".into(),
            }
        })?;
        let root: FileSystemDirectoryHandle =
            JsFuture::from(scope.navigator().storage().get_directory())
                .await
                .map_err(failed("open the origin private file system"))?
                .unchecked_into();
        let dir_options = FileSystemGetDirectoryOptions::new();
        dir_options.set_create(true);
        let dir: FileSystemDirectoryHandle =
            JsFuture::from(root.get_directory_handle_with_options(dir, &dir_options))
                .await
                .map_err(failed("open the storage directory"))?
                .unchecked_into();
        let file_options = FileSystemGetFileOptions::new();
        file_options.set_create(true);
        let file: FileSystemFileHandle =
            JsFuture::from(dir.get_file_handle_with_options(file, &file_options))
                .await
                .map_err(failed("open the storage file"))?
                .unchecked_into();
        let handle: FileSystemSyncAccessHandle = JsFuture::from(file.create_sync_access_handle())
            .await
            .map_err(|error| {
                if error_name(&error).as_deref() == Some("NoModificationAllowedError") {
                    StoreError::AlreadyOpen
                } else {
                    browser_error("lock the storage file", &error)
                }
            })?
            .unchecked_into();
        Ok(OpfsFile {
            handle: SendWrapper::new(handle),
        })
    }

    /// The file's whole contents.
    pub fn read_all(&self) -> io::Result<Vec<u8>> {
        let len = self.len()?;
        let mut bytes = vec![0; len as usize];
        self.read_at(0, &mut bytes)?;
        Ok(bytes)
    }

    /// Replaces the file's contents with `bytes` and flushes them.
    pub fn replace(&self, bytes: &[u8]) -> io::Result<()> {
        self.handle.truncate_with_f64(0.0).map_err(io_error)?;
        self.write_at(0, bytes)?;
        self.handle.flush().map_err(io_error)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.handle.get_size().map_err(io_error)? as u64)
    }

    fn read_at(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let options = FileSystemReadWriteOptions::new();
        options.set_at(offset as f64);
        let read = self
            .handle
            .read_with_u8_array_and_options(out, &options)
            .map_err(io_error)? as usize;
        if read == out.len() {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("read {read} of {} bytes at {offset}", out.len()),
            ))
        }
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let options = FileSystemReadWriteOptions::new();
        options.set_at(offset as f64);
        let written = self
            .handle
            .write_with_u8_array_and_options(data, &options)
            .map_err(io_error)? as usize;
        if written == data.len() {
            Ok(())
        } else {
            // OPFS writes all or throws; a short write is a full quota.
            Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!("wrote {written} of {} bytes at {offset}", data.len()),
            ))
        }
    }

    /// Releases the file's lock; later calls fail.
    pub fn close(&self) {
        self.handle.close();
    }
}

impl redb::StorageBackend for OpfsFile {
    fn len(&self) -> io::Result<u64> {
        OpfsFile::len(self)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.read_at(offset, out)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        // OPFS fills a file grown by truncate with zeros, as redb requires.
        self.handle.truncate_with_f64(len as f64).map_err(io_error)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.handle.flush().map_err(io_error)
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.write_at(offset, data)
    }

    fn close(&self) -> io::Result<()> {
        OpfsFile::close(self);
        Ok(())
    }
}

/// A DOMException's name (`QuotaExceededError`, ..).
fn error_name(error: &JsValue) -> Option<String> {
    js_sys::Reflect::get(error, &JsValue::from_str("name"))
        .ok()
        .and_then(|name| name.as_string())
}

fn describe(error: &JsValue) -> String {
    match error.dyn_ref::<js_sys::Error>() {
        Some(error) => format!(
            "{}: {}",
            String::from(error.name()),
            String::from(error.message())
        ),
        None => format!("{error:?}"),
    }
}

fn browser_error(op: &'static str, error: &JsValue) -> StoreError {
    StoreError::Browser {
        op,
        detail: describe(error),
    }
}

fn io_error(error: JsValue) -> io::Error {
    let kind = match error_name(&error).as_deref() {
        Some("QuotaExceededError") => io::ErrorKind::StorageFull,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, describe(&error))
}
