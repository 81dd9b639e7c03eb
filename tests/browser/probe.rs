//! What a page would wait for while the worker's node is busy: a message
//! posted to the worker (as a page's `postMessage` is, through a
//! `MessageChannel`: the same task source) and a local read through the
//! node's API. Shared by `tests/browser.rs` and `tests/browser_measure.rs`.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use netabase::node::Netabase;
use netabase::store::Lookup;
use netabase_workspace::models::{Item, ItemKey};
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;
use web_time::Instant;

/// The longest waits seen, in ms, until [`Probe::stop`].
#[derive(Default)]
pub struct Probe {
    stopped: Cell<bool>,
    /// The longest a posted message waited to be delivered.
    pub message: Cell<f64>,
    /// The longest a local read took.
    pub read: Cell<f64>,
    /// Messages delivered.
    pub rounds: Cell<u32>,
}

impl Probe {
    /// Starts probing the worker while `node` works.
    pub fn start(node: &Netabase) -> Rc<Probe> {
        let probe = Rc::new(Probe::default());
        let node = node.clone();
        let running = probe.clone();
        wasm_bindgen_futures::spawn_local(async move {
            while !running.stopped.get() {
                let waited = delivered().await;
                running.message.set(running.message.get().max(waited));
                running.rounds.set(running.rounds.get() + 1);
                let asked = Instant::now();
                node.query_local_records::<Item, _, _>(|tree| tree.get(&ItemKey(0)))
                    .await
                    .unwrap();
                let read = asked.elapsed().as_secs_f64() * 1e3;
                running.read.set(running.read.get().max(read));
                futures_timer::Delay::new(Duration::from_millis(2)).await;
            }
        });
        probe
    }

    /// Stops probing.
    pub fn stop(&self) {
        self.stopped.set(true);
    }
}

/// Posts a message to this worker and waits for it: the delay in ms.
async fn delivered() -> f64 {
    let channel = web_sys::MessageChannel::new().unwrap();
    let posted = Instant::now();
    let arrived = js_sys::Promise::new(&mut |resolve, _| {
        channel.port1().set_onmessage(Some(&resolve));
        channel.port2().post_message(&JsValue::NULL).unwrap();
    });
    JsFuture::from(arrived).await.unwrap();
    channel.port1().set_onmessage(None);
    posted.elapsed().as_secs_f64() * 1e3
}
