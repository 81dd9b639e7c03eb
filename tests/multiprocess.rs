//! Nodes in separate OS processes: a writer killed with SIGKILL while its
//! writes flow to a peer, then restarted on the same directory, loses nothing
//! it acknowledged, and the two nodes end up holding the same records.
//!
//! The test re-runs its own binary as the writer, C: `multiprocess_child`
//! does nothing unless the parent sets `NETABASE_MP_CHILD_DIR`. The parent
//! runs the other node, P, in-process on 127.0.0.1.
//!
//! **Acknowledged** means the local durable commit returned: `put_record`
//! returned `Ok` (committed, and P acknowledged receipt), or returned
//! `NodeError::Publish` (committed locally, not acknowledged by P:
//! `put_record` returns only after its local commit), or
//! `put_record_locally` returned `Ok`. Only
//! then does C print `MP ack <id> <how>` and flush it. Commits use the
//! default `Durability::Immediate`.
//!
//! Protocol. C's stdout: `MP ready <first id> <records held>` once its swarm
//! is up, `MP ack <id> published|unpublished|local` per write, `MP stopped
//! <records held>` once it has stopped writing. C's stdin: `stop` ends the
//! writes (C stays connected so P can finish syncing); end of input makes C
//! stop its swarm and exit. A parent that dies closes C's stdin, and C also
//! exits after `CHILD_LIFETIME`, so no writer outlives the test.
//!
//! Phases:
//! 1. C writes users 0, 1, 2, ...; every `LOCAL_EVERY`th one only locally,
//!    so P is certain to miss some records through Kademlia. After `ACKS`
//!    acks, C is SIGKILLed. Its store, reopened, holds every acknowledged id
//!    (and at most the one write in flight at the kill).
//! 2. C restarts on the same directory (same identity, a new port), resumes
//!    after its highest stored id and publishes `ACKS` more. On reconnecting,
//!    catch-up (and the republication of its own records at start) brings P
//!    what it missed. Then C is told to stop, P is awaited until it holds
//!    every record C holds, C exits, and both stores are compared in full.

mod common;

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use netabase::node::{Event, Multiaddr, Netabase, NetabaseConfig, NodeError, Protocol};
use netabase::store::Lookup;
use tokio::sync::{broadcast, mpsc};
use tokio::time::timeout;

const CHILD_DIR_ENV: &str = "NETABASE_MP_CHILD_DIR";
const CHILD_BOOTSTRAP_ENV: &str = "NETABASE_MP_BOOTSTRAP";
const CHILD_LOCAL_EVERY_ENV: &str = "NETABASE_MP_LOCAL_EVERY";
/// Acks awaited in each run of the writer.
const ACKS: usize = 200;
/// In the first run, every `LOCAL_EVERY`th id is written locally only.
const LOCAL_EVERY: u64 = 10;
/// Bound on any single wait in the parent.
const WAIT: Duration = Duration::from_secs(60);
/// The writer exits on its own after this long, whatever the parent does.
const CHILD_LIFETIME: Duration = Duration::from_secs(180);

fn record(id: u64) -> User {
    user(id, &format!("{id}@mp"), (id % 90) as u32)
}

// ---------------------------------------------------------------- the child

/// What the parent tells the writer through its stdin.
enum Control {
    Stop,
    Eof,
}

fn say(line: std::fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "MP {line}").expect("child reports (a closed pipe: the parent is gone)");
    stdout.flush().expect("child flushes");
}

/// The writer (node C). Does nothing unless run by the parent.
#[test]
fn multiprocess_child() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let bootstrap: Multiaddr = std::env::var(CHILD_BOOTSTRAP_ENV)
        .expect("bootstrap address")
        .parse()
        .expect("a valid bootstrap address");
    let local_every: u64 = std::env::var(CHILD_LOCAL_EVERY_ENV)
        .ok()
        .map(|v| v.parse().expect("a number"))
        .unwrap_or(0);

    let (control, mut controls) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            match line {
                Ok(line) if line.trim() == "stop" => {
                    let _ = control.send(Control::Stop);
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let _ = control.send(Control::Eof);
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let deadline = tokio::time::Instant::now() + CHILD_LIFETIME;
        let config = NetabaseConfig {
            bootstrap_peers: vec![bootstrap],
            ..NetabaseConfig::loopback()
        };
        let node = Netabase::new_with_path(&dir, config).expect("child opens its node");
        node.register::<User>().unwrap();
        // Resume after the highest id the store holds.
        let (first, held) = {
            let users = node.store().tree::<User>();
            let held = users.len().unwrap();
            let max = users.iter().unwrap().map(|u| u.unwrap().id).max();
            (max.map_or(0, |m| m + 1), held)
        };
        node.start_swarm().await.expect("child starts its swarm");
        say(format_args!("ready {first} {held}"));

        let mut id = first;
        let ended_by_parent = loop {
            match controls.try_recv() {
                Ok(Control::Stop) => break false,
                Ok(Control::Eof) | Err(mpsc::error::TryRecvError::Disconnected) => break true,
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                eprintln!("child: lifetime over while writing");
                break true;
            }
            let how = if local_every > 0 && id % local_every == 0 {
                node.put_record_locally(record(id))
                    .await
                    .expect("local commit");
                "local"
            } else {
                match node.put_record(record(id)).await {
                    Ok(published) if published.replicated => "published",
                    // Committed locally before publishing; catch-up delivers it.
                    Ok(_) | Err(NodeError::Publish { .. }) => "unpublished",
                    Err(other) => panic!("put_record({id}) failed: {other}"),
                }
            };
            say(format_args!("ack {id} {how}"));
            id += 1;
        };
        if !ended_by_parent {
            let held = node.store().tree::<User>().len().unwrap();
            say(format_args!("stopped {held}"));
            // Stay connected until the parent closes stdin.
            let _ = tokio::time::timeout_at(deadline, async {
                while let Some(control) = controls.recv().await {
                    if matches!(control, Control::Eof) {
                        break;
                    }
                }
            })
            .await;
        }
        node.stop_swarm().await.expect("child stops its swarm");
    });
}

// --------------------------------------------------------------- the parent

#[derive(Debug)]
enum Line {
    Ready {
        first: u64,
        held: u64,
    },
    Ack {
        id: u64,
        how: String,
    },
    Stopped {
        held: u64,
    },
    /// The child's stdout closed: it exited (or was killed).
    Closed,
}

fn parse(line: &str) -> Option<Line> {
    let (_, rest) = line.split_once("MP ")?;
    let words: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| words.get(i).and_then(|w| w.parse::<u64>().ok());
    match *words.first()? {
        "ready" => Some(Line::Ready {
            first: num(1)?,
            held: num(2)?,
        }),
        "ack" => Some(Line::Ack {
            id: num(1)?,
            how: words.get(2)?.to_string(),
        }),
        "stopped" => Some(Line::Stopped { held: num(1)? }),
        _ => None,
    }
}

/// A running writer. Dropping it kills and reaps the process, so a failing
/// test leaves no orphan; on a panic it prints the writer's stderr.
struct Writer {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<Line>,
    log: PathBuf,
    name: &'static str,
}

impl Writer {
    fn spawn(name: &'static str, dir: &Path, bootstrap: &Multiaddr, local_every: u64) -> Self {
        let log = dir.parent().unwrap().join(format!("{name}.stderr.log"));
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "multiprocess_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR_ENV, dir)
            .env(CHILD_BOOTSTRAP_ENV, bootstrap.to_string())
            .env(CHILD_LOCAL_EVERY_ENV, local_every.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .expect("spawn the writer");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(parsed) = parse(&line) {
                    if tx.send(parsed).is_err() {
                        return;
                    }
                }
            }
            let _ = tx.send(Line::Closed);
        });
        Writer {
            child,
            stdin,
            lines,
            log,
            name,
        }
    }

    /// The next line from the writer, within `WAIT`.
    async fn next(&mut self, what: &str) -> Line {
        match timeout(WAIT, self.lines.recv()).await {
            Ok(Some(line)) => line,
            Ok(None) => panic!("{}: reader gone while waiting for {what}", self.name),
            Err(_) => panic!("{}: timed out waiting for {what}", self.name),
        }
    }

    async fn ready(&mut self) -> (u64, u64) {
        match self.next("ready").await {
            Line::Ready { first, held } => (first, held),
            other => panic!("{}: expected ready, got {other:?}", self.name),
        }
    }

    /// Collects `n` acks into `acked`; returns how many were not published.
    async fn acks(&mut self, n: usize, acked: &mut BTreeSet<u64>) -> Vec<(u64, String)> {
        let mut not_published = Vec::new();
        for _ in 0..n {
            match self.next("an ack").await {
                Line::Ack { id, how } => {
                    assert!(
                        acked.insert(id),
                        "{}: id {id} acknowledged twice",
                        self.name
                    );
                    if how != "published" {
                        not_published.push((id, how));
                    }
                }
                other => panic!("{}: expected an ack, got {other:?}", self.name),
            }
        }
        not_published
    }

    fn tell(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to the writer");
        stdin.flush().expect("flush to the writer");
    }

    /// Bounded wait for the process to end, once its stdout has closed.
    async fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{}: did not exit after its stdout closed",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // SIGKILL on unix; an error only means it has already been reaped.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- {} stderr (last lines) ---", self.name);
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// Every user in a node's store, in id order.
async fn users_of(node: &Netabase) -> Vec<User> {
    node.query_local_records::<User, _, _>(|tree| tree.iter()?.collect())
        .await
        .unwrap()
}

/// Waits (bounded) on P's events until it holds `expected` users; on a
/// timeout, says which acknowledged ids it lacks. Returns the most records
/// a `CatchUp` event said were received, for the report.
async fn until_p_holds(
    p: &Netabase,
    events: &mut broadcast::Receiver<Event>,
    expected: u64,
    acked: &BTreeSet<u64>,
) -> u64 {
    let users = p.store().tree::<User>();
    let mut caught_up = 0;
    let result = timeout(WAIT, async {
        while users.len().unwrap() < expected {
            match events.recv().await {
                Ok(Event::CatchUp { received, .. }) => caught_up = caught_up.max(received),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("P's event stream closed"),
            }
        }
    })
    .await;
    if result.is_err() {
        let held: BTreeSet<u64> = users_of(p).await.iter().map(|u| u.id).collect();
        let missing: Vec<u64> = acked.difference(&held).copied().collect();
        panic!(
            "timed out after {WAIT:?} waiting for P to hold {expected} users: it holds {}; \
             acknowledged ids it lacks ({}): {:?}; stats {:?}",
            held.len(),
            missing.len(),
            &missing[..missing.len().min(30)],
            p.stats()
        );
    }
    caught_up
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_and_restarted_process_loses_nothing_acknowledged_and_converges() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let p_dir = dir.path().join("p");
    let c_dir = dir.path().join("c");

    let p = Netabase::new_with_path(&p_dir, NetabaseConfig::loopback()).unwrap();
    p.register::<User>().unwrap();
    p.start_swarm().await.unwrap();
    let mut p_events = p.subscribe_to_broadcasts();
    let p_address = p.listen_addresses()[0]
        .clone()
        .with(Protocol::P2p(p.peer_id()));

    // Phase 1: write, and SIGKILL the writer mid-stream.
    let mut acked = BTreeSet::new();
    let mut writer = Writer::spawn("writer-1", &c_dir, &p_address, LOCAL_EVERY);
    assert_eq!(writer.ready().await, (0, 0), "a fresh store");
    let mut missed_1 = writer.acks(ACKS, &mut acked).await;
    // Child::kill is SIGKILL on unix: no destructors, no flush, no goodbye.
    writer.child.kill().expect("kill the writer");
    writer.child.wait().expect("reap the writer");
    // Acks already in the pipe were printed before the kill: they count too.
    loop {
        match writer.next("the killed writer's stdout to close").await {
            Line::Ack { id, how } => {
                assert!(acked.insert(id), "id {id} acknowledged twice");
                if how != "published" {
                    missed_1.push((id, how));
                }
            }
            Line::Closed => break,
            other => panic!("unexpected line from the killed writer: {other:?}"),
        }
    }
    drop(writer);
    let last_1 = *acked.last().unwrap();
    let p_after_kill = p.store().tree::<User>().len().unwrap();
    // The local-only writes give P something Kademlia never sent it, so
    // phase 2 has records to deliver by another path.
    assert!(
        p_after_kill < acked.len() as u64,
        "P already held all {p_after_kill} acknowledged records at the kill"
    );

    // Every acknowledged write survived the SIGKILL, and nothing else but the
    // one write that may have been in flight.
    let stored_1: Vec<User> = {
        let c = Netabase::new_with_path(&c_dir, NetabaseConfig::loopback())
            .expect("reopen C's directory after SIGKILL");
        users_of(&c).await
    };
    let ids_1: BTreeSet<u64> = stored_1.iter().map(|u| u.id).collect();
    let lost: Vec<u64> = acked.difference(&ids_1).copied().collect();
    assert!(
        lost.is_empty(),
        "acknowledged ids lost by the kill: {lost:?}"
    );
    let extra: Vec<u64> = ids_1.difference(&acked).copied().collect();
    assert!(
        extra.is_empty() || extra == [last_1 + 1],
        "unacknowledged ids beyond the one in flight: {extra:?}"
    );
    for u in &stored_1 {
        assert_eq!(*u, record(u.id), "record {} intact", u.id);
    }

    // Phase 2: restart on the same directory; it resumes after what it holds.
    let acked_1 = acked.len();
    let mut writer = Writer::spawn("writer-2", &c_dir, &p_address, 0);
    let (first_2, held_2) = writer.ready().await;
    assert_eq!(
        held_2,
        ids_1.len() as u64,
        "the restarted writer sees its store"
    );
    assert_eq!(
        first_2,
        ids_1.last().unwrap() + 1,
        "it resumes after its last id"
    );
    let mut missed_2 = writer.acks(ACKS, &mut acked).await;
    writer.tell("stop");
    let held_end = loop {
        match writer.next("the writer to stop").await {
            Line::Ack { id, how } => {
                assert!(acked.insert(id), "id {id} acknowledged twice");
                if how != "published" {
                    missed_2.push((id, how));
                }
            }
            Line::Stopped { held } => break held,
            other => panic!("unexpected line while stopping: {other:?}"),
        }
    };
    // P converges while C is still up: catch-up on the reconnection (and C's
    // republication at start) brings what Kademlia did not deliver.
    let mut caught_up = until_p_holds(&p, &mut p_events, held_end, &acked).await;
    let p_converged = started.elapsed();
    // For the report: records P took in through catch-up (events since
    // P subscribed, well under the broadcast buffer).
    while let Ok(event) = p_events.try_recv() {
        if let Event::CatchUp { received, .. } = event {
            caught_up = caught_up.max(received);
        }
    }

    // C exits on end of input.
    drop(writer.stdin.take());
    match writer.next("the writer to exit").await {
        Line::Closed => {}
        other => panic!("unexpected line while exiting: {other:?}"),
    }
    let status = writer.wait_exit().await;
    assert!(status.success(), "the writer exited with {status}");
    drop(writer);

    // Both stores hold exactly the same records, every acknowledged one among them.
    let c_users = {
        let c = Netabase::new_with_path(&c_dir, NetabaseConfig::loopback())
            .expect("reopen C's directory");
        users_of(&c).await
    };
    let p_users = users_of(&p).await;
    let c_ids: BTreeSet<u64> = c_users.iter().map(|u| u.id).collect();
    let lost: Vec<u64> = acked.difference(&c_ids).copied().collect();
    assert!(lost.is_empty(), "acknowledged ids missing from C: {lost:?}");
    assert_eq!(c_users.len() as u64, held_end);
    assert_eq!(p_users.len(), c_users.len(), "P and C hold as many users");
    if let Some((on_p, on_c)) = p_users.iter().zip(&c_users).find(|(a, b)| a != b) {
        panic!("P's and C's users differ: P has {on_p:?} where C has {on_c:?}");
    }
    for u in &p_users {
        assert_eq!(*u, record(u.id), "record {} intact on P", u.id);
    }
    assert_eq!(
        p.stats().rejected_total(),
        0,
        "P refused nothing: {:?}",
        p.stats()
    );
    assert_indexes_consistent(&p.store().tree::<User>());
    p.stop_swarm().await.unwrap();

    eprintln!(
        "multiprocess: run 1 acked {acked_1} (last id {last_1}; {} not published by Kademlia: {} local-only, {} publish errors), \
         P held {p_after_kill} at the kill, C's store {}; run 2 resumed at {first_2}, acked {} more ({} publish errors); \
         P converged on {held_end} users at {p_converged:?} ({caught_up} through catch-up); total {:?}",
        missed_1.len(),
        missed_1.iter().filter(|(_, h)| h == "local").count(),
        missed_1.iter().filter(|(_, h)| h == "unpublished").count(),
        ids_1.len(),
        acked.len() - acked_1,
        missed_2.len(),
        started.elapsed(),
    );
}
