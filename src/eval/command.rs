//! `polycnn eval` / `polycnn sweep` as a library call: open the model and the data, build the
//! polynomials, choose the bounds, run the pass, return the report. The binary only parses
//! arguments into an [`EvalRequest`].

use super::report::{EvalReport, PolyInfo, RunInfo, build_report};
use super::{ApproxConfig, Backend, BoundRule, Mode, PassInput, approx_plan, choose_bounds, evaluate};
use crate::data::cache::{CacheStatus, CachedDataset};
use crate::data::digits::{self, DigitsDataset};
use crate::data::imagenet::{self, ClassIndex, Layout};
use crate::data::{Dataset, Geometry, Normalize, cifar};
use crate::gpu::Gpu;
use crate::gpu::activation::Scheme;
use crate::gpu::network::GpuNetwork;
use crate::model::cost::{network_cost, uniform_plan};
use crate::model::{self, Arch, Graph, SiteKind};
use crate::poly::cost::relu_cost;
use crate::poly::official::load_official;
use crate::poly::verify::relu_error;
use crate::poly::{Composite, optimise_eps, paper_degrees};
use std::path::PathBuf;
use std::sync::Arc;

/// Everything an evaluation needs, as the command line gives it.
#[derive(Clone, Debug)]
pub struct EvalRequest {
    pub model: Arch,
    pub weights: PathBuf,
    pub data: PathBuf,
    /// Flat ImageNet layouts: `LOC_val_solution.csv` or `<file> <index>` lines.
    pub labels: Option<PathBuf>,
    /// `imagenet_class_index.json` (torchvision's class order) for ImageNet layouts.
    pub class_index: Option<PathBuf>,
    pub alphas: Vec<u32>,
    /// Stage degrees for every α (default: the paper's list per α).
    pub degrees: Option<Vec<usize>>,
    /// Use the paper's published polynomials from this directory instead of ours.
    pub coeffs_dir: Option<PathBuf>,
    pub relu: Mode,
    pub maxpool: Mode,
    /// Clamp approximate inputs to [-B, B] instead of only reporting them.
    pub clamp: bool,
    pub bound: BoundRule,
    pub bound_max: BoundRule,
    /// Images used by `calibrate` bounds (0: a tenth of the evaluated images, at least one batch).
    pub calibration_images: usize,
    pub batch: usize,
    pub limit: Option<usize>,
    /// A preprocessed uint8 cache of the dataset (built on first use, rebuilt when stale), so
    /// α sweeps and repeated runs decode the images once.
    pub cache: Option<PathBuf>,
    pub gpu: bool,
    pub scheme: Scheme,
}

/// Default `--bound search` grids of the official code: CIFAR nets B_relu = B_max = 50 step 5,
/// ImageNet nets B_relu = 100, B_max = 10, step 10.
pub fn default_search_grid(arch: Arch) -> ((f64, f64), (f64, f64)) {
    match arch {
        Arch::ResNet(_) | Arch::VggBn(_) => ((100.0, 10.0), (10.0, 10.0)),
        // not in the paper: the digits CNN's activations stay below ~8
        Arch::DigitsCnn => ((8.0, 1.0), (8.0, 1.0)),
        _ => ((50.0, 5.0), (50.0, 5.0)),
    }
}

type AnyError = Box<dyn std::error::Error>;

/// Opens the dataset an architecture expects (through the cache when asked), with its
/// normalisation.
pub fn open_dataset(req: &EvalRequest) -> Result<(Arc<dyn Dataset>, Normalize), AnyError> {
    let (dataset, normalize) = open_source_dataset(req)?;
    let Some(path) = &req.cache else {
        return Ok((dataset, normalize));
    };
    let (cached, status) = CachedDataset::open_or_build(dataset.as_ref(), path)?;
    match status {
        CacheStatus::Reused => eprintln!("using the preprocessed cache {}", path.display()),
        CacheStatus::Built { reason } => eprintln!("built the preprocessed cache {} ({reason})", path.display()),
    }
    Ok((Arc::new(cached), normalize))
}

fn open_source_dataset(req: &EvalRequest) -> Result<(Arc<dyn Dataset>, Normalize), AnyError> {
    let (mean, std) = req.model.normalisation();
    let normalize = Normalize {
        mean,
        std,
        max_value: 255.0,
    };
    Ok(match req.model {
        Arch::DigitsCnn => (Arc::new(DigitsDataset::open(&req.data)?), digits::NORMALIZE),
        Arch::CifarResNet(_) | Arch::CifarVgg11Bn => (Arc::from(cifar::open(&req.data)?), normalize),
        Arch::ResNet(_) | Arch::VggBn(_) => {
            let classes = req.class_index.as_deref().map(ClassIndex::load).transpose()?;
            let layout = Layout::detect(&req.data, req.labels.as_deref())?;
            let dataset = imagenet::open(&req.data, &layout, classes.as_ref(), Geometry::IMAGENET)?;
            (Arc::new(dataset), normalize)
        }
    })
}

/// The composite for α and where it came from.
fn composite_for(req: &EvalRequest, alpha: u32) -> Result<(Composite, String), AnyError> {
    if let Some(dir) = &req.coeffs_dir {
        return Ok((load_official(dir, alpha)?, format!("official ({})", dir.display())));
    }
    let degrees = match &req.degrees {
        Some(d) => d.as_slice(),
        None => paper_degrees(alpha).ok_or(crate::poly::PolyError::NoDefaultDegrees(alpha))?,
    };
    let sc = optimise_eps(degrees)?;
    Ok((sc.composite, format!("ours (ε = 2^{:.3})", sc.eps.log2())))
}

/// Runs the evaluation the request describes; `gpu` is used when `req.gpu` is set.
pub fn run_eval(req: &EvalRequest, gpu: Option<&Gpu>) -> Result<EvalReport, AnyError> {
    let graph: Graph = model::load(req.model, &req.weights)?;
    let (dataset, normalize) = open_dataset(req)?;
    let count = req.limit.map_or(dataset.len(), |l| l.min(dataset.len()));
    if count == 0 {
        return Err(format!("{}: no images to evaluate", req.data.display()).into());
    }
    let backend = match (req.gpu, gpu) {
        (true, Some(gpu)) => Backend::Gpu(Box::new(GpuNetwork::new(gpu, &graph, req.scheme)?)),
        (true, None) => return Err("--backend gpu: no GPU adapter (use --backend cpu)".into()),
        (false, _) => Backend::Cpu,
    };
    let composites: Vec<(u32, Composite, String)> = req
        .alphas
        .iter()
        .map(|&a| composite_for(req, a).map(|(c, s)| (a, c, s)))
        .collect::<Result<_, _>>()?;
    let configs: Vec<ApproxConfig> = composites
        .iter()
        .map(|(alpha, composite, _)| ApproxConfig {
            label: config_label(
                *alpha,
                req.relu,
                req.maxpool,
                graph.sites.iter().any(|s| s.kind == SiteKind::MaxPool),
            ),
            alpha: *alpha,
            composite,
            relu: req.relu,
            maxpool: req.maxpool,
            clamp: req.clamp,
        })
        .collect();
    let pass = |indices: Vec<usize>, title: &str| PassInput {
        graph: &graph,
        backend: &backend,
        dataset: dataset.clone(),
        normalize,
        indices,
        batch_size: req.batch,
        title: title.to_string(),
    };
    let stats = match (&req.bound, &req.bound_max) {
        (BoundRule::Fixed { .. }, BoundRule::Fixed { .. }) => None,
        (relu, maxpool) => {
            let calibrate =
                matches!(relu, BoundRule::Calibrate { .. }) || matches!(maxpool, BoundRule::Calibrate { .. });
            let search = matches!(relu, BoundRule::Search { .. }) || matches!(maxpool, BoundRule::Search { .. });
            let images = if search {
                count
            } else if req.calibration_images > 0 {
                req.calibration_images.min(count)
            } else {
                (count / 10).max(req.batch).min(count)
            };
            debug_assert!(calibrate || search);
            Some(evaluate(&pass((0..images).collect(), "range statistics"), &[], &[])?.exact_sites)
        }
    };
    let bounds = choose_bounds(&graph, &req.bound, &req.bound_max, stats.as_deref())?;
    let plans: Vec<_> = configs.iter().map(|c| approx_plan(&graph, c, &bounds)).collect();
    let tally = evaluate(&pass((0..count).collect(), "exact + approximate"), &configs, &plans)?;
    let polys = composites
        .iter()
        .map(|(_, composite, source)| PolyInfo {
            degrees: composite.degrees(),
            source: source.clone(),
            relu_error_log2: relu_error(composite).log2,
            relu_cost: relu_cost(&composite.degrees()),
        })
        .collect();
    let info = RunInfo {
        model: graph.name.clone(),
        weights: req.weights.display().to_string(),
        data: req.data.display().to_string(),
        backend: backend.name().to_string(),
        device: gpu.filter(|_| req.gpu).map(Gpu::describe),
        scheme: req.gpu.then(|| req.scheme.name().to_string()),
        out_of_range_policy: if req.clamp { "clamp" } else { "report" },
        batch_size: req.batch,
    };
    let modes = vec![(req.relu, req.maxpool); configs.len()];
    let mut report = build_report(info, &tally, bounds, &modes, polys);
    let (relu, maxpool) = (req.relu == Mode::Approx, req.maxpool == Mode::Approx);
    report.he_cost = composites
        .iter()
        .map(|(a, c, _)| network_cost(&graph, &uniform_plan(&graph, Some(*a), &c.degrees(), relu, maxpool)))
        .collect::<Result<_, _>>()?;
    Ok(report)
}

/// "α=14 (ReLU + max-pool)": what the configuration approximates in this network.
fn config_label(alpha: u32, relu: Mode, maxpool: Mode, has_maxpool: bool) -> String {
    let maxpool = if has_maxpool { maxpool } else { Mode::Exact };
    let what = match (relu, maxpool) {
        (Mode::Approx, Mode::Approx) => "ReLU + max-pool",
        (Mode::Approx, Mode::Exact) => "ReLU",
        (Mode::Exact, Mode::Approx) => "max-pool",
        (Mode::Exact, Mode::Exact) => "nothing approximated",
    };
    format!("α={alpha} ({what})")
}
