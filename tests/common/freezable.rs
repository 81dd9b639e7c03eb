//! A node on a runtime of its own (one thread), which a test or bench can
//! block and let go: frozen, its connections stay open and nothing is
//! answered, as with a suspended laptop or phone app. Shared by
//! `tests/frozen_peer.rs` and `benches/frozen.rs` (included by path).

use std::future::Future;
use std::time::Duration;

use netabase::node::Netabase;

/// How long the runtime may take to take the freeze.
const FREEZE_WAIT: Duration = Duration::from_secs(60);

pub struct Freezable {
    pub node: Netabase,
    pub runtime: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Freezable {
    /// Runs `start` (which opens and starts the node) on a new one-thread
    /// runtime, and keeps the node it returns there.
    pub async fn start<F>(start: F) -> Self
    where
        F: Future<Output = Netabase> + Send + 'static,
    {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let _ = runtime.block_on(stopped);
        });
        let node = handle.spawn(start).await.expect("the node starts");
        Freezable {
            node,
            runtime: handle,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Blocks the node's only runtime thread until the returned sender is
    /// used (or dropped).
    pub fn freeze(&self) -> std::sync::mpsc::Sender<()> {
        let (thaw, frozen) = std::sync::mpsc::channel::<()>();
        let (entered, blocked) = std::sync::mpsc::channel::<()>();
        self.runtime.spawn(async move {
            let _ = entered.send(());
            // Blocking the runtime's thread on purpose: the node is frozen.
            let _ = frozen.recv();
        });
        blocked
            .recv_timeout(FREEZE_WAIT)
            .expect("the frozen node's runtime took the freeze");
        thaw
    }

    /// Shuts the node down on its runtime, then ends that runtime.
    pub async fn stop(mut self) {
        let node = self.node.clone();
        self.runtime
            .spawn(async move { node.shutdown().await.expect("shut down") })
            .await
            .expect("the shutdown task");
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the runtime's thread");
        }
    }
}
