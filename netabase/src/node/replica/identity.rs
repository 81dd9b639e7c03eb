//! The node's identity key, kept in its data directory so its peer id
//! survives restarts.

#[cfg(not(target_arch = "wasm32"))]
use std::io::Write;
#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;

use libp2p_identity::Keypair;

use crate::node::NodeError;

/// Reads the keypair at `path`, or creates one there (readable by the owner
/// only) if the file does not exist.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn load_or_create(path: &Path) -> Result<Keypair, NodeError> {
    let io = |source| NodeError::Io {
        path: path.to_owned(),
        source,
    };
    match std::fs::read(path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes).map_err(|_| NodeError::BadIdentity {
            path: path.to_owned(),
        }),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let keypair = Keypair::generate_ed25519();
            let bytes = keypair
                .to_protobuf_encoding()
                .map_err(|_| NodeError::BadIdentity {
                    path: path.to_owned(),
                })?;
            // Write to a temporary file and rename, so a crash never leaves a
            // half-written key behind.
            let tmp = path.with_extension("tmp");
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(&tmp).map_err(io)?;
            file.write_all(&bytes).map_err(io)?;
            file.sync_all().map_err(io)?;
            std::fs::rename(&tmp, path).map_err(io)?;
            // The rename itself is durable only once the directory is synced.
            #[cfg(unix)]
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io)?;
            }
            tracing::info!(path = %path.display(), peer_id = %keypair.public().to_peer_id(), "created a node identity");
            Ok(keypair)
        }
        Err(error) => Err(io(error)),
    }
}

/// Reads the keypair kept in the browser storage `name`, or creates one
/// there: a worker has no `localStorage`, so it sits beside the database.
#[cfg(target_arch = "wasm32")]
pub(crate) async fn load_or_create_in_browser(
    name: &str,
    file: &str,
) -> Result<Keypair, NodeError> {
    let place = || std::path::PathBuf::from(format!("opfs:{name}/{file}"));
    let io = |source| NodeError::Io {
        path: place(),
        source,
    };
    let handle = crate::store::OpfsFile::open(name, file).await?;
    let result = (|| {
        let bytes = handle.read_all().map_err(io)?;
        if !bytes.is_empty() {
            return Keypair::from_protobuf_encoding(&bytes)
                .map_err(|_| NodeError::BadIdentity { path: place() });
        }
        let keypair = Keypair::generate_ed25519();
        let bytes = keypair
            .to_protobuf_encoding()
            .map_err(|_| NodeError::BadIdentity { path: place() })?;
        // One write of a few dozen bytes: OPFS writes it whole or throws.
        handle.replace(&bytes).map_err(io)?;
        tracing::info!(storage = name, peer_id = %keypair.public().to_peer_id(), "created a node identity");
        Ok(keypair)
    })();
    handle.close();
    result
}

/// The identity key's file name inside a node's data directory.
pub(crate) const IDENTITY_FILE: &str = "identity.key";

/// Creates a node's data directory if needed; loads (or creates) its identity.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn open_dir(dir: &Path) -> Result<Keypair, NodeError> {
    std::fs::create_dir_all(dir).map_err(|source| NodeError::Io {
        path: dir.to_owned(),
        source,
    })?;
    load_or_create(&dir.join(IDENTITY_FILE))
}
