//! Whole networks (built-in ones with random weights, ONNX files with their own): seconds per
//! image exact, approximate (α=14, every ReLU and max-pool through the composite) and both plans
//! in one pass, per backend. A network with exact-only ops (SiLU, GELU, …) is timed exact only.

use super::{AnyError, BenchOptions, PeakMemory, mib_text};
use crate::cpu::CpuBackend;
use crate::exec::{ActivationPlan, Backend, SiteMode};
use crate::gpu::Gpu;
use crate::gpu::activation::Scheme;
use crate::gpu::network::GpuNetwork;
use crate::model::{Batch, Graph};
use crate::tables::poly_table::our_composite;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// One model on one backend.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NetworkRow {
    pub model: String,
    pub backend: String,
    pub batch: usize,
    pub exact_s_per_image: f64,
    /// None (and `both_s_per_image` too) when the network cannot run approximated.
    pub approx_s_per_image: Option<f64>,
    pub both_s_per_image: Option<f64>,
    /// Why the approximate columns are empty: the network's exact-only ops (None: timed).
    pub approx_refused: Option<String>,
    pub peak_mib: Option<f64>,
}

impl NetworkRow {
    pub fn exact_images_per_s(&self) -> f64 {
        1.0 / self.exact_s_per_image
    }
}

/// The bound B of the approximate plan: random-weight activations stay well inside it, and the
/// evaluation cost does not depend on it.
const BENCH_BOUND: f64 = 100.0;

pub fn bench_networks(options: &BenchOptions, gpu: Option<&Gpu>) -> Result<Vec<NetworkRow>, AnyError> {
    let (sc, _) = our_composite(14, None)?;
    println!("== networks (built-in: random weights): seconds per image (images/s)");
    println!(
        "  model                backend  batch        exact                approx α=14          exact+approx (one pass)   peak memory"
    );
    let mut rows = Vec::new();
    for source in &options.models {
        let graph = source.open()?.graph;
        let refused = graph.refuse_approximation().err().map(|e| e.to_string());
        let exact = ActivationPlan::exact(&graph);
        let approx = ActivationPlan::uniform(&graph, SiteMode::approx(&sc.composite, 14, BENCH_BOUND));
        let mut backends: Vec<(Box<dyn Backend>, usize)> = vec![(Box::new(CpuBackend::new(&graph)), options.batch)];
        if let Some(gpu) = gpu {
            backends.push((
                Box::new(GpuNetwork::new(gpu, &graph, Scheme::DEFAULT)?),
                gpu_batch(gpu, &graph, options.batch),
            ));
        }
        for (backend, n) in &backends {
            let memory = PeakMemory::start();
            let batch = synthetic_batch(&graph, *n)?;
            let rounds = options.network_repeats.max(1);
            let time = |plans: &[&ActivationPlan]| seconds_per_image(backend.as_ref(), &graph, &batch, plans, rounds);
            let approximate = |plans: &[&ActivationPlan]| match refused {
                Some(_) => Ok(None),
                None => time(plans).map(Some),
            };
            let row = NetworkRow {
                model: graph.name.clone(),
                backend: backend.name().into(),
                batch: *n,
                exact_s_per_image: time(&[&exact])?,
                approx_s_per_image: approximate(&[&approx])?,
                both_s_per_image: approximate(&[&exact, &approx])?,
                approx_refused: refused.clone(),
                peak_mib: memory.peak_mib(),
            };
            println!("{}", format_row(&row));
            rows.push(row);
        }
        if let Some(reason) = &refused {
            println!("  {}: approximate columns not timed: {reason}", graph.name);
        }
    }
    Ok(rows)
}

/// A software adapter (lavapipe) takes seconds per ImageNet image: time one.
fn gpu_batch(gpu: &Gpu, graph: &Graph, batch: usize) -> usize {
    let software = gpu.info.device_type == wgpu::DeviceType::Cpu;
    if software && graph.input.h > 64 { 1 } else { batch }
}

/// Deterministic inputs in [-1, 1).
fn synthetic_batch(graph: &Graph, n: usize) -> Result<Batch, AnyError> {
    let data = (0..n * graph.input.numel())
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
        .collect();
    Ok(Batch::new(n, graph.input, data)?)
}

/// Seconds per image of running every plan on `batch` (the mean of `rounds` timed rounds), after
/// one untimed warm-up round.
fn seconds_per_image(
    backend: &dyn Backend,
    graph: &Graph,
    batch: &Batch,
    plans: &[&ActivationPlan],
    rounds: usize,
) -> Result<f64, AnyError> {
    for plan in plans {
        backend.run(graph, batch, plan)?;
    }
    let start = Instant::now();
    for _ in 0..rounds {
        for plan in plans {
            backend.run(graph, batch, plan)?;
        }
    }
    Ok(start.elapsed().as_secs_f64() / (rounds * batch.n) as f64)
}

fn format_row(row: &NetworkRow) -> String {
    let cell = |s: Option<f64>| match s {
        Some(s) => format!("{s:9.4} s ({:7.1}/s)", 1.0 / s),
        None => format!("{:>9}{:14}", "-", ""),
    };
    format!(
        "  {:<20} {:<7} {:>6}  {}  {}  {}      {}",
        row.model,
        row.backend,
        row.batch,
        cell(Some(row.exact_s_per_image)),
        cell(row.approx_s_per_image),
        cell(row.both_s_per_image),
        mib_text(row.peak_mib)
    )
}
