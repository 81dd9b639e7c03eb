//! `get_record` and `put_record` with one frozen peer, beside the same calls
//! with every peer healthy: `cargo bench --features bench --bench frozen`.
//!
//! Three nodes on 127.0.0.1: H reads and writes; V holds what H reads and
//! stores what H writes; F is a third node on a runtime of its own (one
//! thread), healthy, then frozen: its thread is blocked, so its connections
//! stay open and it answers nothing, as a suspended laptop or phone app
//! does. H has catch-up off, so every get is of a record only V holds (a
//! fresh key each time: a fetched copy is kept), asked of V and F; every
//! put goes to V and F with the default quorum.
//!
//! The healthy case is the floor: a frozen peer should cost each call the
//! grace period (`read_grace`, `write_grace`: 30 ms by default), not a
//! timeout. H's `query_timeout` is raised above the whole run, so no request
//! to F times out while it is measured (after one does, F is asked last
//! and not waited for, for two minutes, and calls cost what healthy ones do).

#[path = "../tests/common/freezable.rs"]
mod freezable;
mod net;

use std::cell::Cell;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use freezable::Freezable;
use net::{address_of, bounded, runtime, tempdir};
use netabase::node::{Event, Netabase, NetabaseConfig};
use netabase_workspace::models::{user, User, UserKey};

/// Records V holds for H to fetch, one per timed get.
const HELD: u64 = 20_000;

async fn started(dir: std::path::PathBuf, config: NetabaseConfig) -> Netabase {
    let node = Netabase::new_with_path(dir, config).expect("open a node");
    node.register::<User>().expect("register");
    node.start_swarm().await.expect("start");
    node
}

fn frozen_peer(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempdir("netabase-frozen");
    let (h, v, f) = rt.block_on(async {
        let v = started(dir.path().join("v"), NetabaseConfig::loopback()).await;
        v.put_records_locally(
            (0..HELD)
                .map(|id| user(id, &format!("{id}@held"), 1))
                .collect(),
        )
        .await
        .expect("V holds the records H fetches");
        let f = Freezable::start(started(dir.path().join("f"), NetabaseConfig::loopback())).await;
        let h = Netabase::new_with_path(
            dir.path().join("h"),
            NetabaseConfig {
                catch_up: false,
                query_timeout: Duration::from_secs(600),
                bootstrap_peers: vec![address_of(&v), address_of(&f.node)],
                ..NetabaseConfig::loopback()
            },
        )
        .expect("open H");
        h.register::<User>().expect("register");
        // Subscribed before the swarm starts: no connection goes unseen.
        let mut events = h.subscribe_to_broadcasts();
        h.start_swarm().await.expect("start H");
        let mut connected = std::collections::HashSet::new();
        bounded("H to reach V and F", async {
            while connected.len() < 2 {
                if let Ok(Event::PeerConnected(peer)) = events.recv().await {
                    if peer == v.peer_id() || peer == f.node.peer_id() {
                        connected.insert(peer);
                    }
                }
            }
        })
        .await;
        (h, v, f)
    });
    let next_get = Cell::new(0u64);
    let next_put = Cell::new(1_000_000u64);
    let mut group = c.benchmark_group("frozen_peer");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    let measure = |group: &mut criterion::BenchmarkGroup<'_, _>, state: &str| {
        group.bench_function(format!("get_record/{state}"), |b| {
            b.iter_custom(|iterations| {
                rt.block_on(async {
                    let mut took = Duration::ZERO;
                    for _ in 0..iterations {
                        let id = next_get.get();
                        assert!(id < HELD, "more gets than records V holds: raise HELD");
                        next_get.set(id + 1);
                        let started = Instant::now();
                        let found = bounded("a get", h.get_record::<User>(UserKey(id))).await;
                        took += started.elapsed();
                        assert_eq!(found.expect("V's copy").id, id);
                    }
                    took
                })
            })
        });
        group.bench_function(format!("put_record/{state}"), |b| {
            b.iter_custom(|iterations| {
                rt.block_on(async {
                    let mut took = Duration::ZERO;
                    for _ in 0..iterations {
                        let id = next_put.get();
                        next_put.set(id + 1);
                        let started = Instant::now();
                        let published =
                            bounded("a put", h.put_record(user(id, &format!("{id}@put"), 2)))
                                .await
                                .expect("a put");
                        took += started.elapsed();
                        assert!(published.replicated, "V took it");
                    }
                    took
                })
            })
        });
    };
    measure(&mut group, "healthy");
    let thaw = f.freeze();
    measure(&mut group, "one_frozen");
    group.finish();
    drop(thaw);
    rt.block_on(async {
        let _ = h.shutdown().await;
        let _ = v.shutdown().await;
        f.stop().await;
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = frozen_peer
}
criterion_main!(benches);
