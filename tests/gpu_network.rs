//! The GPU executor against the CPU backend (and PyTorch's logits where a fixture has them):
//! real pretrained CIFAR nets exact and approximate, narrow torchvision nets, and every ImageNet
//! architecture with random weights at batch 1.
//!
//! "Relative difference" = max |gpu − reference| / max |reference| over all logits.

use polycnn::cpu;
use polycnn::exec::{ActivationPlan, RunOutput, SiteMode};
use polycnn::gpu::activation::Scheme;
use polycnn::gpu::network::GpuNetwork;
use polycnn::gpu::{Gpu, TilePolicy};
use polycnn::model::{self, Arch, Batch, Graph, Shape};
use polycnn::poly::{Composite, optimise_eps, paper_degrees};
use polycnn::weights::StateDict;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

mod common;
use common::{data, gpu};

fn alpha14() -> &'static Composite {
    static C: OnceLock<Composite> = OnceLock::new();
    C.get_or_init(|| optimise_eps(paper_degrees(14).unwrap()).unwrap().composite)
}

fn fixture(name: &str) -> PathBuf {
    common::repo_root().join("tests/fixtures").join(name)
}

fn relative_difference(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs() as f64));
    got.iter()
        .zip(want)
        .fold(0.0f64, |m, (g, w)| m.max((*g as f64 - *w as f64).abs()))
        / scale
}

/// A batch from a fixture file holding `input` [n, c, h, w] (and usually `logits`).
fn fixture_batch(dict: &StateDict) -> Batch {
    let input = dict.get("input").expect("fixture has an input");
    let s = &input.shape;
    Batch::new(s[0], Shape::new(s[1], s[2], s[3]), input.data.clone()).unwrap()
}

fn compare(gpu: &Gpu, graph: &Graph, batch: &Batch, plan: &ActivationPlan, tolerance: f64) -> (RunOutput, RunOutput) {
    let network = GpuNetwork::new(gpu, graph, Scheme::Clenshaw).unwrap();
    let on_gpu = network.run(batch, plan).unwrap();
    let on_cpu = cpu::run(graph, batch, plan).unwrap();
    let diff = relative_difference(&on_gpu.logits, &on_cpu.logits);
    assert!(
        diff <= tolerance,
        "{}: GPU vs CPU relative difference {diff:e}",
        graph.name
    );
    for (g, c) in on_gpu.sites.iter().zip(&on_cpu.sites) {
        assert_eq!(g.name, c.name);
        assert_eq!(g.count, c.count, "site {}", g.name);
        assert_eq!(g.non_finite, c.non_finite, "site {}", g.name);
        assert!(
            (g.max_abs - c.max_abs).abs() <= 1e-4 * c.max_abs.max(1.0),
            "site {}: {} vs {}",
            g.name,
            g.max_abs,
            c.max_abs
        );
        assert!(g.out_of_range.abs_diff(c.out_of_range) <= 1, "site {}", g.name);
    }
    (on_gpu, on_cpu)
}

/// The real akamaster ResNet-20 and the PyTorch fixture with its 16 input images (`None`: the
/// test skips without the real weights).
fn resnet20_and_fixture() -> Option<(Graph, StateDict, Batch)> {
    let weights = data("cifar10/weights_akamaster/resnet20-12fca82f.th")?;
    let graph = model::load(Arch::CifarResNet(20), &weights).unwrap();
    let dict = StateDict::load(&fixture("akamaster_resnet20_logits.safetensors")).unwrap();
    let batch = fixture_batch(&dict);
    Some((graph, dict, batch))
}

#[test]
fn resnet20_real_weights_exact_and_alpha_14_match_cpu_and_pytorch() {
    let Some(gpu) = gpu() else { return };
    let Some((graph, dict, batch)) = resnet20_and_fixture() else {
        return;
    };
    let (exact, _) = compare(gpu, &graph, &batch, &ActivationPlan::exact(&graph), 1e-4);
    let torch = &dict.get("logits").unwrap().data;
    assert!(relative_difference(&exact.logits, torch) <= 1e-4);
    let approx = ActivationPlan::uniform(&graph, SiteMode::approx(alpha14(), 14, 30.0));
    let (gpu_approx, _) = compare(gpu, &graph, &batch, &approx, 1e-4);
    assert!(gpu_approx.sites.iter().all(|s| s.out_of_range == 0));
    assert_eq!(gpu_approx.predictions(), exact.predictions());
}

#[test]
fn cifar_vgg_with_approximate_relu_and_max_pool_matches_cpu() {
    let Some(gpu) = gpu() else { return };
    let Some(weights) = data("cifar10/weights_vgg/vgg11_bn_cifar10.pth") else {
        return;
    };
    let graph = model::load(Arch::CifarVgg11Bn, &weights).unwrap();
    let dict = StateDict::load(&fixture("cifar10_vgg11_bn_logits.safetensors")).unwrap();
    let batch = fixture_batch(&dict);
    let (exact, _) = compare(gpu, &graph, &batch, &ActivationPlan::exact(&graph), 1e-4);
    assert!(relative_difference(&exact.logits, &dict.get("logits").unwrap().data) <= 1e-4);
    let approx = ActivationPlan::uniform(&graph, SiteMode::approx(alpha14(), 14, 7.0));
    compare(gpu, &graph, &batch, &approx, 1e-4);
}

#[test]
fn narrow_torchvision_resnets_match_pytorch_on_gpu() {
    let Some(gpu) = gpu() else { return };
    for name in ["tv_resnet18_w6", "tv_bottleneck_w6"] {
        let io = StateDict::load(&fixture(&format!("{name}_io.safetensors"))).unwrap();
        let batch = fixture_batch(&io);
        let mut weights = StateDict::load(&fixture(&format!("{name}.safetensors"))).unwrap();
        let graph = model::torchvision_resnet_from_state_dict(&mut weights, batch.shape).unwrap();
        let (gpu_out, _) = compare(gpu, &graph, &batch, &ActivationPlan::exact(&graph), 1e-4);
        let diff = relative_difference(&gpu_out.logits, &io.get("logits").unwrap().data);
        assert!(diff <= 1e-4, "{name}: GPU vs PyTorch {diff:e}");
    }
}

#[test]
fn clamped_out_of_range_inputs_agree_between_backends() {
    // B = 8 is far below ResNet-20's activations (up to ~27): many inputs are out of range.
    let Some(gpu) = gpu() else { return };
    let Some((graph, _, batch)) = resnet20_and_fixture() else {
        return;
    };
    let batch = batch.slice(0, 4);
    let plan = ActivationPlan::uniform(&graph, SiteMode::approx(alpha14(), 14, 8.0).clamped(true));
    let (gpu_out, _) = compare(gpu, &graph, &batch, &plan, 1e-4);
    assert!(gpu_out.sites.iter().map(|s| s.out_of_range).sum::<u64>() > 0);
    assert!(gpu_out.logits.iter().all(|v| v.is_finite()));
}

#[test]
fn every_cifar_architecture_matches_cpu() {
    let Some(gpu) = gpu() else { return };
    let image: Vec<f32> = (0..2 * 3 * 32 * 32)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
        .collect();
    let batch = Batch::new(2, Shape::new(3, 32, 32), image).unwrap();
    for arch in [
        Arch::CifarResNet(32),
        Arch::CifarResNet(44),
        Arch::CifarResNet(56),
        Arch::CifarResNet(110),
    ] {
        let graph = model::random(arch, 11).unwrap();
        compare(gpu, &graph, &batch, &ActivationPlan::exact(&graph), 1e-4);
    }
}

/// The lossless CIFAR images `range`, normalised for the akamaster nets, and their labels.
fn lossless(images: &std::path::Path, range: std::ops::Range<usize>) -> (Vec<f32>, Vec<usize>) {
    let data = polycnn::data::cifar::open(images).unwrap();
    let normalize = polycnn::data::Normalize::IMAGENET;
    let images = range.clone().flat_map(|i| data.load(i, &normalize).unwrap()).collect();
    (images, range.map(|i| data.label(i)).collect())
}

/// GPU predictions on lossless images `range` equal PyTorch's (tests/fixtures/
/// cifar10_first1000_predictions.json) wherever PyTorch's top-1/top-2 margin exceeds 1e-3.
/// `None`: skipped (no GPU or real data).
fn check_against_pytorch(depth: usize, file: &str, range: std::ops::Range<usize>) -> Option<usize> {
    let gpu = gpu()?;
    let images = data("cifar10/test_first1000_png")?;
    let weights = data(&format!("cifar10/weights_akamaster/{file}"))?;
    let fixture_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("cifar10_first1000_predictions.json")).unwrap()).unwrap();
    let (images, labels) = lossless(&images, range.clone());
    let graph = model::load(Arch::CifarResNet(depth), &weights).unwrap();
    let network = GpuNetwork::new(gpu, &graph, Scheme::Clenshaw).unwrap();
    let plan = ActivationPlan::exact(&graph);
    let mut predictions = Vec::new();
    for chunk in images.chunks(250 * 3072) {
        let batch = Batch::new(chunk.len() / 3072, Shape::new(3, 32, 32), chunk.to_vec()).unwrap();
        predictions.extend(network.run(&batch, &plan).unwrap().predictions());
    }
    let torch = &fixture_json["models"][format!("resnet{depth}")];
    for (p, i) in predictions.iter().zip(range) {
        if torch["margin"][i].as_f64().unwrap() > 1e-3 {
            assert_eq!(*p as u64, torch["pred"][i].as_u64().unwrap(), "resnet{depth} image {i}");
        }
    }
    Some(predictions.iter().zip(&labels).filter(|(p, l)| p == l).count())
}

#[test]
fn resnet20_on_the_lossless_1000_equals_pytorch_on_gpu() {
    let Some(correct) = check_against_pytorch(20, "resnet20-12fca82f.th", 0..1000) else {
        return;
    };
    assert_eq!(correct, 915); // PyTorch: 915 (fixture), akamaster: 91.78% on all 10,000
}

#[test]
fn resnet56_on_the_first_lossless_200_equals_pytorch_on_gpu() {
    // All 1,000 are checked on the CPU backend (tests/cpu_models.rs); on the software GPU adapter
    // ResNet-56 costs ~125 MFLOP per image, so the GPU checks 200 of them image for image.
    check_against_pytorch(56, "resnet56-4bfd9763.th", 0..200);
}

#[test]
fn every_imagenet_architecture_matches_cpu_at_batch_1() {
    let Some(gpu) = gpu() else { return };
    let image: Vec<f32> = (0..3 * 224 * 224)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
        .collect();
    let batch = Batch::new(1, Shape::new(3, 224, 224), image).unwrap();
    for arch in [
        Arch::ResNet(18),
        Arch::ResNet(34),
        Arch::ResNet(50),
        Arch::ResNet(101),
        Arch::ResNet(152),
        Arch::VggBn(11),
    ] {
        let graph = model::random(arch, 7).unwrap();
        let start = Instant::now();
        compare(gpu, &graph, &batch, &ActivationPlan::exact(&graph), 1e-4);
        eprintln!(
            "{}: GPU+CPU exact forward {:.1} s",
            graph.name,
            start.elapsed().as_secs_f64()
        );
    }
}

#[test]
fn buffers_are_reused_across_batches_without_stale_values() {
    let Some(gpu) = gpu() else { return };
    let Some((graph, _, batch)) = resnet20_and_fixture() else {
        return;
    };
    let network = GpuNetwork::new(gpu, &graph, Scheme::Clenshaw).unwrap();
    let plan = ActivationPlan::exact(&graph);
    let whole = network.run(&batch, &plan).unwrap();
    let first = network.run(&batch.slice(0, 5), &plan).unwrap();
    let again = network.run(&batch.slice(0, 5), &plan).unwrap();
    assert_eq!(first.logits, again.logits);
    assert!(relative_difference(&first.logits, &whole.logits[..50]) <= 1e-5);
    // statistics are per run, not accumulated
    assert_eq!(first.sites[0].count, again.sites[0].count);
    assert_eq!(first.sites[0].count * 16, whole.sites[0].count * 5);
}

#[test]
fn bad_batches_and_plans_are_errors() {
    let Some(gpu) = gpu() else { return };
    let graph = model::random(Arch::CifarResNet(20), 1).unwrap();
    let network = GpuNetwork::new(gpu, &graph, Scheme::Clenshaw).unwrap();
    let plan = ActivationPlan::exact(&graph);
    let wrong_shape = Batch::new(1, Shape::new(3, 16, 16), vec![0.0; 768]).unwrap();
    assert!(
        network
            .run(&wrong_shape, &plan)
            .unwrap_err()
            .to_string()
            .contains("resnet20")
    );
    let mut nan = vec![0.0; 3 * 32 * 32];
    nan[5] = f32::NAN;
    let nan_batch = Batch::new(1, Shape::new(3, 32, 32), nan).unwrap();
    assert!(
        network
            .run(&nan_batch, &plan)
            .unwrap_err()
            .to_string()
            .contains("non-finite")
    );
    let short_plan = ActivationPlan {
        modes: vec![SiteMode::Exact],
        noise: None,
    };
    let ok_batch = Batch::new(1, Shape::new(3, 32, 32), vec![0.0; 3 * 32 * 32]).unwrap();
    assert!(network.run(&ok_batch, &short_plan).is_err());
}

/// The conv tiles timed on the adapter (once per shape, cached) give the padding rule's logits,
/// and a network's parameters and coefficients are uploaded on its first batch only.
#[test]
fn timed_tiles_match_the_rule_and_constants_are_uploaded_once_per_run() {
    // its own device: the test switches the tile policy
    let Some(gpu) = common::new_gpu() else { return };
    let graph = model::random(Arch::CifarResNet(20), 3).unwrap();
    let data: Vec<f32> = (0..2 * 3 * 32 * 32)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
        .collect();
    let batch = Batch::new(2, graph.input, data).unwrap();
    let exact = ActivationPlan::exact(&graph);
    let approx = ActivationPlan::uniform(&graph, SiteMode::approx(alpha14(), 14, 30.0));
    let network = GpuNetwork::new(&gpu, &graph, Scheme::Clenshaw).unwrap();

    gpu.set_tile_policy(TilePolicy::Rule);
    let by_rule = network.run(&batch, &approx).unwrap();
    assert_eq!(gpu.tile_timings(), 0);
    gpu.set_tile_policy(TilePolicy::Timed);
    let timed = network.run(&batch, &approx).unwrap();
    let shapes = gpu.tile_choices().len();
    assert!(shapes >= 3, "ResNet-20 has several conv shapes, {shapes} timed");
    assert_eq!(gpu.tile_timings(), shapes, "each shape timed once");
    assert_eq!(
        timed.logits, by_rule.logits,
        "tiles change the work split, not the arithmetic"
    );

    network.run(&batch, &exact).unwrap();
    let (uploads, timings) = (gpu.constant_uploads(), gpu.tile_timings());
    for plan in [&exact, &approx, &exact] {
        network.run(&batch, plan).unwrap();
    }
    assert_eq!(gpu.constant_uploads(), uploads, "later batches upload no parameters");
    assert_eq!(gpu.tile_timings(), timings, "choices are cached for the run");
}
