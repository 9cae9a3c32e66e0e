//! `polycnn eval` / `polycnn sweep` as a library call: open the model and the data, build the
//! polynomials, choose the bounds, run the pass, return the report. The binary only parses
//! arguments into an [`EvalRequest`].

use super::plan::{PrecisionPlan, PreparedPlan};
use super::report::{EvalReport, PolyInfo, RunInfo, build_report};
use super::shard::Shard;
use super::{
    ApproxConfig, Backend, BoundRule, BoundSearch, Mode, PassInput, approx_plan, choose_bounds, config_label, evaluate,
    first_overflow, search_bounds, with_searched_bounds,
};
use crate::data::cache::{CacheStatus, CachedDataset};
use crate::data::digits::{self, DigitsDataset};
use crate::data::imagenet::{self, ClassIndex, Layout};
use crate::data::{Dataset, Geometry, Normalize, cifar};
use crate::cpu::Precision;
use crate::gpu::Gpu;
use crate::gpu::activation::Scheme;
use crate::gpu::network::GpuNetwork;
use crate::model::cost::{SitePrecision, network_cost, uniform_plan};
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
    /// Evaluate only this shard of the images (bounds still come from the same images as a whole run).
    pub shard: Option<Shard>,
    /// Evaluate this per-site precision plan (one configuration) instead of `alphas` and `bound`.
    pub plan: Option<PrecisionPlan>,
}

/// Default `--bound search` grids of the official code: CIFAR nets B_relu = B_max = 50 step 5,
/// ImageNet nets B_relu = 100, B_max = 10, step 10.
pub fn default_search_grid(arch: Arch) -> ((f64, f64), (f64, f64)) {
    match arch {
        Arch::ResNet(_) | Arch::VggBn(_) | Arch::GoogLeNet | Arch::InceptionV3 => ((100.0, 10.0), (10.0, 10.0)),
        // not in the paper: the digits CNN's activations stay below ~8
        Arch::DigitsCnn => ((8.0, 1.0), (8.0, 1.0)),
        _ => ((50.0, 5.0), (50.0, 5.0)),
    }
}

impl EvalRequest {
    /// `model` with `weights` on `data`, everything else as the command line defaults it: α = 14,
    /// ReLU and max-pool approximated with our polynomials, the official B search of
    /// [`default_search_grid`], batches of 32 on the CPU backend, all images, no cache.
    pub fn new(model: Arch, weights: PathBuf, data: PathBuf) -> EvalRequest {
        let (relu, maxpool) = default_search_grid(model);
        let search = |(start, step)| BoundRule::Search { start, step };
        EvalRequest {
            model,
            weights,
            data,
            labels: None,
            class_index: None,
            alphas: vec![14],
            degrees: None,
            coeffs_dir: None,
            relu: Mode::Approx,
            maxpool: Mode::Approx,
            clamp: false,
            bound: search(relu),
            bound_max: search(maxpool),
            calibration_images: 0,
            batch: 32,
            limit: None,
            cache: None,
            gpu: false,
            scheme: Scheme::DEFAULT,
            shard: None,
            plan: None,
        }
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
        Arch::CifarResNet(_) | Arch::CifarVgg11Bn | Arch::CifarVggBn(_) | Arch::CifarVggPaper(_) => {
            (Arc::from(cifar::open(&req.data)?), normalize)
        }
        Arch::ResNet(_) | Arch::VggBn(_) | Arch::GoogLeNet | Arch::InceptionV3 => {
            let classes = req.class_index.as_deref().map(ClassIndex::load).transpose()?;
            let layout = Layout::detect(&req.data, req.labels.as_deref())?;
            let geometry = Geometry::for_crop(req.model.input_shape().h);
            let dataset = imagenet::open(&req.data, &layout, classes.as_ref(), geometry)?;
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
    let planned = req.plan.as_ref().map(|p| PreparedPlan::new(p, &graph)).transpose()?;
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
    // A ReLU polynomial does not depend on α (and max-pooling is exact with it): one configuration.
    let alphas = match &req.relu {
        Mode::Poly(_) => &req.alphas[..req.alphas.len().min(1)],
        _ => &req.alphas[..],
    };
    let composites: Vec<(u32, Composite, String)> = alphas
        .iter()
        .map(|&a| composite_for(req, a).map(|(c, s)| (a, c, s)))
        .collect::<Result<_, _>>()?;
    let precision = if req.gpu {
        Precision::default() // unused: the GPU evaluates req.scheme
    } else {
        Precision::for_scheme(req.scheme.name())?
    };
    let has_maxpool = graph.sites.iter().any(|s| s.kind == SiteKind::MaxPool);
    let maxpool_mode = match &req.relu {
        Mode::Poly(_) => Mode::Exact,
        _ => req.maxpool.clone(),
    };
    let configs: Vec<ApproxConfig> = composites
        .iter()
        .map(|(alpha, composite, _)| ApproxConfig {
            label: config_label(*alpha, &req.relu, &maxpool_mode, has_maxpool),
            alpha: *alpha,
            composite,
            relu: req.relu.clone(),
            maxpool: maxpool_mode.clone(),
            clamp: req.clamp,
            precision,
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
    let configs = match &planned {
        Some(p) => vec![p.config(req.clamp)],
        None => configs,
    };
    // A precision plan carries its own per-site bounds: no statistics pass, no search.
    let is_search = |r: &BoundRule| planned.is_none() && matches!(r, BoundRule::Search { .. });
    let needs_stats =
        |r: &BoundRule| planned.is_none() && matches!(r, BoundRule::SearchExact { .. } | BoundRule::Calibrate { .. });
    let stats = if needs_stats(&req.bound) || needs_stats(&req.bound_max) {
        let calibrate_only = !matches!(req.bound, BoundRule::SearchExact { .. })
            && !matches!(req.bound_max, BoundRule::SearchExact { .. });
        let images = if !calibrate_only {
            count
        } else if req.calibration_images > 0 {
            req.calibration_images.min(count)
        } else {
            (count / 10).max(req.batch).min(count)
        };
        Some(evaluate(&pass((0..images).collect(), "range statistics"), &[], &[])?.exact_sites)
    } else {
        None
    };
    let mut bounds = match &planned {
        Some(p) => p.bounds(),
        None => choose_bounds(&graph, &req.bound, &req.bound_max, stats.as_deref())?,
    };
    // Per configuration: the approximate-network search where a rule asks for it.
    let mut config_bounds = Vec::new();
    for config in &configs {
        if !(is_search(&req.bound) || is_search(&req.bound_max)) {
            config_bounds.push(bounds.clone());
            continue;
        }
        let (start, step) = (search_grid(&req.bound), search_grid(&req.bound_max));
        let search_pass = pass(Vec::new(), "bound search");
        let (relu, maxpool, tries) = search_bounds(count, (start.0, step.0), (start.1, step.1), |order, r, m| {
            let trial = with_searched_bounds(&graph, &bounds, r, m);
            let plan = approx_plan(&graph, config, &trial);
            eprint!("{}: trying B_relu = {r}, B_max = {m}… ", config.label);
            let overflow = first_overflow(
                &search_pass,
                order,
                &plan,
                [is_search(&req.bound), is_search(&req.bound_max)],
            )?;
            match &overflow {
                Some(o) => eprintln!(
                    "site {} reached |x| = {:.3} ({} images run)",
                    o.site, o.max_abs, o.images_run
                ),
                None => eprintln!("every activation in range"),
            }
            Ok(overflow)
        })?;
        let search = BoundSearch {
            label: config.label.clone(),
            relu_bound: relu,
            maxpool_bound: maxpool,
            tries,
        };
        eprintln!("{}", search.summary());
        bounds.search.push(search);
        config_bounds.push(with_searched_bounds(&graph, &bounds, relu, maxpool));
    }
    let plans: Vec<_> = match &planned {
        Some(p) => vec![p.activation_plan(req.clamp)],
        None => configs
            .iter()
            .zip(&config_bounds)
            .map(|(c, b)| approx_plan(&graph, c, b))
            .collect(),
    };
    // Bounds above came from the same images in every shard; only the evaluation is split.
    let evaluated = req.shard.map_or(0..count, |s| s.range(count));
    let tally = evaluate(&pass(evaluated.collect(), "exact + approximate"), &configs, &plans)?;
    let polys = composites
        .iter()
        .map(|(_, composite, source)| match &req.relu {
            Mode::Poly(p) => PolyInfo {
                degrees: vec![p.coeffs.len() - 1],
                source: format!(
                    "ReLU polynomial {} ({:?}{})",
                    p.name,
                    p.coeffs,
                    if p.scaled { " in x/B" } else { "" }
                ),
                relu_error_log2: f64::NAN,
                relu_cost: Default::default(),
            },
            _ => PolyInfo {
                degrees: composite.degrees(),
                source: source.clone(),
                relu_error_log2: relu_error(composite).log2,
                relu_cost: relu_cost(&composite.degrees()),
            },
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
    let polys = match &planned {
        Some(p) => vec![p.poly_info()],
        None => polys,
    };
    let modes = vec![(req.relu.clone(), maxpool_mode.clone()); configs.len()];
    if let Some(first) = config_bounds.first() {
        bounds.per_site = first.per_site.clone();
    }
    let mut report = build_report(info, &tally, bounds, &modes, polys);
    // each configuration's sites show the bounds it ran with
    for (config, b) in report.configs.iter_mut().zip(&config_bounds) {
        for (site, sb) in config.sites.iter_mut().zip(&b.per_site) {
            site.bound = sb.bound;
        }
    }
    report.shard = req.shard.map(|s| s.info(count));
    report.plan = planned.map(|p| p.plan().clone());
    report.he_cost = match &report.plan {
        Some(plan) => {
            let sites = plan.sites.iter().map(|s| SitePrecision::Approx {
                alpha: Some(s.alpha),
                degrees: s.degrees.clone(),
            });
            vec![network_cost(&graph, &sites.collect::<Vec<_>>())?]
        }
        // a ReLU baseline polynomial is not a composite: its cost is not modelled
        None if matches!(req.relu, Mode::Poly(_)) => Vec::new(),
        None => {
            let (relu, maxpool) = (req.relu == Mode::Approx, maxpool_mode == Mode::Approx);
            composites
                .iter()
                .map(|(a, c, _)| network_cost(&graph, &uniform_plan(&graph, Some(*a), &c.degrees(), relu, maxpool)))
                .collect::<Result<_, _>>()?
        }
    };
    Ok(report)
}

/// (start, step) of a searched rule; a fixed bound stays where it is; per-site rules have no
/// single B (NaN in the search's record).
fn search_grid(rule: &BoundRule) -> (f64, f64) {
    match rule {
        BoundRule::Search { start, step } => (*start, *step),
        BoundRule::Fixed { bound } => (*bound, 0.0),
        _ => (f64::NAN, 0.0),
    }
}
