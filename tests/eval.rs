//! The evaluation pipeline end to end: the shipped digits job against PyTorch, one-pass
//! accounting against direct runs, bound rules, corrupt images, and the JSON report.

use polycnn::cpu;
use polycnn::data::Dataset;
use polycnn::data::digits::DigitsDataset;
use polycnn::eval::command::run_eval;
use polycnn::eval::request::EvalRequest;
use polycnn::eval::{BoundRule, RequestedBound, choose_bounds, top5};
use polycnn::exec::NoProgress;
use polycnn::exec::{ActivationPlan, SiteStats};
use polycnn::gpu::activation::Scheme;
use polycnn::model::{self, Arch, Batch, ModelSource, SiteKind};
use std::path::PathBuf;

mod common;
use common::{data, gpu};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn digits_request() -> EvalRequest {
    let dir = root().join("datasets/digits");
    EvalRequest {
        alphas: vec![7, 14],
        bound: BoundRule::Search { start: 8.0, step: 1.0 }.into(),
        bound_max: BoundRule::Search { start: 8.0, step: 1.0 }.into(),
        batch: 64,
        scheme: Scheme::Clenshaw,
        ..EvalRequest::new(
            Arch::DigitsCnn,
            dir.join("digits_cnn.safetensors"),
            dir.join("digits_test.bin"),
        )
    }
}

#[test]
fn digits_cnn_reproduces_pytorch_logits() {
    let dir = root().join("datasets/digits");
    let graph = model::load(Arch::DigitsCnn, &dir.join("digits_cnn.safetensors")).unwrap();
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("digits_cnn_expected.json")).unwrap()).unwrap();
    let data = DigitsDataset::open(&dir.join("digits_test.bin")).unwrap();
    for case in expected["expected"].as_array().unwrap() {
        let i = case["index"].as_u64().unwrap() as usize;
        assert_eq!(data.label(i) as u64, case["label"].as_u64().unwrap());
        let batch = Batch::new(
            1,
            graph.input,
            data.load(i, &Arch::DigitsCnn.descriptor().preprocessing.normalize)
                .unwrap(),
        )
        .unwrap();
        let out = cpu::run(&graph, &batch, &ActivationPlan::exact(&graph)).unwrap();
        for (got, want) in out.logits.iter().zip(case["logits"].as_array().unwrap()) {
            assert!(
                (*got as f64 - want.as_f64().unwrap()).abs() < 1e-4,
                "image {i}: {got} vs {want}"
            );
        }
    }
}

#[test]
fn digits_default_job_numbers() {
    let report = run_eval(&digits_request(), None, &NoProgress).unwrap();
    assert_eq!(report.images, 500);
    // scripts/train_digits.py measured 494/500 exact in PyTorch
    assert_eq!(report.exact.top1_correct, 494);
    let a14 = &report.configs[1];
    assert_eq!(a14.alpha, 14);
    assert_eq!(a14.out_of_range, 0);
    assert!(
        a14.approx.top1_correct.abs_diff(494) <= 2,
        "α=14: {}",
        a14.approx.top1_correct
    );
    assert!(a14.agreement >= 99.0);
    // the search grid starts at 8 and the largest activation is ~7.15
    assert!(report.bounds.per_site.iter().all(|b| b.bound == 8.0));
    let json = serde_json::to_value(&report).unwrap();
    for key in [
        "model",
        "images",
        "exact",
        "configs",
        "bounds",
        "exact_sites",
        "images_per_second",
        "backend",
    ] {
        assert!(json.get(key).is_some(), "JSON report lacks `{key}`");
    }
    let site = &json["configs"][0]["sites"][0];
    for key in [
        "site",
        "kind",
        "bound",
        "exact_max_abs",
        "approx_max_abs",
        "out_of_range",
        "count",
    ] {
        assert!(site.get(key).is_some(), "site report lacks `{key}`");
    }
}

#[test]
fn gpu_and_cpu_backends_count_the_same() {
    let Some(gpu) = gpu() else { return };
    let cpu_report = run_eval(&digits_request(), None, &NoProgress).unwrap();
    let gpu_report = run_eval(
        &EvalRequest {
            gpu: true,
            ..digits_request()
        },
        Some(gpu),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(gpu_report.backend, "gpu");
    assert_eq!(cpu_report.exact.top1_correct, gpu_report.exact.top1_correct);
    for (c, g) in cpu_report.configs.iter().zip(&gpu_report.configs) {
        assert!(
            c.approx.top1_correct.abs_diff(g.approx.top1_correct) <= 1,
            "{}",
            c.label
        );
        assert_eq!(c.out_of_range, g.out_of_range);
    }
}

#[test]
fn one_pass_accounting_equals_direct_runs() {
    // ResNet-20 on the first 200 lossless CIFAR images: the tally equals counting by hand.
    let Some(weights) = data("cifar10/weights_akamaster/resnet20-12fca82f.th") else {
        return;
    };
    let Some(images) = data("cifar10/test_first1000_png") else {
        return;
    };
    let request = EvalRequest {
        model: ModelSource::Builtin {
            arch: Arch::CifarResNet(20),
            weights,
        },
        data: images,
        alphas: vec![10],
        bound: BoundRule::Fixed { bound: 50.0 }.into(),
        bound_max: BoundRule::Fixed { bound: 50.0 }.into(),
        limit: Some(200),
        batch: 48, // not a divisor of 200: the last batch is short
        ..digits_request()
    };
    let report = run_eval(&request, None, &NoProgress).unwrap();
    let network = request.model.open().unwrap();
    let graph = network.graph;
    let (dataset, normalize) = polycnn::eval::dataset::open_dataset(&request, &network.descriptor).unwrap();
    let images: Vec<f32> = (0..200).flat_map(|i| dataset.load(i, &normalize).unwrap()).collect();
    let labels: Vec<usize> = (0..200).map(|i| dataset.label(i)).collect();
    let batch = Batch::new(200, graph.input, images).unwrap();
    let exact = cpu::run(&graph, &batch, &ActivationPlan::exact(&graph)).unwrap();
    assert_eq!(report.exact.top1_correct, exact.correct(&labels) as u64);
    let ranked = top5(&exact.logits, exact.classes);
    let top5_hits = ranked.iter().zip(&labels).filter(|(r, l)| r.contains(l)).count() as u64;
    assert_eq!(report.exact.top5_correct, top5_hits);
    assert_eq!(report.exact_sites[0].count, 200 * 16 * 32 * 32);
}

#[test]
fn bound_rules() {
    let graph = model::random(Arch::CifarVgg11Bn, 3).unwrap();
    let stats: Vec<SiteStats> = graph
        .sites
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut st = SiteStats::new(&s.name, s.kind);
            st.max_abs = if s.kind == SiteKind::Relu { 10.0 + i as f32 } else { 3.0 };
            st
        })
        .collect();
    let relu_max = stats
        .iter()
        .filter(|s| s.kind == SiteKind::Relu)
        .map(|s| s.max_abs)
        .fold(0.0, f32::max) as f64;
    let search = BoundRule::SearchExact { start: 5.0, step: 5.0 };
    let bounds = choose_bounds(&graph, &search, &BoundRule::Fixed { bound: 4.0 }, Some(&stats)).unwrap();
    for (b, s) in bounds.per_site.iter().zip(&graph.sites) {
        if s.kind == SiteKind::Relu {
            // the smallest grid value covering the largest ReLU input anywhere
            assert!(b.bound >= relu_max && b.bound - 5.0 < relu_max && (b.bound / 5.0).fract() == 0.0);
        } else {
            assert_eq!(b.bound, 4.0);
        }
    }
    let calibrate = BoundRule::Calibrate { margin: 1.5, images: 0 };
    let per_site = choose_bounds(&graph, &calibrate, &calibrate, Some(&stats)).unwrap();
    for (b, s) in per_site.per_site.iter().zip(&stats) {
        assert!((b.bound - 1.5 * s.max_abs as f64).abs() < 1e-9);
    }
    assert!(choose_bounds(&graph, &search, &search, None).is_err());
    // the approximate-network search starts at its grid start (search_bounds raises it)
    let approx_search = BoundRule::Search { start: 50.0, step: 5.0 };
    let start = choose_bounds(&graph, &approx_search, &approx_search, None).unwrap();
    assert!(start.per_site.iter().all(|b| b.bound == 50.0));
    assert_eq!(
        BoundRule::parse("search", (50.0, 5.0)).unwrap(),
        BoundRule::Search { start: 50.0, step: 5.0 }
    );
    assert_eq!(
        BoundRule::parse("search-exact:100:10", (50.0, 5.0)).unwrap(),
        BoundRule::SearchExact {
            start: 100.0,
            step: 10.0
        }
    );
    assert_eq!(
        BoundRule::parse("calibrate:1.2", (1.0, 1.0)).unwrap(),
        BoundRule::Calibrate { margin: 1.2, images: 0 }
    );
    assert_eq!(
        BoundRule::parse("65", (1.0, 1.0)).unwrap(),
        BoundRule::Fixed { bound: 65.0 }
    );
    assert!(BoundRule::parse("-3", (1.0, 1.0)).is_err());
    assert!(BoundRule::parse("search:x:1", (1.0, 1.0)).is_err());
}

#[test]
fn corrupt_images_are_reported_and_the_run_goes_on() {
    let Some(source) = data("cifar10/test_jpg/test") else {
        return;
    };
    let Some(weights) = data("cifar10/weights_akamaster/resnet20-12fca82f.th") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("polycnn-eval-corrupt-{}", std::process::id()));
    for class in polycnn::data::cifar::CLASSES {
        std::fs::create_dir_all(dir.join(class)).unwrap();
        for i in 0..3 {
            let name = format!("{i:04}.jpg");
            std::fs::copy(source.join(class).join(&name), dir.join(class).join(&name)).unwrap();
        }
    }
    std::fs::write(dir.join("cat/0001.jpg"), b"\xff\xd8\xff garbage, not a JPEG").unwrap();
    let request = EvalRequest {
        model: ModelSource::Builtin {
            arch: Arch::CifarResNet(20),
            weights,
        },
        data: dir.clone(),
        alphas: vec![12],
        bound: BoundRule::Fixed { bound: 50.0 }.into(),
        bound_max: BoundRule::Fixed { bound: 50.0 }.into(),
        batch: 8,
        ..digits_request()
    };
    let report = run_eval(&request, None, &NoProgress).unwrap();
    assert_eq!(report.images, 29);
    assert_eq!(report.failures.len(), 1);
    assert!(
        report.failures[0].0.contains("cat") && report.failures[0].0.contains("0001.jpg"),
        "{:?}",
        report.failures
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn top5_ranks_ignore_nan_and_break_ties_by_index() {
    let logits = [0.1, 0.5, f32::NAN, 0.5, -1.0, 0.2, 0.3];
    assert_eq!(top5(&logits, 7), vec![vec![1, 3, 6, 5, 0]]);
}

#[test]
fn cached_runs_give_the_same_counts() {
    let Some(weights) = data("cifar10/weights_akamaster/resnet20-12fca82f.th") else {
        return;
    };
    let Some(images) = data("cifar10/test_jpg/test") else {
        return;
    };
    let path = std::env::temp_dir().join(format!("polycnn-eval-cache-{}.bin", std::process::id()));
    let request = EvalRequest {
        model: ModelSource::Builtin {
            arch: Arch::CifarResNet(20),
            weights,
        },
        data: images,
        alphas: vec![12],
        bound: BoundRule::Fixed { bound: 50.0 }.into(),
        bound_max: BoundRule::Fixed { bound: 50.0 }.into(),
        limit: Some(100),
        ..digits_request()
    };
    let direct = run_eval(&request, None, &NoProgress).unwrap();
    let cached = EvalRequest {
        cache: Some(path.clone()),
        ..request
    };
    let first = run_eval(&cached, None, &NoProgress).unwrap(); // builds the cache
    let second = run_eval(&cached, None, &NoProgress).unwrap(); // reuses it
    for r in [&first, &second] {
        assert_eq!(r.exact.top1_correct, direct.exact.top1_correct);
        assert_eq!(r.configs[0].approx.top1_correct, direct.configs[0].approx.top1_correct);
    }
    std::fs::remove_file(&path).ok();
}

/// `arch` with random weights (a safetensors checkpoint) on `images` synthetic CIFAR-10 images,
/// in a fresh folder: a run of a CIFAR network that needs no real data.
fn random_cifar_request(arch: Arch, images: usize, tag: &str) -> EvalRequest {
    use polycnn::model::{ParamKind, ParamSource, RandomParams};
    let dir = std::env::temp_dir().join(format!("polycnn-eval-{tag}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = RandomParams::new(5);
    let tensors: Vec<(String, polycnn::weights::Tensor)> = model::list_layers(arch)
        .unwrap()
        .into_iter()
        .filter(|p| p.kind != ParamKind::Counter)
        .map(|p| (p.name.clone(), rng.tensor(&p.name, &p.shape, p.kind).unwrap()))
        .collect();
    let refs: Vec<(&str, &polycnn::weights::Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let weights = dir.join("random.safetensors");
    polycnn::weights::save_safetensors(&weights, &refs).unwrap();
    let data = dir.join("test_batch.bin");
    common::write_cifar_batch(&data, images);
    EvalRequest {
        batch: 4,
        ..EvalRequest::new(arch, weights, data)
    }
}

/// The report as JSON without its timing and the rules named (to compare runs whose rules
/// differ but must not change any figure).
fn figures(report: &polycnn::eval::report::EvalReport) -> serde_json::Value {
    let mut v = serde_json::to_value(report).unwrap();
    let map = v.as_object_mut().unwrap();
    map.remove("seconds");
    map.remove("images_per_second");
    let bounds = map["bounds"].as_object_mut().unwrap();
    bounds.remove("relu_rule");
    bounds.remove("maxpool_rule");
    v
}

/// ResNet-20 has no max-pool site: `--bound 50` with the default `--bound-max search` runs no
/// search (no entry in `bounds.search`) and gives the figures of `--bound 50 --bound-max 50`;
/// with both rules searching, each α searches B_relu alone (B_max: null, never tried).
#[test]
fn a_network_without_max_pooling_searches_no_max_pool_bound() {
    let base = EvalRequest {
        alphas: vec![7, 14],
        ..random_cifar_request(Arch::CifarResNet(20), 8, "resnet20")
    };
    assert_eq!(
        base.bound_max,
        RequestedBound::NetworkGrid { exact: false },
        "the default searches"
    );
    let fixed_relu = EvalRequest {
        bound: BoundRule::Fixed { bound: 50.0 }.into(),
        ..base.clone()
    };
    let report = run_eval(&fixed_relu, None, &NoProgress).unwrap();
    assert!(report.bounds.search.is_empty(), "{:?}", report.bounds.search);
    let both_fixed = EvalRequest {
        bound_max: BoundRule::Fixed { bound: 50.0 }.into(),
        ..fixed_relu
    };
    let want = run_eval(&both_fixed, None, &NoProgress).unwrap();
    assert_eq!(figures(&report), figures(&want));

    let searched = run_eval(&base, None, &NoProgress).unwrap();
    assert_eq!(searched.bounds.search.len(), 2, "one search per α");
    for (search, config) in searched.bounds.search.iter().zip(&searched.configs) {
        assert_eq!(search.label, config.label);
        let found = search.relu_bound.expect("B_relu is searched");
        assert_eq!(search.maxpool_bound, None, "{}", search.summary());
        assert!(
            search
                .tries
                .iter()
                .all(|t| t.maxpool_bound.is_none() && t.relu_bound.is_some())
        );
        assert!(config.sites.iter().all(|s| s.bound == found));
        assert!(!search.summary().contains("B_max"), "{}", search.summary());
    }
}

/// VGG has max-pool sites: the default searches both kinds; with exact max-pooling only B_relu.
#[test]
fn a_network_with_max_pooling_searches_both_bounds() {
    let request = random_cifar_request(Arch::CifarVgg11Bn, 8, "vgg11");
    let report = run_eval(&request, None, &NoProgress).unwrap();
    let [search] = &report.bounds.search[..] else {
        panic!("one search: {:?}", report.bounds.search)
    };
    assert!(
        search.relu_bound.is_some() && search.maxpool_bound.is_some(),
        "{}",
        search.summary()
    );
    let exact_pooling = EvalRequest {
        maxpool: polycnn::eval::Mode::Exact,
        ..request
    };
    let report = run_eval(&exact_pooling, None, &NoProgress).unwrap();
    let [search] = &report.bounds.search[..] else {
        panic!("one search: {:?}", report.bounds.search)
    };
    assert!(
        search.relu_bound.is_some() && search.maxpool_bound.is_none(),
        "{}",
        search.summary()
    );
}
