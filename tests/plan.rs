//! `polycnn plan` and `eval --plan` through the binary, on the shipped digits data.

mod common;

use common::{digits, polycnn, read};
use serde_json::Value;
use std::path::Path;

#[test]
fn a_plan_is_cheaper_within_budget_and_eval_reproduces_it() {
    let dir = std::env::temp_dir().join(format!("polycnn-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plan_path = dir.join("plan.json");
    let (weights, data) = (digits("digits_cnn.safetensors"), digits("digits_test.bin"));
    let common = ["--model", "digits_cnn", "--weights", &weights, "--data", &data];
    let mut args = vec!["plan"];
    args.extend(common);
    args.extend([
        "--calibration",
        "250",
        "--budget",
        "2",
        "--json",
        plan_path.to_str().unwrap(),
    ]);
    let (code, stdout, stderr) = polycnn(&args);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("plan saves"), "{stdout}");

    let plan = read(&plan_path);
    let search = &plan["search"];
    let calibration = &search["calibration"];
    let f = |v: &Value| v.as_f64().unwrap();
    // within budget on the calibration split at 95 % confidence (paired flips), and no dearer
    // than the uniform baseline
    assert!(f(&calibration["plan_drop_upper"]) <= 2.0 + 1e-9, "{plan}");
    assert!(f(&calibration["exact_top1"]) - f(&calibration["plan_top1"]) <= 2.0 + 1e-9);
    assert!(search["cost"]["nonscalar_mults"].as_u64() <= search["uniform_cost"]["nonscalar_mults"].as_u64());
    let alphas: Vec<u64> = plan["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["alpha"].as_u64().unwrap())
        .collect();
    assert!(
        alphas
            .iter()
            .all(|&a| a >= 4 && a <= search["uniform_alpha"].as_u64().unwrap())
    );
    assert_eq!(alphas.len(), 4);

    // eval --plan on all 500 images = the plan's calibration + held-out hits (250 images each)
    let report_path = dir.join("report.json");
    let mut args = vec!["eval"];
    args.extend(common);
    args.extend(["--plan", plan_path.to_str().unwrap(), "--backend", "cpu"]);
    args.extend(["--json", report_path.to_str().unwrap()]);
    let (code, _, stderr) = polycnn(&args);
    assert_eq!(code, Some(0), "{stderr}");
    let report = read(&report_path);
    assert_eq!(report["configs"].as_array().unwrap().len(), 1);
    let held_out = &search["held_out"];
    let whole = |key: &str| (f(&calibration[key]) + f(&held_out[key])) / 2.0;
    assert!((f(&report["configs"][0]["approx"]["top1"]) - whole("plan_top1")).abs() < 1e-9);
    assert!((f(&report["exact"]["top1"]) - whole("exact_top1")).abs() < 1e-9);
    assert_eq!(report["plan"], plan);
    for (site, planned) in report["bounds"]["per_site"]
        .as_array()
        .unwrap()
        .iter()
        .zip(plan["sites"].as_array().unwrap())
    {
        assert_eq!(site["bound"], planned["bound"]);
    }

    // a plan for other sites is refused, naming the site
    let mut bad = plan.clone();
    bad["sites"][2]["site"] = "features.99".into();
    let bad_path = dir.join("bad.json");
    std::fs::write(&bad_path, bad.to_string()).unwrap();
    let mut args = vec!["eval"];
    args.extend(common);
    args.extend(["--plan", bad_path.to_str().unwrap(), "--backend", "cpu"]);
    let (code, _, stderr) = polycnn(&args);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("features.99"), "{stderr}");
    std::fs::write(&bad_path, "{\"model\": 3}").unwrap();
    let (code, _, stderr) = polycnn(&args);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("bad.json"), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn plan_arguments_are_checked() {
    let (weights, data) = (digits("digits_cnn.safetensors"), digits("digits_test.bin"));
    let common = ["plan", "--model", "digits_cnn", "--weights", &weights, "--data", &data];
    let cases: &[(&[&str], &str)] = &[
        (&["--calibration", "500"], "--calibration"),
        (&["--calibration", "0"], "--calibration"),
        (&["--budget", "nan"], "--budget"),
        (&["--margin", "0"], "--margin"),
        (&["--alpha", "3..5", "--calibration", "250"], "α = 3"),
    ];
    for (extra, needle) in cases {
        let mut args = common.to_vec();
        args.extend_from_slice(extra);
        let (code, _, stderr) = polycnn(&args);
        assert_eq!(code, Some(1), "{extra:?}");
        assert!(stderr.contains(needle), "{extra:?}: expected '{needle}' in {stderr}");
    }
}

#[test]
fn the_shipped_resnet20_plan_prepares_and_costs_what_it_says() {
    // tests/fixtures/resnet20_plan.json: `polycnn plan` on the 1,000 lossless CIFAR-10 images
    use polycnn::eval::plan_file::{PrecisionPlan, plan_cost};
    use polycnn::eval::prepared_plan::PreparedPlan;
    let Some(weights) = common::data("cifar10/weights_akamaster/resnet20-12fca82f.th") else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let plan = PrecisionPlan::load(&root.join("tests/fixtures/resnet20_plan.json")).unwrap();
    let graph = polycnn::model::load(polycnn::model::Arch::CifarResNet(20), &weights).unwrap();
    let prepared = PreparedPlan::new(&plan, &graph).unwrap();
    assert_eq!(prepared.activation_plan(false).modes.len(), 19);
    let search = plan.search.as_ref().unwrap();
    assert_eq!(plan_cost(&graph, &plan).unwrap(), search.cost);
    assert!(search.cost.nonscalar_mults < search.uniform_cost.nonscalar_mults);
    let text = serde_json::to_string(&plan).unwrap();
    assert_eq!(serde_json::from_str::<PrecisionPlan>(&text).unwrap(), plan);
}

#[test]
fn the_committed_ckks_plan_holds_its_budget_on_its_held_out_split() {
    // tests/fixtures/digits_plan_ckks.json: `polycnn plan --model digits_cnn --calibration 250
    // --budget 2 --alpha 4..14 --lists optimized --ckks N16QP1546H192H32` on the 500 shipped
    // digits.
    let (weights, data) = (digits("digits_cnn.safetensors"), digits("digits_test.bin"));
    committed_plan_holds_its_budget("digits_plan_ckks.json", "digits_cnn", &weights, &data);
}

#[test]
fn the_committed_resnet20_jpeg_plan_holds_its_budget_on_its_8000_held_out_images() {
    // tests/fixtures/resnet20_jpg_plan_ckks.json: `polycnn plan --model resnet20 --weights
    // ../shared/data/cifar10/weights_akamaster/resnet20-12fca82f.th --data
    // ../shared/data/cifar10/test_jpg --calibration 2000 --budget 0.5 --lists auto --ckks
    // N16QP1546H192H32` (2,000 calibration images spread over the class folders, 8,000 held out).
    let (Some(weights), Some(data)) = (
        common::data("cifar10/weights_akamaster/resnet20-12fca82f.th"),
        common::data("cifar10/test_jpg"),
    ) else {
        return;
    };
    let (weights, data) = (weights.to_str().unwrap(), data.to_str().unwrap());
    committed_plan_holds_its_budget("resnet20_jpg_plan_ckks.json", "resnet20", weights, data);
}

/// Evaluates the committed plan `fixture` again on all its images: the whole set's hits minus
/// the calibration split's recorded ones are the held-out split's, which must be the recorded
/// ones, with a drop against exact within the budget; its recorded CKKS cost must be the plan's.
fn committed_plan_holds_its_budget(fixture: &str, model: &str, weights: &str, data: &str) {
    use polycnn::eval::plan_file::PrecisionPlan;
    use polycnn::he::{ckks_cost, load_preset};
    use polycnn::model::cost::SitePrecision;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fixture = root.join("tests/fixtures").join(fixture);
    let plan = read(&fixture);
    let search = &plan["search"];
    let f = |v: &Value| v.as_f64().unwrap();
    let budget = f(&search["budget"]);
    let (calibration, held_out) = (&search["calibration"], &search["held_out"]);
    assert!(
        f(&calibration["plan_drop_upper"]) <= budget,
        "accepted beyond its bound"
    );

    let dir = std::env::temp_dir().join(format!("polycnn-ckks-plan-{model}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let report_path = dir.join("report.json");
    let args = [
        "eval",
        "--model",
        model,
        "--weights",
        weights,
        "--data",
        data,
        "--backend",
        "cpu",
        "--plan",
        fixture.to_str().unwrap(),
        "--json",
        report_path.to_str().unwrap(),
    ];
    let (code, _, stderr) = polycnn(&args);
    assert_eq!(code, Some(0), "{stderr}");
    let report = read(&report_path);
    let (n_cal, n_held) = (f(&calibration["images"]), f(&held_out["images"]));
    let held = |whole: f64, cal: f64| (whole * (n_cal + n_held) - cal * n_cal) / n_held;
    let exact = held(f(&report["exact"]["top1"]), f(&calibration["exact_top1"]));
    let approx = held(f(&report["configs"][0]["approx"]["top1"]), f(&calibration["plan_top1"]));
    assert!((exact - f(&held_out["exact_top1"])).abs() < 1e-6, "{exact}");
    assert!((approx - f(&held_out["plan_top1"])).abs() < 1e-6, "{approx}");
    assert!(
        exact - approx <= budget,
        "held-out drop {} > budget {budget}",
        exact - approx
    );
    let interval = &held_out["plan_drop"];
    assert!(f(&interval["lower"]) <= exact - approx + 1e-9 && exact - approx <= f(&interval["upper"]));

    // The recorded CKKS cost is the plan's under the preset, and below the uniform baseline's.
    let ckks = &search["ckks"];
    let preset = load_preset(ckks["preset"].as_str().unwrap()).unwrap();
    let parsed = PrecisionPlan::load(&fixture).unwrap();
    let graph = polycnn::model::load(model.parse().unwrap(), Path::new(weights)).unwrap();
    let sites: Vec<SitePrecision> = parsed
        .sites
        .iter()
        .map(|s| SitePrecision::Approx {
            alpha: Some(s.alpha),
            degrees: s.degrees.clone(),
        })
        .collect();
    let cost = ckks_cost(&graph, &sites, &preset).unwrap();
    assert_eq!(
        cost.optimal.bootstrapped_ciphertexts,
        ckks["bootstrapped_ciphertexts"].as_u64().unwrap()
    );
    assert!(cost.optimal.bootstrapped_ciphertexts < ckks["uniform_bootstrapped_ciphertexts"].as_u64().unwrap());
    std::fs::remove_dir_all(&dir).ok();
}
