//! The GPU executor against the CPU backend on the ops an ONNX import brings: general pooling
//! windows (asymmetric pads, dilation, non-square, count_include_pad both ways), per-channel
//! affine, subtraction, the exact-only functions, ReLU6 (two sites sharing B) and grouped /
//! depthwise convolutions with their fused epilogues. (The CPU backend is checked against an
//! f64 reference interpreter in tests/cpu_models.rs; the GPU conv kernel against a direct f64
//! convolution in tests/gpu_conv.rs.)

mod common;

use common::gpu;
use polycnn::cpu;
use polycnn::exec::{ActivationPlan, SiteMode};
use polycnn::gpu::Gpu;
use polycnn::gpu::activation::Scheme;
use polycnn::gpu::network::GpuNetwork;
use polycnn::model::{Affine, Batch, Conv2d, Graph, GraphBuilder, NodeId, Op, Pointwise, Shape, Window2d};
use polycnn::poly::{Composite, optimise_eps, paper_degrees};
use polycnn::weights::Tensor;
use std::sync::OnceLock;

fn alpha12() -> &'static Composite {
    static C: OnceLock<Composite> = OnceLock::new();
    C.get_or_init(|| optimise_eps(paper_degrees(12).unwrap()).unwrap().composite)
}

fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}

fn batch(graph: &Graph, n: usize, seed: u64) -> Batch {
    Batch::new(n, graph.input, values(n * graph.input.numel(), seed)).unwrap()
}

/// Runs `plan` on both backends; asserts max |gpu − cpu| ≤ tolerance · max |cpu| over the
/// output and equal site statistics (counts, max |x|, out-of-range within one).
fn compare(gpu: &Gpu, graph: &Graph, batch: &Batch, plan: &ActivationPlan, tolerance: f64) {
    let network = GpuNetwork::new(gpu, graph, Scheme::Clenshaw).unwrap();
    let on_gpu = network.run(batch, plan).unwrap();
    let on_cpu = cpu::run(graph, batch, plan).unwrap();
    assert_eq!(on_gpu.logits.len(), on_cpu.logits.len());
    let scale = on_cpu
        .logits
        .iter()
        .fold(0.0f64, |m, v| m.max(v.abs() as f64))
        .max(1e-30);
    let diff = on_gpu
        .logits
        .iter()
        .zip(&on_cpu.logits)
        .fold(0.0f64, |m, (g, c)| m.max((*g as f64 - *c as f64).abs()));
    assert!(
        diff <= tolerance * scale,
        "{}: GPU vs CPU max difference {diff:e} (scale {scale:e})",
        graph.name
    );
    for (g, c) in on_gpu.sites.iter().zip(&on_cpu.sites) {
        assert_eq!((g.name.as_str(), g.count), (c.name.as_str(), c.count));
        assert!(
            (g.max_abs - c.max_abs).abs() <= 1e-5 * c.max_abs.max(1.0),
            "site {}",
            g.name
        );
        assert!(g.out_of_range.abs_diff(c.out_of_range) <= 1, "site {}", g.name);
    }
}

fn window(kernel: [usize; 2], stride: [usize; 2], dilation: [usize; 2], pads: [usize; 4]) -> Window2d {
    Window2d {
        kernel,
        stride,
        dilation,
        pads,
        ceil_mode: false,
    }
}

#[test]
fn general_pooling_windows_match_the_cpu() {
    let Some(gpu) = gpu() else { return };
    let input = Shape::new(3, 11, 9);
    let asymmetric = window([3, 3], [2, 2], [1, 1], [0, 0, 1, 1]);
    let rectangular = window([3, 2], [2, 1], [1, 1], [1, 0, 0, 1]);
    let dilated = window([2, 2], [1, 2], [2, 1], [1, 1, 1, 0]).with_ceil_mode(true);
    let big = Window2d::square(5, 1, 2);
    for pool in [asymmetric, rectangular, dilated, big, asymmetric.with_ceil_mode(true)] {
        let mut b = GraphBuilder::new("pools", input);
        let x = GraphBuilder::INPUT;
        let mut parts: Vec<NodeId> = [true, false]
            .into_iter()
            .map(|count_include_pad| {
                let op = Op::AvgPool {
                    input: x,
                    pool,
                    count_include_pad,
                };
                b.push(&format!("avg_{count_include_pad}"), op)
            })
            .collect();
        parts.push(b.max_pool("max", x, pool));
        let out = b.push("concat", Op::Concat { inputs: parts });
        let graph = b.finish(out).unwrap();
        let data = batch(&graph, 2, 1);
        compare(gpu, &graph, &data, &ActivationPlan::exact(&graph), 1e-6);
        if pool.taps() == 4 || pool.taps() == 9 {
            let plan = ActivationPlan::uniform(&graph, SiteMode::approx(alpha12(), 12, 2.0));
            compare(gpu, &graph, &data, &plan, 1e-5);
        }
    }
}

#[test]
fn affine_sub_and_exact_only_functions_match_the_cpu() {
    let Some(gpu) = gpu() else { return };
    let input = Shape::new(4, 6, 5);
    let mut b = GraphBuilder::new("pointwise", input);
    // Spread inputs over about [-12, 12]: both saturated ends of sigmoid/tanh/hard-sigmoid.
    let spread = Affine {
        input: GraphBuilder::INPUT,
        scale: vec![12.0, 3.0, -7.0, 0.5],
        shift: vec![0.25],
    };
    let x = b.push("spread", Op::Affine(spread));
    let funcs = [
        Pointwise::Sigmoid,
        Pointwise::Silu,
        Pointwise::Gelu,
        Pointwise::Tanh,
        Pointwise::HardSwish,
        Pointwise::HardSigmoid { alpha: 0.2, beta: 0.5 },
        Pointwise::Clip { min: -1.5, max: 4.0 },
    ];
    let mut parts = Vec::new();
    for (i, func) in funcs.into_iter().enumerate() {
        parts.push(b.push(&format!("f{i}"), Op::Pointwise { input: x, func }));
    }
    let shifted = b.push(
        "shifted",
        Op::Affine(Affine {
            input: x,
            scale: vec![-1.0],
            shift: vec![0.5, 1.0, 2.0, 3.0],
        }),
    );
    parts.push(b.push("difference", Op::Sub { a: x, b: shifted }));
    let out = b.push("concat", Op::Concat { inputs: parts });
    let graph = b.finish(out).unwrap();
    // Values up to ~12; GELU's erfc and the exp-based functions differ by a few f32 ulps.
    compare(gpu, &graph, &batch(&graph, 3, 2), &ActivationPlan::exact(&graph), 2e-6);
}

/// Depthwise-separable block: depthwise 3x3 stride 2 with TF "SAME" pads → ReLU6 → pointwise
/// 1x1 conv (fused ReLU) → grouped dilated 3x3 conv → global pool.
fn separable_block() -> Graph {
    let input = Shape::new(8, 12, 11);
    let mut b = GraphBuilder::new("separable", input);
    let conv = |b: &mut GraphBuilder, name: &str, x: NodeId, (i, o, groups): (usize, usize, usize), w: Window2d| {
        let [kh, kw] = w.kernel;
        let weight = Tensor {
            shape: vec![o, i / groups, kh, kw],
            data: values(o * i / groups * kh * kw, name.len() as u64)
                .iter()
                .map(|v| v * 0.6)
                .collect(),
        };
        let conv = Conv2d {
            input: x,
            weight,
            bias: values(o, 99),
            window: w,
            groups,
        };
        b.push(name, Op::Conv2d(conv))
    };
    let dw = conv(
        &mut b,
        "dw",
        GraphBuilder::INPUT,
        (8, 8, 8),
        window([3, 3], [2, 2], [1, 1], [0, 0, 1, 1]),
    );
    let dw = b.relu6("dw.relu6", dw);
    let pw = conv(&mut b, "pw", dw, (8, 16, 1), Window2d::square(1, 1, 0));
    let pw = b.relu("pw.relu", pw);
    let grouped = conv(
        &mut b,
        "grouped",
        pw,
        (16, 12, 4),
        window([3, 3], [1, 1], [2, 2], [2, 2, 2, 2]),
    );
    let grouped = b.relu("grouped.relu", grouped);
    let pooled = b.push("pool", Op::GlobalAvgPool { input: grouped });
    b.finish(pooled).unwrap()
}

#[test]
fn depthwise_separable_block_with_relu6_matches_the_cpu_exact_and_approximate() {
    let Some(gpu) = gpu() else { return };
    let graph = separable_block();
    let data = batch(&graph, 2, 3);
    compare(gpu, &graph, &data, &ActivationPlan::exact(&graph), 1e-5);
    let plan = ActivationPlan::uniform(&graph, SiteMode::approx(alpha12(), 12, 16.0));
    compare(gpu, &graph, &data, &plan, 1e-4);
}

#[test]
fn plans_that_cannot_run_are_refused_before_running() {
    let Some(gpu) = gpu() else { return };
    // ReLU6 halves with different bounds.
    let graph = separable_block();
    let mut plan = ActivationPlan::uniform(&graph, SiteMode::approx(alpha12(), 12, 16.0));
    plan.modes[1] = SiteMode::approx(alpha12(), 12, 8.0);
    let network = GpuNetwork::new(gpu, &graph, Scheme::Clenshaw).unwrap();
    let err = network.run(&batch(&graph, 1, 4), &plan).unwrap_err().to_string();
    assert!(
        err.contains("dw.relu6.relu_minus6") && err.contains("shares its bound"),
        "{err}"
    );
    // An exact-only function in an approximate run.
    let mut b = GraphBuilder::new("mixed", Shape::new(2, 3, 3));
    let r = b.relu("relu", GraphBuilder::INPUT);
    let g = b.push(
        "Gelu_3",
        Op::Pointwise {
            input: r,
            func: Pointwise::Gelu,
        },
    );
    let graph = b.finish(g).unwrap();
    let network = GpuNetwork::new(gpu, &graph, Scheme::Clenshaw).unwrap();
    let plan = ActivationPlan::uniform(&graph, SiteMode::approx(alpha12(), 12, 4.0));
    let err = network.run(&batch(&graph, 1, 5), &plan).unwrap_err().to_string();
    assert!(err.contains("Gelu_3") && err.contains("exact"), "{err}");
    assert!(
        network
            .run(&batch(&graph, 1, 5), &ActivationPlan::exact(&graph))
            .is_ok()
    );
}
