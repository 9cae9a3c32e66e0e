//! The real CIFAR-10 VGG-11-bn with approximate ReLU and max-pooling against an independent
//! float64 PyTorch evaluation (tests/fixtures/cifar10_vgg11_bn_approx_f64.json, written by
//! scripts/vgg_approx_reference.py with the paper's published polynomials and the official
//! B search). Exact top-1 against PyTorch is tested in tests/cpu_models.rs and gpu_network.rs.

use polycnn::eval::BoundRule;
use polycnn::eval::Mode;
use polycnn::eval::command::{EvalRequest, run_eval};
use polycnn::gpu::activation::Scheme;
use polycnn::model::Arch;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn reference() -> serde_json::Value {
    let path = root().join("tests/fixtures/cifar10_vgg11_bn_approx_f64.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn vgg11_bn_approximate_top1_and_bounds_match_the_f64_reference_at_alpha_10_to_14() {
    let reference = reference();
    let alphas: Vec<u32> = (10..=14).collect();
    let data = root().join("../shared/data");
    let request = EvalRequest {
        model: Arch::CifarVgg11Bn,
        weights: data.join("cifar10/weights_vgg/vgg11_bn_cifar10.pth"),
        data: data.join("cifar10/test_first1000_png"),
        labels: None,
        class_index: None,
        alphas: alphas.clone(),
        degrees: None,
        // the reference's polynomials: the paper's files
        coeffs_dir: Some(data.join("approxcnn_coeffs")),
        relu: Mode::Approx,
        maxpool: Mode::Approx,
        clamp: false,
        bound: BoundRule::Search { start: 50.0, step: 5.0 },
        bound_max: BoundRule::Search { start: 50.0, step: 5.0 },
        calibration_images: 0,
        batch: 100,
        limit: None,
        cache: None,
        gpu: false,
        scheme: Scheme::Clenshaw,
    };
    let report = run_eval(&request, None).unwrap();
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
        assert_eq!(search.relu_bound, theirs["relu_bound"].as_f64().unwrap(), "α={alpha}");
        assert_eq!(
            search.maxpool_bound,
            theirs["maxpool_bound"].as_f64().unwrap(),
            "α={alpha}"
        );
        assert_eq!((config.out_of_range, config.non_finite), (0, 0), "α={alpha}");
        assert!(
            config.approx.top1_correct.abs_diff(their_top1) <= 3,
            "α={alpha}: {} vs {their_top1}",
            config.approx.top1_correct
        );
    }
}
