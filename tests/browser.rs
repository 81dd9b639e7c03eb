//! The browser node, in a real browser: headless Chromium runs these in a
//! dedicated Web Worker (`wasm-bindgen-test-runner`), against a native node
//! that `tests/browser/run` starts (`tests/browser/peer.rs`) and whose
//! addresses it builds in. Run them with `tests/browser/run`.
//!
//! The tests run one after another in one worker and share the native node;
//! each uses its own keys and list names.
#![cfg(target_arch = "wasm32")]
// Built without the script too (clippy, `cargo test --workspace --target
// wasm32-unknown-unknown`), saying at run time what is missing.
#![allow(clippy::option_env_unwrap)]

use std::time::Duration;

use netabase::node::{Netabase, NetabaseConfig, Origin, Rejection};
use netabase::store::Lookup;
use netabase::StoreError;
use netabase_workspace::models::{Item, ItemKey, ItemQueries};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_dedicated_worker);

#[path = "browser/panics.rs"]
mod panics;
#[path = "browser/probe.rs"]
mod probe;
use probe::Probe;

/// How long a wait in these tests may take before it fails.
const WAIT: Duration = Duration::from_secs(20);

fn native_node() -> netabase::node::Multiaddr {
    option_env!("NETABASE_BROWSER_NODE")
        .expect("built by tests/browser/run, which sets NETABASE_BROWSER_NODE")
        .parse()
        .unwrap()
}

fn relay() -> netabase::node::Multiaddr {
    option_env!("NETABASE_BROWSER_RELAY")
        .expect("built by tests/browser/run, which sets NETABASE_BROWSER_RELAY")
        .parse()
        .unwrap()
}

fn hostile_peer() -> netabase::node::Multiaddr {
    option_env!("NETABASE_BROWSER_HOSTILE")
        .expect("built by tests/browser/run, which sets NETABASE_BROWSER_HOSTILE")
        .parse()
        .unwrap()
}

/// Calls the native side's control API: (status, body).
async fn control(call: &str) -> (u16, String) {
    let base = option_env!("NETABASE_BROWSER_CONTROL")
        .expect("built by tests/browser/run, which sets NETABASE_BROWSER_CONTROL");
    let scope: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
    let response: web_sys::Response =
        JsFuture::from(scope.fetch_with_str(&format!("{base}{call}")))
            .await
            .expect("the control API answers")
            .unchecked_into();
    let body = JsFuture::from(response.text().unwrap()).await.unwrap();
    (response.status(), body.as_string().unwrap())
}

fn config() -> NetabaseConfig {
    NetabaseConfig {
        query_timeout: Duration::from_secs(10),
        // The tests start each catch-up they wait for.
        catch_up_interval: None,
        ..NetabaseConfig::default()
    }
}

/// A browser node in memory, started and connected to the native node.
async fn connected(config: NetabaseConfig) -> Netabase {
    let node = Netabase::new_in_memory(config).unwrap();
    node.register::<Item>().unwrap();
    node.start_swarm().await.unwrap();
    node.dial(native_node()).await.unwrap();
    node
}

/// Re-checks `done` every 20 ms until it holds, failing after [`WAIT`].
async fn wait_until<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = web_time::Instant::now();
    while !done().await {
        assert!(start.elapsed() < WAIT, "timed out waiting until {what}");
        futures_timer::Delay::new(Duration::from_millis(20)).await;
    }
}

fn item(id: u64, list: &str, text: &str) -> Item {
    Item {
        id,
        list: list.into(),
        text: text.into(),
    }
}

#[wasm_bindgen_test]
async fn a_browser_put_arrives_at_the_native_node_typed_and_indexed() {
    let _panics = panics::watch();
    let node = connected(config()).await;
    let published = node
        .put_record(item(1001, "from-browser", "hello from a tab"))
        .await
        .unwrap();
    // The native node acknowledged it: Kademlia's put reached a server.
    assert!(published.replicated);
    wait_until("the native node holds it", || async {
        control("/get?id=1001").await == (200, "from-browser|hello from a tab".into())
    })
    .await;
    assert_eq!(control("/count?list=from-browser").await, (200, "1".into()));
    node.shutdown().await.unwrap();
}

#[wasm_bindgen_test]
async fn a_native_put_reaches_the_browser_as_an_event_and_by_secondary_key() {
    let _panics = panics::watch();
    let node = connected(config()).await;
    let native = node.dial(native_node()).await.unwrap();
    let mut changes = node.watch::<Item>().unwrap();
    assert_eq!(
        control("/put?id=2001&list=from-native&text=hi+tab").await.0,
        200
    );
    // A browser is a Kademlia client: pushes do not reach it, catch-up does.
    node.catch_up().await.unwrap();
    let change = loop {
        let change = netabase_timeout(changes.next()).await.unwrap();
        if change.key == ItemKey(2001) {
            break change;
        }
    };
    assert_eq!(change.origin, Origin::Peer(native));
    assert_eq!(
        change.record.as_deref(),
        Some(&item(2001, "from-native", "hi tab"))
    );
    let found = node
        .query_local_records::<Item, _, _>(|tree| tree.by_list("from-native"))
        .await
        .unwrap();
    assert_eq!(found, vec![item(2001, "from-native", "hi tab")]);
    node.shutdown().await.unwrap();
}

#[wasm_bindgen_test]
async fn get_record_fetches_a_record_only_the_native_node_holds() {
    let _panics = panics::watch();
    // No catch-up: the record can only come from the fetch.
    let node = connected(NetabaseConfig {
        catch_up: false,
        ..config()
    })
    .await;
    assert_eq!(control("/seed?from=3001&count=1&list=fetched").await.0, 200);
    assert!(node
        .store()
        .tree::<Item>()
        .get(&ItemKey(3001))
        .unwrap()
        .is_none());
    let fetched = node.get_record::<Item>(ItemKey(3001)).await.unwrap();
    assert_eq!(fetched, item(3001, "fetched", "seeded 3001"));
    node.shutdown().await.unwrap();
}

#[wasm_bindgen_test]
async fn a_browser_back_online_converges_with_what_the_native_node_did_meanwhile() {
    let _panics = panics::watch();
    let node = connected(config()).await;
    assert_eq!(
        control("/put?id=4000&list=offline&text=kept+until+deleted")
            .await
            .0,
        200
    );
    node.catch_up().await.unwrap();
    wait_until("the browser holds 4000", || async {
        node.store()
            .tree::<Item>()
            .get(&ItemKey(4000))
            .unwrap()
            .is_some()
    })
    .await;
    node.stop_swarm().await.unwrap();
    // Offline: the native node writes and deletes, the browser writes.
    for call in [
        "/put?id=4001&list=offline&text=written+meanwhile",
        "/put?id=4002&list=offline&text=also+meanwhile",
        "/delete?id=4000",
    ] {
        assert_eq!(control(call).await.0, 200, "{call}");
    }
    node.put_record_locally(item(4003, "offline", "written offline in the tab"))
        .await
        .unwrap();
    node.start_swarm().await.unwrap();
    node.dial(native_node()).await.unwrap();
    wait_until("both ends hold the same records", || async {
        let _ = netabase_timeout(node.catch_up_and_wait()).await;
        control("/fingerprint").await.1 == format!("{:?}", node.sync_fingerprint().unwrap())
    })
    .await;
    let tree = node.store().tree::<Item>();
    assert!(
        tree.get(&ItemKey(4000)).unwrap().is_none(),
        "the delete reached the browser"
    );
    assert!(tree.get(&ItemKey(4001)).unwrap().is_some());
    assert_eq!(
        control("/get?id=4003").await.0,
        200,
        "the offline write reached the native node"
    );
    node.shutdown().await.unwrap();
}

#[wasm_bindgen_test]
async fn records_and_the_peer_id_survive_a_reload() {
    let _panics = panics::watch();
    // A name of its own: OPFS keeps what earlier runs left.
    let name = format!("reload-{}", js_sys::Date::now() as u64);
    let node = Netabase::open_in_browser(&name, config()).await.unwrap();
    node.register::<Item>().unwrap();
    let peer_id = node.peer_id();
    for id in 5001..5004 {
        node.put_record_locally(item(id, "reload", "kept in OPFS"))
            .await
            .unwrap();
    }
    // A second tab on the same storage is refused while this one holds it.
    match Netabase::open_in_browser(&name, config()).await {
        Err(netabase::node::NodeError::Store(StoreError::AlreadyOpen)) => {}
        other => panic!("expected AlreadyOpen, got {other:?}"),
    }
    node.shutdown().await.unwrap();

    let reopened = Netabase::open_in_browser(&name, config()).await.unwrap();
    reopened.register::<Item>().unwrap();
    assert_eq!(reopened.peer_id(), peer_id);
    let found = reopened
        .query_local_records::<Item, _, _>(|tree| tree.by_list("reload"))
        .await
        .unwrap();
    assert_eq!(found.len(), 3);
    assert_eq!(
        reopened.get_record::<Item>(ItemKey(5002)).await.unwrap(),
        item(5002, "reload", "kept in OPFS")
    );
    reopened.shutdown().await.unwrap();
}

#[wasm_bindgen_test]
async fn a_record_with_a_bad_signature_is_refused_in_the_browser() {
    let _panics = panics::watch();
    let node = Netabase::new_in_memory(config()).unwrap();
    node.register::<Item>().unwrap();
    node.start_swarm().await.unwrap();
    node.dial(hostile_peer()).await.unwrap();
    // The hostile peer holds a copy of item 666 with a broken signature.
    match node.get_record::<Item>(ItemKey(666)).await {
        Err(netabase::node::NodeError::NotFound) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(node.stats().rejected(Rejection::BadSignature) >= 1);
    assert!(node
        .store()
        .tree::<Item>()
        .get(&ItemKey(666))
        .unwrap()
        .is_none());
    node.shutdown().await.unwrap();
}

#[wasm_bindgen_test]
async fn the_worker_keeps_serving_while_it_catches_up() {
    const RECORDS: u64 = 3_000;
    /// How long the page may wait for the worker: the bound on a frozen
    /// worker (a fetched batch is about 5-10 ms of work).
    const LONGEST_MS: f64 = 50.0;
    let _panics = panics::watch();
    assert_eq!(
        control(&format!("/seed?from=20000&count={RECORDS}&list=busy"))
            .await
            .0,
        200
    );
    let name = format!("busy-{}", js_sys::Date::now() as u64);
    let node = Netabase::open_in_browser(&name, config()).await.unwrap();
    node.register::<Item>().unwrap();
    let probe = Probe::start(&node);
    node.start_swarm().await.unwrap();
    node.dial(native_node()).await.unwrap();
    wait_until("the records arrived", || async {
        node.query_local_records::<Item, _, _>(|tree| tree.by_list("busy"))
            .await
            .unwrap()
            .len() as u64
            == RECORDS
    })
    .await;
    let waits = probe.stop().await;
    assert!(waits.rounds > 10, "probed {} times", waits.rounds);
    assert!(
        waits.message < LONGEST_MS,
        "a message waited {:.1} ms",
        waits.message
    );
    assert!(
        waits.read < LONGEST_MS,
        "a local read took {:.1} ms",
        waits.read
    );
    node.shutdown().await.unwrap();
}

/// Two tabs that can reach only a relay: one holds a slot there, the other
/// dials it through the relay and catches up with it. The relay holds no
/// records, so what the second tab gets came from the first, over WebSocket
/// to the relay and a circuit through it.
#[wasm_bindgen_test]
async fn two_tabs_reach_each_other_through_a_relay_and_sync() {
    use netabase::node::{Event, Protocol};
    let _panics = panics::watch();
    let relay = relay();
    let a = Netabase::new_in_memory(NetabaseConfig {
        relays: vec![relay.clone()],
        ..config()
    })
    .unwrap();
    a.register::<Item>().unwrap();
    let mut a_events = a.subscribe_to_broadcasts();
    a.start_swarm().await.unwrap();
    netabase_timeout(async {
        loop {
            if let Ok(Event::RelayReserved { .. }) = a_events.recv().await {
                break;
            }
        }
    })
    .await;
    a.put_records_locally(
        (0..RELAYED_RECORDS)
            .map(|id| item(9000 + id, "relayed", "through the relay"))
            .collect(),
    )
    .await
    .unwrap();
    let b = Netabase::new_in_memory(config()).unwrap();
    b.register::<Item>().unwrap();
    let mut b_events = b.subscribe_to_broadcasts();
    b.start_swarm().await.unwrap();
    let circuit = relay
        .with(Protocol::P2pCircuit)
        .with(Protocol::P2p(a.peer_id()));
    let started = web_time::Instant::now();
    assert_eq!(b.dial(circuit).await.unwrap(), a.peer_id());
    let target = a.peer_id();
    netabase_timeout(async {
        loop {
            match b_events.recv().await {
                Ok(Event::ConnectionOpened { peer, relayed }) if peer == target => {
                    assert!(relayed, "a tab reaches another only through the relay");
                    break;
                }
                _ => {}
            }
        }
    })
    .await;
    let connected = started.elapsed();
    let outcomes = netabase_timeout(b.catch_up_and_wait()).await.unwrap();
    assert!(
        outcomes.iter().any(|(peer, _)| *peer == target),
        "{outcomes:?}"
    );
    let held = b
        .query_local_records::<Item, _, _>(|tree| tree.by_list("relayed"))
        .await
        .unwrap();
    assert_eq!(held.len() as u64, RELAYED_RECORDS);
    web_sys::console::log_1(
        &format!(
            "relayed tabs: connected in {connected:?}, {RELAYED_RECORDS} records caught up in {:?}",
            started.elapsed() - connected
        )
        .into(),
    );
    b.shutdown().await.unwrap();
    a.shutdown().await.unwrap();
}

/// Records the relayed tab writes for the other to catch up on.
const RELAYED_RECORDS: u64 = 500;

async fn netabase_timeout<T>(future: impl std::future::Future<Output = T>) -> T {
    let future = std::pin::pin!(future);
    match futures::future::select(future, futures_timer::Delay::new(WAIT)).await {
        futures::future::Either::Left((output, _)) => output,
        futures::future::Either::Right(_) => panic!("timed out after {WAIT:?}"),
    }
}
