//! "+ CKKS noise" twins end to end (`eval`/`sweep --ckks`) on the shipped digits CNN: twins run
//! in the evaluation pass next to their base configuration; a precise bootstrap leaves the
//! plaintext approximation's predictions alone and a coarse one changes them; the counts do not
//! depend on batching, threads, shards, interruption or backend; the seed decides the noise.

mod common;

use common::{digits, gpu, polycnn, read};
use polycnn::eval::bounds::{BoundRule, RequestedBound};
use polycnn::eval::ckks_noise::PolyEval;
use polycnn::eval::command::run_eval;
use polycnn::eval::report::{ConfigReport, EvalReport};
use polycnn::eval::request::EvalRequest;
use polycnn::exec::NoProgress;
use polycnn::he::load_preset;
use polycnn::model::Arch;
use serde_json::Value;
use std::path::PathBuf;

const PRESET: &str = "openfhe-n12-s50";

/// α = 8 with B = 8 at every site on the first `images` digits, twins at 3 and 40 bits.
fn request(images: usize, batch: usize, seed: u64) -> EvalRequest {
    let bound: RequestedBound = BoundRule::Fixed { bound: 8.0 }.into();
    EvalRequest {
        alphas: vec![8],
        bound: bound.clone(),
        bound_max: bound,
        limit: Some(images),
        batch,
        ckks: Some(load_preset(PRESET).unwrap()),
        ckks_seed: seed,
        ckks_precisions: vec![3, 40],
        ..EvalRequest::new(
            Arch::DigitsCnn,
            digits("digits_cnn.safetensors").into(),
            digits("digits_test.bin").into(),
        )
    }
}

/// The report as JSON without what depends on the clock or the machine.
fn timeless(report: &EvalReport) -> Value {
    let mut json = serde_json::to_value(report).unwrap();
    for field in ["seconds", "images_per_second", "backend", "device", "scheme"] {
        json.as_object_mut().unwrap().remove(field);
    }
    json
}

/// What a twin counted: hits, agreement with exact and with its plaintext approximation.
fn counts(c: &ConfigReport) -> (u64, u64, u64, u64) {
    let t = c.ckks.as_ref().expect("a twin");
    (
        c.approx.top1_correct,
        c.approx.top5_correct,
        c.agree_count,
        t.agree_plaintext_count,
    )
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("polycnn-twins-{name}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn twins_run_next_to_their_base_and_precise_bootstrapping_keeps_predictions() {
    let report = run_eval(&request(300, 64, 5), None, &NoProgress).unwrap();
    assert_eq!(report.images, 300);
    let labels: Vec<&str> = report.configs.iter().map(|c| c.label.as_str()).collect();
    assert_eq!(report.configs.len(), 3, "{labels:?}");
    let (base, coarse, precise) = (&report.configs[0], &report.configs[1], &report.configs[2]);
    assert!(base.ckks.is_none());
    assert!(
        coarse.label.ends_with(&format!("+ CKKS {PRESET} @ 3 bits")),
        "{labels:?}"
    );
    for twin in [coarse, precise] {
        let t = twin.ckks.as_ref().unwrap();
        assert_eq!(t.base, base.label);
        assert_eq!(
            (t.info.preset.as_str(), t.info.seed, t.info.poly_eval),
            (PRESET, 5, "plain")
        );
        assert!(t.info.bootstraps > 0 && t.info.budget.bootstrapping > 0.0);
        assert_eq!(twin.alpha, 8);
    }
    let (c, p) = (coarse.ckks.as_ref().unwrap(), precise.ckks.as_ref().unwrap());
    assert_eq!(p.info.bootstrap_precision_bits, Some(40.0));
    assert_eq!(p.agree_plaintext_count, 300, "40-bit bootstrapping changed predictions");
    assert!(
        p.statistics_plaintext.max_abs_dlogit < 1e-3,
        "{:?}",
        p.statistics_plaintext
    );
    assert!(
        c.agree_plaintext_count < 285,
        "3-bit bootstrapping agreed on {} of 300",
        c.agree_plaintext_count
    );
    assert!(c.statistics_plaintext.mean_abs_dlogit > 100.0 * p.statistics_plaintext.mean_abs_dlogit);
    // its counts against its plaintext approximation, as a configuration's against exact
    assert_eq!(c.paired_plaintext.images, 300);
    assert_eq!(
        c.statistics_plaintext.flips_broken + c.paired_plaintext.both_right,
        base.approx.top1_correct
    );
    // the cost is the base's only; the two precisions make one precision curve
    assert_eq!(report.he_cost.len(), 1);
    assert_eq!(report.ckks_precision.len(), 1);
    assert_eq!(report.ckks_precision[0].label, base.label);
    assert_eq!(report.ckks_precision[0].points.len(), 2);
    // the same counts in batches of 37
    let again = run_eval(&request(300, 37, 5), None, &NoProgress).unwrap();
    for (a, b) in again.configs.iter().zip(&report.configs).skip(1) {
        assert_eq!(counts(a), counts(b), "{}", a.label);
    }
}

/// Counts only: the CPU convolution's sums may round differently with the thread count (logit
/// sums then differ in the 7th digit), the noise never does.
#[test]
fn one_thread_and_two_threads_give_identical_counts() {
    let on = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| run_eval(&request(100, 50, 1), None, &NoProgress).unwrap())
    };
    let (one, two) = (on(1), on(2));
    for (a, b) in one.configs.iter().zip(&two.configs).skip(1) {
        assert_eq!(counts(a), counts(b), "{}", a.label);
        assert_eq!(a.paired, b.paired);
    }
}

#[test]
fn the_same_seed_repeats_and_another_seed_differs() {
    let run = |seed| run_eval(&request(100, 50, seed), None, &NoProgress).unwrap();
    let (a, b, other) = (run(7), run(7), run(8));
    assert_eq!(timeless(&a), timeless(&b));
    let noise_sum = |r: &EvalReport| r.configs[1].ckks.as_ref().unwrap().logit_error_plaintext.sum_abs;
    assert_ne!(noise_sum(&a), noise_sum(&other), "seeds 7 and 8 drew the same noise");
    // the plaintext configuration does not depend on the seed
    assert_eq!(
        serde_json::to_value(&a.configs[0]).unwrap(),
        serde_json::to_value(&other.configs[0]).unwrap()
    );
}

#[test]
fn an_interrupted_run_with_twins_resumes_to_the_same_report() {
    let dir = scratch("resume");
    let whole = run_eval(&request(200, 40, 3), None, &NoProgress).unwrap();
    let resumable = EvalRequest {
        resume: Some(dir.join("state.json")),
        ..request(200, 40, 3)
    };
    let stopped = EvalRequest {
        stop_after_batches: Some(2),
        ..resumable.clone()
    };
    assert!(run_eval(&stopped, None, &NoProgress).is_err());
    // another seed is another run: the seed is part of the resume key, the state is refused
    let other_seed = EvalRequest {
        ckks_seed: 4,
        ..resumable.clone()
    };
    let refused = run_eval(&other_seed, None, &NoProgress).unwrap_err().to_string();
    assert!(refused.contains("belongs to a different run"), "{refused}");
    let resumed = run_eval(&resumable, None, &NoProgress).unwrap();
    assert_eq!(timeless(&resumed), timeless(&whole));
}

#[test]
fn he_order_twins_run_and_stay_close_to_the_plaintext_approximation() {
    let req = EvalRequest {
        ckks_poly_eval: PolyEval::He,
        ckks_precisions: vec![40],
        ..request(100, 50, 2)
    };
    let report = run_eval(&req, None, &NoProgress).unwrap();
    let twin = &report.configs[1];
    let t = twin.ckks.as_ref().unwrap();
    assert!(twin.label.ends_with("(HE order)"), "{}", twin.label);
    assert_eq!(t.info.poly_eval, "he");
    // the f64 HE-order evaluation against the base's f32 Clenshaw: tiny, but not nothing
    let d = t.statistics_plaintext.max_abs_dlogit;
    assert!(d > 0.0 && d < 1e-2, "max |Δlogit| vs plaintext {d}");
    assert!(t.agree_plaintext_count >= 99, "{}", t.agree_plaintext_count);
    // the GPU has no f64 HE-order kernel: refused before any work
    let on_gpu = EvalRequest { gpu: true, ..req };
    let Some(gpu) = gpu() else { return };
    let err = run_eval(&on_gpu, Some(gpu), &NoProgress).unwrap_err().to_string();
    assert!(err.contains("--backend cpu"), "{err}");
}

#[test]
fn gpu_twins_count_as_the_cpu_twins() {
    let Some(gpu) = gpu() else { return };
    let req = request(100, 50, 9);
    let cpu = run_eval(&req, None, &NoProgress).unwrap();
    let on_gpu = run_eval(&EvalRequest { gpu: true, ..req }, Some(gpu), &NoProgress).unwrap();
    assert_eq!(on_gpu.backend, "gpu");
    for (g, c) in on_gpu.configs.iter().zip(&cpu.configs).skip(1) {
        assert_eq!(counts(g), counts(c), "{}", g.label);
    }
}

/// The digits arguments of `eval`/`sweep` with twins.
fn digits_args(extra: &[&str]) -> Vec<String> {
    let (weights, data) = (digits("digits_cnn.safetensors"), digits("digits_test.bin"));
    let args = [
        "--model",
        "digits_cnn",
        "--weights",
        &weights,
        "--data",
        &data,
        "--alpha",
        "7..8",
        "--bound",
        "8",
        "--bound-max",
        "8",
        "--limit",
        "200",
        "--backend",
        "cpu",
        "--batch",
        "64",
        "--ckks",
        PRESET,
        "--ckks-seed",
        "11",
        "--ckks-precision",
        "4..6",
    ];
    args.iter().chain(extra).map(|a| a.to_string()).collect()
}

fn run_cli(command: &str, extra: &[&str]) {
    let mut args = vec![command.to_string()];
    args.extend(digits_args(extra));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, _, stderr) = polycnn(&args);
    assert_eq!(code, Some(0), "{stderr}");
}

fn untimed(mut report: Value) -> Value {
    let map = report.as_object_mut().unwrap();
    map.remove("seconds");
    map.remove("images_per_second");
    report
}

#[test]
fn merged_shards_with_twins_equal_the_single_run() {
    let dir = scratch("merge");
    let single = dir.join("single.json");
    run_cli("eval", &["--json", single.to_str().unwrap()]);
    let shards: Vec<PathBuf> = (0..2).map(|i| dir.join(format!("shard{i}.json"))).collect();
    for (i, path) in shards.iter().enumerate() {
        run_cli(
            "eval",
            &["--json", path.to_str().unwrap(), "--shard", &format!("{i}/2")],
        );
    }
    let merged = dir.join("merged.json");
    let (code, _, stderr) = polycnn(&[
        "merge",
        shards[1].to_str().unwrap(),
        shards[0].to_str().unwrap(),
        "--json",
        merged.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    // the check gate accepts the merged report against the single run, twins included
    let (code, stdout, stderr) = polycnn(&[
        "check",
        "--report",
        merged.to_str().unwrap(),
        "--baseline",
        single.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let (merged, single) = (untimed(read(&merged)), untimed(read(&single)));
    assert_eq!(merged, single);
    // 2 α × (1 plaintext + 3 precisions), and a precision curve per α
    assert_eq!(single["configs"].as_array().unwrap().len(), 8);
    assert_eq!(single["ckks_precision"].as_array().unwrap().len(), 2);
    assert_eq!(single["configs"][1]["ckks"]["seed"], 11);
}

#[test]
fn sweep_writes_twin_rows_the_precision_plot_and_predictions() {
    let dir = scratch("sweep");
    let predictions = dir.join("predictions.csv");
    run_cli(
        "sweep",
        &[
            "--out",
            dir.to_str().unwrap(),
            "--predictions",
            predictions.to_str().unwrap(),
        ],
    );
    let md = std::fs::read_to_string(dir.join("sweep.md")).unwrap();
    assert!(md.contains(&format!("| 7 + CKKS {PRESET} @ 4 bits |")), "{md}");
    assert!(md.contains("precision cliff"), "{md}");
    // every table row starts at the margin (an indented one renders as a code block)
    assert!(
        md.lines()
            .all(|l| !l.trim_start().starts_with('|') || l.starts_with('|')),
        "{md}"
    );
    let csv = std::fs::read_to_string(dir.join("sweep.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let rows: Vec<Vec<&str>> = csv.lines().skip(1).map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 8);
    assert!(rows.iter().all(|r| r.len() == header.len()), "{csv}");
    let bits = header.iter().position(|h| *h == "ckks_bootstrap_bits").unwrap();
    assert_eq!(rows[0][bits], "");
    assert_eq!(rows[1][bits], "4.0000");
    for plot in ["precision.svg", "precision.png", "sweep.svg"] {
        assert!(dir.join(plot).exists(), "{plot} missing");
    }
    let svg = std::fs::read_to_string(dir.join("sweep.svg")).unwrap();
    assert!(svg.contains("CKKS"), "the sweep plot draws no twin");
    let predictions = std::fs::read_to_string(&predictions).unwrap();
    let columns = predictions.lines().next().unwrap();
    assert!(columns.contains("ckks_openfhe_n12_s50_4_bits"), "{columns}");
}

#[test]
fn ckks_flags_need_ckks() {
    let (weights, data) = (digits("digits_cnn.safetensors"), digits("digits_test.bin"));
    let (code, _, stderr) = polycnn(&[
        "eval",
        "--model",
        "digits_cnn",
        "--weights",
        &weights,
        "--data",
        &data,
        "--ckks-precision",
        "8..10",
    ]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("give --ckks too"), "{stderr}");
    let (code, _, stderr) = polycnn(&[
        "eval",
        "--model",
        "digits_cnn",
        "--weights",
        &weights,
        "--data",
        &data,
        "--ckks",
        PRESET,
        "--ckks-poly-eval",
        "exact",
    ]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("expected plain or he"), "{stderr}");
}
