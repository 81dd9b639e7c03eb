//! How a node behaves as its data grows: start-up time, memory after reads,
//! disk bytes per record, a cold read, and a catch-up round between two
//! equal nodes, for each N of `NETABASE_SCALE` (default `100000,1000000`).
//!
//! `cargo bench --features bench --bench scale`. Each data set is built once
//! (N `Entry` records through `put_records_locally`, 10,000 a call, and the
//! same records in a typed `Store` alone, the floor) under
//! `target/netabase-scale/<N>/` and reused while its `complete` marker is
//! there. Every measurement runs in a fresh child process (this binary run
//! again with `NETABASE_SCALE_CHILD` set), so none sees memory or caches
//! another left; each prints `SCALE <name> <value>` lines the parent reads.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use netabase::node::{Netabase, NetabaseConfig};
use netabase::Store;
use netabase_workspace::models::{entry, Entry, EntryKey};
use netabase_workspace::rss_kb;

const SCALE_ENV: &str = "NETABASE_SCALE";
const CHILD_ENV: &str = "NETABASE_SCALE_CHILD";
const DEFAULT_SCALE: &str = "100000,1000000";
/// Records a `put_records_locally` (or `put_many`) call writes.
const BATCH: u64 = 10_000;
/// Random reads before the resident set is measured.
const READS: usize = 10_000;
/// Reads of keys not read before, for the cold read's median.
const COLD_READS: usize = 1_000;
/// Bound on the catch-up round.
const CATCH_UP_WAIT: Duration = Duration::from_secs(1800);
/// The node's database file in its directory (the node's own name for it).
const NODE_FILE: &str = "netabase.redb";

fn main() {
    if let Ok(phase) = std::env::var(CHILD_ENV) {
        child(&phase);
        return;
    }
    let scale = std::env::var(SCALE_ENV).unwrap_or_else(|_| DEFAULT_SCALE.into());
    let sizes: Vec<u64> = scale
        .split(',')
        .map(|n| {
            n.trim()
                .replace('_', "")
                .parse()
                .expect("NETABASE_SCALE: numbers, comma-separated")
        })
        .collect();
    let root = target_dir().join("netabase-scale");
    let mut rows = Vec::new();
    for n in sizes {
        let dir = root.join(n.to_string());
        build(n, &dir);
        eprintln!("N = {n}: measuring");
        let mut row = BTreeMap::new();
        row.extend(run_child("open_and_read", n, &dir));
        row.extend(run_child("cold_read", n, &dir));
        row.extend(run_child("raw_open", n, &dir));
        row.extend(run_child("disk_used", n, &dir));
        prepare_copy(&dir);
        row.extend(run_child("catch_up", n, &dir));
        let node_bytes = file_len(&dir.join("node").join(NODE_FILE));
        let store_bytes = file_len(&dir.join("store.redb"));
        row.insert(
            "node_bytes_per_record".into(),
            format!("{}", node_bytes / n),
        );
        row.insert(
            "store_bytes_per_record".into(),
            format!("{}", store_bytes / n),
        );
        rows.push((n, row));
    }
    print_table(&rows);
}

// ------------------------------------------------------------ the parent

/// The cargo target directory: `CARGO_TARGET_DIR`, else the one this bench
/// binary was built in (`<target>/release/deps/scale-<hash>`).
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("this binary's path");
    exe.ancestors()
        .nth(3)
        .expect("a binary under <target>/<profile>/deps")
        .to_path_buf()
}

/// Builds the data set of `n` records in `dir` unless a complete one is
/// there: the node's directory `node/` and the typed store `store.redb`.
fn build(n: u64, dir: &Path) {
    let marker = dir.join("complete");
    if marker.exists() {
        eprintln!("N = {n}: reusing {}", dir.display());
        return;
    }
    // A build that stopped half-way is not trusted.
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("create the data set's directory");
    eprintln!("N = {n}: building {} (once; reused later)", dir.display());
    let started = Instant::now();
    run_child("build_node", n, dir);
    eprintln!("N = {n}: node loaded in {:.1?}", started.elapsed());
    let started = Instant::now();
    run_child("build_store", n, dir);
    eprintln!("N = {n}: typed store loaded in {:.1?}", started.elapsed());
    std::fs::write(&marker, b"").expect("mark the data set complete");
}

/// A copy of the node's directory under a new identity, for the catch-up.
fn prepare_copy(dir: &Path) {
    let copy = dir.join("copy");
    let _ = std::fs::remove_dir_all(&copy);
    std::fs::create_dir_all(&copy).expect("create the copy's directory");
    for file in std::fs::read_dir(dir.join("node")).expect("list the node's directory") {
        let file = file.expect("a directory entry");
        if file.file_name() == "identity.key" {
            continue;
        }
        std::fs::copy(file.path(), copy.join(file.file_name())).expect("copy the node's file");
    }
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .len()
}

/// Runs `phase` in a fresh process; returns the values it printed.
fn run_child(phase: &str, n: u64, dir: &Path) -> BTreeMap<String, String> {
    let output = Command::new(std::env::current_exe().expect("this binary's path"))
        .env(CHILD_ENV, format!("{phase} {n} {}", dir.display()))
        .stderr(Stdio::inherit())
        .output()
        .expect("run a phase");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "phase {phase} at N = {n} failed: {}\n{stdout}",
        output.status
    );
    stdout
        .lines()
        .filter_map(|line| line.strip_prefix("SCALE "))
        .filter_map(|line| line.split_once(' '))
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

fn print_table(rows: &[(u64, BTreeMap<String, String>)]) {
    let columns = [
        ("open_ms", "open + register + start (ms)"),
        ("rss_mb", "RSS after 10k gets (MB)"),
        ("node_bytes_per_record", "node B/record"),
        ("store_bytes_per_record", "typed store B/record (floor)"),
        ("node_used_per_record", "node B/record in use"),
        (
            "store_used_per_record",
            "typed store B/record in use (floor)",
        ),
        ("cold_get_us", "cold get median (µs)"),
        ("raw_open_ms", "raw redb open (ms, floor)"),
        ("catch_up_ms", "catch-up round, equal nodes (ms)"),
    ];
    println!();
    print!("| N |");
    for (_, title) in columns {
        print!(" {title} |");
    }
    println!();
    println!("|---|{}", "---|".repeat(columns.len()));
    for (n, row) in rows {
        print!("| {n} |");
        for (name, _) in columns {
            print!(" {} |", row.get(name).map_or("-", String::as_str));
        }
        println!();
    }
    for (n, row) in rows {
        if let Some(outcome) = row.get("catch_up_outcome") {
            println!("N = {n}: catch-up outcome {outcome}");
        }
    }
}

// ------------------------------------------------------------- the child

fn report(name: &str, value: impl std::fmt::Display) {
    println!("SCALE {name} {value}");
}

fn child(phase: &str) {
    let mut words = phase.splitn(3, ' ');
    let (Some(what), Some(n), Some(dir)) = (words.next(), words.next(), words.next()) else {
        panic!("bad phase {phase:?}");
    };
    let n: u64 = n.parse().expect("a record count");
    let dir = Path::new(dir);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    match what {
        "build_node" => runtime.block_on(build_node(n, dir)),
        "build_store" => build_store(n, dir),
        "open_and_read" => runtime.block_on(open_and_read(n, dir)),
        "cold_read" => runtime.block_on(cold_read(n, dir)),
        "raw_open" => raw_open(dir),
        "disk_used" => disk_used(n, dir),
        "catch_up" => runtime.block_on(catch_up(dir)),
        other => panic!("unknown phase {other:?}"),
    }
}

async fn open_node(dir: &Path) -> Netabase {
    let node = Netabase::new_with_path(dir, NetabaseConfig::loopback()).expect("open the node");
    node.register::<Entry>().expect("register");
    node.start_swarm().await.expect("start the swarm");
    node
}

async fn build_node(n: u64, dir: &Path) {
    let node = Netabase::new_with_path(dir.join("node"), NetabaseConfig::loopback())
        .expect("create the node");
    node.register::<Entry>().expect("register");
    for start in (0..n).step_by(BATCH as usize) {
        let batch: Vec<Entry> = (start..(start + BATCH).min(n)).map(entry).collect();
        node.put_records_locally(batch).await.expect("load a batch");
    }
    node.shutdown().await.expect("shut down");
}

fn build_store(n: u64, dir: &Path) {
    let store = Store::open(dir.join("store.redb")).expect("create the typed store");
    store.register::<Entry>().expect("register");
    let tree = store.tree::<Entry>();
    for start in (0..n).step_by(BATCH as usize) {
        tree.put_many((start..(start + BATCH).min(n)).map(entry))
            .expect("put a batch");
    }
}

async fn open_and_read(n: u64, dir: &Path) {
    let started = Instant::now();
    let node = open_node(&dir.join("node")).await;
    report(
        "open_ms",
        format!("{:.1}", started.elapsed().as_secs_f64() * 1e3),
    );
    for id in random_ids(n, 1).take(READS) {
        node.get_record::<Entry>(EntryKey(id))
            .await
            .expect("read an entry");
    }
    report("rss_mb", format!("{:.0}", rss_kb() as f64 / 1024.0));
    node.shutdown().await.expect("shut down");
}

async fn cold_read(n: u64, dir: &Path) {
    let node = open_node(&dir.join("node")).await;
    let mut seen = HashSet::new();
    let mut times = Vec::with_capacity(COLD_READS);
    // Another seed than the warm reads': these keys were never read.
    for id in random_ids(n, 2) {
        if times.len() == COLD_READS {
            break;
        }
        if !seen.insert(id) {
            continue;
        }
        let started = Instant::now();
        node.get_record::<Entry>(EntryKey(id))
            .await
            .expect("read an entry");
        times.push(started.elapsed());
    }
    times.sort();
    report(
        "cold_get_us",
        format!("{:.1}", times[times.len() / 2].as_secs_f64() * 1e6),
    );
    node.shutdown().await.expect("shut down");
}

fn raw_open(dir: &Path) {
    let started = Instant::now();
    let db = redb::Database::create(dir.join("node").join(NODE_FILE)).expect("open with redb");
    report(
        "raw_open_ms",
        format!("{:.1}", started.elapsed().as_secs_f64() * 1e3),
    );
    drop(db);
}

/// Bytes in the pages redb has allocated, a record: the file grows in
/// steps (doubling while small), so its length alone can hide or double a
/// difference.
fn disk_used(n: u64, dir: &Path) {
    for (name, path) in [
        ("node_used_per_record", dir.join("node").join(NODE_FILE)),
        ("store_used_per_record", dir.join("store.redb")),
    ] {
        let db = redb::Database::create(&path).expect("open with redb");
        let txn = db.begin_write().expect("a write transaction");
        let stats = txn.stats().expect("the file's statistics");
        let used = stats.allocated_pages() * stats.page_size() as u64;
        report(name, used / n);
        txn.abort().expect("abort");
    }
}

async fn catch_up(dir: &Path) {
    let original = open_node(&dir.join("node")).await;
    let copy = open_node(&dir.join("copy")).await;
    let address = original.addresses()[0].clone();
    copy.dial(address).await.expect("dial the original");
    let started = Instant::now();
    let outcomes = tokio::time::timeout(CATCH_UP_WAIT, copy.catch_up_and_wait())
        .await
        .expect("the catch-up ends in time")
        .expect("catch up");
    report(
        "catch_up_ms",
        format!("{:.1}", started.elapsed().as_secs_f64() * 1e3),
    );
    let outcomes: Vec<String> = outcomes.iter().map(|(_, o)| format!("{o:?}")).collect();
    report("catch_up_outcome", outcomes.join(","));
    copy.shutdown().await.expect("shut down the copy");
    original.shutdown().await.expect("shut down the original");
}

/// Ids in `0..n`, the same sequence for the same `seed` in every run.
fn random_ids(n: u64, seed: u64) -> impl Iterator<Item = u64> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    std::iter::repeat_with(move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    })
}
