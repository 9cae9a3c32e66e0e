//! `polycnn eval` / `polycnn sweep` as a library call: open the network and the data, turn the
//! request into a list of approximate configurations (one per α, or the precision plan's one),
//! choose their bounds, run the pass, describe the run and build its report.

use super::bounds::{BoundRule, BoundSearch, Bounds, SiteBound, choose_bounds};
use super::ckks_noise::{CkksNoiseRequest, NoiseTwin, PolyEval, build_twins, noisy_sites};
use super::config::{ApproxConfig, Mode, PolyInfo, approx_plan, config_label};
use super::dataset::open_selected;
use super::pass::{PassInput, PassOptions, Tally, TwinOf, evaluate, evaluate_with};
use super::plan_file::site_precisions;
use super::prepared_plan::PreparedPlan;
use super::preprocess::{PreprocessingInfo, checkpoint_warnings};
use super::report::{ConfigRun, EvalReport, RunDescription, RunInfo, build_report};
use super::request::EvalRequest;
use super::resume::Checkpoint;
use super::search::{bounds_text, first_overflow, search_bounds, with_searched_bounds};
use crate::cpu::CpuBackend;
use crate::exec::{ActivationPlan, Backend, Precision, Progress};
use crate::gpu::Gpu;
use crate::gpu::network::GpuNetwork;
use crate::he::{CkksPreset, HeCost};
use crate::model::cost::{network_cost, uniform_plan};
use crate::model::{Graph, Network, SiteKind};
use crate::poly::cost::relu_cost;
use crate::poly::official::load_official;
use crate::poly::verify::relu_error;
use crate::poly::{Composite, optimise_eps, paper_degrees_or_error};
use crate::weights::sha256::{hex, sha256, sha256_file};

type AnyError = Box<dyn std::error::Error>;

/// One approximate configuration of the run, with what the report says about it.
struct Configuration<'a> {
    config: ApproxConfig<'a>,
    /// A precision plan's own per-site composites and bounds (None: `config` at every site).
    prepared: Option<&'a PreparedPlan>,
    polynomial: PolyInfo,
    he_cost: Option<HeCost>,
    /// The bounds it runs with, per site (set once the bounds are chosen).
    site_bounds: Vec<SiteBound>,
}

impl Configuration<'_> {
    fn activation_plan(&self, graph: &Graph, site_bounds: &[SiteBound]) -> ActivationPlan<'_> {
        match self.prepared {
            Some(p) => p.activation_plan(self.config.clamp),
            None => approx_plan(graph, &self.config, site_bounds),
        }
    }

    fn run(&self) -> ConfigRun {
        ConfigRun {
            relu: self.config.relu.clone(),
            maxpool: self.config.maxpool.clone(),
            polynomial: self.polynomial.clone(),
            site_bounds: self.site_bounds.clone(),
            he_cost: self.he_cost.clone(),
            twin: None,
        }
    }
}

/// The evaluation pass's configurations in report order: each plaintext configuration followed
/// by its "+ CKKS noise" twins (`--ckks`).
struct PassList<'a> {
    configs: Vec<ApproxConfig<'a>>,
    plans: Vec<ActivationPlan<'a>>,
    twins: Vec<Option<TwinOf<'a>>>,
    runs: Vec<ConfigRun>,
}

impl<'a> PassList<'a> {
    fn new(
        graph: &Graph,
        configurations: &'a [Configuration<'a>],
        twins: &'a [NoiseTwin],
        poly_eval: PolyEval,
    ) -> Self {
        let mut list = PassList {
            configs: Vec::new(),
            plans: Vec::new(),
            twins: Vec::new(),
            runs: Vec::new(),
        };
        for (k, c) in configurations.iter().enumerate() {
            let base = list.configs.len();
            let plan = c.activation_plan(graph, &c.site_bounds);
            let twin_plans: Vec<_> = twins
                .iter()
                .filter(|t| t.base == k)
                .map(|t| (t, twin_plan(&plan, poly_eval)))
                .collect();
            list.push(c.config.clone(), plan, None, c.run());
            for (twin, plan) in twin_plans {
                let config = ApproxConfig {
                    label: twin.label.clone(),
                    ..c.config.clone()
                };
                let of = TwinOf {
                    base,
                    noise: &twin.plan,
                };
                let run = ConfigRun {
                    he_cost: None,
                    twin: Some(twin.info.clone()),
                    ..c.run()
                };
                list.push(config, plan, Some(of), run);
            }
        }
        list
    }

    fn push(&mut self, config: ApproxConfig<'a>, plan: ActivationPlan<'a>, twin: Option<TwinOf<'a>>, run: ConfigRun) {
        self.configs.push(config);
        self.plans.push(plan);
        self.twins.push(twin);
        self.runs.push(run);
    }
}

/// A twin's plan: its base's, with the composite evaluated in HE order where asked.
fn twin_plan<'a>(base: &ActivationPlan<'a>, poly_eval: PolyEval) -> ActivationPlan<'a> {
    match poly_eval {
        PolyEval::Plain => base.clone(),
        PolyEval::He => ActivationPlan {
            modes: base.modes.iter().map(|m| m.in_precision(Precision::HeOrder)).collect(),
            noise: None,
        },
    }
}

/// The "+ CKKS noise" twins of the configurations (`--ckks`; none without it). A ReLU polynomial
/// baseline gets none: the noise and level models know composites only.
fn ckks_twins(req: &EvalRequest, graph: &Graph, configurations: &[Configuration]) -> Result<Vec<NoiseTwin>, AnyError> {
    let Some(preset) = &req.ckks else {
        return Ok(Vec::new());
    };
    if req.gpu && req.ckks_poly_eval == PolyEval::He {
        return Err("--ckks-poly-eval he evaluates the composite in f64 on the CPU: use --backend cpu".into());
    }
    let noise_req = CkksNoiseRequest {
        preset: preset.clone(),
        seed: req.ckks_seed,
        precisions: req.ckks_precisions.clone(),
        poly_eval: req.ckks_poly_eval,
    };
    let shapes = graph.shapes()?;
    let plans: Vec<ActivationPlan> = configurations
        .iter()
        .map(|c| c.activation_plan(graph, &c.site_bounds))
        .collect();
    let (mut sites, mut labels, mut index) = (Vec::new(), Vec::new(), Vec::new());
    for (k, (c, plan)) in configurations.iter().zip(&plans).enumerate() {
        match noisy_sites(plan) {
            Some(s) => {
                sites.push(s);
                labels.push(c.config.label.clone());
                index.push(k);
            }
            None => log::warn!("{}: a ReLU polynomial baseline gets no CKKS twin", c.config.label),
        }
    }
    let mut twins = build_twins(graph, &shapes, &sites, &labels, &noise_req)?;
    for t in &mut twins {
        t.base = index[t.base];
    }
    Ok(twins)
}

/// Runs the evaluation the request describes; `gpu` is used when `req.gpu` is set.
pub fn run_eval(req: &EvalRequest, gpu: Option<&Gpu>, progress: &dyn Progress) -> Result<EvalReport, AnyError> {
    let network = req.model.open()?;
    let graph = &network.graph;
    let prepared = req.plan.as_ref().map(|p| PreparedPlan::new(p, graph)).transpose()?;
    let (dataset, normalize, selection) = open_selected(req, &network.descriptor)?;
    let count = images_to_evaluate(req, dataset.len())?;
    let backend = open_backend(req, gpu, graph)?;
    let composites = match &prepared {
        Some(_) => Vec::new(),
        None => uniform_composites(req)?,
    };
    let mut configurations = match &prepared {
        Some(p) => vec![plan_configuration(p, graph, req.clamp, req.ckks.as_ref())?],
        None => uniform_configurations(req, graph, &composites)?,
    };
    let pass = |indices: Vec<usize>, title: &str| PassInput {
        graph,
        backend: backend.as_ref(),
        progress,
        dataset: dataset.clone(),
        normalize,
        indices,
        batch_size: req.batch,
        title: title.to_string(),
    };
    // A precision plan carries its own per-site bounds: no statistics pass, no search.
    let bounds = match &prepared {
        Some(p) => p.bounds(),
        None => rule_bounds(req, &network, count, &pass)?,
    };
    let weights_sha256 = hex(&sha256_file(weights_file(req)?).map_err(|e| format!("{}: {e}", req.model.name()))?);
    let resume = RunIdentity::new(req, &weights_sha256, dataset.fingerprint());
    let search_pass = pass(Vec::new(), "bound search");
    let searches = set_site_bounds(&mut configurations, &bounds, count, &search_pass, &resume)?;
    // Bounds above came from the same images in every shard; only the evaluation is split.
    let evaluated = req.shard.map_or(0..count, |s| s.range(count));
    let twins = ckks_twins(req, graph, &configurations)?;
    let list = PassList::new(graph, &configurations, &twins, req.ckks_poly_eval);
    let noisy_backend = open_noisy_backend(req, gpu, graph, &twins)?;
    let input = PassInput {
        backend: noisy_backend.as_deref().unwrap_or(backend.as_ref()),
        ..pass(evaluated.collect(), "exact + approximate")
    };
    let tally = evaluate_configurations(req, &list, &input, resume.pass(&configurations).as_ref())?;
    resume.finish(&configurations)?;
    let info = run_info(&resume, gpu, &network, backend.name(), selection, dataset.len())?;
    Ok(build_report(RunDescription {
        info,
        tally,
        bounds: Bounds {
            per_site: configurations
                .first()
                .map_or(bounds.per_site.clone(), |c| c.site_bounds.clone()),
            search: searches,
            ..bounds
        },
        configs: list.runs,
        shard: req.shard.map(|s| s.info(count)),
        plan: prepared.map(|p| p.plan().clone()),
    }))
}

/// The number of images, checked to be some (and, with `--shard`, to give this shard some).
fn images_to_evaluate(req: &EvalRequest, count: usize) -> Result<usize, AnyError> {
    if count == 0 {
        return Err(format!("{}: no images to evaluate", req.data.display()).into());
    }
    if let Some(shard) = req.shard {
        shard.nonempty_range(count)?;
    }
    Ok(count)
}

/// The evaluation pass over every configuration, saving its state after each batch when resumable.
fn evaluate_configurations(
    req: &EvalRequest,
    list: &PassList,
    input: &PassInput,
    checkpoint: Option<&Checkpoint>,
) -> Result<Tally, AnyError> {
    let options = PassOptions {
        predictions: req.predictions,
        checkpoint,
        stop_after_batches: req.stop_after_batches,
        twins: &list.twins,
    };
    Ok(evaluate_with(input, &list.configs, &list.plans, &options)?)
}

/// What identifies a run (the request, the weights' content, the images): the key of its resume
/// states, so that the state of another run is refused, and the weights' hash in its report.
struct RunIdentity<'r> {
    req: &'r EvalRequest,
    weights_sha256: &'r str,
    data_fingerprint: String,
}

impl<'r> RunIdentity<'r> {
    fn new(req: &'r EvalRequest, weights_sha256: &'r str, data_fingerprint: String) -> RunIdentity<'r> {
        RunIdentity {
            req,
            weights_sha256,
            data_fingerprint,
        }
    }

    /// Removes both states once the run is complete.
    fn finish(&self, configurations: &[Configuration]) -> Result<(), String> {
        for state in self.pass(configurations).iter().chain(&self.search()) {
            state.finish()?;
        }
        Ok(())
    }

    /// The bound searches' state (keyed before any bound is known).
    fn search(&self) -> Option<Checkpoint> {
        let path = self.req.resume.as_ref()?;
        Some(Checkpoint {
            path: search_state_path(path),
            run_key: self.key(&[]),
        })
    }

    /// The evaluation pass's state, once every configuration's bounds are set.
    fn pass(&self, configurations: &[Configuration]) -> Option<Checkpoint> {
        let path = self.req.resume.as_ref()?;
        let bounds: Vec<Vec<SiteBound>> = configurations.iter().map(|c| c.site_bounds.clone()).collect();
        Some(Checkpoint {
            path: path.clone(),
            run_key: self.key(&bounds),
        })
    }

    fn key(&self, site_bounds: &[Vec<SiteBound>]) -> String {
        run_key(self.req, self.weights_sha256, &self.data_fingerprint, site_bounds)
    }
}

/// Each configuration's per-site bounds: `bounds`, or where it searches a kind
/// ([`searched_kinds`]), the official search's result on that configuration's approximate
/// network. Returns the records of the searches that ran. With a `checkpoint` the searches are
/// kept as each configuration's completes, and those a previous (interrupted) run completed are
/// taken from it instead of being repeated.
fn set_site_bounds(
    configurations: &mut [Configuration],
    bounds: &Bounds,
    count: usize,
    search_pass: &PassInput,
    resume: &RunIdentity,
) -> Result<Vec<BoundSearch>, AnyError> {
    let graph = search_pass.graph;
    let checkpoint = resume.search();
    let checkpoint = checkpoint.as_ref();
    let mut searches: Vec<BoundSearch> = match checkpoint {
        Some(c) => c.load::<Vec<BoundSearch>>()?.map(|s| s.progress).unwrap_or_default(),
        None => Vec::new(),
    };
    for c in configurations.iter_mut() {
        let searched = searched_kinds(graph, bounds, c);
        c.site_bounds = match searched {
            [false, false] => bounds.per_site.clone(),
            _ => match searches.iter().find(|s| s.label == c.config.label) {
                Some(s) => with_searched_bounds(graph, bounds, s.relu_bound, s.maxpool_bound).per_site,
                None => {
                    let (found, search) = search_configuration(bounds, c, count, searched, search_pass)?;
                    searches.push(search);
                    if let Some(checkpoint) = checkpoint {
                        checkpoint.save(searches.len(), 0.0, &searches)?;
                    }
                    found.per_site
                }
            },
        };
    }
    Ok(searches)
}

/// [ReLU, max-pool]: whether the official search raises that kind's B for `c`: its rule is
/// `search` and `c` approximates a site of that kind with a bound (a kind with no such site has
/// nothing to overflow). A precision plan carries its own per-site bounds: never searched.
fn searched_kinds(graph: &Graph, bounds: &Bounds, c: &Configuration) -> [bool; 2] {
    if c.prepared.is_some() {
        return [false, false];
    }
    let plan = c.activation_plan(graph, &bounds.per_site);
    let approximated = |kind: SiteKind| {
        graph
            .sites
            .iter()
            .zip(&plan.modes)
            .any(|(site, mode)| site.kind == kind && mode.uses_bound())
    };
    [
        is_search(&bounds.relu_rule) && approximated(SiteKind::Relu),
        is_search(&bounds.maxpool_rule) && approximated(SiteKind::MaxPool),
    ]
}

fn open_backend<'a>(
    req: &EvalRequest,
    gpu: Option<&'a Gpu>,
    graph: &'a Graph,
) -> Result<Box<dyn Backend + 'a>, AnyError> {
    Ok(match (req.gpu, gpu) {
        (true, Some(gpu)) => Box::new(GpuNetwork::new(gpu, graph, req.scheme)?),
        (true, None) => return Err("--backend gpu: no GPU adapter (use --backend cpu)".into()),
        (false, _) => Box::new(CpuBackend::new(graph)),
    })
}

/// The GPU network for a pass with CKKS twins: the nodes they add noise to stay unfused, so the
/// noise lands between a node and its consumers (the CPU backend needs nothing; None then).
fn open_noisy_backend<'a>(
    req: &EvalRequest,
    gpu: Option<&'a Gpu>,
    graph: &'a Graph,
    twins: &[NoiseTwin],
) -> Result<Option<Box<dyn Backend + 'a>>, AnyError> {
    let (true, Some(gpu)) = (req.gpu && !twins.is_empty(), gpu) else {
        return Ok(None);
    };
    let mut noisy: Vec<usize> = twins.iter().flat_map(|t| t.plan.noisy_nodes()).collect();
    noisy.sort_unstable();
    noisy.dedup();
    Ok(Some(Box::new(GpuNetwork::with_unfused(
        gpu, graph, req.scheme, &noisy,
    )?)))
}

fn run_info(
    resume: &RunIdentity,
    gpu: Option<&Gpu>,
    network: &Network,
    backend: &str,
    selection: String,
    dataset_images: usize,
) -> Result<RunInfo, AnyError> {
    let (req, weights_sha256) = (resume.req, resume.weights_sha256.to_string());
    let preprocessing = req.preprocessing.apply(&network.descriptor)?;
    let weights = weights_file(req)?.display().to_string();
    Ok(RunInfo {
        model: network.graph.name.clone(),
        data: req.data.display().to_string(),
        selection,
        backend: backend.to_string(),
        device: gpu.filter(|_| req.gpu).map(Gpu::describe),
        scheme: req.gpu.then(|| req.scheme.name().to_string()),
        out_of_range_policy: if req.clamp { "clamp" } else { "report" },
        batch_size: req.batch,
        warnings: checkpoint_warnings(&weights, &weights_sha256, &preprocessing),
        weights,
        weights_sha256,
        dataset_images,
        preprocessing: PreprocessingInfo::of(&preprocessing),
    })
}

/// The file a report names and hashes as the network's weights: the checkpoint or the ONNX file.
fn weights_file(req: &EvalRequest) -> Result<&std::path::Path, String> {
    req.model.weights_file().ok_or_else(|| {
        format!(
            "{}: an evaluation needs real weights, not random ones",
            req.model.name()
        )
    })
}

/// Where the bound searches of a run whose pass state is `state` are kept.
fn search_state_path(state: &std::path::Path) -> std::path::PathBuf {
    let mut name = state.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".search");
    state.with_file_name(name)
}

/// What a resume state must match: everything that decides the evaluation pass's counts (the
/// request without its output-only fields, the weights' content, the images, every bound).
fn run_key(req: &EvalRequest, weights_sha256: &str, data_fingerprint: &str, site_bounds: &[Vec<SiteBound>]) -> String {
    let decisive = EvalRequest {
        resume: None,
        stop_after_batches: None,
        cache: None,
        predictions: false,
        ..req.clone()
    };
    let bounds: Vec<Vec<f64>> = site_bounds
        .iter()
        .map(|b| b.iter().map(|s| s.bound).collect())
        .collect();
    let key = format!("{decisive:?}|{weights_sha256}|{data_fingerprint}|{bounds:?}");
    // the key is compared, never parsed: its hash keeps the state file small
    hex(&sha256(key.as_bytes()))
}

/// A built composite: α, the polynomial, and where it came from.
struct AlphaComposite {
    alpha: u32,
    composite: Composite,
    source: String,
}

/// The composite per requested α. A ReLU polynomial does not depend on α (and max-pooling is
/// exact with it): one configuration then.
fn uniform_composites(req: &EvalRequest) -> Result<Vec<AlphaComposite>, AnyError> {
    let alphas = match &req.relu {
        Mode::Poly(_) => &req.alphas[..req.alphas.len().min(1)],
        _ => &req.alphas[..],
    };
    alphas.iter().map(|&alpha| composite_for(req, alpha)).collect()
}

/// The composite for α and where it came from.
fn composite_for(req: &EvalRequest, alpha: u32) -> Result<AlphaComposite, AnyError> {
    if let Some(dir) = &req.coeffs_dir {
        let source = format!("official ({})", dir.display());
        return Ok(AlphaComposite {
            alpha,
            composite: load_official(dir, alpha)?,
            source,
        });
    }
    let degrees = match &req.degrees {
        Some(d) => d.as_slice(),
        None => paper_degrees_or_error(alpha)?,
    };
    let sc = optimise_eps(degrees)?;
    let source = format!("ours (ε = 2^{:.3})", sc.eps.log2());
    Ok(AlphaComposite {
        alpha,
        composite: sc.composite,
        source,
    })
}

/// One configuration per α, every site of an approximated kind with its composite.
fn uniform_configurations<'a>(
    req: &EvalRequest,
    graph: &Graph,
    composites: &'a [AlphaComposite],
) -> Result<Vec<Configuration<'a>>, AnyError> {
    let precision = if req.gpu {
        Precision::default() // unused: the GPU evaluates req.scheme
    } else {
        Precision::for_scheme(req.scheme.name())?
    };
    let has_maxpool = graph.sites.iter().any(|s| s.kind == SiteKind::MaxPool);
    let maxpool = match &req.relu {
        Mode::Poly(_) => Mode::Exact,
        _ => req.maxpool.clone(),
    };
    composites
        .iter()
        .map(|c| {
            let (polynomial, he_cost) = match &req.relu {
                // a ReLU baseline polynomial is not a composite: its cost is not modelled
                Mode::Poly(p) => (poly_relu_info(p), None),
                _ => {
                    let precisions = uniform_plan(
                        graph,
                        Some(c.alpha),
                        &c.composite.degrees(),
                        req.relu == Mode::Approx,
                        maxpool == Mode::Approx,
                    );
                    (
                        composite_info(&c.composite, c.source.clone()),
                        Some(HeCost::with_ckks(
                            network_cost(graph, &precisions)?,
                            graph,
                            &precisions,
                            req.ckks.as_ref(),
                        )?),
                    )
                }
            };
            let config = ApproxConfig {
                label: config_label(c.alpha, &req.relu, &maxpool, has_maxpool),
                alpha: c.alpha,
                composite: &c.composite,
                relu: req.relu.clone(),
                maxpool: maxpool.clone(),
                clamp: req.clamp,
                precision,
            };
            Ok(Configuration {
                config,
                prepared: None,
                polynomial,
                he_cost,
                site_bounds: Vec::new(),
            })
        })
        .collect()
}

/// The precision plan's one configuration.
fn plan_configuration<'a>(
    p: &'a PreparedPlan,
    graph: &Graph,
    clamp: bool,
    ckks: Option<&CkksPreset>,
) -> Result<Configuration<'a>, AnyError> {
    let precisions = site_precisions(p.plan());
    Ok(Configuration {
        config: p.config(clamp),
        prepared: Some(p),
        polynomial: p.poly_info(),
        he_cost: Some(HeCost::with_ckks(
            network_cost(graph, &precisions)?,
            graph,
            &precisions,
            ckks,
        )?),
        site_bounds: Vec::new(),
    })
}

fn composite_info(composite: &Composite, source: String) -> PolyInfo {
    PolyInfo {
        degrees: composite.degrees(),
        source,
        relu_error_log2: relu_error(composite).log2,
        relu_cost: relu_cost(&composite.degrees()),
    }
}

fn poly_relu_info(p: &crate::exec::ReluPoly) -> PolyInfo {
    PolyInfo {
        degrees: vec![p.coeffs.len() - 1],
        source: format!(
            "ReLU polynomial {} ({:?}{})",
            p.name,
            p.coeffs,
            if p.scaled { " in x/B" } else { "" }
        ),
        relu_error_log2: f64::NAN,
        relu_cost: Default::default(),
    }
}

fn is_search(rule: &BoundRule) -> bool {
    matches!(rule, BoundRule::Search { .. })
}

/// Bounds from the request's rules (on the network's search grid), after an exact statistics
/// pass when a rule needs one.
fn rule_bounds<'p>(
    req: &EvalRequest,
    network: &Network,
    count: usize,
    pass: &impl Fn(Vec<usize>, &str) -> PassInput<'p>,
) -> Result<Bounds, AnyError> {
    let (relu, maxpool) = req.bound_rules(&network.descriptor.search_grid);
    let needs_stats = |r: &BoundRule| matches!(r, BoundRule::SearchExact { .. } | BoundRule::Calibrate { .. });
    let stats = if needs_stats(&relu) || needs_stats(&maxpool) {
        let calibrate_only =
            !matches!(relu, BoundRule::SearchExact { .. }) && !matches!(maxpool, BoundRule::SearchExact { .. });
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
    Ok(choose_bounds(&network.graph, &relu, &maxpool, stats.as_deref())?)
}

/// The official search on the approximate network of one configuration: its bounds and record.
fn search_configuration(
    bounds: &Bounds,
    c: &Configuration,
    count: usize,
    searched: [bool; 2],
    search_pass: &PassInput,
) -> Result<(Bounds, BoundSearch), AnyError> {
    let graph = search_pass.graph;
    let relu = search_grid(&bounds.relu_rule, searched[0]);
    let maxpool = search_grid(&bounds.maxpool_rule, searched[1]);
    let label = &c.config.label;
    let ((relu, maxpool), tries) = search_bounds(count, (relu.0, maxpool.0), (relu.1, maxpool.1), |order, r, m| {
        let trial = with_searched_bounds(graph, bounds, r, m);
        let overflow = first_overflow(search_pass, order, &c.activation_plan(graph, &trial.per_site), searched)?;
        let trying = bounds_text(r, m);
        match &overflow {
            Some(o) => log::info!(
                "{label}: trying {trying}… site {} reached |x| = {:.3} ({} images run)",
                o.site,
                o.max_abs,
                o.images_run
            ),
            None => log::info!("{label}: trying {trying}… every activation in range"),
        }
        Ok(overflow)
    })?;
    let search = BoundSearch {
        label: label.clone(),
        relu_bound: relu,
        maxpool_bound: maxpool,
        tries,
    };
    log::info!("{}", search.summary());
    Ok((with_searched_bounds(graph, bounds, relu, maxpool), search))
}

/// (start, step) of a searched kind's rule; None for a kind not searched.
fn search_grid(rule: &BoundRule, searched: bool) -> (Option<f64>, f64) {
    match rule {
        BoundRule::Search { start, step } if searched => (Some(*start), *step),
        _ => (None, 0.0),
    }
}
