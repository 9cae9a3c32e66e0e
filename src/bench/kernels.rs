//! Kernel-level timings: the convolution at real ResNet shapes (GPU tiled vs naive, CPU GEMM
//! path), the cost of the polynomial ReLU fused into the convolution epilogue, and the
//! stand-alone activation kernel per polynomial scheme.

use super::{AnyError, PeakMemory, mib_text};
use crate::cpu::sign_f32::Isa;
use crate::cpu::{self, CpuBackend};
use crate::exec::Backend;
use crate::exec::{ActivationPlan, Precision, SiteMode};
use crate::gpu::Gpu;
use crate::gpu::activation::{ActivationKernel, PolyBuffer, Scheme};
use crate::gpu::conv::{ConvKernel, ConvShape, Epilogue, TileConfig, tiles_for, time_conv};
use crate::model::{Batch, Conv2d, Graph, GraphBuilder, Op, Shape};
use crate::poly::Composite;
use crate::tables::poly_table::our_composite;
use crate::weights::Tensor;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// One convolution shape: milliseconds and GFLOP/s per kernel (None: not measured).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConvRow {
    pub layer: String,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// The tile configuration the engine picks for this shape.
    pub gpu_tiled_ms: Option<f64>,
    pub gpu_naive_ms: Option<f64>,
    /// Every tile configuration: (name, ms).
    pub gpu_tile_configs_ms: Vec<(String, f64)>,
    pub cpu_ms: f64,
    pub flops: f64,
}

impl ConvRow {
    pub fn gflops(&self, ms: f64) -> f64 {
        self.flops / ms / 1e6
    }
}

/// A convolution with exact ReLU vs with the α=14 polynomial ReLU in its epilogue.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EpilogueRow {
    pub layer: String,
    pub backend: String,
    pub relu_ms: f64,
    pub poly_ms: f64,
}

impl EpilogueRow {
    pub fn overhead(&self) -> f64 {
        self.poly_ms / self.relu_ms - 1.0
    }
}

/// The polynomial activation over a buffer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ActivationRow {
    pub alpha: u32,
    pub scheme: String,
    pub backend: String,
    pub elements: usize,
    pub ms: f64,
}

impl ActivationRow {
    pub fn elements_per_s(&self) -> f64 {
        self.elements as f64 / (self.ms / 1e3)
    }

    /// One f32 read and one written per element.
    pub fn gb_per_s(&self) -> f64 {
        self.elements_per_s() * 8.0 / 1e9
    }
}

/// The convolutions of ResNet-50/152 at batch 1 (224x224 input): the three 3x3 shapes of the
/// residual stages and the 1x1 bottleneck projections.
pub fn resnet_conv_shapes() -> Vec<(&'static str, ConvShape)> {
    let conv = |c: usize, hw: usize, o: usize, k: usize| ConvShape::dense(1, c, (hw, hw), o, [k, k], 1, [k / 2; 2]);
    vec![
        ("3x3 56x56 64→64", conv(64, 56, 64, 3)),
        ("3x3 28x28 128→128", conv(128, 28, 128, 3)),
        ("3x3 14x14 256→256", conv(256, 14, 256, 3)),
        ("3x3 7x7 512→512", conv(512, 7, 512, 3)),
        ("1x1 56x56 64→256", conv(64, 56, 256, 1)),
        ("1x1 56x56 256→64", conv(256, 56, 64, 1)),
        ("1x1 28x28 512→128", conv(512, 28, 128, 1)),
        ("1x1 14x14 1024→256", conv(1024, 14, 256, 1)),
        ("1x1 7x7 2048→512", conv(2048, 7, 512, 1)),
    ]
}

fn gemm_dims(shape: &ConvShape) -> (usize, usize, usize) {
    let (oh, ow) = shape.out_hw();
    (shape.batch * oh * ow, shape.out_c, shape.depth())
}

/// Conv GFLOP/s per kernel and the fused epilogue's overhead, per ResNet shape.
pub fn bench_conv(gpu: Option<&Gpu>, repeats: usize) -> Result<(Vec<ConvRow>, Vec<EpilogueRow>), AnyError> {
    let (sc, _) = our_composite(14, None)?;
    let composite = &sc.composite;
    println!(
        "== convolution at ResNet shapes, batch 1: ms (GFLOP/s); GPU = {}",
        gpu_name(gpu)
    );
    println!(
        "  layer                     M      N      K     GPU tiled            GPU naive         tiled/naive   CPU (GEMM path)"
    );
    let memory = PeakMemory::start();
    let mut rows = Vec::new();
    let mut epilogues = Vec::new();
    for (name, shape) in resnet_conv_shapes() {
        let (m, n, k) = gemm_dims(&shape);
        let mut configs = Vec::new();
        let mut tiled = None;
        if let Some(gpu) = gpu {
            let chosen = tiles_for(gpu, shape)?;
            for tiles in TileConfig::ALL {
                let ms = time_gpu_conv(gpu, shape, ConvKernel::Tiled(tiles), Epilogue::None, None, repeats)?;
                if tiles == chosen {
                    tiled = Some(ms);
                }
                configs.push((tiles.name(), ms));
            }
        }
        let naive = gpu
            .map(|g| time_gpu_conv(g, shape, ConvKernel::Naive, Epilogue::None, None, 1))
            .transpose()?;
        let row = ConvRow {
            layer: name.into(),
            m,
            n,
            k,
            gpu_tiled_ms: tiled,
            gpu_naive_ms: naive,
            gpu_tile_configs_ms: configs,
            cpu_ms: time_cpu_conv(shape, None, repeats)?,
            flops: shape.flops(),
        };
        println!("{}", format_conv_row(&row));
        for (name, ms) in &row.gpu_tile_configs_ms {
            println!("      GPU tiles {name}: {ms:.2} ms ({:.2} GFLOP/s)", row.gflops(*ms));
        }
        rows.push(row);
        if let Some(gpu) = gpu {
            let tiled = ConvKernel::Tiled(tiles_for(gpu, shape)?);
            let bound = 100.0;
            let poly = Epilogue::PolyRelu { bound, clamp: false };
            epilogues.push(EpilogueRow {
                layer: name.into(),
                backend: "gpu".into(),
                relu_ms: time_gpu_conv(gpu, shape, tiled, Epilogue::Relu, None, repeats)?,
                poly_ms: time_gpu_conv(gpu, shape, tiled, poly, Some(composite), repeats)?,
            });
        }
        epilogues.push(EpilogueRow {
            layer: name.into(),
            backend: "cpu".into(),
            relu_ms: time_cpu_conv(shape, Some(None), repeats)?,
            poly_ms: time_cpu_conv(shape, Some(Some(composite)), repeats)?,
        });
    }
    println!("== fused epilogue: convolution + exact ReLU vs + polynomial ReLU α=14 (target ≤ 30% on the GPU)");
    println!("  layer                 backend   exact ReLU ms   poly ReLU ms   overhead");
    for row in &epilogues {
        println!(
            "  {:<21} {:<7} {:>13.2} {:>14.2} {:>9.0}%",
            row.layer,
            row.backend,
            row.relu_ms,
            row.poly_ms,
            row.overhead() * 100.0
        );
    }
    println!(
        "  peak memory of the convolution section: {}",
        mib_text(memory.peak_mib())
    );
    Ok((rows, epilogues))
}

fn gpu_name(gpu: Option<&Gpu>) -> String {
    gpu.map_or("none".into(), Gpu::describe)
}

fn time_gpu_conv(
    gpu: &Gpu,
    shape: ConvShape,
    kernel: ConvKernel,
    epilogue: Epilogue,
    composite: Option<&Composite>,
    repeats: usize,
) -> Result<f64, AnyError> {
    let poly = match composite {
        Some(c) => PolyBuffer::new(gpu, c, Scheme::DEFAULT),
        None => PolyBuffer::empty(gpu),
    };
    Ok(time_conv(gpu, shape, kernel, epilogue, &poly, repeats)? * 1e3)
}

/// Milliseconds of the CPU backend running one convolution (batch 1, all threads): alone
/// (`relu` None), or followed by a ReLU site the schedule fuses into it, exact (`Some(None)`)
/// or polynomial.
fn time_cpu_conv(shape: ConvShape, relu: Option<Option<&Composite>>, repeats: usize) -> Result<f64, AnyError> {
    let graph = one_conv_graph(shape, relu.is_some())?;
    let plan = match relu.flatten() {
        Some(c) => ActivationPlan::uniform(&graph, SiteMode::approx(c, 14, 100.0)),
        None => ActivationPlan::exact(&graph),
    };
    let data = pattern(graph.input.numel(), 1);
    let batch = Batch::new(1, graph.input, data)?;
    // Weights packed once, as for a network's runs.
    let backend = CpuBackend::new(&graph);
    warm_up(|| backend.run(&graph, &batch, &plan).map(drop))?;
    let start = Instant::now();
    for _ in 0..repeats.max(1) {
        backend.run(&graph, &batch, &plan)?;
    }
    Ok(start.elapsed().as_secs_f64() * 1e3 / repeats.max(1) as f64)
}

/// Untimed calls for at least [`WARM_UP_SECONDS`] (one at least): a single call left the
/// first shape of a section 20–30% slow (the other cores still waking up, buffers growing).
fn warm_up<E>(mut call: impl FnMut() -> Result<(), E>) -> Result<(), E> {
    let start = Instant::now();
    call()?;
    while start.elapsed().as_secs_f64() < WARM_UP_SECONDS {
        call()?;
    }
    Ok(())
}

/// scripts/bench_pytorch.py warms its convolutions up for as long.
const WARM_UP_SECONDS: f64 = 0.2;

fn one_conv_graph(shape: ConvShape, with_relu: bool) -> Result<Graph, AnyError> {
    let input = Shape::new(shape.in_c, shape.in_h, shape.in_w);
    let mut builder = GraphBuilder::new("conv", input);
    let [kh, kw] = shape.window.kernel;
    let weight = Tensor {
        shape: vec![shape.out_c, shape.group_in_c(), kh, kw],
        data: pattern(shape.weight_len(), 2),
    };
    let conv = Conv2d {
        input: GraphBuilder::INPUT,
        weight,
        bias: pattern(shape.out_c, 3),
        window: shape.window,
        groups: shape.groups,
    };
    let conv = builder.push("conv", Op::Conv2d(conv));
    let output = if with_relu { builder.relu("relu", conv) } else { conv };
    Ok(builder.finish(output)?)
}

/// Deterministic values in [-0.5, 0.5).
fn pattern(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i * 7919 + seed) % 2003) as f32) / 2003.0 - 0.5)
        .collect()
}

fn format_conv_row(row: &ConvRow) -> String {
    let cell = |ms: Option<f64>| match ms {
        Some(ms) => format!("{ms:8.2} ({:6.2})", row.gflops(ms)),
        None => format!("{:>17}", "-"),
    };
    let ratio = match (row.gpu_tiled_ms, row.gpu_naive_ms) {
        (Some(t), Some(n)) => format!("{:10.1}x", n / t),
        _ => format!("{:>11}", "-"),
    };
    format!(
        "  {:<21} {:>6} {:>6} {:>6}  {}  {}  {}  {}",
        row.layer,
        row.m,
        row.n,
        row.k,
        cell(row.gpu_tiled_ms),
        cell(row.gpu_naive_ms),
        ratio,
        cell(Some(row.cpu_ms))
    )
}

/// The stand-alone polynomial ReLU over `elements` values: every GPU scheme, and the CPU
/// backend's f32 SIMD and f64 evaluators, for α = 7 and 14.
pub fn bench_activation(gpu: Option<&Gpu>, elements: usize, repeats: usize) -> Result<Vec<ActivationRow>, AnyError> {
    println!("== polynomial ReLU over {elements} elements, {repeats} passes (GB/s: one f32 read + one write each)");
    println!("  α   backend  scheme        ms/pass   Gelem/s   GB/s");
    let mut rows = Vec::new();
    for alpha in [7, 14] {
        let (sc, _) = our_composite(alpha, None)?;
        if let Some(gpu) = gpu {
            for scheme in Scheme::ALL {
                let kernel = ActivationKernel::new(gpu, &sc.composite, scheme);
                let seconds = kernel.time_relu(elements, repeats)?;
                rows.push(ActivationRow {
                    alpha,
                    scheme: scheme.name().into(),
                    backend: "gpu".into(),
                    elements,
                    ms: seconds * 1e3,
                });
                print_activation_row(rows.last().expect("just pushed"));
            }
        }
        for precision in [Precision::F32, Precision::F64, Precision::HeOrder] {
            let scheme = match precision {
                Precision::F32 => format!("f32 {}", Isa::detect().name()),
                Precision::F64 => "f64".into(),
                Precision::HeOrder => "f64 HE order".into(),
            };
            rows.push(ActivationRow {
                alpha,
                scheme,
                backend: "cpu".into(),
                elements,
                ms: time_cpu_activation(&sc.composite, alpha, precision, elements, repeats)?,
            });
            print_activation_row(rows.last().expect("just pushed"));
        }
    }
    Ok(rows)
}

fn print_activation_row(row: &ActivationRow) {
    println!(
        "  {:2}  {:<7}  {:<12} {:9.3}  {:8.3}  {:6.3}",
        row.alpha,
        row.backend,
        row.scheme,
        row.ms,
        row.elements_per_s() / 1e9,
        row.gb_per_s()
    );
}

/// Milliseconds per CPU pass of the approximate ReLU alone (a one-ReLU graph).
fn time_cpu_activation(
    composite: &Composite,
    alpha: u32,
    precision: Precision,
    elements: usize,
    repeats: usize,
) -> Result<f64, AnyError> {
    let mut builder = GraphBuilder::new("relu", Shape::new(1, 1, elements));
    let relu = builder.relu("relu", GraphBuilder::INPUT);
    let graph = builder.finish(relu)?;
    let plan = ActivationPlan::uniform(&graph, SiteMode::approx(composite, alpha, 1.0).in_precision(precision));
    let data = (0..elements).map(|i| ((i % 2001) as f32 / 1000.0) - 1.0).collect();
    let batch = Batch::new(1, graph.input, data)?;
    cpu::run(&graph, &batch, &plan)?;
    let start = Instant::now();
    for _ in 0..repeats.max(1) {
        cpu::run(&graph, &batch, &plan)?;
    }
    Ok(start.elapsed().as_secs_f64() * 1e3 / repeats.max(1) as f64)
}
