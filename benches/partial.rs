//! Partial replication at scale: many node processes on 127.0.0.1, each
//! writing records of its own and subscribing to those plus one shared
//! model, reading others' on demand, then a third of them killed.
//!
//! ```sh
//! cargo bench --features bench --bench partial                  # 50 nodes
//! cargo bench --features bench --bench partial -- --nodes 20 --records 200
//! ```
//!
//! The binary runs itself as each node (`NETABASE_SIM_NODE` set), driven
//! over stdin/stdout one line at a time; every wait on a node is bounded
//! and a node exits when its stdin closes, so nothing outlives the run.
//! What it prints, per phase: records and bytes each node holds (its own,
//! copies placed on it as one of the closest to their key, the shared
//! model), catch-up traffic, `get_record` latency of records held only by
//! their writer and the closest peers (median and p99), catch-up traffic
//! of a few nodes that then subscribe to everything (full replication, in
//! the same run), and how many records stay findable once a third of the
//! nodes are killed.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const NODE_ENV: &str = "NETABASE_SIM_NODE";
/// Bound on each phase's wait for every node's answer.
const PHASE_WAIT: Duration = Duration::from_secs(300);

fn main() {
    if std::env::var_os(NODE_ENV).is_some() {
        node::main();
    } else {
        parent();
    }
}

/// The run's size, from the command line.
#[derive(Clone, Copy, Debug)]
struct Size {
    nodes: usize,
    records: usize,
    gets: usize,
    copies: usize,
    full: usize,
}

fn size() -> Size {
    let mut size = Size {
        nodes: 50,
        records: 1000,
        gets: 100,
        copies: 5,
        full: 3,
    };
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
    };
    size.nodes = value("--nodes").unwrap_or(size.nodes);
    size.records = value("--records").unwrap_or(size.records);
    size.gets = value("--gets").unwrap_or(size.gets);
    size.copies = value("--copies").unwrap_or(size.copies);
    size.full = value("--full").unwrap_or(size.full);
    size
}

/// A node process and its lines.
struct Proc {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    address: String,
}

impl Proc {
    fn spawn(index: usize, dir: &Path, size: Size) -> Proc {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(NODE_ENV, index.to_string())
            .env("NETABASE_SIM_DIR", dir)
            .env("NETABASE_SIM_COPIES", size.copies.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn a node");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut proc = Proc {
            child,
            stdin,
            lines,
            address: String::new(),
        };
        let ready = proc.expect("READY");
        proc.address = ready.trim().to_string();
        proc
    }

    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("a node's stdin");
        self.stdin.flush().unwrap();
    }

    /// The rest of the next line starting with `tag`.
    fn expect(&mut self, tag: &str) -> String {
        let deadline = Instant::now() + PHASE_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("a node did not say {tag} in time"));
            if let Some(rest) = line.strip_prefix(tag) {
                return rest.trim().to_string();
            }
        }
    }
}

/// `key=value` pairs of a line.
fn field(line: &str, name: &str) -> u64 {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {line:?}"))
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// Min, median and max of `values`.
fn spread(values: &mut [u64]) -> String {
    values.sort_unstable();
    format!(
        "{}/{}/{}",
        values.first().unwrap_or(&0),
        percentile(values, 0.5),
        values.last().unwrap_or(&0)
    )
}

/// Sends `line(i)` to each node, then takes each one's `tag` line.
fn all(procs: &mut [(usize, Proc)], line: impl Fn(usize) -> String, tag: &str) -> Vec<String> {
    for (i, proc) in procs.iter_mut() {
        proc.send(&line(*i));
    }
    procs.iter_mut().map(|(_, proc)| proc.expect(tag)).collect()
}

fn parent() {
    let size = size();
    let root = tempdir();
    println!(
        "partial replication: {} nodes, {} records each, {} copies placed, {} gets each",
        size.nodes, size.records, size.copies, size.gets
    );
    let started = Instant::now();
    let mut procs: Vec<(usize, Proc)> = Vec::with_capacity(size.nodes);
    for i in 0..size.nodes {
        procs.push((i, Proc::spawn(i, &root.join(format!("n{i}")), size)));
    }
    println!("started in {:.1} s", started.elapsed().as_secs_f64());
    // Each dials the first node and a few others; Kademlia finds the rest.
    let addresses: Vec<String> = procs.iter().map(|(_, p)| p.address.clone()).collect();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let dials: Vec<String> = (0..size.nodes)
        .map(|i| {
            let mut to = vec![addresses[0].clone()];
            for _ in 0..4 {
                let j = (next(&mut seed) % size.nodes as u64) as usize;
                if j != i {
                    to.push(addresses[j].clone());
                }
            }
            to.join(" ")
        })
        .collect();
    all(&mut procs, |i| format!("DIAL {}", dials[i]), "DIALED");

    let t = Instant::now();
    all(&mut procs, |_| format!("WRITE {}", size.records), "WROTE");
    println!(
        "each node published {} notes and 2 shared records: {:.1} s",
        size.records,
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    all(&mut procs, |_| "CATCHUP".into(), "CAUGHT");
    println!("one catch-up round: {:.1} s", t.elapsed().as_secs_f64());
    let stats = all(&mut procs, |_| "STATS".into(), "STATS");
    report_holdings(&stats, size);

    // One node at a time, as a phone reads while the others idle: the
    // latency is the network's, not 50 processes' contention for 2 cores.
    let gets: Vec<String> = procs
        .iter_mut()
        .map(|(i, proc)| {
            let seed = *i * 7919 + 1;
            proc.send(&format!(
                "GETS {} {} {} {seed}",
                size.gets, size.nodes, size.records
            ));
            proc.expect("GOT")
        })
        .collect();
    let mut latencies: Vec<u64> = Vec::new();
    let (mut found, mut asked, mut local) = (0, 0, 0);
    for line in &gets {
        found += field(line, "found");
        asked += field(line, "asked");
        local += field(line, "local");
        let list = line.split("us=").nth(1).unwrap_or("");
        latencies.extend(list.split(',').filter_map(|v| v.parse::<u64>().ok()));
    }
    latencies.sort_unstable();
    println!(
        "get_record of another node's record: {found} of {asked} found ({local} held here as placed copies); from the network ({} reads, held by its writer and the closest): median {:.2} ms, p99 {:.2} ms",
        latencies.len(),
        percentile(&latencies, 0.5) as f64 / 1000.0,
        percentile(&latencies, 0.99) as f64 / 1000.0
    );

    // Full replication on a few nodes, in the same run: their catch-up
    // traffic and holdings once they subscribe to everything.
    let full = size.full.min(size.nodes);
    let t = Instant::now();
    let done = all(&mut procs[..full], |_| "ALL".into(), "ALLDONE");
    let mut full_bytes: Vec<u64> = done
        .iter()
        .map(|l| field(l, "sent") + field(l, "received"))
        .collect();
    let mut full_notes: Vec<u64> = done.iter().map(|l| field(l, "notes")).collect();
    println!(
        "{full} nodes subscribed to every note: catch-up traffic {} bytes each (min/median/max), {} notes held, {:.1} s",
        spread(&mut full_bytes),
        spread(&mut full_notes),
        t.elapsed().as_secs_f64()
    );

    // A third killed, never the ones that hold everything.
    let killed: Vec<usize> = (full..size.nodes).step_by(3).collect();
    for (i, proc) in procs.iter_mut() {
        if killed.contains(i) {
            let _ = proc.child.kill();
            let _ = proc.child.wait();
        }
    }
    procs.retain(|(i, _)| !killed.contains(i));
    let dead = killed
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",");
    // The full nodes would find everything: ask the partial ones.
    let mut partial: Vec<(usize, Proc)> = procs.drain(full..).collect();
    let finds = all(
        &mut partial,
        |i| {
            format!(
                "FIND {} {} {} {} {dead}",
                size.gets,
                size.nodes,
                size.records,
                i * 104_729 + 3
            )
        },
        "FOUND",
    );
    let mut sums = [0u64; 4];
    for line in &finds {
        sums[0] += field(line, "found");
        sums[1] += field(line, "asked");
        sums[2] += field(line, "dead_found");
        sums[3] += field(line, "dead_asked");
    }
    println!(
        "{} of {} nodes killed (SIGKILL): {} of {} random records found from the survivors; of those written by a killed node, {} of {}",
        killed.len(),
        size.nodes,
        sums[0],
        sums[1],
        sums[2],
        sums[3]
    );
    println!("whole run: {:.1} s", started.elapsed().as_secs_f64());
    for (_, mut proc) in procs.into_iter().chain(partial) {
        drop(proc.stdin);
        let _ = proc.child.wait();
    }
    let _ = std::fs::remove_dir_all(&root);
}

fn report_holdings(stats: &[String], size: Size) {
    let column = |name: &str| -> Vec<u64> { stats.iter().map(|l| field(l, name)).collect() };
    let mut own = column("own");
    let mut placed = column("placed");
    let mut shared = column("shared");
    let mut bytes = column("bytes");
    let mut sync: Vec<u64> = stats
        .iter()
        .map(|l| field(l, "sent") + field(l, "received"))
        .collect();
    let mut rss = column("rss_kb");
    println!(
        "held per node (min/median/max): own notes {}, notes of others placed on it {}, shared {}; of {} notes in all",
        spread(&mut own),
        spread(&mut placed),
        spread(&mut shared),
        size.nodes * size.records
    );
    println!(
        "per node: file {} bytes, catch-up traffic {} bytes, RSS {} kB",
        spread(&mut bytes),
        spread(&mut sync),
        spread(&mut rss)
    );
}

fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("netabase-partial-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One node, driven over stdin.
mod node {
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    use futures::StreamExt;
    use netabase::node::{Netabase, NetabaseConfig, Subscription};
    use netabase::store::Lookup;
    use netabase_workspace::models::{note, user, Note, NoteKey, User};
    use tokio::io::AsyncBufReadExt;

    fn name(index: usize) -> String {
        format!("node{index:03}")
    }

    pub fn main() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(4)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(run());
    }

    async fn run() {
        let index: usize = std::env::var(super::NODE_ENV).unwrap().parse().unwrap();
        let dir = PathBuf::from(std::env::var("NETABASE_SIM_DIR").unwrap());
        let copies: usize = std::env::var("NETABASE_SIM_COPIES")
            .unwrap()
            .parse()
            .unwrap();
        let config = NetabaseConfig {
            catch_up_interval: None,
            replication_factor: copies,
            query_timeout: Duration::from_secs(10),
            ..NetabaseConfig::loopback()
        };
        let node = Netabase::new_with_path(&dir, config).expect("open a node");
        node.register::<Note>().unwrap();
        node.register::<User>().unwrap();
        let me = name(index);
        node.subscribe(Subscription::<Note>::key_prefix(&me))
            .await
            .unwrap();
        node.start_swarm().await.unwrap();
        println!("READY {}", node.addresses()[0]);
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.first().copied() {
                Some("DIAL") => {
                    for address in &words[1..] {
                        if let Ok(address) = address.parse() {
                            let _ = node.dial(address).await;
                        }
                    }
                    println!("DIALED");
                }
                Some("WRITE") => {
                    let n: u64 = words[1].parse().unwrap();
                    let node = &node;
                    let me = &me;
                    futures::stream::iter(0..n)
                        .map(|i| async move {
                            let list = if i % 2 == 0 { "work" } else { "home" };
                            node.put_record(note(me, i, list)).await
                        })
                        .buffer_unordered(16)
                        .for_each(|_| async {})
                        .await;
                    for j in 0..2 {
                        let id = index as u64 * 10 + j;
                        let email = format!("shared{id}@sim");
                        let _ = node.put_record(user(id, &email, 30)).await;
                    }
                    println!("WROTE");
                }
                Some("CATCHUP") => {
                    let _ =
                        tokio::time::timeout(Duration::from_secs(120), node.catch_up_and_wait())
                            .await;
                    println!("CAUGHT");
                }
                Some("STATS") => println!("STATS {}", stats(&node, &me, &dir)),
                Some("GETS") | Some("FIND") => {
                    let count: usize = words[1].parse().unwrap();
                    let nodes: u64 = words[2].parse().unwrap();
                    let records: u64 = words[3].parse().unwrap();
                    let mut seed: u64 = words[4].parse::<u64>().unwrap() | 1;
                    let dead: Vec<u64> = words
                        .get(5)
                        .map(|d| d.split(',').filter_map(|v| v.parse().ok()).collect())
                        .unwrap_or_default();
                    let (mut found, mut dead_found, mut dead_asked) = (0, 0, 0);
                    let mut held_here = 0u64;
                    let mut micros = Vec::new();
                    for _ in 0..count {
                        let owner = loop {
                            let owner = super::next(&mut seed) % nodes;
                            if owner != index as u64 {
                                break owner;
                            }
                        };
                        let n = super::next(&mut seed) % records;
                        let key = NoteKey((name(owner as usize), n));
                        // Only reads that go to the network are timed.
                        let local = node.record_version::<Note>(&key).is_some();
                        let t = Instant::now();
                        let ok = node.get_record::<Note>(key).await.is_ok();
                        if !local {
                            micros.push(t.elapsed().as_micros().to_string());
                        }
                        held_here += u64::from(local);
                        found += u64::from(ok);
                        if dead.contains(&owner) {
                            dead_asked += 1;
                            dead_found += u64::from(ok);
                        }
                    }
                    let tag = if words[0] == "GETS" { "GOT" } else { "FOUND" };
                    println!(
                        "{tag} found={found} asked={count} local={held_here} dead_found={dead_found} dead_asked={dead_asked} us={}",
                        micros.join(",")
                    );
                }
                Some("ALL") => {
                    node.subscribe(Subscription::<Note>::all()).await.unwrap();
                    let _ =
                        tokio::time::timeout(Duration::from_secs(240), node.catch_up_and_wait())
                            .await;
                    println!("ALLDONE {}", stats(&node, &me, &dir));
                }
                _ => {}
            }
        }
        let _ = node.shutdown().await;
    }

    /// What this node holds and has sent, as `key=value` pairs.
    fn stats(node: &Netabase, me: &str, dir: &std::path::Path) -> String {
        let notes = node.store().tree::<Note>();
        let mut own = 0u64;
        let mut total = 0u64;
        for note in notes.iter().unwrap().flatten() {
            total += 1;
            own += u64::from(note.id.0 == me);
        }
        let shared = node.store().tree::<User>().len().unwrap();
        let bytes = std::fs::metadata(dir.join("netabase.redb"))
            .map(|m| m.len())
            .unwrap_or(0);
        let stats = node.stats();
        format!(
            "notes={total} own={own} placed={} shared={shared} bytes={bytes} sent={} received={} rss_kb={}",
            total - own,
            stats.sync_bytes_sent,
            stats.sync_bytes_received,
            netabase_workspace::rss_kb()
        )
    }
}
