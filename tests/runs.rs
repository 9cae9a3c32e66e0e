//! Sharded runs, `merge` and the `check` gate through the binary, on the shipped digits data.

mod common;

use common::{digits, polycnn, read};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A fresh scratch folder per test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("polycnn-runs-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The digits CNN's model, data and α arguments (CPU backend, batches of 64: shard edges and
/// batch edges do not align).
fn digits_args(alpha: &str) -> Vec<String> {
    let (weights, data) = (digits("digits_cnn.safetensors"), digits("digits_test.bin"));
    let args = [
        "--model",
        "digits_cnn",
        "--weights",
        &weights,
        "--data",
        &data,
        "--alpha",
        alpha,
    ];
    args.iter()
        .chain(&["--backend", "cpu", "--batch", "64"])
        .map(|a| a.to_string())
        .collect()
}

/// `eval` of the digits CNN at α (bounds from the paper's search) writing `json`.
fn eval_digits_at(alpha: &str, json: &Path, extra: &[&str]) {
    let mut args = vec!["eval".to_string()];
    args.extend(digits_args(alpha));
    args.extend(["--json".to_string(), json.to_str().unwrap().to_string()]);
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, _, stderr) = polycnn(&args);
    assert_eq!(code, Some(0), "{stderr}");
}

/// [`eval_digits_at`] α 6..8.
fn eval_digits(json: &Path, extra: &[&str]) {
    eval_digits_at("6..8", json, extra);
}

/// The report without what depends on timing.
fn untimed(mut report: Value) -> Value {
    let map = report.as_object_mut().unwrap();
    map.remove("seconds");
    map.remove("images_per_second");
    report
}

#[test]
fn merged_shards_equal_the_single_run() {
    let dir = scratch("merge");
    let single = dir.join("single.json");
    eval_digits(&single, &[]);
    // 3 shards of 500 images (166/167/167) with batches of 64: shard and batch edges do not align
    let shards: Vec<PathBuf> = (0..3).map(|i| dir.join(format!("shard{i}.json"))).collect();
    for (i, path) in shards.iter().enumerate() {
        eval_digits(path, &["--shard", &format!("{i}/3")]);
        let report = read(path);
        assert_eq!(report["shard"]["index"], i);
        assert_eq!(report["shard"]["dataset_images"], 500);
    }
    assert_eq!(read(&shards[0])["images"], 166);
    let merged = dir.join("merged.json");
    let s: Vec<&str> = shards.iter().map(|p| p.to_str().unwrap()).collect();
    let (code, _, stderr) = polycnn(&["merge", s[2], s[0], s[1], "--json", merged.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(untimed(read(&merged)), untimed(read(&single)));

    // refusals: a shard twice, a missing shard, a whole run, a shard of another α set
    let refused = |args: &[&str], needle: &str| {
        let (code, _, stderr) = polycnn(args);
        assert_eq!(code, Some(1), "{args:?}");
        assert!(stderr.contains(needle), "expected '{needle}' in: {stderr}");
    };
    let out = dir.join("refused.json");
    let out = out.to_str().unwrap();
    refused(&["merge", s[0], s[1], s[1], "--json", out], "given twice");
    refused(&["merge", s[0], s[2], "--json", out], "missing shard reports: 1/3");
    refused(
        &["merge", s[0], s[1], s[2], single.to_str().unwrap(), "--json", out],
        "not a shard report",
    );
    let other_alpha = dir.join("other_alpha.json");
    eval_digits_at("7..9", &other_alpha, &["--shard", "1/3"]);
    refused(
        &["merge", s[0], other_alpha.to_str().unwrap(), s[2], "--json", out],
        // the first field that differs names the configurations (α = 6 vs 7)
        "(only shards of one run can be merged)",
    );
    assert!(!Path::new(out).exists());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_shards_are_refused() {
    let (weights, data) = (digits("digits_cnn.safetensors"), digits("digits_test.bin"));
    for shard in ["3/3", "x", "1/0"] {
        let (code, _, stderr) = polycnn(&[
            "eval",
            "--model",
            "digits_cnn",
            "--weights",
            &weights,
            "--data",
            &data,
            "--backend",
            "cpu",
            "--shard",
            shard,
        ]);
        assert_eq!(code, Some(1));
        assert!(stderr.contains("--shard"), "{stderr}");
    }
}

#[test]
fn check_exit_codes() {
    let dir = scratch("check");
    let baseline = dir.join("baseline.json");
    eval_digits(&baseline, &[]);
    let report = read(&baseline);
    let write = |name: &str, r: &Value| {
        let path = dir.join(name);
        std::fs::write(&path, serde_json::to_string(r).unwrap()).unwrap();
        path.to_str().unwrap().to_string()
    };
    let base = baseline.to_str().unwrap();
    let check =
        |now: &str, tolerance: &str| polycnn(&["check", "--report", now, "--baseline", base, "--tolerance", tolerance]);

    // the same report passes
    let (code, stdout, _) = check(base, "0.2");
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("check passed"), "{stdout}");

    // α=7 top-1 down by 0.6 points: fails at tolerance 0.2, passes at 1
    let mut worse = report.clone();
    let top1 = worse["configs"][1]["approx"]["top1"].as_f64().unwrap();
    worse["configs"][1]["approx"]["top1"] = (top1 - 0.6).into();
    let worse = write("worse.json", &worse);
    let (code, stdout, _) = check(&worse, "0.2");
    assert_eq!(code, Some(1), "{stdout}");
    let line = stdout.lines().find(|l| l.contains("REGRESSION")).expect("a marked row");
    assert!(
        line.contains("α=7") && line.contains("top-1") && line.contains("-0.60"),
        "{line}"
    );
    assert_eq!(check(&worse, "1").0, Some(0));

    // a better figure is no regression
    let mut better = report.clone();
    better["configs"][0]["agreement"] = 100.0.into();
    assert_eq!(check(&write("better.json", &better), "0").0, Some(0));

    // unusable: unreadable, not a report, another model, a configuration missing
    let missing = dir.join("missing.json");
    assert_eq!(check(missing.to_str().unwrap(), "0.2").0, Some(2));
    assert_eq!(
        check(&write("garbage.json", &serde_json::json!({"a": 1})), "0.2").0,
        Some(2)
    );
    let mut other_model = report.clone();
    other_model["model"] = "resnet20".into();
    let (code, _, stderr) = check(&write("other_model.json", &other_model), "0.2");
    assert_eq!(code, Some(2));
    assert!(stderr.contains("resnet20"), "{stderr}");
    let mut fewer = report.clone();
    fewer["configs"].as_array_mut().unwrap().pop();
    let (code, _, stderr) = check(&write("fewer.json", &fewer), "0.2");
    assert_eq!(code, Some(2));
    assert!(stderr.contains("α=8"), "{stderr}");
    assert_eq!(check(base, "-1").0, Some(2));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn slurm_script_runs_shards_then_merges() {
    // scripts/slurm_sweep.sh under a stand-in sbatch that runs each job at once
    let dir = scratch("slurm");
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(root.join("tests/fixtures/fake_sbatch"), bin.join("sbatch")).unwrap();
    let single = dir.join("single.json");
    eval_digits(&single, &[]);
    let out = dir.join("sweep out"); // a space: arguments must survive the job's shell
    let log = dir.join("sbatch.log");
    let status = Command::new("bash")
        .arg(root.join("scripts/slurm_sweep.sh"))
        .arg(&out)
        .arg("4")
        .args(digits_args("6..8"))
        .env("PATH", format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()))
        .env("POLYCNN", env!("CARGO_BIN_EXE_polycnn"))
        .env("BASELINE", &single)
        .env("FAKE_SBATCH_LOG", &log)
        .status()
        .unwrap();
    assert!(status.success());
    let submitted = std::fs::read_to_string(&log).unwrap();
    assert!(
        submitted.contains("--array=0-3") && submitted.contains("--dependency=afterok:"),
        "{submitted}"
    );
    assert_eq!(untimed(read(&out.join("report.json"))), untimed(read(&single)));
    let check = std::fs::read_to_string(out.join("logs/check.log")).unwrap();
    assert!(check.contains("check passed"), "{check}");
    std::fs::remove_dir_all(&dir).ok();
}
