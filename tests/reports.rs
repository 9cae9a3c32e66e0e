//! What users see of a run, on the shipped digits data (no shared data, no GPU): an
//! interrupted run resumes to the same report, per-image predictions, the statistics in the
//! report and the sweep tables, preprocessing flags, outputs checked before the run.

mod common;

use common::{digits, polycnn, read};
use polycnn::eval::command::run_eval;
use polycnn::eval::report::EvalReport;
use polycnn::eval::request::EvalRequest;
use polycnn::eval::resume::state_path_for;
use polycnn::exec::NoProgress;
use polycnn::model::Arch;
use serde_json::Value;
use std::path::PathBuf;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("polycnn-reports-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// α 6..8 on the 500 digits in batches of 40 (13 batches, the last one short).
fn digits_request() -> EvalRequest {
    EvalRequest {
        alphas: vec![6, 7, 8],
        batch: 40,
        predictions: true,
        ..EvalRequest::new(
            Arch::DigitsCnn,
            digits("digits_cnn.safetensors").into(),
            digits("digits_test.bin").into(),
        )
    }
}

/// The report as JSON without what depends on the clock.
fn timeless(report: &EvalReport) -> Value {
    let mut json = serde_json::to_value(report).unwrap();
    for field in ["seconds", "images_per_second"] {
        json.as_object_mut().unwrap().remove(field);
    }
    json
}

#[test]
fn an_interrupted_run_resumes_to_the_uninterrupted_report() {
    let dir = scratch("resume");
    let whole = run_eval(&digits_request(), None, &NoProgress).unwrap();

    let state = state_path_for(&dir.join("r.json"));
    let search_state = dir.join("r.json.resume.json.search");
    let resumable = EvalRequest {
        resume: Some(state.clone()),
        ..digits_request()
    };
    // interrupted twice (after 3 batches, then after 7 in all), then run to the end
    for stop in [3, 7] {
        let interrupted = EvalRequest {
            stop_after_batches: Some(stop),
            ..resumable.clone()
        };
        let err = run_eval(&interrupted, None, &NoProgress).unwrap_err().to_string();
        assert!(err.contains(&format!("stopped after {stop} batches")), "{err}");
        let saved = read(&state);
        assert_eq!(saved["batches_done"], stop);
        assert_eq!(saved["progress"]["images"], stop as u64 * 40);
        // the B searches of the three configurations are kept too (not rerun on resuming)
        let searches = read(&search_state);
        assert_eq!(searches["progress"].as_array().unwrap().len(), 3);
    }
    let resumed = run_eval(&resumable, None, &NoProgress).unwrap();
    assert!(
        !state.exists() && !search_state.exists(),
        "a finished run removes its state"
    );
    assert_eq!(timeless(&resumed), timeless(&whole));
    assert_eq!(resumed.predictions, whole.predictions);
    assert_eq!(resumed.predictions.len(), 500);

    // a state is only continued by the same run
    let interrupted = EvalRequest {
        stop_after_batches: Some(2),
        ..resumable.clone()
    };
    run_eval(&interrupted, None, &NoProgress).unwrap_err();
    let other = EvalRequest {
        alphas: vec![6, 7],
        ..resumable.clone()
    };
    let err = run_eval(&other, None, &NoProgress).unwrap_err().to_string();
    assert!(err.contains("different run") && err.contains("resume"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn statistics_agree_with_the_counts() {
    let report = run_eval(&digits_request(), None, &NoProgress).unwrap();
    assert_eq!(report.images, 500);
    for c in &report.configs {
        let p = &c.paired;
        assert_eq!(p.images, 500);
        assert_eq!(p.exact_right(), report.exact.top1_correct, "{}", c.label);
        assert_eq!(p.approx_right(), c.approx.top1_correct, "{}", c.label);
        let s = &c.statistics;
        let drop = report.exact.top1 - c.approx.top1;
        assert!(
            (s.top1_drop - drop).abs() < 1e-9,
            "{}: {} vs {drop}",
            c.label,
            s.top1_drop
        );
        assert!(s.top1_drop_interval.lo <= drop && drop <= s.top1_drop_interval.hi);
        assert!(s.top1_interval.lo <= c.approx.top1 && c.approx.top1 <= s.top1_interval.hi);
        assert!((0.0..=1.0).contains(&s.mcnemar_p));
        assert!(s.max_abs_dlogit > 0.0 && s.mean_abs_dlogit <= s.max_abs_dlogit);
        // the per-image rows carry the same maxima and flips
        let rows = &report.predictions;
        let i = report.configs.iter().position(|x| x.label == c.label).unwrap();
        let max = rows.iter().map(|r| r.approx[i].max_abs_delta).fold(0.0, f64::max);
        assert_eq!(max, s.max_abs_dlogit);
        let broke = rows
            .iter()
            .filter(|r| r.exact_top1 == Some(r.label) && r.approx[i].top1 != Some(r.label))
            .count();
        assert_eq!(broke as u64, s.flips_broken);
    }
    // more precision, smaller logit error
    let max: Vec<f64> = report.configs.iter().map(|c| c.statistics.max_abs_dlogit).collect();
    assert!(max[0] > max[1] && max[1] > max[2], "{max:?}");
}

#[test]
fn sweep_tables_and_predictions_describe_themselves() {
    let dir = scratch("sweep");
    let (json, predictions) = (dir.join("r.json"), dir.join("p.csv"));
    let (code, _, stderr) = polycnn(&[
        "sweep",
        "--model",
        "digits_cnn",
        "--weights",
        &digits("digits_cnn.safetensors"),
        "--data",
        &digits("digits_test.bin"),
        "--alpha",
        "7..8",
        "--bound",
        "8",
        "--bound-max",
        "9",
        "--batch",
        "100",
        "--backend",
        "cpu",
        "--out",
        dir.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "--predictions",
        predictions.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let csv = std::fs::read_to_string(dir.join("sweep.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3);
    let header: Vec<&str> = lines[0].split(',').collect();
    let row: Vec<&str> = lines[1].split(',').collect();
    let field = |name: &str| row[header.iter().position(|h| *h == name).unwrap()];
    assert_eq!(field("model"), "digits_cnn");
    assert_eq!(field("weights"), "digits_cnn.safetensors");
    let sha = read(&json)["weights_sha256"].as_str().unwrap().to_string();
    assert_eq!(sha.len(), 64);
    assert!(sha.starts_with(field("weights_sha256")));
    assert_eq!((field("images"), field("dataset_images")), ("500", "500"));
    assert_eq!((field("relu"), field("maxpool")), ("approx", "approx"));
    assert_eq!((field("alpha"), field("b_relu"), field("b_max")), ("7", "8", "9"));
    let md = std::fs::read_to_string(dir.join("sweep.md")).unwrap();
    assert!(
        md.starts_with("**digits_cnn**") && md.contains(&sha[..12]) && md.contains("500 of 500 images"),
        "{md}"
    );
    let rows = std::fs::read_to_string(&predictions).unwrap();
    assert_eq!(rows.lines().count(), 501);
    assert!(rows.starts_with("image,label,exact_top1,exact_margin,alpha7_relu_max_pool_top1,"));
    assert!(!state_path_for(&json).exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn outputs_and_preprocessing_are_checked_before_the_run() {
    let dir = scratch("checks");
    let base = [
        "eval",
        "--model",
        "digits_cnn",
        "--weights",
        &digits("digits_cnn.safetensors"),
        "--data",
        &digits("digits_test.bin"),
        "--backend",
        "cpu",
    ]
    .map(String::from);
    let run = |extra: &[&str]| {
        let args: Vec<&str> = base.iter().map(String::as_str).chain(extra.iter().copied()).collect();
        polycnn(&args)
    };
    let missing = dir.join("missing/r.json");
    let (code, _, stderr) = run(&["--json", missing.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("does not exist") && !stderr.contains("trying B_relu"),
        "{stderr}"
    );
    let (code, _, stderr) = run(&["--resize", "16"]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("--resize") && stderr.contains("do not apply"),
        "{stderr}"
    );
    let (code, _, stderr) = run(&["--interpolation", "lanczos"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("bilinear or bicubic"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bound_searches_read_back_exactly() {
    use polycnn::eval::{BoundSearch, Overflow, SearchTry};
    let overflow = |kind, max_abs| Overflow {
        kind,
        site: "layer3.2.relu2".into(),
        max_abs,
        images: vec![3, 1, 4],
        images_run: 832,
    };
    let search = BoundSearch {
        label: "α=8 (ReLU)".into(),
        relu_bound: Some(60.0),
        maxpool_bound: Some(50.0),
        tries: vec![
            SearchTry {
                relu_bound: Some(50.0),
                maxpool_bound: Some(50.0),
                images_run: 832,
                overflow: Some(overflow("relu", 52.152_f32 as f64)),
            },
            // a non-finite activation: written as null, read back as infinite
            SearchTry {
                relu_bound: Some(55.0),
                maxpool_bound: Some(50.0),
                images_run: 32,
                overflow: Some(overflow("maxpool", f64::INFINITY)),
            },
            SearchTry {
                relu_bound: Some(60.0),
                maxpool_bound: Some(50.0),
                images_run: 1000,
                overflow: None,
            },
        ],
    };
    let json = serde_json::to_string(&search).unwrap();
    assert_eq!(serde_json::from_str::<BoundSearch>(&json).unwrap(), search);
    // a kind not searched (a network without max-pooling): null, read back as None
    let relu_only = BoundSearch {
        maxpool_bound: None,
        tries: vec![SearchTry {
            maxpool_bound: None,
            ..search.tries[2].clone()
        }],
        ..search.clone()
    };
    let relu_only_json = serde_json::to_string(&relu_only).unwrap();
    assert!(relu_only_json.contains("\"maxpool_bound\":null"), "{relu_only_json}");
    assert_eq!(serde_json::from_str::<BoundSearch>(&relu_only_json).unwrap(), relu_only);
    assert_eq!(relu_only.summary(), "α=8 (ReLU): B_relu = 60 (tried 60), 1 tries");
    let bad = json.replace("\"maxpool\"", "\"pool\"");
    assert!(
        serde_json::from_str::<BoundSearch>(&bad)
            .unwrap_err()
            .to_string()
            .contains("unknown site kind")
    );
}
