//! The real CIFAR-10 VGG-11-bn with approximate ReLU and max-pooling against an independent
//! float64 PyTorch evaluation (tests/fixtures/cifar10_vgg11_bn_approx_f64.json, written by
//! scripts/vgg_approx_reference.py with the paper's published polynomials and the official
//! B search). Exact top-1 against PyTorch is tested in tests/cpu_models.rs and gpu_network.rs.

use polycnn::eval::BoundRule;
use polycnn::eval::command::run_eval;
use polycnn::eval::request::EvalRequest;
use polycnn::exec::NoProgress;
use polycnn::gpu::activation::Scheme;
use polycnn::model::Arch;
use std::path::PathBuf;

mod common;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn reference() -> serde_json::Value {
    let path = root().join("tests/fixtures/cifar10_vgg11_bn_approx_f64.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `None`: skipped without the real data.
fn request(alphas: &[u32], start: f64, step: f64) -> Option<EvalRequest> {
    let coeffs = common::data("approxcnn_coeffs")?;
    let weights = common::data("cifar10/weights_vgg/vgg11_bn_cifar10.pth")?;
    let images = common::data("cifar10/test_first1000_png")?;
    Some(EvalRequest {
        alphas: alphas.to_vec(),
        // the reference's polynomials: the paper's files
        coeffs_dir: Some(coeffs),
        bound: BoundRule::Search { start, step }.into(),
        bound_max: BoundRule::Search { start, step }.into(),
        batch: 100,
        scheme: Scheme::Clenshaw,
        ..EvalRequest::new(Arch::CifarVgg11Bn, weights, images)
    })
}

/// Runs the search + evaluation and compares each α with `reference["alphas"]`: the same B,
/// nothing out of range, top-1 within 3 images.
fn check_against(reference: &serde_json::Value, alphas: &[u32], start: f64, step: f64) {
    let Some(request) = request(alphas, start, step) else {
        return;
    };
    let report = run_eval(&request, None, &NoProgress).unwrap();
    assert_eq!(report.images, 1000);
    for ((alpha, config), search) in alphas.iter().zip(&report.configs).zip(&report.bounds.search) {
        let theirs = &reference["alphas"][alpha.to_string()];
        let their_top1 = theirs["top1"].as_u64().unwrap();
        println!(
            "α={alpha}: top-1 {} (f64 reference {their_top1}), {}",
            config.approx.top1_correct,
            search.summary()
        );
        assert_eq!(config.alpha, *alpha);
        // the official search on the f64 network ends at the same B
        assert_eq!(search.relu_bound, theirs["relu_bound"].as_f64(), "α={alpha}");
        assert_eq!(search.maxpool_bound, theirs["maxpool_bound"].as_f64(), "α={alpha}");
        assert_eq!((config.out_of_range, config.non_finite), (0, 0), "α={alpha}");
        assert!(
            config.approx.top1_correct.abs_diff(their_top1) <= 3,
            "α={alpha}: {} vs {their_top1}",
            config.approx.top1_correct
        );
    }
}

#[test]
fn vgg11_bn_approximate_top1_and_bounds_match_the_f64_reference_at_alpha_10_to_14() {
    // The official CIFAR grid: the search accepts its start (activations stay below 6).
    check_against(&reference(), &[10, 11, 12, 13, 14], 50.0, 5.0);
}

#[test]
fn vgg11_bn_search_from_a_tight_grid_raises_both_kinds_as_the_f64_reference_does() {
    let reference = reference();
    let tight = &reference["tight_grid"];
    assert_eq!(tight["grid"]["step"], 1.0);
    check_against(tight, &[10, 14], 4.0, 1.0);
}
