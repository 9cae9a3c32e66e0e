//! Helpers shared by the integration tests: the real data and the GPU (skipping without them,
//! see src/test_data.rs) and driving the `polycnn` binary on the shipped digits data.
#![allow(dead_code)] // each test file uses some of them

use polycnn::gpu::Gpu;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

#[path = "../../src/test_data.rs"]
mod test_data;
#[allow(unused_imports)] // each test file uses some of them
pub use test_data::{REQUIRE_DATA, REQUIRE_GPU, data, data_root, has_data, skip};

/// The GPU adapter `Gpu::new` picks, opened once per test binary, or `None` after reporting the
/// skip (a panic when `POLYCNN_REQUIRE_GPU=1`). Use as `let Some(gpu) = gpu() else { return };`.
pub fn gpu() -> Option<&'static Gpu> {
    static GPU: OnceLock<Result<Gpu, String>> = OnceLock::new();
    match GPU.get_or_init(|| Gpu::new().map_err(|e| e.to_string())) {
        Ok(gpu) => Some(gpu),
        Err(e) => {
            skip(REQUIRE_GPU, e);
            None
        }
    }
}

/// A GPU device of the test's own (for a test that changes the device's state, e.g. its tile
/// policy), or `None` after reporting the skip as [`gpu`] does.
pub fn new_gpu() -> Option<Gpu> {
    Gpu::new().map_err(|e| skip(REQUIRE_GPU, &e.to_string())).ok()
}

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

/// Writes `n` deterministic images as a CIFAR-10 binary batch (label byte + 3x32x32 bytes per
/// image) to `path`: the layout the CIFAR networks read.
pub fn write_cifar_batch(path: &Path, n: usize) {
    let mut bytes = Vec::with_capacity(n * 3073);
    for i in 0..n {
        bytes.push((i % 10) as u8);
        bytes.extend((0..3072).map(|j| ((i * 131 + j * 7 + (j / 1024) * 50) % 256) as u8));
    }
    std::fs::write(path, bytes).unwrap();
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
