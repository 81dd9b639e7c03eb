//! The benches `netabase::bench_main!` generates, for the storage benches'
//! own models: what a user gets for theirs with five lines, node groups
//! included. `benches/storage.rs` runs the generated storage groups beside
//! its hand-written floors.
//!
//! ```text
//! cargo bench --features bench --bench generated
//! ```

// Only the models are used here; the floors are the storage benches'.
#[allow(dead_code, unused_macros, unused_imports)]
mod common;

netabase::bench_main!(common::models::User, common::models::Post);
