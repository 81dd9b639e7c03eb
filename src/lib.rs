//! The non-published root package of the netabase workspace: it holds the
//! benches, integration tests and examples, and depends only on `netabase`,
//! as a user's crate would.
//!
//! Its library holds the models the tests share. It also builds for
//! `wasm32-unknown-unknown` with default features off, which is how CI checks
//! that the derive's output needs nothing native.

pub mod models {
    //! Models used across the integration tests.

    use netabase::NetabaseModel;

    /// An item of a shared list: the model of the browser tests and of the
    /// browser example.
    #[derive(NetabaseModel, Clone, Debug, PartialEq, Eq)]
    #[netabase(name = "Item")]
    pub struct Item {
        #[primary_key]
        pub id: u64,
        #[secondary_key]
        pub list: String,
        pub text: String,
    }

    /// A nested field type: derives bincode through netabase's re-export, so the
    /// test crate has no bincode dependency of its own.
    #[derive(Clone, Debug, PartialEq, Eq, netabase::Encode, netabase::Decode)]
    #[bincode(crate = "netabase::bincode")]
    pub struct Address {
        pub city: String,
        pub zip: u32,
    }

    /// Named explicitly: its stored identity survives a move or rename.
    #[derive(NetabaseModel, Clone, Debug, PartialEq, Eq)]
    #[netabase(name = "User")]
    pub struct User {
        #[primary_key]
        pub id: u64,
        pub name: String,
        #[secondary_key(unique)]
        pub email: String,
        #[secondary_key]
        pub age: u32,
        pub address: Option<Address>,
    }

    /// Named by default: `netabase_workspace::models::Post`.
    #[derive(NetabaseModel, Clone, Debug, PartialEq, Eq)]
    pub struct Post {
        #[primary_key]
        pub slug: String,
        pub body: String,
        #[secondary_key]
        pub tags: Vec<String>,
        #[secondary_key]
        pub editor: Option<String>,
        #[secondary_key]
        pub score: i64,
        #[secondary_key(unique)]
        pub checksum: [u8; 4],
    }

    pub fn user(id: u64, email: &str, age: u32) -> User {
        User {
            id,
            name: format!("user {id}"),
            email: email.to_string(),
            age,
            address: None,
        }
    }

    pub fn post(slug: &str, tags: &[&str], editor: Option<&str>, score: i64) -> Post {
        let mut checksum = [0u8; 4];
        for (i, b) in slug.bytes().enumerate() {
            checksum[i % 4] = checksum[i % 4].wrapping_mul(31).wrapping_add(b);
        }
        Post {
            slug: slug.to_string(),
            body: format!("body of {slug}"),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            editor: editor.map(str::to_string),
            score,
            checksum,
        }
    }

    /// Notes keyed by their owner's name, then a number: each owner's notes
    /// are one range of keys, so a device can subscribe to its user's alone
    /// (`tests/subscriptions.rs`).
    #[derive(NetabaseModel, Clone, Debug, PartialEq, Eq)]
    #[netabase(name = "Note")]
    pub struct Note {
        #[primary_key]
        pub id: (String, u64),
        #[secondary_key]
        pub list: String,
        pub text: String,
    }

    /// Note `n` of `owner`, in list `list`.
    pub fn note(owner: &str, n: u64, list: &str) -> Note {
        Note {
            id: (owner.to_string(), n),
            list: list.to_string(),
            text: format!("note {n} of {owner}"),
        }
    }

    /// A model with no secondary keys at all.
    #[derive(NetabaseModel, Clone, Debug, PartialEq, Eq)]
    pub struct Blob {
        #[primary_key]
        pub id: [u8; 16],
        pub bytes: Vec<u8>,
    }

    /// A record of about 350 bytes with a unique and a non-unique index: the
    /// model of the scale test (`tests/memory_scale.rs`) and bench
    /// (`benches/scale.rs`).
    #[derive(NetabaseModel, Clone, Debug, PartialEq, Eq)]
    #[netabase(name = "Entry")]
    pub struct Entry {
        #[primary_key]
        pub id: u64,
        #[secondary_key(unique)]
        pub handle: String,
        #[secondary_key]
        pub group: u32,
        pub body: String,
    }

    /// Entry `id`: its handle is unique, its group shared by one id in 100.
    pub fn entry(id: u64) -> Entry {
        // Varied text, so nothing below the store (a compressing file
        // system) makes the records look smaller than they are.
        let mut body = String::with_capacity(320);
        let mut x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        while body.len() < 310 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            body.push(char::from(b'a' + (x % 26) as u8));
        }
        Entry {
            id,
            handle: format!("entry-{id}@scale"),
            group: (id % 100) as u32,
            body,
        }
    }
}

/// The resident set of this process in kB, from `/proc/self/status`: what
/// `tests/memory_scale.rs` and `benches/scale.rs` measure.
///
/// # Panics
///
/// If `/proc/self/status` cannot be read or has no `VmRSS` line.
#[cfg(target_os = "linux")]
pub fn rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line in kB")
}
