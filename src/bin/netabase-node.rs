//! A public Netabase node: a bootstrap peer, a DHT server and (with
//! `--relay`) a relay for peers that cannot be reached directly (behind
//! NAT, or in a browser). It registers no models: it holds no records of
//! its own, and routes, relays and introduces.
//!
//! ```text
//! cargo run --release --bin netabase-node -- --help
//! ```

// Native only: the browser tests build this package for wasm32, bins too.
#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    app::main()
}

#[cfg(not(target_arch = "wasm32"))]
mod app {
    use std::path::PathBuf;
    use std::process::ExitCode;

    use netabase::node::{Event, Multiaddr, Netabase, NetabaseConfig, RelayLimits};

    const USAGE: &str = "\
    netabase-node: a public Netabase node (bootstrap peer, DHT server, relay)

    USAGE:
        netabase-node [OPTIONS]

    OPTIONS:
        --data-dir <DIR>        where its identity and database live
                                [default: ./netabase-node]
        --listen <ADDR>         a listen address, repeatable
                                [default: /ip4/0.0.0.0/tcp/4001 and /ip4/0.0.0.0/tcp/4002/ws]
        --external <ADDR>       an address peers reach it at from outside (what a
                                relay hands out in reservations), repeatable
        --relay                 relay for peers behind NAT and for browsers
        --max-circuits <N>      relayed connections at once [default: 64]
        --max-circuit-bytes <N> bytes one relayed connection may carry each way
                                [default: 268435456, 256 MiB]
        --bootstrap <ADDR>      another node to join (/ip4/../tcp/../p2p/<id>), repeatable
        -h, --help              this text

    It prints its peer id and addresses at start, logs through tracing
    (RUST_LOG=info by default) and stops cleanly on SIGINT or SIGTERM.";

    #[derive(Debug)]
    struct Args {
        data_dir: PathBuf,
        listen: Vec<Multiaddr>,
        external: Vec<Multiaddr>,
        relay: bool,
        limits: RelayLimits,
        bootstrap: Vec<Multiaddr>,
    }

    fn parse(mut args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
        let mut parsed = Args {
            data_dir: PathBuf::from("netabase-node"),
            listen: Vec::new(),
            external: Vec::new(),
            relay: false,
            limits: RelayLimits::default(),
            bootstrap: Vec::new(),
        };
        let number = |flag: &str, value: Option<String>| -> Result<u64, String> {
            let value = value.ok_or_else(|| format!("{flag} needs a number"))?;
            value
                .parse()
                .map_err(|_| format!("{flag} {value}: not a number"))
        };
        let address = |flag: &str, value: Option<String>| -> Result<Multiaddr, String> {
            let value = value.ok_or_else(|| format!("{flag} needs an address"))?;
            value
                .parse()
                .map_err(|error| format!("{flag} {value}: not a multiaddr ({error})"))
        };
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "-h" | "--help" => return Ok(None),
                "--data-dir" => {
                    parsed.data_dir = args.next().ok_or("--data-dir needs a directory")?.into();
                }
                "--listen" => parsed.listen.push(address("--listen", args.next())?),
                "--external" => parsed.external.push(address("--external", args.next())?),
                "--bootstrap" => parsed.bootstrap.push(address("--bootstrap", args.next())?),
                "--relay" => parsed.relay = true,
                "--max-circuits" => {
                    parsed.limits.max_circuits = number("--max-circuits", args.next())? as usize;
                }
                "--max-circuit-bytes" => {
                    parsed.limits.max_circuit_bytes = number("--max-circuit-bytes", args.next())?;
                }
                other => return Err(format!("unknown argument {other:?} (see --help)")),
            }
        }
        if parsed.listen.is_empty() {
            parsed.listen = vec![
                "/ip4/0.0.0.0/tcp/4001".parse().expect("a valid address"),
                "/ip4/0.0.0.0/tcp/4002/ws".parse().expect("a valid address"),
            ];
        }
        Ok(Some(parsed))
    }

    #[tokio::main]
    pub async fn main() -> ExitCode {
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
            )
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
        let args = match parse(std::env::args().skip(1)) {
            Ok(Some(args)) => args,
            Ok(None) => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            Err(error) => {
                tracing::error!("{error}");
                return ExitCode::from(2);
            }
        };
        match run(args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!(error = %chain(&error), "netabase-node stopped");
                ExitCode::FAILURE
            }
        }
    }

    async fn run(args: Args) -> Result<(), netabase::node::NodeError> {
        let config = NetabaseConfig {
            listen_addresses: args.listen,
            external_addresses: args.external,
            bootstrap_peers: args.bootstrap,
            relay: args.relay.then_some(args.limits),
            ..NetabaseConfig::default()
        };
        let node = Netabase::new_with_path(&args.data_dir, config)?;
        let mut events = node.subscribe_to_broadcasts();
        node.start_swarm().await?;
        // What operators and scripts read: one line each, on stdout.
        println!("peer id {}", node.peer_id());
        for address in node.addresses() {
            println!("listening {address}");
        }
        let stop = stop_signal();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                event = events.recv() => match event {
                    Ok(Event::PeerConnected(peer)) => tracing::info!(%peer, "peer connected"),
                    Ok(Event::PeerDisconnected(peer)) => tracing::info!(%peer, "peer disconnected"),
                    Ok(Event::RelayReservationAccepted { peer }) => tracing::info!(%peer, "a peer reserved a relay slot"),
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!(missed = n, "events missed")
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
            }
        }
        tracing::info!("stopping");
        node.shutdown().await
    }

    /// An error and its causes, on one line.
    fn chain(error: &dyn std::error::Error) -> String {
        let mut out = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            out.push_str(": ");
            out.push_str(&cause.to_string());
            source = cause.source();
        }
        out
    }

    /// Completes on SIGINT or SIGTERM.
    async fn stop_signal() {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn args(list: &[&str]) -> Result<Option<Args>, String> {
            parse(list.iter().map(|s| s.to_string()))
        }

        #[test]
        fn arguments_parse_and_bad_ones_say_why() {
            let parsed = args(&[
                "--data-dir",
                "/tmp/x",
                "--relay",
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--external",
                "/ip4/203.0.113.7/tcp/4001",
                "--max-circuit-bytes",
                "65536",
            ])
            .unwrap()
            .unwrap();
            assert!(parsed.relay);
            assert_eq!(parsed.data_dir, PathBuf::from("/tmp/x"));
            assert_eq!(parsed.listen.len(), 1);
            assert_eq!(parsed.external.len(), 1);
            assert_eq!(parsed.limits.max_circuit_bytes, 65536);
            assert!(args(&["--max-circuits", "many"])
                .unwrap_err()
                .contains("not a number"));
            assert!(args(&["--help"]).unwrap().is_none());
            assert!(args(&["--listen", "nonsense"])
                .unwrap_err()
                .contains("not a multiaddr"));
            assert!(args(&["--bogus"]).unwrap_err().contains("unknown argument"));
            let defaults = args(&[]).unwrap().unwrap();
            assert_eq!(defaults.listen.len(), 2);
            assert!(!defaults.relay);
        }
    }
}
