//! The CPU backend against a naive reference interpreter of the graph IR, and the real
//! pretrained CIFAR-10 networks on the lossless first 1,000 test images.

use polycnn::cpu;
use polycnn::exec::{ActivationPlan, SiteMode};
use polycnn::model::{self, Affine, Arch, Batch, Conv2d, Graph, GraphBuilder, Op, Pointwise, Shape, Window2d};
use polycnn::poly::activation::approx_relu;
use polycnn::poly::{optimise_eps, paper_degrees};
use polycnn::weights::{StateDict, Tensor};
use std::path::PathBuf;
use std::time::Instant;

mod common;
use common::data;

// ---------------------------------------------------------------------------------------------
// A naive interpreter of the IR: direct loops, f64 accumulation, exact activations.

fn reference_run(graph: &Graph, image: &[f32]) -> Vec<f32> {
    reference_values(graph, image).swap_remove(graph.output)
}

/// Every node's value for one image.
fn reference_values(graph: &Graph, image: &[f32]) -> Vec<Vec<f32>> {
    let shapes = graph.shapes().unwrap();
    let mut values: Vec<Vec<f32>> = Vec::with_capacity(graph.nodes.len());
    for (id, node) in graph.nodes.iter().enumerate() {
        let (out, of) = (shapes[id], |n: usize| shapes[n]);
        let v = match &node.op {
            Op::Input => image.to_vec(),
            Op::Conv2d(c) => direct_conv(&values[c.input], of(c.input), c, out),
            Op::Relu { input, .. } => values[*input].iter().map(|v| v.max(0.0)).collect(),
            Op::MaxPool { input, pool, .. } => direct_pool(&values[*input], of(*input), pool, out, PoolKind::Max),
            Op::AvgPool {
                input,
                pool,
                count_include_pad,
            } => direct_pool(
                &values[*input],
                of(*input),
                pool,
                out,
                PoolKind::Avg(*count_include_pad),
            ),
            Op::GlobalAvgPool { input } => {
                let p = of(*input).plane();
                values[*input]
                    .chunks(p)
                    .map(|c| (c.iter().map(|&v| v as f64).sum::<f64>() / p as f64) as f32)
                    .collect()
            }
            Op::Add { a, b } => values[*a].iter().zip(&values[*b]).map(|(x, y)| x + y).collect(),
            Op::Sub { a, b } => values[*a].iter().zip(&values[*b]).map(|(x, y)| x - y).collect(),
            Op::Affine(af) => {
                let p = of(af.input).plane();
                let channel = |i: usize| (i / p) % of(af.input).c;
                let pick = |v: &[f32], c: usize| if v.len() == 1 { v[0] } else { v[c] } as f64;
                let at = |i: usize, x: f32| x as f64 * pick(&af.scale, channel(i)) + pick(&af.shift, channel(i));
                values[af.input]
                    .iter()
                    .enumerate()
                    .map(|(i, &x)| at(i, x) as f32)
                    .collect()
            }
            Op::Pointwise { input, func } => values[*input].iter().map(|&x| func.eval_f64(x as f64) as f32).collect(),
            Op::ShortcutA {
                input,
                out_channels,
                stride,
            } => {
                let s = of(*input);
                let pad = (out_channels - s.c) / 2;
                let mut o = vec![0.0; out.numel()];
                for c in 0..s.c {
                    for y in 0..out.h {
                        for x in 0..out.w {
                            o[((c + pad) * out.h + y) * out.w + x] =
                                values[*input][(c * s.h + y * stride) * s.w + x * stride];
                        }
                    }
                }
                o
            }
            Op::Flatten { input } => values[*input].clone(),
            Op::Concat { inputs } => inputs.iter().flat_map(|&i| values[i].iter().copied()).collect(),
            Op::Linear(l) => {
                let x = &values[l.input];
                l.weight
                    .data
                    .chunks(x.len())
                    .zip(&l.bias)
                    .map(|(row, b)| {
                        (row.iter().zip(x).map(|(w, x)| *w as f64 * *x as f64).sum::<f64>() + *b as f64) as f32
                    })
                    .collect()
            }
        };
        values.push(v);
    }
    values
}

/// Direct convolution in f64 from the ONNX definition: groups, dilation, asymmetric padding.
fn direct_conv(x: &[f32], s: Shape, c: &Conv2d, out: Shape) -> Vec<f32> {
    let [kh, kw] = c.kernel();
    let win = &c.window;
    let (cin, cout) = (s.c / c.groups, out.c / c.groups);
    let mut o = vec![0.0; out.numel()];
    for oc in 0..out.c {
        let group = oc / cout;
        for oy in 0..out.h {
            for ox in 0..out.w {
                let mut acc = c.bias[oc] as f64;
                for j in 0..cin {
                    let ic = group * cin + j;
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let iy = (oy * win.stride[0] + ky * win.dilation[0]) as isize - win.pads[0] as isize;
                            let ix = (ox * win.stride[1] + kx * win.dilation[1]) as isize - win.pads[1] as isize;
                            if iy >= 0 && ix >= 0 && (iy as usize) < s.h && (ix as usize) < s.w {
                                let w = c.weight.data[((oc * cin + j) * kh + ky) * kw + kx] as f64;
                                acc += w * x[(ic * s.h + iy as usize) * s.w + ix as usize] as f64;
                            }
                        }
                    }
                }
                o[(oc * out.h + oy) * out.w + ox] = acc as f32;
            }
        }
    }
    o
}

#[derive(Clone, Copy, Debug)]
enum PoolKind {
    Max,
    /// count_include_pad
    Avg(bool),
}

/// PyTorch max-pool (padding −∞) or avg-pool (divisor: with count_include_pad the taps inside
/// the padded input, a ceil-mode overhang excluded; else the taps inside the input), written
/// from the definitions with per-axis stride, dilation and `[top, left, bottom, right]` pads.
fn direct_pool(x: &[f32], s: Shape, p: &Window2d, out: Shape, kind: PoolKind) -> Vec<f32> {
    let mut o = vec![0.0; out.numel()];
    let coord =
        |axis: usize, o: usize, k: usize| (o * p.stride[axis] + k * p.dilation[axis]) as isize - p.pads[axis] as isize;
    let in_padded =
        |axis: usize, i: isize, len: usize| i >= -(p.pads[axis] as isize) && i < (len + p.pads[axis + 2]) as isize;
    for c in 0..s.c {
        for oy in 0..out.h {
            for ox in 0..out.w {
                let (mut best, mut sum, mut inside, mut padded) = (f32::NEG_INFINITY, 0.0f64, 0, 0);
                for ky in 0..p.kernel[0] {
                    for kx in 0..p.kernel[1] {
                        let (y, xx) = (coord(0, oy, ky), coord(1, ox, kx));
                        padded += (in_padded(0, y, s.h) && in_padded(1, xx, s.w)) as usize;
                        if y >= 0 && xx >= 0 && (y as usize) < s.h && (xx as usize) < s.w {
                            let v = x[(c * s.h + y as usize) * s.w + xx as usize];
                            best = best.max(v);
                            sum += v as f64;
                            inside += 1;
                        }
                    }
                }
                o[(c * out.h + oy) * out.w + ox] = match kind {
                    PoolKind::Max => best,
                    PoolKind::Avg(true) => (sum / padded as f64) as f32,
                    PoolKind::Avg(false) => (sum / inside as f64) as f32,
                };
            }
        }
    }
    o
}

fn pseudo_random(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}

/// Runs `graph` on `n` random images with the CPU backend and the reference; max |difference|
/// relative to the largest reference output.
fn compare_with_reference(graph: &Graph, n: usize) -> f32 {
    let per = graph.input.numel();
    let data = pseudo_random(n * per, 42);
    let batch = Batch::new(n, graph.input, data.clone()).unwrap();
    let got = cpu::run(graph, &batch, &ActivationPlan::exact(graph)).unwrap();
    let want: Vec<f32> = data.chunks(per).flat_map(|img| reference_run(graph, img)).collect();
    assert_eq!(got.logits.len(), want.len());
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
    got.logits
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
        / scale
}

fn single_conv_graph(input: Shape, out_ch: usize, kernel: [usize; 2], stride: usize, padding: [usize; 2]) -> Graph {
    let window = Window2d::new(kernel, [stride; 2], padding);
    general_conv_graph(input, out_ch, window, 1)
}

fn general_conv_graph(input: Shape, out_ch: usize, window: Window2d, groups: usize) -> Graph {
    let mut b = GraphBuilder::new("conv", input);
    let [kh, kw] = window.kernel;
    let per_group = input.c / groups;
    let weight = Tensor {
        shape: vec![out_ch, per_group, kh, kw],
        data: pseudo_random(out_ch * per_group * kh * kw, 5),
    };
    let conv = Conv2d {
        input: GraphBuilder::INPUT,
        weight,
        bias: pseudo_random(out_ch, 6),
        window,
        groups,
    };
    let out = b.push("conv", Op::Conv2d(conv));
    b.finish(out).unwrap()
}

#[test]
fn convolution_matches_direct_convolution_for_many_geometries() {
    // (in shape, out channels, kernel, stride, padding): 1x1 pointwise and strided, 3x3, 5x5,
    // the 7x7/2/3 stem, kernel larger than padding allows on small inputs, odd sizes, and
    // Inception-v3's rectangular 1x7 / 7x1 / 1x3 / 3x1 kernels padded along one axis.
    let cases = [
        (Shape::new(8, 9, 7), 5, [1, 1], 1, [0, 0]),
        (Shape::new(8, 9, 7), 6, [1, 1], 2, [0, 0]),
        (Shape::new(3, 11, 10), 4, [3, 3], 1, [1, 1]),
        (Shape::new(3, 11, 10), 4, [3, 3], 2, [1, 1]),
        (Shape::new(2, 13, 13), 3, [5, 5], 1, [2, 2]),
        (Shape::new(2, 13, 12), 3, [5, 5], 3, [0, 0]),
        (Shape::new(3, 23, 21), 8, [7, 7], 2, [3, 3]),
        (Shape::new(4, 4, 4), 2, [3, 3], 1, [2, 2]),
        (Shape::new(5, 9, 8), 6, [1, 7], 1, [0, 3]),
        (Shape::new(5, 9, 8), 6, [7, 1], 1, [3, 0]),
        (Shape::new(4, 6, 7), 3, [1, 3], 1, [0, 1]),
        (Shape::new(4, 10, 9), 3, [3, 1], 2, [1, 0]),
    ];
    for (input, o, k, s, p) in cases {
        let graph = single_conv_graph(input, o, k, s, p);
        // batch 1 (multi-threaded GEMM) and batch 9 (chunked over threads)
        for n in [1, 9] {
            let err = compare_with_reference(&graph, n);
            assert!(
                err < 1e-5,
                "k{k:?} s{s} p{p:?} on {input}, batch {n}: relative error {err}"
            );
        }
    }
}

#[test]
fn grouped_dilated_asymmetric_convolutions_match_direct_convolution() {
    let win = |k: [usize; 2], s: [usize; 2], d: [usize; 2], pads: [usize; 4]| Window2d {
        kernel: k,
        stride: s,
        dilation: d,
        pads,
        ceil_mode: false,
    };
    // (input, out channels, window, groups): depthwise 3x3 (MobileNet), depthwise strided with
    // TF "SAME" padding [0, 0, 1, 1], grouped 2 and 4 (ResNeXt-style), dilated 3x3 (DeepLab),
    // dilated + grouped + anisotropic stride, a depthwise multiplier of 2, a pointwise grouped conv.
    let cases = [
        (Shape::new(6, 9, 8), 6, win([3, 3], [1, 1], [1, 1], [1, 1, 1, 1]), 6),
        (Shape::new(5, 10, 9), 5, win([3, 3], [2, 2], [1, 1], [0, 0, 1, 1]), 5),
        (Shape::new(8, 7, 7), 6, win([3, 3], [1, 1], [1, 1], [1, 1, 1, 1]), 2),
        (Shape::new(8, 7, 6), 8, win([3, 1], [1, 1], [1, 1], [1, 0, 1, 0]), 4),
        (Shape::new(3, 13, 12), 4, win([3, 3], [1, 1], [2, 2], [2, 2, 2, 2]), 1),
        (Shape::new(6, 15, 11), 9, win([3, 2], [2, 1], [3, 2], [1, 0, 2, 1]), 3),
        (Shape::new(4, 6, 5), 8, win([3, 3], [1, 1], [1, 1], [1, 1, 1, 1]), 4),
        (Shape::new(8, 5, 5), 4, win([1, 1], [1, 1], [1, 1], [0, 0, 0, 0]), 2),
    ];
    for (input, o, w, groups) in cases {
        let graph = general_conv_graph(input, o, w, groups);
        for n in [1, 7] {
            let err = compare_with_reference(&graph, n);
            assert!(
                err < 1e-5,
                "{w:?} groups {groups} on {input}, batch {n}: relative error {err}"
            );
        }
    }
    // A depthwise conv with the residual and ReLU fused into it (how a MobileNet-v2 inverted
    // residual ends, plus a ReLU): the direct depthwise path's epilogue.
    let dw = general_conv_graph(Shape::new(6, 7, 7), 6, win([3, 3], [1, 1], [1, 1], [1, 1, 1, 1]), 6);
    let mut b = GraphBuilder::new("dw_residual", dw.input);
    let conv = b.push("conv", dw.nodes[1].op.clone());
    let sum = b.push(
        "add",
        Op::Add {
            a: conv,
            b: GraphBuilder::INPUT,
        },
    );
    let out = b.relu("relu", sum);
    let graph = b.finish(out).unwrap();
    let fused = polycnn::model::schedule::fused_schedule(&graph);
    assert!(matches!(
        fused[0],
        polycnn::model::schedule::Step::Conv {
            residual: Some(0),
            site: Some(0),
            ..
        }
    ));
    for n in [1, 7] {
        assert!(compare_with_reference(&graph, n) < 1e-5);
    }
}

#[test]
fn pooling_matches_pytorch_semantics() {
    let input = Shape::new(3, 9, 8);
    let asymmetric = Window2d {
        kernel: [3, 2],
        stride: [2, 1],
        dilation: [1, 1],
        pads: [1, 0, 0, 1],
        ceil_mode: false,
    };
    let dilated = Window2d {
        dilation: [2, 2],
        pads: [2, 1, 1, 2],
        ..Window2d::square(3, 2, 0).with_ceil_mode(true)
    };
    for (pool, kind) in [
        (Window2d::square(3, 2, 1), PoolKind::Max),
        (Window2d::square(2, 2, 0).with_ceil_mode(true), PoolKind::Max),
        (Window2d::square(3, 2, 1).with_ceil_mode(true), PoolKind::Avg(true)),
        (Window2d::square(3, 2, 1).with_ceil_mode(true), PoolKind::Avg(false)),
        (Window2d::square(2, 1, 1), PoolKind::Avg(true)),
        (Window2d::square(2, 1, 1), PoolKind::Avg(false)),
        (Window2d::square(5, 1, 2), PoolKind::Max),
        (asymmetric, PoolKind::Max),
        (asymmetric, PoolKind::Avg(true)),
        (asymmetric.with_ceil_mode(true), PoolKind::Avg(false)),
        (dilated, PoolKind::Max),
        (dilated, PoolKind::Avg(true)),
    ] {
        let mut b = GraphBuilder::new("pool", input);
        let out = match kind {
            PoolKind::Max => b.max_pool("pool", GraphBuilder::INPUT, pool),
            PoolKind::Avg(count_include_pad) => b.push(
                "pool",
                Op::AvgPool {
                    input: GraphBuilder::INPUT,
                    pool,
                    count_include_pad,
                },
            ),
        };
        let graph = b.finish(out).unwrap();
        let err = compare_with_reference(&graph, 5);
        assert!(err < 1e-6, "{pool:?} {kind:?}: {err}");
    }
}

/// input → per-channel affine (spreading values over about [-9, 9]) → `func`.
fn pointwise_graph(input: Shape, func: Pointwise) -> Graph {
    let mut b = GraphBuilder::new("pointwise", input);
    let affine = Affine {
        input: GraphBuilder::INPUT,
        scale: (0..input.c).map(|c| 3.0 + 2.0 * c as f32).collect(),
        shift: vec![-0.25],
    };
    let x = b.push("spread", Op::Affine(affine));
    let y = b.push("f", Op::Pointwise { input: x, func });
    b.finish(y).unwrap()
}

const EVERY_POINTWISE: [Pointwise; 8] = [
    Pointwise::Sigmoid,
    Pointwise::Silu,
    Pointwise::Gelu,
    Pointwise::Tanh,
    Pointwise::HardSwish,
    Pointwise::HardSigmoid { alpha: 0.2, beta: 0.5 },
    Pointwise::Clip { min: -1.5, max: 4.0 },
    Pointwise::Clip {
        min: f32::NEG_INFINITY,
        max: 0.5,
    },
];

#[test]
fn affine_sub_and_exact_only_functions_match_the_reference() {
    for func in EVERY_POINTWISE {
        let graph = pointwise_graph(Shape::new(4, 5, 3), func);
        let err = compare_with_reference(&graph, 3);
        assert!(err < 1e-6, "{func:?}: relative error {err}");
    }
    // a − b of two differently scaled copies (a scalar affine broadcasts)
    let mut b = GraphBuilder::new("sub", Shape::new(2, 3, 3));
    let scaled = |input, scale: f32| Affine {
        input,
        scale: vec![scale],
        shift: vec![1.0, -2.0],
    };
    let x = b.push("x", Op::Affine(scaled(GraphBuilder::INPUT, 2.0)));
    let y = b.push("y", Op::Affine(scaled(GraphBuilder::INPUT, -0.5)));
    let d = b.push("d", Op::Sub { a: x, b: y });
    let graph = b.finish(d).unwrap();
    assert!(compare_with_reference(&graph, 2) < 1e-7);
}

fn relu6_graph() -> Graph {
    let mut b = GraphBuilder::new("relu6", Shape::new(2, 4, 5));
    let spread = Affine {
        input: GraphBuilder::INPUT,
        scale: vec![9.0],
        shift: vec![2.5],
    };
    let x = b.push("spread", Op::Affine(spread));
    let y = b.relu6("act", x);
    b.finish(y).unwrap()
}

#[test]
fn relu6_is_an_exact_clip_and_two_relu_sites_sharing_one_bound() {
    let graph = relu6_graph();
    assert_eq!(graph.sites.len(), 2);
    assert_eq!(graph.sites[1].shares_bound_with, Some(0));
    assert_eq!(graph.bound_leader(1), 0);
    let (n, per) = (3, graph.input.numel());
    let data = pseudo_random(n * per, 9);
    let batch = Batch::new(n, graph.input, data.clone()).unwrap();
    let spread: Vec<f32> = data.iter().map(|&v| v.mul_add(9.0, 2.5)).collect();
    assert!(spread.iter().any(|&v| v < 0.0) && spread.iter().any(|&v| v > 6.0));
    let exact = cpu::run(&graph, &batch, &ActivationPlan::exact(&graph)).unwrap();
    for (y, x) in exact.logits.iter().zip(&spread) {
        assert_eq!(*y, x.clamp(0.0, 6.0), "exact ReLU6 of {x}");
    }

    // Approximated: ReLU_B(x) − ReLU_B(x − 6), both halves against the double-double reference.
    let (alpha, bound) = (12, 16.0);
    let sign = optimise_eps(paper_degrees(alpha).unwrap()).unwrap().composite;
    let plan = ActivationPlan::uniform(&graph, SiteMode::approx(&sign, alpha, bound));
    let approx = cpu::run(&graph, &batch, &plan).unwrap();
    for (y, &x) in approx.logits.iter().zip(&spread) {
        let x6 = x.mul_add(1.0, -6.0) as f64;
        let want = approx_relu(&sign, x as f64, bound) - approx_relu(&sign, x6, bound);
        assert!((*y as f64 - want).abs() < 1e-5 * bound, "x = {x}: {y} vs {want}");
        assert!((*y - x.clamp(0.0, 6.0)).abs() < 2.0 * bound as f32 * 2f32.powi(-(alpha as i32)));
    }
    assert_eq!(approx.sites[0].count, (n * per) as u64);
    assert_eq!(
        approx.sites[1].max_abs,
        spread.iter().map(|x| (x - 6.0).abs()).fold(0.0, f32::max)
    );

    // Different bounds for the two halves are refused, naming both sites.
    let mut plan = plan;
    plan.modes[1] = SiteMode::approx(&sign, alpha, 2.0 * bound);
    let err = cpu::run(&graph, &batch, &plan).unwrap_err().to_string();
    assert!(
        err.contains("act.relu_minus6") && err.contains("act.relu") && err.contains("32"),
        "{err}"
    );
    let mut bounds = [3.0, 7.0];
    graph.unify_shared_bounds(&mut bounds);
    assert_eq!(bounds, [7.0, 7.0]);
}

#[test]
fn approximate_plans_are_refused_on_graphs_with_exact_only_nodes() {
    let mut b = GraphBuilder::new("mixed", Shape::new(2, 3, 3));
    let r = b.relu("relu", GraphBuilder::INPUT);
    let s = b.push(
        "Sigmoid_7",
        Op::Pointwise {
            input: r,
            func: Pointwise::Sigmoid,
        },
    );
    let graph = b.finish(s).unwrap();
    assert_eq!(graph.exact_only_nodes(), vec![s]);
    let batch = Batch::new(1, graph.input, pseudo_random(18, 3)).unwrap();
    assert!(cpu::run(&graph, &batch, &ActivationPlan::exact(&graph)).is_ok());
    let sign = optimise_eps(paper_degrees(8).unwrap()).unwrap().composite;
    let plan = ActivationPlan::uniform(&graph, SiteMode::approx(&sign, 8, 4.0));
    let err = cpu::run(&graph, &batch, &plan).unwrap_err().to_string();
    assert!(
        err.contains("Sigmoid_7") && err.contains("no polynomial approximation"),
        "{err}"
    );
    assert!(graph.refuse_approximation().is_err());
}

#[test]
fn malformed_new_ops_are_graph_errors_naming_the_node() {
    let input = Shape::new(4, 6, 6);
    let shapes_of = |op: Op| {
        let mut b = GraphBuilder::new("bad", input);
        let id = b.push("the_node", op);
        b.finish(id).map(|_| ()).unwrap_err()
    };
    let err = shapes_of(Op::Affine(Affine {
        input: 0,
        scale: vec![1.0; 3],
        shift: vec![0.0],
    }));
    assert!(
        err.node == "the_node" && err.detail.contains("3 values for 4 channels"),
        "{err}"
    );
    let err = shapes_of(Op::Pointwise {
        input: 0,
        func: Pointwise::Clip { min: 2.0, max: 1.0 },
    });
    assert!(err.detail.contains("min ≤ max"), "{err}");
    // groups must divide both channel counts, and the weight must be [O, C/groups, kh, kw]
    let conv = |groups: usize, weight_in: usize| {
        Op::Conv2d(Conv2d {
            input: 0,
            weight: Tensor {
                shape: vec![6, weight_in, 3, 3],
                data: vec![0.0; 6 * weight_in * 9],
            },
            bias: vec![0.0; 6],
            window: Window2d::square(3, 1, 1),
            groups,
        })
    };
    assert!(shapes_of(conv(3, 1)).detail.contains("3 groups do not divide 4"));
    assert!(shapes_of(conv(2, 4)).detail.contains("per group"));
    let mut dilated = Window2d::square(3, 1, 0);
    dilated.dilation = [4, 1];
    let Op::Conv2d(mut c) = conv(1, 4) else { unreachable!() };
    c.window = dilated;
    assert!(shapes_of(Op::Conv2d(c)).detail.contains("does not fit"));
    let mut pool = Window2d::square(3, 1, 1);
    pool.pads[2] = 2;
    let err = shapes_of(Op::AvgPool {
        input: 0,
        pool,
        count_include_pad: false,
    });
    assert!(err.detail.contains("padding ≤ window/2"), "{err}");
}

#[test]
fn whole_networks_match_the_reference_interpreter() {
    // Random weights: covers option-A shortcuts, fused conv+add+relu, global pooling, linear
    // (ResNet-20), conv-with-bias + 2x2 max-pools (VGG), bottlenecks with projection shortcuts.
    for arch in [Arch::CifarResNet(20), Arch::CifarVgg11Bn] {
        let graph = model::random(arch, 11).unwrap();
        for n in [1, 6] {
            let err = compare_with_reference(&graph, n);
            assert!(err < 1e-4, "{}: batch {n}: relative error {err}", graph.name);
        }
    }
}

#[test]
fn imagenet_resnet50_runs_and_matches_the_reference_on_one_image() {
    let graph = model::random(Arch::ResNet(50), 3).unwrap();
    let err = compare_with_reference(&graph, 1);
    assert!(err < 1e-3, "resnet50: relative error {err}");
}

#[test]
fn bad_batches_and_plans_are_rejected_with_clear_errors() {
    let graph = model::random(Arch::CifarResNet(20), 1).unwrap();
    let plan = ActivationPlan::exact(&graph);
    let wrong = Batch::new(1, Shape::new(3, 28, 28), vec![0.0; 3 * 28 * 28]).unwrap();
    let err = cpu::run(&graph, &wrong, &plan).unwrap_err().to_string();
    assert!(err.contains("3x32x32") && err.contains("3x28x28"), "{err}");

    let mut data = vec![0.0; 2 * 3 * 32 * 32];
    data[3 * 32 * 32 + 5] = f32::NAN;
    let err = cpu::run(&graph, &Batch::new(2, graph.input, data).unwrap(), &plan)
        .unwrap_err()
        .to_string();
    assert!(err.contains("image 1") && err.contains("non-finite"), "{err}");
    assert!(Batch::new(2, graph.input, vec![0.0; 5]).is_err());

    let sign = optimise_eps(paper_degrees(6).unwrap()).unwrap();
    let mut plan = ActivationPlan::exact(&graph);
    plan.modes[4] = SiteMode::approx(&sign.composite, 6, -1.0);
    let ok = Batch::new(1, graph.input, vec![0.0; 3 * 32 * 32]).unwrap();
    let err = cpu::run(&graph, &ok, &plan).unwrap_err().to_string();
    assert!(err.contains(&graph.sites[4].name) && err.contains("bound"), "{err}");
    let empty = cpu::run(
        &graph,
        &Batch::new(0, graph.input, vec![]).unwrap(),
        &ActivationPlan::exact(&graph),
    )
    .unwrap();
    assert!(empty.logits.is_empty() && empty.predictions().is_empty());
    let short = ActivationPlan {
        modes: vec![SiteMode::Exact; 3],
        noise: None,
    };
    assert!(cpu::run(&graph, &ok, &short).is_err());
}

// ---------------------------------------------------------------------------------------------
// Real data: shared/data (see its README); `None` from a helper means the test skips without it.

/// Images as three colour planes each, and their labels.
type PlanarImages = (Vec<[Vec<f32>; 3]>, Vec<usize>);

/// The first 1,000 CIFAR-10 test images (lossless), as [0, 1] CHW planes, and their labels.
fn cifar_first_1000() -> Option<PlanarImages> {
    let dir = data("cifar10/test_first1000_png")?;
    let png = image::open(dir.join("cifar10_batch_50.png")).unwrap().to_rgb8();
    assert_eq!(png.dimensions(), (1024, 1000));
    let images = png
        .rows()
        .map(|row| {
            let pixels: Vec<_> = row.collect();
            std::array::from_fn(|ch| pixels.iter().map(|p| p.0[ch] as f32 / 255.0).collect())
        })
        .collect();
    let js = std::fs::read_to_string(dir.join("cifar10_labels.js")).unwrap();
    let list = &js[js.find('[').unwrap() + 1..js.rfind(']').unwrap()];
    let labels: Vec<usize> = list.split(',').map(|t| t.trim().parse().unwrap()).collect();
    assert_eq!(labels.len(), 51_000);
    Some((images, labels[50_000..].to_vec()))
}

/// Normalises with `arch`'s statistics into a batch.
fn cifar_batch(images: &[[Vec<f32>; 3]], arch: Arch) -> Batch {
    let n = arch.descriptor().preprocessing.normalize;
    let (mean, std) = (n.mean, n.std);
    let data = images
        .iter()
        .flat_map(|planes| (0..3).flat_map(move |c| planes[c].iter().map(move |v| (v - mean[c]) / std[c])))
        .collect();
    Batch::new(images.len(), Shape::new(3, 32, 32), data).unwrap()
}

fn akamaster(depth: usize) -> Option<PathBuf> {
    let name = match depth {
        20 => "resnet20-12fca82f.th",
        32 => "resnet32-d509ac18.th",
        44 => "resnet44-014dd654.th",
        _ => "resnet56-4bfd9763.th",
    };
    data(&format!("cifar10/weights_akamaster/{name}"))
}

fn vgg_path() -> Option<PathBuf> {
    data("cifar10/weights_vgg/vgg11_bn_cifar10.pth")
}

#[test]
fn cifar_data_decodes_as_documented() {
    let Some((images, labels)) = cifar_first_1000() else {
        return;
    };
    assert_eq!(
        (images[0][0][0], images[0][1][0], images[0][2][0]),
        (158.0 / 255.0, 112.0 / 255.0, 49.0 / 255.0)
    );
    assert_eq!(labels[..10], [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]);
}

#[test]
fn all_pretrained_cifar_checkpoints_load_into_their_graphs() {
    for depth in [20, 32, 44, 56] {
        let Some(path) = akamaster(depth) else { return };
        let graph = model::load(Arch::CifarResNet(depth), &path).unwrap();
        assert_eq!(graph.sites.len(), 1 + 2 * 3 * (depth - 2) / 6, "resnet{depth}");
    }
    let Some(vgg) = vgg_path() else { return };
    let vgg = model::load(Arch::CifarVgg11Bn, &vgg).unwrap();
    assert_eq!(vgg.sites.len(), 8 + 5);
    // The wrong architecture for a file is an error naming a tensor, not a panic.
    let err = model::load(Arch::CifarResNet(32), &akamaster(20).unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("resnet20-12fca82f.th") && err.contains("layer1.3"),
        "{err}"
    );
}

/// Exact top-1 of a pretrained network on the 1,000 lossless images; returns the run too.
fn exact_run(arch: Arch, path: Option<PathBuf>) -> Option<(Graph, Batch, Vec<usize>, polycnn::exec::RunOutput)> {
    let path = path?;
    let (images, labels) = cifar_first_1000()?;
    let graph = model::load(arch, &path).unwrap();
    let batch = cifar_batch(&images, arch);
    let start = Instant::now();
    let out = cpu::run(&graph, &batch, &ActivationPlan::exact(&graph)).unwrap();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{}: exact top-1 {}/1000, {:.2} s, {:.0} images/s",
        graph.name,
        out.correct(&labels),
        secs,
        1000.0 / secs
    );
    Some((graph, batch, labels, out))
}

/// Runs `graph` with every site approximated at precision α, B = 1.1 × the largest |x| any site
/// saw in `exact` (rounded up); checks no input left [-B, B] and top-1 stays within `slack`
/// images of the exact run. Returns the approximate top-1.
fn approximate_run(
    graph: &Graph,
    batch: &Batch,
    labels: &[usize],
    exact: &polycnn::exec::RunOutput,
    alpha: u32,
    slack: usize,
) -> usize {
    let max_abs = exact.sites.iter().map(|s| s.max_abs).fold(0.0, f32::max) as f64;
    let bound = (max_abs * 1.1).ceil();
    let sign = optimise_eps(paper_degrees(alpha).unwrap()).unwrap();
    let plan = ActivationPlan::uniform(graph, SiteMode::approx(&sign.composite, alpha, bound));
    let start = Instant::now();
    let approx = cpu::run(graph, batch, &plan).unwrap();
    let (approx_correct, exact_correct) = (approx.correct(labels), exact.correct(labels));
    println!(
        "{} α={alpha}, B={bound}: top-1 {approx_correct}/{} (exact {exact_correct}), {:.2} s",
        graph.name,
        batch.n,
        start.elapsed().as_secs_f64()
    );
    for site in &approx.sites {
        assert_eq!((site.out_of_range, site.non_finite), (0, 0), "site {}", site.name);
    }
    assert!(
        approx_correct.abs_diff(exact_correct) <= slack,
        "{approx_correct} vs {exact_correct}"
    );
    let agree = approx
        .predictions()
        .iter()
        .zip(exact.predictions())
        .filter(|(a, b)| **a == *b)
        .count();
    assert!(
        agree + 2 * slack >= batch.n,
        "only {agree}/{} predictions agree with the exact run",
        batch.n
    );
    approx_correct
}

#[test]
fn resnet20_exact_and_approximate_relu_on_1000_lossless_test_images() {
    let Some((graph, batch, labels, exact)) = exact_run(Arch::CifarResNet(20), akamaster(20)) else {
        return;
    };
    // Measured 915/1000 = 91.5% (akamaster: 91.78% on all 10,000).
    assert_eq!(exact.correct(&labels), 915);
    // Measured: 915 as well, at B = 30 (the largest |x| is ≈ 27).
    approximate_run(&graph, &batch, &labels, &exact, 14, 3);
}

#[test]
fn vgg11_bn_exact_and_approximate_relu_and_max_pool_on_1000_lossless_test_images() {
    let Some((graph, batch, labels, exact)) = exact_run(Arch::CifarVgg11Bn, vgg_path()) else {
        return;
    };
    // Measured 883/1000 = 88.3% (86.86% on the 10,000 lossy JPEGs).
    assert_eq!(exact.correct(&labels), 883);
    approximate_run(&graph, &batch, &labels, &exact, 14, 3);
}

// ---------------------------------------------------------------------------------------------
// PyTorch's own outputs: tests/fixtures (written by scripts/make_fixtures.py, see its README).

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn parameter_lists_match_torchvision_state_dicts_name_for_name() {
    for (arch, file) in [
        (Arch::ResNet(18), "resnet18_state_dict.txt"),
        (Arch::ResNet(50), "resnet50_state_dict.txt"),
        (Arch::ResNet(152), "resnet152_state_dict.txt"),
        (Arch::VggBn(11), "vgg11_bn_state_dict.txt"),
        (Arch::VggBn(16), "vgg16_bn_state_dict.txt"),
    ] {
        let text = std::fs::read_to_string(fixture(file)).unwrap();
        let ours: Vec<String> = model::list_layers(arch)
            .unwrap()
            .iter()
            .map(|p| {
                let dims: Vec<String> = p.shape.iter().map(usize::to_string).collect();
                let dtype = if p.kind == model::ParamKind::Counter {
                    "i64"
                } else {
                    "f32"
                };
                format!("{}\t[{}]\t{dtype}", p.name, dims.join(","))
            })
            .collect();
        let theirs: Vec<&str> = text.lines().collect();
        assert_eq!(ours.len(), theirs.len(), "{file}: entry count");
        for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            assert_eq!(a, b, "{file}: entry {i}");
        }
    }
}

/// Max |ours − PyTorch's| over a logits fixture, and the largest |logit|.
fn logits_difference(
    graph: &Graph,
    plan: &ActivationPlan,
    inputs: &str,
    logits: &str,
) -> (f32, f32, polycnn::exec::RunOutput) {
    let io = StateDict::load(&fixture(inputs)).unwrap();
    let input = io.get("input").unwrap();
    let batch = Batch::new(input.shape[0], graph.input, input.data.clone()).unwrap();
    let out = cpu::run(graph, &batch, plan).unwrap();
    let want = StateDict::load(&fixture(logits))
        .unwrap()
        .get("logits")
        .unwrap()
        .data
        .clone();
    let diff = out
        .logits
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    (diff, want.iter().fold(0.0, |m, v| m.max(v.abs())), out)
}

#[test]
fn pretrained_logits_match_pytorch() {
    let (Some(resnet20), Some(vgg)) = (akamaster(20), vgg_path()) else {
        return;
    };
    for (arch, path, file) in [
        (Arch::CifarResNet(20), resnet20, "akamaster_resnet20_logits.safetensors"),
        (Arch::CifarVgg11Bn, vgg, "cifar10_vgg11_bn_logits.safetensors"),
    ] {
        let graph = model::load(arch, &path).unwrap();
        let (diff, scale, _) = logits_difference(&graph, &ActivationPlan::exact(&graph), file, file);
        assert!(
            diff < 2e-5 * scale.max(1.0),
            "{}: logits differ from PyTorch's by {diff}",
            graph.name
        );
    }
}

#[test]
fn approximate_relu_with_the_papers_polynomial_matches_pytorch() {
    // The official α = 14 composite (power basis) evaluated by the paper's code in float64,
    // B = 50 at all 19 ReLUs; ours is the same polynomial in Chebyshev form (see poly::official).
    let (Some(weights), Some(coeffs)) = (akamaster(20), data("approxcnn_coeffs")) else {
        return;
    };
    let graph = model::load(Arch::CifarResNet(20), &weights).unwrap();
    let sign = polycnn::poly::official::load_official(&coeffs, 14).unwrap();
    let plan = ActivationPlan::uniform(&graph, SiteMode::approx(&sign, 14, 50.0));
    let file = "akamaster_resnet20_approx_relu_a14_b50.safetensors";
    let (diff, scale, out) = logits_difference(&graph, &plan, "akamaster_resnet20_logits.safetensors", file);
    assert!(
        diff < 1e-4 * scale,
        "approximate logits differ from PyTorch's by {diff}"
    );
    let max_abs = StateDict::load(&fixture(file))
        .unwrap()
        .get("relu_max_abs")
        .unwrap()
        .data
        .clone();
    assert_eq!(max_abs.len(), graph.sites.len());
    for (site, want) in out.sites.iter().zip(&max_abs) {
        assert!(
            (site.max_abs - want).abs() <= 1e-4 * want,
            "{}: max |x| {} vs {want}",
            site.name,
            site.max_abs
        );
        assert_eq!(site.out_of_range, 0);
    }
}

#[test]
fn predictions_on_1000_lossless_images_match_pytorch() {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("cifar10_first1000_predictions.json")).unwrap()).unwrap();
    let Some((images, labels)) = cifar_first_1000() else {
        return;
    };
    let ints = |v: &serde_json::Value| -> Vec<usize> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect()
    };
    assert_eq!(ints(&json["labels"]), labels);
    for (key, arch, path) in [
        ("resnet20", Arch::CifarResNet(20), akamaster(20)),
        ("resnet32", Arch::CifarResNet(32), akamaster(32)),
        ("resnet44", Arch::CifarResNet(44), akamaster(44)),
        ("resnet56", Arch::CifarResNet(56), akamaster(56)),
        ("vgg11_bn", Arch::CifarVgg11Bn, vgg_path()),
    ] {
        let Some(path) = path else { return };
        let graph = model::load(arch, &path).unwrap();
        let start = Instant::now();
        let out = cpu::run(&graph, &cifar_batch(&images, arch), &ActivationPlan::exact(&graph)).unwrap();
        let secs = start.elapsed().as_secs_f64();
        let theirs = &json["models"][key];
        let correct = out.correct(&labels);
        println!(
            "{key}: top-1 {correct}/1000, {secs:.2} s ({:.0} images/s)",
            1000.0 / secs
        );
        assert_eq!(correct as u64, theirs["correct"].as_u64().unwrap(), "{key}");
        // A float32 near-tie may flip: compare where PyTorch's top-1/top-2 margin is clear.
        let margins = theirs["margin"].as_array().unwrap();
        for (i, (ours, pytorch)) in out.predictions().iter().zip(ints(&theirs["pred"])).enumerate() {
            if margins[i].as_f64().unwrap() > 1e-3 {
                assert_eq!(*ours, pytorch, "{key}: image {i}");
            }
        }
    }
}

#[test]
fn narrow_torchvision_resnets_match_pytorch() {
    // Random-weight torchvision ResNet(BasicBlock, [2,2,2,2]) and ResNet(Bottleneck, [1,2,1,1])
    // at widths 6..48 on 48x48 inputs: the stem, max-pool, downsample and v1.5 bottleneck paths.
    for (net, bottleneck, blocks) in [
        ("tv_resnet18_w6", false, [2, 2, 2, 2]),
        ("tv_bottleneck_w6", true, [1, 2, 1, 1]),
    ] {
        let mut dict = StateDict::load(&fixture(&format!("{net}.safetensors"))).unwrap();
        let graph = model::torchvision_resnet_from_state_dict(&mut dict, Shape::new(3, 48, 48)).unwrap();
        let layout = model::ResNetLayout::infer(
            &StateDict::load(&fixture(&format!("{net}.safetensors"))).unwrap(),
            graph.input,
        )
        .unwrap();
        assert_eq!(
            (
                layout.bottleneck,
                layout.blocks,
                layout.stem,
                layout.planes,
                layout.classes
            ),
            (bottleneck, blocks, 6, [6, 12, 24, 48], 10)
        );
        let io = format!("{net}_io.safetensors");
        let (diff, scale, _) = logits_difference(&graph, &ActivationPlan::exact(&graph), &io, &io);
        assert!(
            diff < 1e-5 * scale.max(1.0),
            "{net}: logits differ from PyTorch's by {diff} (max |logit| {scale})"
        );
    }
}

#[test]
fn kept_values_match_the_reference_node_by_node() {
    // Keeping every node disables fusion: each intermediate value is compared on its own.
    let graph = model::random(Arch::CifarResNet(20), 5).unwrap();
    let n = 3;
    let data = pseudo_random(n * graph.input.numel(), 8);
    let batch = Batch::new(n, graph.input, data.clone()).unwrap();
    let all: Vec<usize> = (0..graph.nodes.len()).collect();
    let plan = ActivationPlan::exact(&graph);
    let (out, kept) = cpu::run_keeping(&graph, &batch, &plan, &all).unwrap();
    let want: Vec<Vec<Vec<f32>>> = data
        .chunks(graph.input.numel())
        .map(|img| reference_values(&graph, img))
        .collect();
    for (id, value) in kept.iter().enumerate() {
        let per = value.len() / n;
        let scale = want.iter().flat_map(|w| &w[id]).fold(1e-6f32, |m, v| m.max(v.abs()));
        for (i, w) in want.iter().enumerate() {
            let err = value[i * per..(i + 1) * per]
                .iter()
                .zip(&w[id])
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(err < 1e-4 * scale, "node {} image {i}: {err}", graph.nodes[id].name);
        }
    }
    let fused = cpu::run(&graph, &batch, &plan).unwrap();
    let diff = fused
        .logits
        .iter()
        .zip(&out.logits)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(diff < 1e-4, "fused and unfused logits differ by {diff}");
    assert!(cpu::run_keeping(&graph, &batch, &plan, &[graph.nodes.len()]).is_err());
}

#[test]
#[ignore = "benchmark: cargo test --release --test cpu_models bench -- --ignored --nocapture"]
fn bench_gemm_and_imagenet_forward() {
    use polycnn::cpu::gemm::{MatRef, Threads, matmul};
    let (m, n, k) = (3136usize, 64usize, 576usize);
    let cols_t = pseudo_random(m * k, 1); // an unfolded 56x56 input, one row per pixel
    let weights = pseudo_random(n * k, 2); // [64, 576], used transposed
    let mut c = vec![0.0; m * n];
    for threads in [Threads::One, Threads::All] {
        for (label, a, b) in [
            (
                "M=3136 N=64 K=576",
                MatRef::row_major(&cols_t, m, k),
                MatRef::transposed(&weights, k, n),
            ),
            (
                "M=64 N=3136 K=576",
                MatRef::row_major(&weights, n, k),
                MatRef::transposed(&cols_t, k, m),
            ),
        ] {
            matmul(a, b, &mut c, false, threads);
            let reps = 50;
            let t = Instant::now();
            for _ in 0..reps {
                matmul(a, b, &mut c, false, threads);
            }
            let s = t.elapsed().as_secs_f64() / reps as f64;
            println!(
                "gemm {label} {threads:?}: {:.1} GFLOP/s",
                2.0 * (m * n * k) as f64 / s / 1e9
            );
        }
    }
    for arch in [Arch::ResNet(18), Arch::ResNet(50), Arch::ResNet(152)] {
        let graph = model::random(arch, 1).unwrap();
        let batch = Batch::new(1, graph.input, pseudo_random(graph.input.numel(), 9)).unwrap();
        let plan = ActivationPlan::exact(&graph);
        cpu::run(&graph, &batch, &plan).unwrap();
        let reps = 3;
        let t = Instant::now();
        for _ in 0..reps {
            cpu::run(&graph, &batch, &plan).unwrap();
        }
        println!(
            "{}: {:.3} s per single-image forward",
            graph.name,
            t.elapsed().as_secs_f64() / reps as f64
        );
    }
}

/// Logits as bits, and per-site statistics (max |x| as bits, counts, histograms), of `batch`
/// run `per_run` images per call on a rayon pool of `threads`.
fn bits_in_pieces(
    graph: &Graph,
    batch: &Batch,
    plan: &ActivationPlan,
    threads: usize,
    per_run: usize,
) -> (Vec<u32>, Vec<String>) {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| {
        let mut logits = Vec::new();
        let mut sites: Vec<polycnn::exec::SiteStats> = Vec::new();
        for start in (0..batch.n).step_by(per_run) {
            let out = cpu::run(graph, &batch.slice(start, per_run.min(batch.n - start)), plan).unwrap();
            logits.extend(out.logits.iter().map(|v| v.to_bits()));
            if sites.is_empty() {
                sites = out.sites;
            } else {
                sites.iter_mut().zip(&out.sites).for_each(|(a, b)| a.merge(b));
            }
        }
        let sites = sites
            .iter()
            .map(|s| {
                let hist = &s.log2_hist;
                let counts = (s.count, s.out_of_range, s.non_finite);
                format!("{} {counts:?} {:08x} {hist:?}", s.name, s.max_abs.to_bits())
            })
            .collect();
        (logits, sites)
    })
}

#[test]
fn results_do_not_depend_on_thread_count_or_chunking() {
    // 40 images: parallel single-threaded chunks of 5 on 2 threads; on one thread, sequential
    // chunks of 32 + 8 whose GEMMs group 4 or 16 images; 7 and 1 images per call (GEMMs of
    // other widths, a classifier of 1 or 7 rows). Every output is one FMA chain in a fixed
    // order (src/cpu/gemm.rs), so logits and statistics agree to the bit.
    let graph = model::random(Arch::CifarResNet(20), 2).unwrap();
    let batch = Batch::new(40, graph.input, pseudo_random(40 * graph.input.numel(), 4)).unwrap();
    let sign = optimise_eps(paper_degrees(10).unwrap()).unwrap().composite;
    for plan in [
        ActivationPlan::exact(&graph),
        ActivationPlan::uniform(&graph, SiteMode::approx(&sign, 10, 4.0)),
    ] {
        let reference = bits_in_pieces(&graph, &batch, &plan, 2, 40);
        for (threads, per_run) in [(1, 40), (2, 7), (1, 1), (3, 13)] {
            let other = bits_in_pieces(&graph, &batch, &plan, threads, per_run);
            assert!(
                reference.0 == other.0,
                "logits differ: {threads} threads, {per_run} images per call"
            );
            assert_eq!(reference.1, other.1, "{threads} threads, {per_run} images per call");
        }
    }
}
