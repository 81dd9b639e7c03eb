//! The browser side of `cargo run --example browser`: a Netabase node in a
//! dedicated Web Worker (`worker.js` loads this module), holding a shared
//! list of `Item`s in the browser's storage and syncing it with the native
//! node. The page talks to the worker with messages; see `index.html`.
#![cfg(target_arch = "wasm32")]

use std::time::Duration;

use netabase::node::{Netabase, NetabaseConfig, NodeError};
use netabase::StoreError;
use netabase_workspace::models::{Item, ItemKey, ItemQueries};
use wasm_bindgen::prelude::*;

/// The list every tab shows.
const LIST: &str = "shared";
/// Tabs that can each have their own storage at once.
const MAX_TABS: u32 = 8;

/// A running node, for `worker.js`.
#[wasm_bindgen]
pub struct App {
    node: Netabase,
}

/// Opens this tab's node (the first free storage of `netabase-app-0..7`:
/// each tab is a peer of its own, since one storage is one tab's at a
/// time), dials the native node at `native`, and calls `on_change` with
/// the list after every change, local or synced.
#[wasm_bindgen]
pub async fn start(native: String, on_change: js_sys::Function) -> Result<App, JsError> {
    let config = NetabaseConfig {
        // Other tabs' writes reach this one through the native node's
        // catch-up: often, since a list on screen should look live.
        catch_up_interval: Some(Duration::from_secs(2)),
        ..NetabaseConfig::default()
    };
    let mut opened = None;
    for tab in 0..MAX_TABS {
        match Netabase::open_in_browser(&format!("netabase-app-{tab}"), config.clone()).await {
            Ok(node) => {
                opened = Some(node);
                break;
            }
            Err(NodeError::Store(StoreError::AlreadyOpen)) => continue,
            Err(error) => return Err(JsError::new(&format!("could not open the node: {error}"))),
        }
    }
    let node = opened.ok_or_else(|| JsError::new("every tab storage is in use: close a tab"))?;
    node.register::<Item>().map_err(js)?;
    let mut changes = node.watch::<Item>().map_err(js)?;
    node.start_swarm().await.map_err(js)?;
    let app = App { node };
    let lister = app.node.clone();
    wasm_bindgen_futures::spawn_local(async move {
        let _ = on_change.call1(&JsValue::NULL, &list(&lister).await);
        // A missed change (a burst) re-reads the list all the same.
        while !matches!(
            changes.next().await,
            Err(netabase::store::WatchError::Closed)
        ) {
            let _ = on_change.call1(&JsValue::NULL, &list(&lister).await);
        }
    });
    // Dialled in the background, and again by catch-up's redial if it drops.
    let dialler = app.node.clone();
    wasm_bindgen_futures::spawn_local(async move {
        match native.parse() {
            Ok(address) => {
                if let Err(error) = dialler.dial(address).await {
                    web_sys::console::warn_1(
                        &format!("could not reach the native node: {error}").into(),
                    );
                }
            }
            Err(error) => web_sys::console::error_1(&format!("bad native address: {error}").into()),
        }
    });
    Ok(app)
}

#[wasm_bindgen]
impl App {
    /// This tab's peer id.
    pub fn peer_id(&self) -> String {
        self.node.peer_id().to_string()
    }

    /// Adds an item to the shared list.
    pub async fn add(&self, text: String) -> Result<(), JsError> {
        let id = (js_sys::Math::random() * 9e15) as u64;
        let item = Item {
            id,
            list: LIST.into(),
            text,
        };
        // Committed here, then published to the native node if it is
        // connected; if not, catch-up brings it there on reconnect.
        self.node.put_record(item).await.map_err(js)?;
        Ok(())
    }

    /// Deletes an item.
    pub async fn remove(&self, id: String) -> Result<(), JsError> {
        let id: u64 = id.parse().map_err(|_| JsError::new("not an item id"))?;
        self.node
            .remove_record::<Item>(ItemKey(id))
            .await
            .map_err(js)?;
        Ok(())
    }
}

/// The list as `[{id, text}]`, oldest id first.
async fn list(node: &Netabase) -> JsValue {
    let items = node
        .query_local_records::<Item, _, _>(|tree| tree.by_list(LIST))
        .await
        .unwrap_or_default();
    let out = js_sys::Array::new();
    for item in items {
        let entry = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&entry, &"id".into(), &item.id.to_string().into());
        let _ = js_sys::Reflect::set(&entry, &"text".into(), &item.text.into());
        out.push(&entry);
    }
    out.into()
}

fn js(error: NodeError) -> JsError {
    JsError::new(&error.to_string())
}
