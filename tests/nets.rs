//! The networks of the paper's code beyond the pretrained ResNets (GoogLeNet, Inception-v3, the
//! CIFAR VGG-bn layouts, ResNet-110 in the official code's layout) against PyTorch on both backends, and the ops they brought (channel concat,
//! ceil-mode / padded max-pool exact and approximate, padded average pool) GPU against CPU and
//! the approximate ceil-mode max-pool against the double-double reference.
//!
//! The network fixture (scripts/make_net_fixtures.py) holds no weights: both sides draw them from
//! the same counter-based generator (`model::CounterParams`). "Relative difference" = max |got −
//! want| / max |want| over all logits.

use polycnn::cpu;
use polycnn::exec::{ActivationPlan, SiteMode};
use polycnn::gpu::activation::Scheme;
use polycnn::gpu::network::GpuNetwork;
use polycnn::model::{self, Arch, Batch, CounterParams, Graph, GraphBuilder, Op, ParamKind, Shape, Window2d};
use polycnn::poly::activation::{approx_max_window, max_pool_scale};
use polycnn::poly::{Composite, optimise_eps, paper_degrees};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

mod common;
use common::{data, gpu};

#[derive(Deserialize)]
struct Fixture {
    nets: Vec<NetFixture>,
}

/// One network of tests/fixtures/nets_counter_logits.json.
#[derive(Deserialize)]
struct NetFixture {
    arch: String,
    seed: u64,
    input_shape: [usize; 4],
    /// Float tensors of PyTorch's state_dict, in order: (name, shape).
    tensors: Vec<(String, Vec<usize>)>,
    logits: Vec<f32>,
}

impl NetFixture {
    fn graph(&self) -> Graph {
        let arch: Arch = self.arch.parse().unwrap();
        let [_, c, h, w] = self.input_shape;
        let mut params = CounterParams::new(self.seed);
        model::build_for_input(arch, &mut params, Shape::new(c, h, w)).unwrap()
    }

    fn batch(&self) -> Batch {
        let [n, c, h, w] = self.input_shape;
        Batch::new(n, Shape::new(c, h, w), CounterParams::input(self.seed, n * c * h * w)).unwrap()
    }
}

fn fixtures() -> &'static [NetFixture] {
    static F: OnceLock<Fixture> = OnceLock::new();
    let f = F.get_or_init(|| {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nets_counter_logits.json");
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    });
    &f.nets
}

fn composite(alpha: u32) -> Composite {
    optimise_eps(paper_degrees(alpha).unwrap()).unwrap().composite
}

fn relative_difference(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs() as f64));
    got.iter()
        .zip(want)
        .fold(0.0f64, |m, (g, w)| m.max((*g as f64 - *w as f64).abs()))
        / scale
}

#[test]
fn parameter_lists_are_pytorch_state_dict_layouts() {
    for net in fixtures() {
        let arch: Arch = net.arch.parse().unwrap();
        let ours: Vec<(String, Vec<usize>)> = model::list_layers(arch)
            .unwrap()
            .into_iter()
            .filter(|p| p.kind != ParamKind::Counter)
            .map(|p| (p.name, p.shape))
            .collect();
        assert_eq!(ours, net.tensors, "{}", net.arch);
    }
}

#[test]
fn networks_match_pytorch_logits_on_cpu() {
    for net in fixtures() {
        let graph = net.graph();
        let start = Instant::now();
        let out = cpu::run(&graph, &net.batch(), &ActivationPlan::exact(&graph)).unwrap();
        let diff = relative_difference(&out.logits, &net.logits);
        eprintln!(
            "{}: CPU vs PyTorch {diff:.2e} ({:.2} s)",
            net.arch,
            start.elapsed().as_secs_f64()
        );
        assert!(
            diff <= 1e-4,
            "{}: CPU vs PyTorch relative difference {diff:e}",
            net.arch
        );
    }
}

#[test]
fn gpu_networks_match_pytorch_logits() {
    let Some(gpu) = gpu() else { return };
    for net in fixtures() {
        let graph = net.graph();
        let start = Instant::now();
        let network = GpuNetwork::new(gpu, &graph, Scheme::Clenshaw).unwrap();
        let out = network.run(&net.batch(), &ActivationPlan::exact(&graph)).unwrap();
        let diff = relative_difference(&out.logits, &net.logits);
        eprintln!(
            "{}: GPU vs PyTorch {diff:.2e} ({:.2} s)",
            net.arch,
            start.elapsed().as_secs_f64()
        );
        assert!(
            diff <= 1e-4,
            "{}: GPU vs PyTorch relative difference {diff:e}",
            net.arch
        );
    }
}

/// Every ReLU and max-pool (ceil-mode stem and stage pools, padded branch pools, Inception's
/// reduction pools) approximated at α = 14 on both backends; B = 1.2 × the largest exact input.
#[test]
fn gpu_inception_networks_with_approximate_relu_and_max_pool_match_cpu() {
    let Some(gpu) = gpu() else { return };
    let sign = composite(14);
    for net in fixtures()
        .iter()
        .filter(|n| n.arch == "googlenet" || n.arch == "inception_v3")
    {
        let (graph, batch) = (net.graph(), net.batch());
        let exact = cpu::run(&graph, &batch, &ActivationPlan::exact(&graph)).unwrap();
        let bound = 1.2 * exact.sites.iter().map(|s| s.max_abs).fold(0.0, f32::max) as f64;
        let plan = ActivationPlan::uniform(&graph, SiteMode::approx(&sign, 14, bound));
        let want = cpu::run(&graph, &batch, &plan).unwrap();
        let got = GpuNetwork::new(gpu, &graph, Scheme::Clenshaw)
            .unwrap()
            .run(&batch, &plan)
            .unwrap();
        let diff = relative_difference(&got.logits, &want.logits);
        eprintln!("{} α=14, B={bound:.2}: GPU vs CPU {diff:.2e}", net.arch);
        assert!(diff <= 1e-4, "{}: GPU vs CPU {diff:e}", net.arch);
        assert!(want.sites.iter().all(|s| s.out_of_range == 0 && s.non_finite == 0));
        assert_eq!(got.predictions(), want.predictions());
    }
}

#[test]
fn transform_input_is_folded_into_the_normalisation() {
    // torchvision: x' = x·(s/0.5) + (m − 0.5)/0.5 after x = (p − m)/s, i.e. (p − 0.5)/0.5.
    let n = Arch::GoogLeNet.descriptor().preprocessing.normalize;
    assert_eq!((n.mean, n.std, n.max_value), ([0.5; 3], [0.5; 3], 255.0));
}

fn pool(kernel: usize, stride: usize, padding: usize, ceil_mode: bool) -> Window2d {
    Window2d::square(kernel, stride, padding).with_ceil_mode(ceil_mode)
}

/// Every pooling geometry of GoogLeNet / Inception-v3 and a concat, on odd planes where ceil mode
/// adds a window: x → concat(maxpool 3/1/1 ceil, avgpool 3/1/1, relu) → maxpool 3/2 ceil →
/// maxpool 2/2 ceil → avgpool 2/2 ceil (whose last window hangs past the input: divisor 1).
fn pooling_graph() -> Graph {
    let mut b = GraphBuilder::new("pools", Shape::new(3, 13, 11));
    let x = GraphBuilder::INPUT;
    let m = b.max_pool("branch_max", x, pool(3, 1, 1, true));
    let a = b.push(
        "branch_avg",
        Op::AvgPool {
            input: x,
            pool: pool(3, 1, 1, false),
            count_include_pad: true,
        },
    );
    let r = b.relu("branch_relu", x);
    let cat = b.push("concat", Op::Concat { inputs: vec![m, a, r] });
    let p = b.max_pool("pool3s2", cat, pool(3, 2, 0, true));
    let p = b.max_pool("pool2s2", p, pool(2, 2, 0, true));
    let out = b.push(
        "avg_ceil",
        Op::AvgPool {
            input: p,
            pool: pool(2, 2, 0, true),
            count_include_pad: true,
        },
    );
    b.finish(out).unwrap()
}

fn pooling_batch(n: usize) -> Batch {
    let shape = Shape::new(3, 13, 11);
    Batch::new(n, shape, CounterParams::input(3, n * shape.numel())).unwrap()
}

#[test]
fn pooling_shapes_follow_pytorch_ceil_mode() {
    let shapes = pooling_graph().shapes().unwrap();
    let last = |name: &str| shapes[pooling_graph().nodes.iter().position(|n| n.name == name).unwrap()];
    assert_eq!(last("concat"), Shape::new(9, 13, 11));
    // ceil((13 − 3)/2) + 1 = 6, ceil((11 − 3)/2) + 1 = 5; then ceil(6/2) = 3, ceil((5 − 2)/2) + 1 = 3.
    assert_eq!(last("pool3s2"), Shape::new(9, 6, 5));
    assert_eq!(last("pool2s2"), Shape::new(9, 3, 3));
    assert_eq!(last("avg_ceil"), Shape::new(9, 2, 2));
}

#[test]
fn gpu_pooling_and_concat_match_cpu_exact_and_approximate() {
    let Some(gpu) = gpu() else { return };
    let graph = pooling_graph();
    let batch = pooling_batch(2);
    let network = GpuNetwork::new(gpu, &graph, Scheme::Clenshaw).unwrap();
    let exact = ActivationPlan::exact(&graph);
    let want = cpu::run(&graph, &batch, &exact).unwrap();
    let got = network.run(&batch, &exact).unwrap();
    let diff = relative_difference(&got.logits, &want.logits);
    assert!(diff <= 1e-6, "exact: GPU vs CPU {diff:e}");
    for alpha in [10, 14] {
        let sign = composite(alpha);
        let plan = ActivationPlan::uniform(&graph, SiteMode::approx(&sign, alpha, 4.0));
        let want = cpu::run(&graph, &batch, &plan).unwrap();
        let got = network.run(&batch, &plan).unwrap();
        let diff = relative_difference(&got.logits, &want.logits);
        assert!(diff <= 1e-4, "α = {alpha}: GPU vs CPU {diff:e}");
        assert!(got.sites.iter().all(|s| s.out_of_range == 0 && s.non_finite == 0));
    }
}

/// The official code pads with zeros and, in ceil mode, adds a zero row and column on the
/// bottom/right (`ZeroPad2d((p, p + 1, p, p + 1))`), then takes every window of the padded
/// plane: the double-double tree over exactly those windows is the reference.
#[test]
fn approximate_ceil_mode_max_pool_matches_the_double_double_reference() {
    let Some(gpu) = gpu() else { return };
    let (h, w) = (8, 10);
    let mut b = GraphBuilder::new("ceil_pools", Shape::new(1, h, w));
    let p3 = b.max_pool("pool3", GraphBuilder::INPUT, pool(3, 2, 0, true));
    let graph = b.finish(p3).unwrap();
    let image = CounterParams::input(5, h * w);
    let batch = Batch::new(1, Shape::new(1, h, w), image.clone()).unwrap();
    let (alpha, bound) = (12, 2.5);
    let sign = composite(alpha);
    let out = cpu::run(
        &graph,
        &batch,
        &ActivationPlan::uniform(&graph, SiteMode::approx(&sign, alpha, bound)),
    )
    .unwrap();
    // Official: padded 9x11 (one extra zero row and column) → (9 − 3)/2 + 1 = 4 by
    // (11 − 3)/2 + 1 = 5 windows, PyTorch's ceil-mode size.
    let (oh, ow) = (4, 5);
    assert_eq!(out.logits.len(), oh * ow);
    let scale = max_pool_scale(9, alpha, bound).unwrap();
    let padded = |y: usize, x: usize| if y < h && x < w { image[y * w + x] as f64 } else { 0.0 };
    for oy in 0..oh {
        for ox in 0..ow {
            let window: Vec<f64> = (0..9).map(|j| padded(2 * oy + j / 3, 2 * ox + j % 3)).collect();
            let want = approx_max_window(&sign, &window, scale);
            let got = out.logits[oy * ow + ox] as f64;
            assert!((got - want).abs() <= 1e-6 * bound, "({oy}, {ox}): {got} vs {want}");
            let exact = window.iter().copied().fold(f64::MIN, f64::max);
            assert!((got - exact).abs() <= 2.0 * bound * 2f64.powi(-(alpha as i32)) * 9.0);
        }
    }
    let gpu_out = GpuNetwork::new(gpu, &graph, Scheme::Clenshaw)
        .unwrap()
        .run(
            &batch,
            &ActivationPlan::uniform(&graph, SiteMode::approx(&sign, alpha, bound)),
        )
        .unwrap();
    let diff = relative_difference(&gpu_out.logits, &out.logits);
    assert!(diff <= 1e-4, "GPU vs CPU {diff:e}");
}

#[test]
fn auxiliary_heads_are_dropped_and_unknown_tensors_are_errors() {
    use polycnn::weights::{StateDict, Tensor};
    let listed = model::list_layers(Arch::GoogLeNet).unwrap();
    let mut params = CounterParams::new(1);
    let graph = model::build(Arch::GoogLeNet, &mut params).unwrap();
    assert_eq!(graph.input, Shape::new(3, 224, 224));
    let dict_with = |extra: &str| {
        let mut params = CounterParams::new(1);
        let mut tensors: Vec<(String, Tensor)> = listed
            .iter()
            .filter(|p| p.kind != ParamKind::Counter)
            .map(|p| (p.name.clone(), params.tensor(&p.name, &p.shape, p.kind).unwrap()))
            .collect();
        tensors.push((
            extra.to_string(),
            Tensor {
                shape: vec![2],
                data: vec![0.0, 1.0],
            },
        ));
        StateDict::from_tensors(tensors)
    };
    use polycnn::model::ParamSource;
    model::from_state_dict(Arch::GoogLeNet, &mut dict_with("aux1.fc2.bias")).unwrap();
    let err = model::from_state_dict(Arch::GoogLeNet, &mut dict_with("inception9z.conv.weight"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("inception9z.conv.weight"), "{err}");
}

/// By hand: `scripts/make_net_fixtures.py --check-dir DIR` saves real torch.save(state_dict())
/// files of torchvision's classes (auxiliary heads included); this loads each through
/// `model::load`. `POLYCNN_NET_CHECK_DIR=DIR cargo test --release --test nets -- --ignored`.
#[test]
#[ignore]
fn real_state_dicts_load() {
    let dir = PathBuf::from(std::env::var("POLYCNN_NET_CHECK_DIR").expect("POLYCNN_NET_CHECK_DIR"));
    for name in ["googlenet", "inception_v3", "vgg16_bn_cifar10_paper", "resnet110"] {
        let path = dir.join(format!("{name}.pth"));
        if !path.exists() {
            eprintln!("{}: missing, skipped", path.display());
            continue;
        }
        let graph = model::load(name.parse().unwrap(), &path).unwrap_or_else(|e| panic!("{name}: {e}"));
        eprintln!("{name}: loaded {} nodes from {}", graph.nodes.len(), path.display());
    }
}

/// The approximate max-pool's worst error in units of B, per window and α (the official
/// polynomials), over uniform windows and near-ties around the sign approximation's worst gap:
/// each tree level adds at most the approximate max's error, ≤ 2^-α in rescaled units, i.e.
/// 2^-α/s = 2B·2^-α/(1 − c·2^-α) in input units; 2 levels for 2x2, 4 for 3x3.
#[test]
fn approximate_max_pool_error_per_window_and_alpha() {
    use polycnn::poly::activation::measure_max_pool_error;
    use polycnn::poly::official::load_official;
    use polycnn::poly::verify::relu_error;
    let Some(coeffs) = data("approxcnn_coeffs") else { return };
    for alpha in 7..=14u32 {
        let sign = load_official(&coeffs, alpha).unwrap();
        let gap = relu_error(&sign).argmax;
        let mut row = format!("α = {alpha:2}:");
        for (len, levels, c) in [(4, 2.0, 4.0), (9, 4.0, 6.0)] {
            let measured = measure_max_pool_error(&sign, alpha, len, gap, 400).unwrap();
            let step = 2f64.powi(-(alpha as i32));
            let bound = levels * 2.0 * step / (1.0 - c * step);
            row += &format!(
                "  {len} inputs: {measured:.3e} B (2^{:.2}, bound {bound:.3e} B)",
                measured.log2()
            );
            assert!(measured <= bound, "α = {alpha}, window {len}: {measured:e} > {bound:e}");
        }
        eprintln!("{row}");
    }
}

/// By hand (slow on a software GPU): forward time per image at the real input sizes, random
/// weights. `cargo test --release --test nets full_size -- --ignored --nocapture`.
#[test]
#[ignore]
fn full_size_forward_times() {
    let Some(gpu) = gpu() else { return };
    for arch in [Arch::GoogLeNet, Arch::InceptionV3] {
        let graph = model::build(arch, &mut CounterParams::new(1)).unwrap();
        let shape = arch.descriptor().input;
        let n = 2;
        let batch = Batch::new(n, shape, CounterParams::input(2, n * shape.numel())).unwrap();
        let plan = ActivationPlan::exact(&graph);
        let start = Instant::now();
        let cpu_out = cpu::run(&graph, &batch, &plan).unwrap();
        let cpu_s = start.elapsed().as_secs_f64() / n as f64;
        let network = GpuNetwork::new(gpu, &graph, Scheme::Clenshaw).unwrap();
        network.run(&batch, &plan).unwrap(); // buffers allocated, pipelines compiled
        let start = Instant::now();
        let gpu_out = network.run(&batch, &plan).unwrap();
        let gpu_s = start.elapsed().as_secs_f64() / n as f64;
        let diff = relative_difference(&gpu_out.logits, &cpu_out.logits);
        eprintln!(
            "{}: CPU {cpu_s:.2} s/image, GPU {gpu_s:.2} s/image, GPU vs CPU {diff:.1e}",
            graph.name
        );
        assert!(diff <= 1e-4);
    }
}

#[test]
fn bad_concats_and_input_sizes_are_errors_naming_the_node() {
    let mut b = GraphBuilder::new("bad", Shape::new(2, 6, 6));
    let pooled = b.max_pool("pool", GraphBuilder::INPUT, pool(2, 2, 0, false));
    let cat = b.push(
        "mixed",
        Op::Concat {
            inputs: vec![GraphBuilder::INPUT, pooled],
        },
    );
    let err = b.finish(cat).unwrap_err().to_string();
    assert!(err.contains("mixed") && err.contains("different planes"), "{err}");
    let mut b = GraphBuilder::new("empty", Shape::new(2, 6, 6));
    let cat = b.push("nothing", Op::Concat { inputs: vec![] });
    assert!(b.finish(cat).unwrap_err().to_string().contains("nothing"));
    let err = model::build_for_input(Arch::VggBn(11), &mut CounterParams::new(1), Shape::new(3, 64, 64))
        .unwrap_err()
        .to_string();
    assert!(err.contains("vgg11_bn") && err.contains("3x224x224"), "{err}");
    // Too small for Inception-v3's last stage: an error, not a panic.
    let err = model::build_for_input(Arch::InceptionV3, &mut CounterParams::new(1), Shape::new(3, 64, 64))
        .unwrap_err()
        .to_string();
    assert!(err.contains("Mixed"), "{err}");
}
