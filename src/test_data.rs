//! Where tests find the real data, and how a test without its data or GPU skips. One file for
//! both kinds of test: the library's unit tests compile it (`#[cfg(test)]`), tests/common
//! includes it by path.
//!
//! The data folder is `$POLYCNN_DATA`, by default `../shared/data` beside the repository root
//! (a relative `POLYCNN_DATA` is taken from the repository root too). A test whose data or GPU
//! adapter is missing prints `skipped: <test>: <why>` and passes, so `cargo test` passes on any
//! machine with Rust; `POLYCNN_REQUIRE_DATA=1` / `POLYCNN_REQUIRE_GPU=1` turn that skip into a
//! failure, so CI cannot go green by skipping.

use std::path::{Path, PathBuf};

/// Set to 1: a test whose real data is missing fails instead of skipping.
pub const REQUIRE_DATA: &str = "POLYCNN_REQUIRE_DATA";
/// Set to 1: a test that finds no GPU adapter fails instead of skipping.
pub const REQUIRE_GPU: &str = "POLYCNN_REQUIRE_GPU";

/// The real data folder (it may not exist).
pub fn data_root() -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    match std::env::var_os("POLYCNN_DATA") {
        // join keeps an absolute path as it is
        Some(dir) if !dir.is_empty() => repo.join(dir),
        _ => repo.join("../shared/data"),
    }
}

/// `relative` under the data folder, or `None` after reporting the skip (a panic when
/// `POLYCNN_REQUIRE_DATA=1`). Use as `let Some(path) = data("…") else { return };`.
pub fn data(relative: &str) -> Option<PathBuf> {
    let path = data_root().join(relative);
    if path.exists() {
        return Some(path);
    }
    skip(
        REQUIRE_DATA,
        &format!("needs {} (set POLYCNN_DATA to the data folder)", path.display()),
    );
    None
}

/// Whether every one of `relatives` exists under the data folder; if not, reports the skip for
/// the first missing one (a panic when `POLYCNN_REQUIRE_DATA=1`). Use as
/// `if !has_data(&["…", "…"]) { return; }` in a test that reads several parts of the data.
pub fn has_data(relatives: &[&str]) -> bool {
    relatives.iter().all(|relative| data(relative).is_some())
}

/// Reports that the running test is skipped for `why`, or fails it when `require_var` is set
/// to 1.
pub fn skip(require_var: &str, why: &str) {
    let test = std::thread::current().name().unwrap_or("test").to_owned();
    if required(require_var) {
        panic!("{test}: {why}; {require_var}=1 does not allow skipping");
    }
    println!("skipped: {test}: {why}");
}

fn required(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v.trim() == "1")
}
