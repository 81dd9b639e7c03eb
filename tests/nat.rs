//! Two nodes, each in a private network behind a NAT router of its own,
//! reach each other through a relay on a "public" network, then (where the
//! NATs allow) connect directly by hole punching, and sync 10,000 records.
//! All of it in network namespaces this test makes (`ip netns`, veth
//! pairs, a bridge, nftables masquerade), so traffic never leaves them.
//!
//! ```text
//!   nb-a (10.10.1.2) -- nb-ra [NAT] 10.99.0.2 --+
//!                                               br0 (nb-pub, 10.99.0.1: the relay)
//!   nb-b (10.10.2.2) -- nb-rb [NAT] 10.99.0.3 --+
//! ```
//!
//! Needs root, `ip` and `nft` (`.ci/run` installs nftables). Without them
//! the tests skip with a message; with `NETABASE_REQUIRE_NETNS` set (CI
//! sets it) they fail instead.

mod common;

use std::io::Write;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use tokio::sync::mpsc;

/// Bound on every wait for a line from a node.
const WAIT: Duration = Duration::from_secs(120);
const RECORDS: u64 = 10_000;

/// Runs `ip netns exec <ns> <args..>` (or a plain command with no `ns`),
/// returning its output; an error says what failed.
fn run(ns: Option<&str>, args: &[&str]) -> Result<String, String> {
    let mut command = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]);
            c.args(args);
            c
        }
        None => {
            let mut c = Command::new(args[0]);
            c.args(&args[1..]);
            c
        }
    };
    let output = command.output().map_err(|e| format!("{args:?}: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{ns:?} {args:?}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// The namespaces of one test; removed when dropped.
struct Net {
    names: Vec<String>,
}

impl Net {
    fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.names[0].trim_end_matches("-pub"))
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = run(None, &["ip", "netns", "del", name]);
        }
    }
}

/// Makes the topology above under names starting with `prefix`; with
/// `symmetric`, each router picks a random source port per destination,
/// which defeats hole punching.
fn build(prefix: &str, symmetric: bool) -> Result<Net, String> {
    let roles = ["pub", "ra", "rb", "a", "b"];
    let net = Net {
        names: roles.iter().map(|r| format!("{prefix}-{r}")).collect(),
    };
    for name in &net.names {
        let _ = run(None, &["ip", "netns", "del", name]);
        run(None, &["ip", "netns", "add", name])?;
        run(Some(name), &["ip", "link", "set", "lo", "up"])?;
    }
    let ns = |role: &str| net.ns(role);
    let (public, ra, rb, a, b) = (ns("pub"), ns("ra"), ns("rb"), ns("a"), ns("b"));
    run(
        Some(&public),
        &["ip", "link", "add", "br0", "type", "bridge"],
    )?;
    run(
        Some(&public),
        &["ip", "addr", "add", "10.99.0.1/24", "dev", "br0"],
    )?;
    run(Some(&public), &["ip", "link", "set", "br0", "up"])?;
    for (router, node, wan_ip, lan_net) in [
        (&ra, &a, "10.99.0.2", "10.10.1"),
        (&rb, &b, "10.99.0.3", "10.10.2"),
    ] {
        let side = if router == &ra { "ra" } else { "rb" };
        // The router's WAN leg, on the public bridge. Unsolicited packets
        // from there are dropped, as home routers do (answered with a
        // reset, they would kill the other side's half of a hole punch).
        run(
            None,
            &[
                "ip", "link", "add", "wan", "netns", router, "type", "veth", "peer", "name", side,
                "netns", &public,
            ],
        )?;
        run(
            Some(&public),
            &["ip", "link", "set", side, "master", "br0", "up"],
        )?;
        run(
            Some(router),
            &["ip", "addr", "add", &format!("{wan_ip}/24"), "dev", "wan"],
        )?;
        run(Some(router), &["ip", "link", "set", "wan", "up"])?;
        // The private network: the router's LAN leg and the node.
        run(
            None,
            &[
                "ip", "link", "add", "lan", "netns", router, "type", "veth", "peer", "name",
                "eth0", "netns", node,
            ],
        )?;
        run(
            Some(router),
            &[
                "ip",
                "addr",
                "add",
                &format!("{lan_net}.1/24"),
                "dev",
                "lan",
            ],
        )?;
        run(Some(router), &["ip", "link", "set", "lan", "up"])?;
        run(
            Some(node),
            &[
                "ip",
                "addr",
                "add",
                &format!("{lan_net}.2/24"),
                "dev",
                "eth0",
            ],
        )?;
        run(Some(node), &["ip", "link", "set", "eth0", "up"])?;
        run(
            Some(node),
            &[
                "ip",
                "route",
                "add",
                "default",
                "via",
                &format!("{lan_net}.1"),
            ],
        )?;
        run(Some(router), &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        let masquerade = if symmetric {
            "masquerade fully-random"
        } else {
            "masquerade"
        };
        let rules = format!(
            "table ip nat {{
                chain postrouting {{
                    type nat hook postrouting priority 100;
                    oifname \"wan\" {masquerade};
                }}
            }}
            table ip filter {{
                chain forward {{
                    type filter hook forward priority 0; policy accept;
                    iifname \"wan\" ct state new drop;
                }}
                chain input {{
                    type filter hook input priority 0; policy accept;
                    iifname \"wan\" ct state new drop;
                }}
            }}
            "
        );
        let mut nft = Command::new("ip")
            .args(["netns", "exec", router, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("nft: {e}"))?;
        nft.stdin
            .take()
            .unwrap()
            .write_all(rules.as_bytes())
            .map_err(|e| e.to_string())?;
        let out = nft.wait_with_output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!("nft: {}", String::from_utf8_lossy(&out.stderr)));
        }
    }
    Ok(net)
}

/// Whether namespaces can be made here; `None` means yes.
fn unavailable(prefix: &str) -> Option<String> {
    let probe = format!("{prefix}-probe");
    let made = run(None, &["ip", "netns", "add", &probe]);
    let _ = run(None, &["ip", "netns", "del", &probe]);
    if let Err(error) = made {
        return Some(format!("cannot make network namespaces ({error})"));
    }
    if run(None, &["nft", "--version"]).is_err() {
        return Some("nft is not installed (apt-get install nftables)".into());
    }
    None
}

/// Where a node's log goes: `$NAT_LOGS/<name>.log` when `NAT_LOGS` names a
/// directory (with `RUST_LOG` set for what to log), else nowhere.
fn log(name: &str) -> Stdio {
    match std::env::var_os("NAT_LOGS") {
        Some(dir) => std::fs::File::create(std::path::Path::new(&dir).join(format!("{name}.log")))
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::null()),
        None => Stdio::null(),
    }
}

/// A node process in a namespace, its stdout lines, and its stdin.
struct Node {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<String>,
    name: &'static str,
}

impl Node {
    fn spawn(name: &'static str, ns: &str, binary: &str, args: &[String]) -> Node {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, binary])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log(name))
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let stdin = child.stdin.take().unwrap();
        let lines = common::stdout_lines(stdout);
        Node {
            child,
            stdin,
            lines,
            name,
        }
    }

    /// The first line `pick` accepts, waiting at most [`WAIT`].
    async fn expect<T>(&mut self, what: &str, mut pick: impl FnMut(&str) -> Option<T>) -> T {
        let name = self.name;
        tokio::time::timeout(WAIT, async {
            loop {
                let line = self
                    .lines
                    .recv()
                    .await
                    .unwrap_or_else(|| panic!("{name} exited while waiting for {what}"));
                // Shown when a test fails: what each node went through.
                eprintln!("[{name}] {line}");
                if let Some(found) = pick(&line) {
                    return found;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{name}: no {what} within {WAIT:?}"))
    }

    fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").unwrap();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a run found: whether a direct connection was made, and the time
/// from the relayed connection to holding every record.
async fn sync_across_nats(prefix: &str, symmetric: bool) -> Option<(bool, Duration)> {
    // Where hole punching works, the relay carries too little for the sync:
    // it has to run over the direct connection.
    let circuit_bytes = if symmetric { 256 << 20 } else { 1 << 20 };
    if let Some(why) = unavailable(prefix) {
        if std::env::var_os("NETABASE_REQUIRE_NETNS").is_some() {
            panic!("NETABASE_REQUIRE_NETNS is set, but {why}");
        }
        eprintln!("skipped: {why}");
        return None;
    }
    let net = build(prefix, symmetric).expect("the namespaces");
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    let relay_bin = env!("CARGO_BIN_EXE_netabase-node");
    let peer_bin = env!("CARGO_BIN_EXE_netabase-test-peer");

    let mut relay = Node::spawn(
        "relay",
        &net.ns("pub"),
        relay_bin,
        &[
            "--data-dir".into(),
            path("relay"),
            "--listen".into(),
            "/ip4/10.99.0.1/tcp/4001".into(),
            "--external".into(),
            "/ip4/10.99.0.1/tcp/4001".into(),
            "--relay".into(),
            "--max-circuit-bytes".into(),
            circuit_bytes.to_string(),
        ],
    );
    let relay_id = relay
        .expect("the relay's id", |l| {
            l.strip_prefix("peer id ").map(str::to_string)
        })
        .await;
    let relay_address = format!("/ip4/10.99.0.1/tcp/4001/p2p/{relay_id}");
    let peer_args = |name: &str, seed: u64| -> Vec<String> {
        vec![
            "--data".into(),
            path(name),
            "--listen".into(),
            "/ip4/0.0.0.0/tcp/4001".into(),
            "--relay".into(),
            relay_address.clone(),
            "--seed".into(),
            seed.to_string(),
        ]
    };
    let mut b = Node::spawn("B", &net.ns("b"), peer_bin, &peer_args("b", RECORDS));
    let b_id = b
        .expect("B's id", |l| l.strip_prefix("peer ").map(str::to_string))
        .await;
    b.expect("B's slot on the relay", |l| {
        l.starts_with("reserved ").then_some(())
    })
    .await;
    let mut a = Node::spawn("A", &net.ns("a"), peer_bin, &peer_args("a", 0));
    a.expect("A's id", |l| l.strip_prefix("peer ").map(|_| ()))
        .await;
    a.expect("A's slot on the relay", |l| {
        l.starts_with("reserved ").then_some(())
    })
    .await;

    // A can reach B only through the relay.
    let started = std::time::Instant::now();
    a.send(&format!("dial {relay_address}/p2p-circuit/p2p/{b_id}"));
    a.expect("A's relayed connection to B", |l| {
        (l == format!("connected {b_id} relayed")).then_some(())
    })
    .await;
    let relayed_after = started.elapsed();
    let mut direct_after = None;
    // Where the NATs allow it, hole punching makes a direct connection;
    // either way every record arrives.
    let mut direct = false;
    let mut held = 0;
    while held < RECORDS || (!symmetric && !direct) {
        let line = a
            .expect("the hole punch and the sync", |l| Some(l.to_string()))
            .await;
        if line == format!("punched {b_id}") || line == format!("connected {b_id} direct") {
            direct = true;
            direct_after.get_or_insert(started.elapsed());
            // What the relayed exchange had not brought yet comes directly.
            a.send("catch-up");
        } else if line.starts_with(&format!("catch-up-failed {b_id}")) {
            // The relayed connection was cut (its limit) or closed (a direct
            // one replaced it): again, on what is open.
            a.send("catch-up");
        } else if let Some(n) = line.strip_prefix("holds ") {
            held = n.parse().unwrap();
        }
    }
    let took = started.elapsed();
    eprintln!(
        "connection through the relay after {relayed_after:?}; direct (hole punched) after {direct_after:?}"
    );
    if symmetric {
        // B, holding the slot A dialled through, is the side that tries
        // and reports.
        b.expect("B's failed hole punch", |l| {
            l.starts_with("punch-failed ").then_some(())
        })
        .await;
    }
    drop(net);
    Some((direct, took))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_two_nats_peers_connect_through_a_relay_then_directly() {
    let prefix = format!("nbp{}", std::process::id());
    let Some((direct, took)) = sync_across_nats(&prefix, false).await else {
        return;
    };
    assert!(direct, "hole punching made no direct connection");
    eprintln!("{RECORDS} records across two NATs, hole punched: {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_symmetric_nats_peers_sync_through_the_relay() {
    let prefix = format!("nbs{}", std::process::id());
    let Some((direct, took)) = sync_across_nats(&prefix, true).await else {
        return;
    };
    assert!(!direct, "a direct connection through symmetric NATs");
    eprintln!("{RECORDS} records across two symmetric NATs, through the relay: {took:?}");
}
