//! A writer killed with SIGKILL mid-stream loses nothing it was told was
//! committed, and its indexes stay consistent with its records.
//!
//! The test re-runs its own binary as the writer: `crash_child` does nothing
//! unless the parent sets `NETABASE_CRASH_CHILD_DB`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use netabase::store::{Lookup, Store};

const CHILD_ENV: &str = "NETABASE_CRASH_CHILD_DB";

fn moved_email(id: u64) -> String {
    format!("{id}@moved")
}

/// The writer: commit `i` adds user `i` and moves user `i - 1` to a new email
/// and age, then prints `committed i` once `commit` has returned.
#[test]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let store = Store::open(&path).expect("child opens the database");
    let start = store.tree::<User>().len().expect("child reads the length");
    let mut stdout = std::io::stdout().lock();
    for i in start.. {
        store
            .write(|txn| {
                let mut users = txn.open_tree::<User>()?;
                users.put(&user(i, &format!("{i}@x"), (i % 7) as u32))?;
                if i > 0 {
                    users.put(&user(
                        i - 1,
                        &moved_email(i - 1),
                        100 + ((i - 1) % 7) as u32,
                    ))?;
                }
                Ok::<_, netabase::StoreError>(())
            })
            .expect("child commits");
        writeln!(stdout, "committed {i}").expect("child reports");
        stdout.flush().expect("child flushes");
    }
}

/// Starts the writer, waits until it has acknowledged `more` commits, kills it
/// with SIGKILL and returns the last acknowledged commit.
fn run_and_kill(path: &std::path::Path, more: u64) -> Option<u64> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the writer");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(n) = line.strip_prefix("committed ") {
                if tx.send(n.trim().parse::<u64>().unwrap()).is_err() {
                    break;
                }
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut first = None;
    let mut last = None;
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(n) => {
                first.get_or_insert(n);
                last = Some(n);
                if n - first.unwrap() + 1 >= more {
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    // Child::kill sends SIGKILL on Unix: no destructors, no flush.
    child.kill().expect("kill the writer");
    child.wait().expect("reap the writer");
    // Lines already in the pipe were acknowledged before the kill too.
    while let Ok(n) = rx.recv_timeout(Duration::from_millis(200)) {
        last = Some(n);
    }
    drop(rx);
    reader.join().unwrap();
    last
}

#[test]
fn killed_writer_loses_nothing_committed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.redb");
    let mut acknowledged = None;
    for round in 0..3 {
        let last = run_and_kill(&path, 40).unwrap_or_else(|| panic!("round {round}: no commit"));
        assert!(
            acknowledged.is_none_or(|prev| last > prev),
            "round {round} made progress"
        );
        acknowledged = Some(last);

        let store = Store::open(&path).expect("reopen after SIGKILL");
        assert!(
            store.checked_at_open(),
            "round {round}: a file left by a killed writer opens unchecked"
        );
        let users = store.tree::<User>();
        for id in 0..=last {
            let record = users.get(&UserKey(id)).unwrap();
            let record = record.unwrap_or_else(|| panic!("acknowledged user {id} lost"));
            if id < last {
                assert_eq!(
                    record.email,
                    moved_email(id),
                    "acknowledged update of {id} lost"
                );
            }
        }
        // At most the one commit in flight at the kill can be there unacknowledged.
        let len = users.len().unwrap();
        assert!(len == last + 1 || len == last + 2, "len {len}, last {last}");
        assert_indexes_consistent(&users);
        assert_eq!(
            users.by_email(&moved_email(0)).unwrap().map(|u| u.id),
            Some(0)
        );
    }
}
