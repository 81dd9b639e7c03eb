//! A typed store in a local redb file, without the network.
//!
//! ```text
//! cargo run --example store
//! ```
//!
//! Creates `netabase-demo/store.redb` (or the path given as the first
//! argument), writes typed records, queries them by primary key, unique and
//! non-unique secondary keys and ranges, and prints what it did with timings.

use std::error::Error;
use std::path::PathBuf;
use std::time::Instant;

use netabase::store::Lookup;
use netabase::{NetabaseModel, Store, StoreError};

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
    #[secondary_key]
    pub tags: Vec<String>,
    #[secondary_key]
    pub team: Option<String>,
}

const NAMES: [&str; 8] = [
    "ada", "alan", "grace", "barbara", "edsger", "donald", "frances", "ken",
];
const TAGS: [&str; 4] = ["admin", "rust", "ops", "design"];

fn make_user(id: u64) -> User {
    let name = NAMES[id as usize % NAMES.len()];
    User {
        id,
        name: format!("{name} #{id}"),
        email: format!("{name}.{id}@example.com"),
        age: 20 + (id * 7 % 45) as u32,
        tags: vec![
            TAGS[id as usize % 4].into(),
            TAGS[(id as usize / 4) % 4].into(),
        ],
        team: (!id.is_multiple_of(3)).then(|| format!("team-{}", id % 5)),
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let path = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("netabase-demo/store.redb"));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }

    let demo_started = Instant::now();
    let started = Instant::now();
    let store = Store::open(&path)?;
    let users = store.tree::<User>();
    println!(
        "opened {} in {:.2?} ({} users already there)",
        path.display(),
        started.elapsed(),
        users.len()?
    );

    let started = Instant::now();
    let written = users.put_many((0..1_000).map(make_user))?;
    println!(
        "put_many: {written} users in one durable transaction in {:.2?}",
        started.elapsed()
    );

    let started = Instant::now();
    users.put(&User {
        age: 99,
        ..make_user(42)
    })?;
    println!(
        "put: updated user 42 (age -> 99, index moved) in {:.2?}",
        started.elapsed()
    );

    let started = Instant::now();
    let user = users.get(&UserKey(42))?.ok_or("user 42 is missing")?;
    println!(
        "get(UserKey(42)) -> {} <{}>, age {} in {:.2?}",
        user.name,
        user.email,
        user.age,
        started.elapsed()
    );

    let started = Instant::now();
    let by_email = users.by_email("grace.10@example.com")?;
    println!(
        "by_email(\"grace.10@example.com\") -> {:?} in {:.2?}",
        by_email.map(|u| u.id),
        started.elapsed()
    );

    let started = Instant::now();
    let thirty = users.by_age(30)?;
    println!(
        "by_age(30) -> {} users in {:.2?}",
        thirty.len(),
        started.elapsed()
    );

    let started = Instant::now();
    let range = users.by_age_range(60..)?;
    println!(
        "by_age_range(60..) -> {} users, ages {:?} in {:.2?}",
        range.len(),
        range
            .iter()
            .map(|u| u.age)
            .collect::<std::collections::BTreeSet<_>>(),
        started.elapsed()
    );

    println!(
        "by_tags(\"rust\") -> {} users (each tag of a Vec is indexed)",
        users.by_tags("rust")?.len()
    );
    println!(
        "by_team(\"team-1\") -> {} users (None is not indexed)",
        users.by_team("team-1")?.len()
    );

    let started = Instant::now();
    let first_ten: Vec<u64> = users
        .range(UserKey(100)..UserKey(110))?
        .map(|u| u.map(|u| u.id))
        .collect::<Result<_, _>>()?;
    println!(
        "range(100..110) -> {first_ten:?} in {:.2?}",
        started.elapsed()
    );

    match users.put(&User {
        id: 5_000,
        ..make_user(7)
    }) {
        Err(StoreError::UniqueViolation { model, index }) => {
            println!(
                "put of a second user with {}'s email refused: unique index {model}.{index}",
                make_user(7).email
            )
        }
        other => return Err(format!("expected a unique violation, got {other:?}").into()),
    }

    let removed = users.remove(&UserKey(999))?;
    println!(
        "remove(UserKey(999)) -> {:?}; {} users left",
        removed.map(|u| u.name),
        users.len()?
    );
    println!(
        "done in {:.2?}; the database stays at {}",
        demo_started.elapsed(),
        path.display()
    );
    Ok(())
}
