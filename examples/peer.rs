//! One Netabase node you drive from a terminal. Run two, in two terminals:
//!
//! ```text
//! cargo run --example peer -- ./peer-1 /ip4/127.0.0.1/tcp/4001
//! cargo run --example peer -- ./peer-2 /ip4/127.0.0.1/tcp/0 /ip4/127.0.0.1/tcp/4001/p2p/<peer-1's id>
//! ```
//!
//! Arguments: data directory, listen address, then any bootstrap addresses
//! (the first peer prints the exact one to use). Commands on stdin:
//! `put <id> <text>`, `get <id>`, `del <id>`, `list`, `sync` (catch up now),
//! `quit`. Changes from the other peer are printed as they arrive.

use std::error::Error;

use netabase::node::{CatchUpOutcome, Event, Netabase, NetabaseConfig};
use netabase::store::Lookup;
use netabase::NetabaseModel;
use tokio::io::{AsyncBufReadExt, BufReader};

/// A short note. Named explicitly, so other programs that declare the same
/// model (in any module) share its records.
#[derive(NetabaseModel, Clone, Debug, PartialEq)]
#[netabase(name = "Note")]
pub struct Note {
    #[primary_key]
    pub id: u64,
    pub text: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "peer-1".into());
    let listen = args.next().unwrap_or_else(|| "/ip4/127.0.0.1/tcp/0".into());
    let config = NetabaseConfig {
        listen_addresses: vec![listen.parse()?],
        bootstrap_peers: args.map(|a| a.parse()).collect::<Result<_, _>>()?,
        ..NetabaseConfig::default()
    };
    let node = Netabase::new_with_path(&dir, config)?;
    node.register::<Note>()?;
    node.start_swarm().await?;
    for address in node.addresses() {
        println!("listening on {address}");
    }

    let mut events = node.subscribe_to_broadcasts();
    tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            match (&event, event.key::<Note>()) {
                (Event::Record { kind, origin, .. }, Some(NoteKey(id))) => {
                    println!("<- {kind:?} of note {id} from {origin:?}")
                }
                _ => println!("<- {event:?}"),
            }
        }
    });

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let mut words = line.split_whitespace();
        let result = match (words.next(), words.next().map(str::parse::<u64>)) {
            (Some("put"), Some(Ok(id))) => {
                let text = words.collect::<Vec<_>>().join(" ");
                node.put_record(Note { id, text })
                    .await
                    .map(|version| format!("published as version {version:?}"))
            }
            (Some("get"), Some(Ok(id))) => node
                .get_record::<Note>(NoteKey(id))
                .await
                .map(|n| format!("{n:?}")),
            (Some("del"), Some(Ok(id))) => {
                node.remove_record::<Note>(NoteKey(id)).await.map(|held| {
                    if held {
                        "deleted".to_string()
                    } else {
                        "deleted (it was not held here)".to_string()
                    }
                })
            }
            (Some("list"), None) => {
                let notes = node
                    .store()
                    .tree::<Note>()
                    .iter()?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(format!("{notes:?}"))
            }
            (Some("sync"), None) => node.catch_up_and_wait().await.map(|ends| {
                if ends.is_empty() {
                    return "no peer is connected: nothing to sync with".to_string();
                }
                let lines: Vec<String> = ends
                    .iter()
                    .map(|(peer, end)| match end {
                        CatchUpOutcome::CaughtUp { received, .. } => {
                            format!("{peer}: caught up, {received} record(s) received")
                        }
                        other => format!("{peer}: {other:?}"),
                    })
                    .collect();
                lines.join("\n")
            }),
            (Some("quit"), None) => break,
            _ => Ok(
                "commands: put <id> <text> | get <id> | del <id> | list | sync | quit".to_string(),
            ),
        };
        match result {
            Ok(message) => println!("{message}"),
            Err(error) => println!("error: {error}"),
        }
    }
    node.stop_swarm().await?;
    Ok(())
}
