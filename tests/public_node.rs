//! The public node binary (`netabase-node`): it starts, prints its peer id
//! and addresses, relays for a node that reserves a slot on it, and stops
//! cleanly on SIGTERM.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use netabase::node::{Event, Multiaddr};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_node_relays_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_netabase-node"))
        .args(["--data-dir"])
        .arg(dir.path().join("public"))
        .args(["--listen", "/ip4/127.0.0.1/tcp/0", "--relay"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = stdout_lines(stdout);
    let mut peer_id = None;
    let mut address: Option<Multiaddr> = None;
    tokio::time::timeout(NET_WAIT, async {
        while peer_id.is_none() || address.is_none() {
            let line = lines
                .recv()
                .await
                .expect("the node prints its id and address");
            if let Some(id) = line.strip_prefix("peer id ") {
                peer_id = Some(id.to_string());
            } else if let Some(listening) = line.strip_prefix("listening ") {
                address = Some(listening.parse().unwrap());
            }
        }
    })
    .await
    .expect("the node started");
    let address = address.unwrap();
    assert!(address.to_string().ends_with(peer_id.as_deref().unwrap()));

    // A node holds a slot on it.
    let (b, mut b_events) = start_with(&dir.path().join("b"), &[], |c| {
        c.relays = vec![address.clone()];
    })
    .await;
    wait_for("a slot on the public node", &mut b_events, |e| {
        matches!(e, Event::RelayReserved { .. }).then_some(())
    })
    .await;
    b.shutdown().await.unwrap();

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the node stopped after SIGTERM");
    assert!(status.success(), "{status:?}");
}
