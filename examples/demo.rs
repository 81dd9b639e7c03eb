//! The main demo: three Netabase nodes on 127.0.0.1, each with its own redb
//! database in `netabase-demo/` (or the directory given as the first
//! argument). Node A writes typed records; they arrive on B and C, where they
//! are queried by primary and secondary key; C fetches a record only A holds;
//! A deletes one and the delete travels. Prints what happened with timings.
//!
//! ```text
//! cargo run --example demo
//! ```

use std::error::Error;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use netabase::node::{ChangeKind, Event, Netabase, NetabaseConfig, Origin, WriteQuorum};
use netabase::store::Lookup;
use netabase::NetabaseModel;
use tokio::sync::broadcast;

/// A user of some application.
#[derive(NetabaseModel, Clone, Debug, PartialEq)]
pub struct User {
    #[primary_key]
    pub id: u64,
    pub name: String,
    #[secondary_key(unique)]
    pub email: String,
    #[secondary_key]
    pub age: u32,
}

const RECORDS: u64 = 20;
const WAIT: Duration = Duration::from_secs(30);

async fn start(
    dir: PathBuf,
    bootstrap: Option<&Netabase>,
    quorum: usize,
) -> Result<Netabase, Box<dyn Error>> {
    let mut config = NetabaseConfig::loopback();
    config.write_quorum =
        WriteQuorum::AtLeast(NonZeroUsize::new(quorum).ok_or("quorum must be at least 1")?);
    if let Some(peer) = bootstrap {
        let address = peer
            .addresses()
            .first()
            .cloned()
            .ok_or("peer is not listening")?;
        config.bootstrap_peers = vec![address];
    }
    let node = Netabase::new_with_path(&dir, config)?;
    node.register::<User>()?;
    node.start_swarm().await?;
    Ok(node)
}

/// Waits until puts of `count` distinct records have arrived on a node
/// (pushed by A over Kademlia, or brought by catch-up from any peer).
async fn arrivals(
    events: &mut broadcast::Receiver<Event>,
    count: usize,
) -> Result<(), Box<dyn Error>> {
    let mut seen = std::collections::HashSet::new();
    tokio::time::timeout(WAIT, async {
        while seen.len() < count {
            match events.recv().await {
                Ok(Event::Record {
                    kind: ChangeKind::Put,
                    origin: Origin::Peer(_),
                    key,
                    ..
                }) => {
                    seen.insert(key);
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    })
    .await?;
    if seen.len() < count {
        return Err("event stream closed early".into());
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let root = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("netabase-demo"));
    // Each run starts from empty node directories (only the three it
    // makes), so what it reports (a fetch from the network, records
    // arriving) is this run's doing.
    for node in ["a", "b", "c"] {
        let dir = root.join(node);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
    }
    let started = Instant::now();

    // A publishes with a write quorum of 2: both other nodes must store each record.
    let a = start(root.join("a"), None, 2).await?;
    let mut a_events = a.subscribe_to_broadcasts();
    let b = start(root.join("b"), Some(&a), 1).await?;
    let c = start(root.join("c"), Some(&a), 1).await?;
    let (mut b_events, mut c_events) = (b.subscribe_to_broadcasts(), c.subscribe_to_broadcasts());
    println!("started 3 nodes in {:.1?}:", started.elapsed());
    for (name, node) in [("A", &a), ("B", &b), ("C", &c)] {
        println!("  {name} {} on {:?}", node.peer_id(), node.addresses());
    }

    // Wait until A has met both peers (bounded), so its first put has somewhere to go.
    let mut met = 0;
    tokio::time::timeout(WAIT, async {
        while met < 2 {
            if let Ok(Event::PeerConnected(_)) = a_events.recv().await {
                met += 1;
            }
        }
    })
    .await?;

    let users: Vec<User> = (1..=RECORDS)
        .map(|id| User {
            id,
            name: format!("user {id}"),
            email: format!("user{id}@example.com"),
            age: 20 + (id % 5) as u32,
        })
        .collect();
    let t = Instant::now();
    for user in &users {
        a.put_record(user.clone()).await?;
    }
    println!("A: put_record x{RECORDS} (durable commit + Kademlia put, quorum 2) in {:.1?} ({:.2?} each)", t.elapsed(), t.elapsed() / RECORDS as u32);

    let t = Instant::now();
    arrivals(&mut b_events, RECORDS as usize).await?;
    arrivals(&mut c_events, RECORDS as usize).await?;
    println!(
        "B and C: all {RECORDS} records arrived (the last {:.1?} after the last put)",
        t.elapsed()
    );

    for (name, node) in [("B", &b), ("C", &c)] {
        let users = node.store().tree::<User>();
        let t = Instant::now();
        let seven = users.get(&UserKey(7))?.ok_or("user 7 missing")?;
        let by_email = users
            .by_email("user12@example.com")?
            .ok_or("user 12 missing")?;
        let age_22 = users.by_age(22)?;
        println!(
            "{name}: get(UserKey(7)) -> {:?}; by_email(\"user12@example.com\") -> id {}; by_age(22) -> {} users; in {:.1?}",
            seven.name, by_email.id, age_22.len(), t.elapsed()
        );
    }

    // A record only A holds: C fetches it from the network, validates and stores it.
    let secret = User {
        id: 1000,
        name: "local to A".into(),
        email: "only-a@example.com".into(),
        age: 99,
    };
    a.put_record_locally(secret.clone()).await?;
    let t = Instant::now();
    let fetched = c.get_record::<User>(UserKey(1000)).await?;
    println!(
        "C: get_record(UserKey(1000)) fetched {:?} from the network in {:.1?}",
        fetched.name,
        t.elapsed()
    );
    if fetched != secret {
        return Err("fetched record differs".into());
    }

    // Deletes travel as signed tombstones.
    let t = Instant::now();
    a.remove_record::<User>(UserKey(3)).await?;
    tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(Event::Record {
                kind: ChangeKind::Delete,
                ..
            }) = b_events.recv().await
            {
                break;
            }
        }
    })
    .await?;
    println!(
        "A: remove_record(UserKey(3)); B saw the delete after {:.1?}; B now has user 3: {}",
        t.elapsed(),
        b.store().tree::<User>().get(&UserKey(3))?.is_some()
    );

    println!(
        "stats: A {:?}, B {:?}, C {:?}",
        a.stats(),
        b.stats(),
        c.stats()
    );
    for node in [&a, &b, &c] {
        node.stop_swarm().await?;
    }
    println!(
        "done in {:.1?}; data stays in {}",
        started.elapsed(),
        root.display()
    );
    Ok(())
}
