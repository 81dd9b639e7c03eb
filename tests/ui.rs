//! Compile-fail tests: every model error the derive reports, with its span.
//! Snapshots (`tests/ui/*.stderr`) are tied to the pinned toolchain.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
