//! Helpers shared by the tests that drive the `polycnn` binary on the shipped digits data.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs the binary: (exit code, stdout, stderr).
pub fn polycnn(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_polycnn"))
        .args(args)
        .output()
        .expect("run polycnn");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A file of `datasets/digits`, as an argument.
pub fn digits(file: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("datasets/digits")
        .join(file)
        .display()
        .to_string()
}

/// A JSON file (report, plan).
pub fn read(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The repository root: `CARGO_MANIFEST_DIR` at run time when set (`scripts/gpu_report.sh` runs
/// prebuilt test binaries on a machine where the build's path does not exist), else the build's.
#[allow(dead_code)] // the GPU tests use it, the binary-driving ones do not
pub fn repo_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}
