//! A node's memory does not grow with the records it holds: a node reopened
//! on 200,000 records and read from uses about as much as one on 20,000.
//!
//! Each phase runs in a fresh process, so the measured one holds nothing
//! the load left behind: the test re-runs its own binary, and
//! `memory_scale_child` does nothing unless the parent sets
//! `NETABASE_MEMORY_SCALE_CHILD` to `load <n> <dir>` (write `n` entries
//! into a new node at `dir` and shut it down) or `read <n> <dir>` (reopen
//! it, read 2,000 random entries, print `RSS <kB>`).

use std::path::Path;
use std::process::Command;

use netabase::node::{Netabase, NetabaseConfig};
use netabase_workspace::models::{entry, Entry, EntryKey};
use netabase_workspace::rss_kb;

const CHILD_ENV: &str = "NETABASE_MEMORY_SCALE_CHILD";
/// Records written per `put_records_locally` call.
const BATCH: u64 = 5_000;
/// Random reads before the resident set is measured.
const READS: usize = 2_000;
const SMALL: u64 = 20_000;
const LARGE: u64 = 200_000;
/// How much more the large node may hold than the small one. What a node
/// keeps in memory beyond its code is bounded whatever the data: a record
/// cache of bounded size (`cache_bytes`) and redb's page cache, which the
/// 2,000 reads fill only as far as the pages they touch (ten times the
/// records adds at most one level to each B-tree the reads walk, and
/// spreads the reads over more leaves). Measured: +4.6 to +5.1 MB (23.3-23.7
/// MB at 20,000, 28.1-28.4 MB at 200,000, release, three runs). A cache
/// that grows with the records exceeds this many times over: before the
/// records moved out of memory, 74 MB and 518 MB (+433 MB).
const GROWTH_BOUND_BYTES: u64 = 12 * 1024 * 1024;

/// A small deterministic generator: the same keys in every run.
fn random_ids(n: u64, count: usize) -> Vec<u64> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    (0..count)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        })
        .collect()
}

async fn load(n: u64, dir: &Path) {
    let node = Netabase::new_with_path(dir, NetabaseConfig::loopback()).expect("open a new node");
    node.register::<Entry>().expect("register");
    for start in (0..n).step_by(BATCH as usize) {
        let batch: Vec<Entry> = (start..(start + BATCH).min(n)).map(entry).collect();
        node.put_records_locally(batch).await.expect("load a batch");
    }
    node.shutdown().await.expect("shut down");
}

async fn read(n: u64, dir: &Path) {
    let node = Netabase::new_with_path(dir, NetabaseConfig::loopback()).expect("reopen the node");
    // A node shut down cleanly reopens without reading its whole file.
    assert!(
        !node.store().checked_at_open(),
        "the load left an unclean file"
    );
    node.register::<Entry>().expect("register");
    node.start_swarm().await.expect("start the swarm");
    for id in random_ids(n, READS) {
        let found = node
            .get_record::<Entry>(EntryKey(id))
            .await
            .expect("read an entry");
        assert_eq!(found.id, id);
    }
    println!("RSS {}", rss_kb());
    node.shutdown().await.expect("shut down");
}

/// The phases, run only as a child of `rss_does_not_grow_with_the_records`.
#[test]
fn memory_scale_child() {
    let Ok(phase) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut words = phase.split(' ');
    let (Some(what), Some(n), Some(dir)) = (words.next(), words.next(), words.next()) else {
        panic!("bad phase {phase:?}");
    };
    let n: u64 = n.parse().expect("a record count");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    match what {
        "load" => runtime.block_on(load(n, Path::new(dir))),
        "read" => runtime.block_on(read(n, Path::new(dir))),
        other => panic!("unknown phase {other:?}"),
    }
}

/// Runs one phase in a fresh process; returns its stdout.
fn run_phase(what: &str, n: u64, dir: &Path) -> String {
    let output = Command::new(std::env::current_exe().expect("this test binary"))
        .args([
            "memory_scale_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{what} {n} {}", dir.display()))
        .output()
        .expect("run a phase");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "phase {what} {n} failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Loads `n` entries into a node at `dir`, then reopens it in a fresh
/// process, reads from it and returns that process's resident set in kB.
fn rss_after_reads(n: u64, dir: &Path) -> u64 {
    let started = std::time::Instant::now();
    run_phase("load", n, dir);
    eprintln!("loaded {n} entries in {:?}", started.elapsed());
    let stdout = run_phase("read", n, dir);
    stdout
        .lines()
        // libtest may print the test's name on the same line first.
        .find_map(|line| line.split_once("RSS ").map(|(_, kb)| kb))
        .and_then(|kb| kb.trim().parse().ok())
        .unwrap_or_else(|| panic!("no RSS line in the read phase's output:\n{stdout}"))
}

#[test]
fn rss_does_not_grow_with_the_records() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let small_dir = tempfile::tempdir().unwrap();
    let large_dir = tempfile::tempdir().unwrap();
    let small = rss_after_reads(SMALL, small_dir.path());
    let large = rss_after_reads(LARGE, large_dir.path());
    let growth = large.saturating_sub(small) * 1024;
    eprintln!("RSS: {small} kB with {SMALL} entries, {large} kB with {LARGE}");
    assert!(
        growth < GROWTH_BOUND_BYTES,
        "a node's memory grows with its records: {small} kB after reading from {SMALL} entries, \
         {large} kB from {LARGE} (+{} MB, {} bytes for each added record; bound {} MB)",
        growth / (1024 * 1024),
        growth / (LARGE - SMALL),
        GROWTH_BOUND_BYTES / (1024 * 1024),
    );
}
