//! The benches `netabase::bench_main!` generates, for the storage benches'
//! own models (whose hand-written floors are in `benches/storage.rs`): what
//! a user gets for theirs with five lines.
//!
//! ```text
//! cargo bench --features bench --bench generated
//! ```

// Only the models are used here; the floors are the storage benches'.
#[allow(dead_code, unused_macros, unused_imports)]
mod common;

netabase::bench_main!(common::models::User, common::models::Post);
