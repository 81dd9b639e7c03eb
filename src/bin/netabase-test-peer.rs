//! A node for tests that run it as a process of its own (in a network
//! namespace behind a NAT: `tests/nat.rs`). It holds `User` records and
//! reports what happens on stdout, one line each:
//!
//! - `peer <id>` at start, then `reserved <relay>`, `connected <peer>
//!   relayed|direct`, `punched <peer>`, `punch-failed <peer> <why>`,
//!   `caught-up <peer> <received>`, `catch-up-failed <peer> <why>`,
//!   `holds <n>` (after each catch-up and on `count`), `dialled <peer>` or
//!   `dial-failed <why>`.
//!
//! Commands on stdin, one a line: `dial <address>`, `catch-up`, `count`,
//! `quit` (or a closed stdin).
//!
//! ```text
//! netabase-test-peer --data <dir> [--listen <addr>]... [--relay <addr>]... [--seed <n>]
//! ```

// Native only: the browser tests build this package for wasm32, bins too.
#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    app::main()
}

#[cfg(not(target_arch = "wasm32"))]
mod app {
    use std::path::PathBuf;

    use netabase::node::{Event, Multiaddr, Netabase, NetabaseConfig};
    use netabase::Lookup;
    use netabase_workspace::models::{user, User};
    use tokio::io::AsyncBufReadExt;

    #[tokio::main]
    pub async fn main() {
        // Off unless RUST_LOG says otherwise; to stderr.
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
            )
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .init();
        let mut data = None;
        let mut config = NetabaseConfig {
            listen_addresses: Vec::new(),
            catch_up_interval: None,
            ..NetabaseConfig::default()
        };
        let mut seed = 0u64;
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || args.next().expect("a value after the flag");
            match arg.as_str() {
                "--data" => data = Some(PathBuf::from(value())),
                "--listen" => config.listen_addresses.push(parse(&value())),
                "--relay" => config.relays.push(parse(&value())),
                "--seed" => seed = value().parse().expect("a number of records"),
                other => panic!("unknown argument {other}"),
            }
        }
        let node = Netabase::new_with_path(data.expect("--data <dir>"), config).expect("open");
        node.register::<User>().expect("register");
        if seed > 0 {
            let records = (0..seed)
                .map(|id| user(id, &format!("{id}@nat"), 1))
                .collect();
            node.put_records_locally(records).await.expect("seed");
        }
        let mut events = node.subscribe_to_broadcasts();
        node.start_swarm().await.expect("start");
        println!("peer {}", node.peer_id());

        let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        loop {
            tokio::select! {
                line = stdin.next_line() => {
                    let Ok(Some(line)) = line else { break };
                    if !command(&node, line.trim()).await {
                        break;
                    }
                }
                event = events.recv() => match event {
                    Ok(event) => report(&node, event).await,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => break,
                },
            }
        }
        node.shutdown().await.expect("shutdown");
    }

    fn parse(address: &str) -> Multiaddr {
        address.parse().expect("a multiaddr")
    }

    /// Runs one command; `false` to stop.
    async fn command(node: &Netabase, line: &str) -> bool {
        match line.split_once(' ').unwrap_or((line, "")) {
            ("dial", address) => match node.dial(parse(address)).await {
                Ok(peer) => println!("dialled {peer}"),
                Err(error) => println!("dial-failed {error}"),
            },
            ("catch-up", _) => {
                let _ = node.catch_up().await;
            }
            ("count", _) => println!("holds {}", holds(node).await),
            ("quit", _) => return false,
            (other, _) => println!("unknown-command {other}"),
        }
        true
    }

    async fn report(node: &Netabase, event: Event) {
        match event {
            Event::RelayReserved { relay } => println!("reserved {relay}"),
            Event::ConnectionOpened { peer, relayed } => {
                println!(
                    "connected {peer} {}",
                    if relayed { "relayed" } else { "direct" }
                )
            }
            Event::HolePunched { peer } => println!("punched {peer}"),
            Event::HolePunchFailed { peer, reason } => {
                println!("punch-failed {peer} {}", reason.replace('\n', " "))
            }
            Event::CatchUpFailed { peer, reason } => println!("catch-up-failed {peer} {reason:?}"),
            Event::CaughtUp { peer, received, .. } => {
                println!("caught-up {peer} {received}");
                println!("holds {}", holds(node).await);
            }
            _ => {}
        }
    }

    async fn holds(node: &Netabase) -> usize {
        node.query_local_records::<User, _, _>(|tree| tree.len())
            .await
            .unwrap_or(0) as usize
    }
}
