//! Non-published root package: benches, tests and examples live here.
