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

    /// A model with no secondary keys at all.
    #[derive(NetabaseModel, Clone, Debug, PartialEq, Eq)]
    pub struct Blob {
        #[primary_key]
        pub id: [u8; 16],
        pub bytes: Vec<u8>,
    }
}
