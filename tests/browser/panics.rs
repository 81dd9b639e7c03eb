//! Panics outside a test's own code: in a task a test spawned, or one the
//! node runs. The wasm build aborts on a panic, and such a task's abort is
//! an uncaught `RuntimeError` that the runner only prints ("Worker error"):
//! every test would still pass. A hook records each panic, and every test
//! fails on one recorded since the previous test ended. Shared by
//! `tests/browser.rs` and `tests/browser_measure.rs`; a panic after the last
//! test is left to `tests/browser/run`, which fails on the runner's line.

use std::cell::{Cell, RefCell};
use std::sync::Once;

thread_local! {
    static PANICS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    /// A test holds a [`Watch`]: set until it ends well (a failing test's
    /// own panic, or its watch's, is recorded too).
    static WATCHING: Cell<bool> = const { Cell::new(false) };
}

/// Held for a test's whole run: fails it on a panic elsewhere in the
/// worker since the previous test ended, or during this one.
#[must_use = "held until the test ends"]
pub struct Watch(());

/// Starts watching for panics; call first in each test.
pub fn watch() -> Watch {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.with(|panics| {
                if let Ok(mut panics) = panics.try_borrow_mut() {
                    panics.push(info.to_string());
                }
            });
            // wasm-bindgen-test's: the message in the failing test's output.
            previous(info);
        }));
    });
    if WATCHING.replace(true) {
        // The previous test failed, on a panic of its own (its watch was
        // never dropped): that one is already reported as its failure.
        PANICS.with(|panics| panics.borrow_mut().clear());
    }
    check("before this test started");
    Watch(())
}

impl Drop for Watch {
    fn drop(&mut self) {
        check("while this test ran");
        WATCHING.set(false);
    }
}

fn check(when: &str) {
    let panics = PANICS.with(|panics| std::mem::take(&mut *panics.borrow_mut()));
    assert!(
        panics.is_empty(),
        "a task in the worker panicked {when}:\n{}",
        panics.join("\n")
    );
}
