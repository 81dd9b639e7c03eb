//! What a page would wait for while the worker's node is busy: a message
//! posted to the worker (as a page's `postMessage` is, through a
//! `MessageChannel`: the same task source) and a local read through the
//! node's API. Shared by `tests/browser.rs` and `tests/browser_measure.rs`.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use futures::channel::oneshot;
use netabase::node::Netabase;
use netabase::store::Lookup;
use netabase_workspace::models::{Item, ItemKey};
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;
use web_time::Instant;

/// The longest waits seen, in ms, while the probe ran.
#[derive(Clone, Copy, Debug, Default)]
pub struct Waits {
    /// The longest a posted message waited to be delivered.
    pub message: f64,
    /// The longest a local read took.
    pub read: f64,
    /// Messages delivered.
    pub rounds: u32,
}

/// A task probing the worker, until [`Probe::stop`].
pub struct Probe {
    stopped: Rc<Cell<bool>>,
    done: oneshot::Receiver<Result<Waits, String>>,
}

impl Probe {
    /// Starts probing the worker while `node` works.
    pub fn start(node: &Netabase) -> Probe {
        let stopped = Rc::new(Cell::new(false));
        let (done, finished) = oneshot::channel();
        let node = node.clone();
        let stop = stopped.clone();
        wasm_bindgen_futures::spawn_local(async move {
            let mut waits = Waits::default();
            // A failure goes to `stop`'s caller: a panic here, outside any
            // test, would abort the task and fail no test.
            let result = loop {
                if stop.get() {
                    break Ok(waits);
                }
                let waited = match delivered().await {
                    Ok(waited) => waited,
                    Err(error) => break Err(format!("posting a message: {error:?}")),
                };
                waits.message = waits.message.max(waited);
                waits.rounds += 1;
                let asked = Instant::now();
                if let Err(error) = node
                    .query_local_records::<Item, _, _>(|tree| tree.get(&ItemKey(0)))
                    .await
                {
                    break Err(format!("a local read: {error}"));
                }
                waits.read = waits.read.max(asked.elapsed().as_secs_f64() * 1e3);
                futures_timer::Delay::new(Duration::from_millis(2)).await;
            };
            let _ = done.send(result);
        });
        Probe {
            stopped,
            done: finished,
        }
    }

    /// Stops probing and waits for the probe's task to end: a round under
    /// way still reads through the node, so the caller may shut the node
    /// down only after this returns.
    pub async fn stop(self) -> Waits {
        self.stopped.set(true);
        match self.done.await {
            Ok(Ok(waits)) => waits,
            Ok(Err(error)) => panic!("the probe failed: {error}"),
            Err(_) => panic!("the probe's task ended without its figures"),
        }
    }
}

/// Posts a message to this worker and waits for it: the delay in ms.
async fn delivered() -> Result<f64, JsValue> {
    let channel = web_sys::MessageChannel::new()?;
    let posted = Instant::now();
    let mut sent = Ok(());
    let arrived = js_sys::Promise::new(&mut |resolve, _| {
        channel.port1().set_onmessage(Some(&resolve));
        sent = channel.port2().post_message(&JsValue::NULL);
    });
    sent?;
    JsFuture::from(arrived).await?;
    channel.port1().set_onmessage(None);
    Ok(posted.elapsed().as_secs_f64() * 1e3)
}
