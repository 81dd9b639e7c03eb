//! What the browser node costs, measured in headless Chromium against the
//! native node `tests/browser/run --measure` starts (release builds of
//! both). Prints the figures the guide's browser chapter reports; asserts only that each
//! operation did what it says.
#![cfg(target_arch = "wasm32")]
// Built without the script too (clippy, `cargo test --workspace --target
// wasm32-unknown-unknown`), saying at run time what is missing.
#![allow(clippy::option_env_unwrap)]

use std::time::Duration;

use netabase::node::{Event, Netabase, NetabaseConfig};
use netabase::store::Lookup;
use netabase_workspace::models::{Item, ItemKey};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::{console_log, wasm_bindgen_test, wasm_bindgen_test_configure};
use web_time::Instant;

wasm_bindgen_test_configure!(run_in_dedicated_worker);

#[path = "browser/panics.rs"]
mod panics;
#[path = "browser/probe.rs"]
mod probe;
use probe::Probe;

/// Records the catch-up figure is measured on.
const CATCH_UP_RECORDS: u64 = 10_000;
/// Samples of each latency.
const SAMPLES: usize = 50;

fn native_node() -> netabase::node::Multiaddr {
    option_env!("NETABASE_BROWSER_NODE")
        .expect("built by tests/browser/run --measure, which sets NETABASE_BROWSER_NODE")
        .parse()
        .unwrap()
}

async fn control(call: &str) -> (u16, String) {
    let base = option_env!("NETABASE_BROWSER_CONTROL")
        .expect("built by tests/browser/run --measure, which sets NETABASE_BROWSER_CONTROL");
    let scope: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
    let response: web_sys::Response =
        JsFuture::from(scope.fetch_with_str(&format!("{base}{call}")))
            .await
            .unwrap()
            .unchecked_into();
    let body = JsFuture::from(response.text().unwrap()).await.unwrap();
    (response.status(), body.as_string().unwrap())
}

fn config() -> NetabaseConfig {
    NetabaseConfig {
        catch_up_interval: None,
        ..NetabaseConfig::default()
    }
}

/// Median and the spread between the fastest and slowest sample, in ms.
fn summary(mut samples: Vec<f64>) -> String {
    samples.sort_by(|a, b| a.total_cmp(b));
    let median = samples[samples.len() / 2];
    format!(
        "median {median:.2} ms (min {:.2}, max {:.2}, {} samples)",
        samples[0],
        samples[samples.len() - 1],
        samples.len()
    )
}

#[wasm_bindgen_test]
async fn measure_the_browser_node() {
    let _panics = panics::watch();
    // Latencies, on a node connected to the native one.
    let node = Netabase::new_in_memory(config()).unwrap();
    node.register::<Item>().unwrap();
    let start = Instant::now();
    node.start_swarm().await.unwrap();
    node.dial(native_node()).await.unwrap();
    console_log!(
        "MEASURE connect: {:.1} ms",
        start.elapsed().as_secs_f64() * 1e3
    );

    let mut puts = Vec::new();
    for i in 0..SAMPLES as u64 {
        let item = Item {
            id: 900_000 + i,
            list: "measured".into(),
            text: "a measured put".into(),
        };
        let start = Instant::now();
        let published = node.put_record(item).await.unwrap();
        puts.push(start.elapsed().as_secs_f64() * 1e3);
        assert!(published.replicated, "the native node acknowledged it");
    }
    console_log!(
        "MEASURE put_record (browser to the native node's ack, in memory): {}",
        summary(puts)
    );

    // Records only the native node holds, fetched once each.
    assert_eq!(
        control(&format!("/seed?from=800000&count={SAMPLES}&list=fetched"))
            .await
            .0,
        200
    );
    let mut gets = Vec::new();
    for i in 0..SAMPLES as u64 {
        let start = Instant::now();
        node.get_record::<Item>(ItemKey(800_000 + i)).await.unwrap();
        gets.push(start.elapsed().as_secs_f64() * 1e3);
    }
    console_log!(
        "MEASURE get_record (remote, from the native node): {}",
        summary(gets)
    );
    node.shutdown().await.unwrap();

    // Catch-up of 10,000 records to a fresh browser node in OPFS.
    let (status, _) = control(&format!(
        "/seed?from=1000000&count={CATCH_UP_RECORDS}&list=bulk"
    ))
    .await;
    assert_eq!(status, 200);
    let name = format!("measure-{}", js_sys::Date::now() as u64);
    let fresh = Netabase::open_in_browser(&name, config()).await.unwrap();
    fresh.register::<Item>().unwrap();
    let mut events = fresh.subscribe_to_broadcasts();
    // What a page would wait for meanwhile.
    let probe = Probe::start(&fresh);
    let start = Instant::now();
    fresh.start_swarm().await.unwrap();
    let native = fresh.dial(native_node()).await.unwrap();
    let mut received = 0;
    let deadline = Duration::from_secs(120);
    while start.elapsed() < deadline {
        match events.recv().await {
            Ok(Event::CaughtUp {
                peer,
                received: got,
                ..
            }) if peer == native => {
                received += got;
                break;
            }
            Ok(Event::CatchUpFailed { peer, reason }) if peer == native => {
                panic!("catch-up failed: {reason:?}")
            }
            _ => {}
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let held = fresh.store().tree::<Item>().len().unwrap();
    assert!(held >= CATCH_UP_RECORDS, "held {held}");
    console_log!(
        "MEASURE catch-up of {received} records from the native node into OPFS: {:.2} s, {:.0} records/s",
        elapsed,
        received as f64 / elapsed
    );
    let waits = probe.stop().await;
    console_log!(
        "MEASURE during that catch-up: a message to the worker waited at most {:.1} ms, a local read took at most {:.1} ms ({} probes)",
        waits.message,
        waits.read,
        waits.rounds
    );

    // Puts from a node whose store is in OPFS (durable commits).
    let mut puts = Vec::new();
    for i in 0..SAMPLES as u64 {
        let item = Item {
            id: 700_000 + i,
            list: "measured".into(),
            text: "a measured durable put".into(),
        };
        let start = Instant::now();
        let published = fresh.put_record(item).await.unwrap();
        puts.push(start.elapsed().as_secs_f64() * 1e3);
        assert!(published.replicated, "the native node acknowledged it");
    }
    console_log!(
        "MEASURE put_record (browser to the native node's ack, OPFS): {}",
        summary(puts)
    );
    fresh.shutdown().await.unwrap();
}
