//! polycnn gates itself: CI evaluates the akamaster ResNet-20 for α = 8..14 on the 1,000
//! lossless CIFAR-10 test images (the official B search, CPU backend) and `polycnn check`s the
//! report against the accepted one in tests/fixtures/ci/ — the README's CI example, run for real.
//!
//! It runs where `POLYCNN_REQUIRE_DATA=1` (.ci/run sets it): about 3.5 minutes on 2 busy cores,
//! too long for every local `cargo test`, so elsewhere it says it is skipped. To accept a new
//! baseline after an intended change, rerun the command in `gate_command` with
//! `--json tests/fixtures/ci/resnet20_alpha8-14.json` and commit the file with the reason.

mod common;

use common::polycnn;
use std::path::{Path, PathBuf};

const BASELINE: &str = "tests/fixtures/ci/resnet20_alpha8-14.json";
/// Percentage points a top-1/top-5/agreement figure may drop (2 of the 1,000 images).
const TOLERANCE: &str = "0.2";

/// `POLYCNN_DATA`, or `../shared/data` beside the repository (relative paths from the root).
fn data_root() -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    match std::env::var_os("POLYCNN_DATA") {
        Some(dir) if !dir.is_empty() => repo.join(dir),
        _ => repo.join("../shared/data"),
    }
}

fn gate_command(data: &Path, json: &Path) -> Vec<String> {
    let data = |relative: &str| data.join(relative).display().to_string();
    [
        "eval",
        "--model",
        "resnet20",
        "--weights",
        &data("cifar10/weights_akamaster/resnet20-12fca82f.th"),
        "--data",
        &data("cifar10/test_first1000_png"),
        "--alpha",
        "8..14",
        "--backend",
        "cpu",
        "--json",
        &json.display().to_string(),
    ]
    .map(String::from)
    .to_vec()
}

#[test]
fn resnet20_alpha_8_to_14_holds_its_baseline() {
    if std::env::var("POLYCNN_REQUIRE_DATA").map_or(true, |v| v.trim() != "1") {
        println!(
            "skipped: resnet20_alpha_8_to_14_holds_its_baseline: CI's accuracy gate (minutes of CPU) \
             runs where POLYCNN_REQUIRE_DATA=1, as .ci/run sets"
        );
        return;
    }
    let data = data_root();
    assert!(
        data.join("cifar10/test_first1000_png").exists(),
        "{} has no cifar10/test_first1000_png (set POLYCNN_DATA); POLYCNN_REQUIRE_DATA=1 does not allow skipping",
        data.display()
    );
    let dir = std::env::temp_dir().join(format!("polycnn-ci-gate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let now = dir.join("now.json");
    let args = gate_command(&data, &now);
    let (code, _, stderr) = polycnn(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, Some(0), "{stderr}");
    let baseline = Path::new(env!("CARGO_MANIFEST_DIR")).join(BASELINE);
    let (code, stdout, stderr) = polycnn(&[
        "check",
        "--report",
        now.to_str().unwrap(),
        "--baseline",
        baseline.to_str().unwrap(),
        "--tolerance",
        TOLERANCE,
    ]);
    assert_eq!(code, Some(0), "the accuracy gate failed:\n{stdout}{stderr}");
    // the gate compares every configuration of the baseline, exact included
    for label in ["exact", "α=8 (ReLU)", "α=14 (ReLU)"] {
        assert!(stdout.contains(label), "{label} not compared:\n{stdout}");
    }
    // and it does fail: the same report against a baseline whose α = 14 top-1 was 1 point higher
    let mut better: serde_json::Value = common::read(&baseline);
    let top1 = better["configs"][6]["approx"]["top1"].as_f64().unwrap();
    better["configs"][6]["approx"]["top1"] = (top1 + 1.0).into();
    let raised = dir.join("raised.json");
    std::fs::write(&raised, serde_json::to_string(&better).unwrap()).unwrap();
    let (code, stdout, _) = polycnn(&[
        "check",
        "--report",
        now.to_str().unwrap(),
        "--baseline",
        raised.to_str().unwrap(),
        "--tolerance",
        TOLERANCE,
    ]);
    assert_eq!(code, Some(1), "a 1-point drop must fail the gate:\n{stdout}");
    std::fs::remove_dir_all(&dir).unwrap();
}
