//! Evaluation: run a dataset through the exact network and one or more approximate ones in the
//! same pass, and account for accuracy (top-1/top-5), agreement and per-site ranges.
//!
//! Flow: [`choose_bounds`] resolves the bound rule (fixed, the paper's grid search, or per-site
//! calibration) from a statistics pass of the exact network when it needs one → [`evaluate`]
//! decodes batches in the background, runs each batch exactly once through the exact network and
//! once per approximate plan, and tallies everything by counts (never averages of averages).

pub mod check;
pub mod command;
pub mod merge;
pub mod plan;
pub mod plot;
pub mod predictions;
pub mod report;
pub mod resume;
pub mod shard;
pub mod stats;

use crate::cpu::{self, ActivationPlan, PolyRelu, ReluPoly, RunOutput, SiteMode, SiteStats};
use crate::data::Dataset;
use crate::data::Normalize;
use crate::data::loader::{Loader, LoaderConfig};
use crate::gpu::network::GpuNetwork;
use crate::model::{Batch, Graph, Shape, SiteKind};
use crate::poly::Composite;
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

/// Where the network runs.
pub enum Backend<'a> {
    Cpu,
    // boxed: the GPU network is large and a backend is made once per run
    Gpu(Box<GpuNetwork<'a>>),
}

impl Backend<'_> {
    pub fn run(&self, graph: &Graph, batch: &Batch, plan: &ActivationPlan) -> Result<RunOutput, String> {
        match self {
            Backend::Cpu => cpu::run(graph, batch, plan).map_err(|e| e.to_string()),
            Backend::Gpu(network) => network.run(batch, plan).map_err(|e| e.to_string()),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Gpu(_) => "gpu",
        }
    }
}

/// How a kind of activation is evaluated.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Exact,
    /// The composite minimax polynomial of the configuration's α.
    Approx,
    /// ReLU only: one power-basis polynomial (`square`, `relu-aq` or a file); max-pooling is
    /// then exact, as in the official code.
    Poly(Box<ReluPoly>),
}

impl Mode {
    /// `--relu`: exact, approx, square (x²), relu-aq (x²/8 + x/2 + 1/4) or poly:FILE (see
    /// [`ReluPoly::parse`] for the file format).
    pub fn parse_relu(s: &str) -> Result<Mode, String> {
        match s {
            "square" => Ok(Mode::Poly(Box::new(ReluPoly::square()))),
            "relu-aq" => Ok(Mode::Poly(Box::new(ReluPoly::relu_aq()))),
            _ => match s.strip_prefix("poly:") {
                Some(file) => Ok(Mode::Poly(Box::new(ReluPoly::load(std::path::Path::new(file))?))),
                None => Self::parse_exact_or_approx(s)
                    .map_err(|_| format!("--relu '{s}': expected exact, approx, square, relu-aq or poly:FILE")),
            },
        }
    }

    /// `--maxpool`: exact or approx.
    pub fn parse_maxpool(s: &str) -> Result<Mode, String> {
        Self::parse_exact_or_approx(s).map_err(|_| format!("--maxpool '{s}': expected exact or approx"))
    }

    fn parse_exact_or_approx(s: &str) -> Result<Mode, ()> {
        match s {
            "exact" => Ok(Mode::Exact),
            "approx" => Ok(Mode::Approx),
            _ => Err(()),
        }
    }

    /// What this mode is called in labels: "ReLU", "square ReLU", …
    fn relu_label(&self) -> Option<String> {
        match self {
            Mode::Exact => None,
            Mode::Approx => Some("ReLU".into()),
            Mode::Poly(p) => Some(format!("{} ReLU", p.name)),
        }
    }
}

/// How the bound B of approximate sites is chosen.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
#[serde(tag = "rule", rename_all = "lowercase")]
pub enum BoundRule {
    /// One global B (the paper's setting).
    Fixed { bound: f64 },
    /// The official code's procedure on the approximate network: start at `start`, and while
    /// an activation of this kind leaves [-B, B] raise B by `step` and retry (see
    /// [`search_bounds`]).
    Search { start: f64, step: f64 },
    /// The smallest B = start + k·step with no activation of the exact network outside
    /// [-B, B], from one statistics pass (a lower bound of `search`'s B: the approximate
    /// network's activations drift above the exact ones).
    #[serde(rename = "search-exact")]
    SearchExact { start: f64, step: f64 },
    /// Per site: max |x| over the first `images` images times `margin`.
    Calibrate { margin: f64, images: usize },
}

impl BoundRule {
    /// "50", "search", "search:50:5", "search-exact[:50:5]", "calibrate", "calibrate:1.2".
    pub fn parse(s: &str, default_search: (f64, f64)) -> Result<BoundRule, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let number = |t: &str, what: &str| -> Result<f64, String> {
            t.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v > 0.0)
                .ok_or_else(|| format!("bound '{s}': {what} '{t}' is not a positive number"))
        };
        match parts.as_slice() {
            ["search"] => Ok(BoundRule::Search {
                start: default_search.0,
                step: default_search.1,
            }),
            ["search", start, step] => Ok(BoundRule::Search {
                start: number(start, "start")?,
                step: number(step, "step")?,
            }),
            ["search-exact"] => Ok(BoundRule::SearchExact {
                start: default_search.0,
                step: default_search.1,
            }),
            ["search-exact", start, step] => Ok(BoundRule::SearchExact {
                start: number(start, "start")?,
                step: number(step, "step")?,
            }),
            ["calibrate"] => Ok(BoundRule::Calibrate { margin: 1.1, images: 0 }),
            ["calibrate", margin] => Ok(BoundRule::Calibrate {
                margin: number(margin, "margin")?,
                images: 0,
            }),
            [value] => Ok(BoundRule::Fixed {
                bound: number(value, "value")?,
            }),
            _ => Err(format!(
                "bound '{s}': expected a number, search[:START:STEP], search-exact[:START:STEP] or calibrate[:MARGIN]"
            )),
        }
    }
}

/// One approximate configuration evaluated alongside the exact network.
pub struct ApproxConfig<'a> {
    pub label: String,
    pub alpha: u32,
    pub composite: &'a Composite,
    pub relu: Mode,
    pub maxpool: Mode,
    /// Clamp approximate inputs to [-B, B] (otherwise out-of-range values reach the polynomial,
    /// as they would under encryption; they are counted either way).
    pub clamp: bool,
}

/// Per-site bounds actually used (ReLU sites and max-pool sites may differ).
#[derive(Clone, Debug, Serialize)]
pub struct SiteBound {
    pub site: String,
    pub kind: &'static str,
    pub bound: f64,
}

/// The bounds for every site, and how they were found.
#[derive(Clone, Debug, Serialize)]
pub struct Bounds {
    pub relu_rule: BoundRule,
    pub maxpool_rule: BoundRule,
    pub per_site: Vec<SiteBound>,
    /// Per configuration, the `search` rule's result on its approximate network (empty when no
    /// rule searches; `per_site` then holds the first configuration's bounds).
    pub search: Vec<BoundSearch>,
}

fn kind_name(kind: SiteKind) -> &'static str {
    match kind {
        SiteKind::Relu => "relu",
        SiteKind::MaxPool => "maxpool",
    }
}

/// Bounds from the rules, using `stats` (an exact statistics pass) where a rule needs it.
pub fn choose_bounds(
    graph: &Graph,
    relu: &BoundRule,
    maxpool: &BoundRule,
    stats: Option<&[SiteStats]>,
) -> Result<Bounds, String> {
    let per_site = graph
        .sites
        .iter()
        .enumerate()
        .map(|(i, site)| {
            let rule = if site.kind == SiteKind::Relu { relu } else { maxpool };
            let observed = |what: &str| -> Result<f64, String> {
                let stats = stats.ok_or_else(|| format!("bound rule {what} needs a statistics pass"))?;
                // the global maximum over sites of this kind (search) or this site's (calibrate)
                Ok(match rule {
                    BoundRule::SearchExact { .. } => stats
                        .iter()
                        .zip(&graph.sites)
                        .filter(|(_, s)| s.kind == site.kind)
                        .map(|(st, _)| st.max_abs as f64)
                        .fold(0.0, f64::max),
                    _ => stats[i].max_abs as f64,
                })
            };
            let bound = match rule {
                BoundRule::Fixed { bound } => *bound,
                // where the search on the approximate network starts
                BoundRule::Search { start, .. } => *start,
                BoundRule::SearchExact { start, step } => {
                    let max = observed("search-exact")?;
                    let steps = ((max - start) / step).ceil().max(0.0);
                    start + steps * step
                }
                BoundRule::Calibrate { margin, .. } => (observed("calibrate")? * margin).max(f64::MIN_POSITIVE),
            };
            Ok(SiteBound {
                site: site.name.clone(),
                kind: kind_name(site.kind),
                bound,
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(Bounds {
        relu_rule: relu.clone(),
        maxpool_rule: maxpool.clone(),
        per_site,
        search: Vec::new(),
    })
}

/// The activation plan of one approximate configuration with these bounds.
pub fn approx_plan<'a>(graph: &Graph, config: &'a ApproxConfig<'a>, bounds: &Bounds) -> ActivationPlan<'a> {
    let modes = graph
        .sites
        .iter()
        .zip(&bounds.per_site)
        .map(|(site, b)| {
            let mode = if site.kind == SiteKind::Relu {
                &config.relu
            } else {
                &config.maxpool
            };
            match mode {
                Mode::Exact => SiteMode::Exact,
                Mode::Approx => SiteMode::approx(config.composite, config.alpha, b.bound).clamped(config.clamp),
                // a ReLU polynomial never reaches a max-pool site: those are exact with it
                Mode::Poly(_) if site.kind == SiteKind::MaxPool => SiteMode::Exact,
                Mode::Poly(poly) => SiteMode::Poly(PolyRelu {
                    poly,
                    bound: b.bound,
                    clamp: config.clamp,
                }),
            }
        })
        .collect();
    ActivationPlan { modes }
}

/// The configuration's label: "α=14 (ReLU + max-pool)", "square ReLU (max-pool exact)", …
pub fn config_label(alpha: u32, relu: &Mode, maxpool: &Mode, has_maxpool: bool) -> String {
    let maxpool = if has_maxpool { maxpool } else { &Mode::Exact };
    match (relu, maxpool) {
        (Mode::Poly(p), _) if has_maxpool => format!("{} ReLU (max-pool exact)", p.name),
        (Mode::Poly(p), _) => format!("{} ReLU", p.name),
        (relu, maxpool) => {
            let what = match (relu.relu_label(), maxpool) {
                (Some(r), Mode::Approx) => format!("{r} + max-pool"),
                (Some(r), _) => r,
                (None, Mode::Approx) => "max-pool".into(),
                (None, _) => "nothing approximated".into(),
            };
            format!("α={alpha} ({what})")
        }
    }
}

/// Where a try of the search stopped: the first batch with an activation out of [-B, B].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Overflow {
    /// "relu" or "maxpool": the kind whose B is raised (the earliest overflowing site's).
    pub kind: &'static str,
    pub site: String,
    /// The largest |x| at that site in that batch (infinite when it saw a non-finite value).
    pub max_abs: f64,
    /// The images of the overflowing batch (re-run first by the next try).
    pub images: Vec<usize>,
    /// Images run by this try, the overflowing batch included.
    pub images_run: usize,
}

/// One try of the search: the bounds, how many images ran, and where it stopped (None: every
/// image stayed in range, the search ends).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SearchTry {
    pub relu_bound: f64,
    pub maxpool_bound: f64,
    pub images_run: usize,
    pub overflow: Option<Overflow>,
}

/// The result of the search for one configuration.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BoundSearch {
    pub label: String,
    pub relu_bound: f64,
    pub maxpool_bound: f64,
    pub tries: Vec<SearchTry>,
}

impl BoundSearch {
    /// "B_relu = 65 (tried 50, 55, 60, 65), B_max = 50 (tried 50)".
    pub fn summary(&self) -> String {
        let tried = |pick: fn(&SearchTry) -> f64| {
            let mut values: Vec<f64> = self.tries.iter().map(pick).collect();
            values.dedup();
            values.iter().map(|v| format!("{v}")).collect::<Vec<_>>().join(", ")
        };
        format!(
            "{}: B_relu = {} (tried {}), B_max = {} (tried {}), {} tries",
            self.label,
            self.relu_bound,
            tried(|t| t.relu_bound),
            self.maxpool_bound,
            tried(|t| t.maxpool_bound),
            self.tries.len()
        )
    }
}

/// Tries after which the search gives up (the activations grow with B, or are not finite).
pub const MAX_SEARCH_TRIES: usize = 200;

/// The official code's B search (main_cifar10.py / main_imagenet.py): run the approximate
/// network with (B_relu, B_max) = `start`; when an activation of a searched kind leaves
/// [-B, B], raise that kind's B by its step and try again, until a whole pass stays in range.
///
/// `first_overflow(order, relu_bound, maxpool_bound)` runs the images in `order` batch by
/// batch and reports the first batch that overflowed. Unlike the official code, which restarts
/// from the first image, each try runs the images that overflowed before first, so a B that
/// still fails is rejected after a batch; the B found is the same, since a try succeeds only
/// after a full pass in range at that B.
pub fn search_bounds(
    images: usize,
    start: (f64, f64),
    step: (f64, f64),
    mut first_overflow: impl FnMut(&[usize], f64, f64) -> Result<Option<Overflow>, String>,
) -> Result<(f64, f64, Vec<SearchTry>), String> {
    let (mut relu, mut maxpool) = start;
    let mut seen = vec![false; images];
    let mut first: Vec<usize> = Vec::new();
    let mut tries = Vec::new();
    while tries.len() < MAX_SEARCH_TRIES {
        let order: Vec<usize> = first.iter().copied().chain((0..images).filter(|&i| !seen[i])).collect();
        let overflow = first_overflow(&order, relu, maxpool)?;
        tries.push(SearchTry {
            relu_bound: relu,
            maxpool_bound: maxpool,
            images_run: overflow.as_ref().map_or(images, |o| o.images_run),
            overflow: overflow.clone(),
        });
        let Some(o) = overflow else {
            return Ok((relu, maxpool, tries));
        };
        match o.kind {
            "relu" => relu += step.0,
            _ => maxpool += step.1,
        }
        for &i in &o.images {
            if !std::mem::replace(&mut seen[i], true) {
                first.push(i);
            }
        }
    }
    Err(format!(
        "no bound found after {MAX_SEARCH_TRIES} tries (B_relu = {relu}, B_max = {maxpool}): the \
         approximate network's activations keep leaving [-B, B]"
    ))
}

/// Runs `plan` (the approximate network only) over `order` in batches and returns the first
/// batch where a site of `searched` kinds saw |x| > B or a non-finite value (the official code
/// raises on |x| > B, which is also true of ±∞; NaN stops it here as well, since no B helps).
pub fn first_overflow(
    input: &PassInput,
    order: &[usize],
    plan: &ActivationPlan,
    searched: [bool; 2],
) -> Result<Option<Overflow>, String> {
    let graph = input.graph;
    let shape = graph.input;
    let config = LoaderConfig {
        batch_size: input.batch_size,
        normalize: input.normalize,
        prefetch: 2,
    };
    let mut images_run = 0;
    for batch in Loader::new(input.dataset.clone(), order.to_vec(), config) {
        images_run += batch.len() + batch.failures.len();
        if batch.is_empty() {
            continue;
        }
        let images = Batch::new(batch.len(), Shape::new(shape.c, shape.h, shape.w), batch.data)?;
        let out = input.backend.run(graph, &images, plan)?;
        let overflowed = out
            .sites
            .iter()
            .zip(&graph.sites)
            .zip(&plan.modes)
            .find(|((stats, site), mode)| {
                let kind_searched = searched[(site.kind == SiteKind::MaxPool) as usize];
                kind_searched && mode.uses_bound() && (stats.out_of_range > 0 || stats.non_finite > 0)
            });
        if let Some(((stats, site), _)) = overflowed {
            return Ok(Some(Overflow {
                kind: kind_name(site.kind),
                site: site.name.clone(),
                max_abs: if stats.non_finite > 0 {
                    f64::INFINITY
                } else {
                    stats.max_abs as f64
                },
                images: batch.indices.clone(),
                images_run,
            }));
        }
    }
    Ok(None)
}

/// `bounds` with every site of a searched kind set to that kind's B.
pub fn with_searched_bounds(graph: &Graph, bounds: &Bounds, relu: f64, maxpool: f64) -> Bounds {
    let mut out = bounds.clone();
    for (b, site) in out.per_site.iter_mut().zip(&graph.sites) {
        match (site.kind, &bounds.relu_rule, &bounds.maxpool_rule) {
            (SiteKind::Relu, BoundRule::Search { .. }, _) => b.bound = relu,
            (SiteKind::MaxPool, _, BoundRule::Search { .. }) => b.bound = maxpool,
            _ => {}
        }
    }
    out
}

/// Top-1 and top-5 hits of one configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Hits {
    pub top1: u64,
    pub top5: u64,
}

/// Counts of one approximate configuration over the images seen.
#[derive(Clone, Debug, Serialize)]
pub struct ApproxTally {
    pub label: String,
    pub alpha: u32,
    pub hits: Hits,
    /// Images whose approximate top-1 equals the exact top-1.
    pub agree: u64,
    pub sites: Vec<SiteStats>,
}

/// Everything counted in a pass.
#[derive(Clone, Debug, Serialize)]
pub struct Tally {
    pub images: u64,
    pub exact: Hits,
    pub exact_sites: Vec<SiteStats>,
    pub approx: Vec<ApproxTally>,
    /// Images that could not be decoded: (source, error).
    pub failures: Vec<(String, String)>,
    pub seconds: f64,
}

impl Tally {
    fn new(graph: &Graph, configs: &[ApproxConfig]) -> Tally {
        let empty = || {
            graph
                .sites
                .iter()
                .map(|s| SiteStats::new(&s.name, s.kind))
                .collect::<Vec<_>>()
        };
        Tally {
            images: 0,
            exact: Hits::default(),
            exact_sites: empty(),
            approx: configs
                .iter()
                .map(|c| ApproxTally {
                    label: c.label.clone(),
                    alpha: c.alpha,
                    hits: Hits::default(),
                    agree: 0,
                    sites: empty(),
                })
                .collect(),
            failures: Vec::new(),
            seconds: 0.0,
        }
    }

    pub fn images_per_second(&self) -> f64 {
        self.images as f64 / self.seconds.max(1e-9)
    }
}

/// The ranks of the 5 largest logits of each row (NaN never ranks).
pub fn top5(logits: &[f32], classes: usize) -> Vec<Vec<usize>> {
    logits
        .chunks_exact(classes)
        .map(|row| {
            let mut order: Vec<usize> = (0..classes).filter(|&i| !row[i].is_nan()).collect();
            order.sort_by(|&a, &b| row[b].partial_cmp(&row[a]).expect("no NaN").then(a.cmp(&b)));
            order.truncate(5);
            order
        })
        .collect()
}

fn hits(ranked: &[Vec<usize>], labels: &[usize]) -> Hits {
    let mut h = Hits::default();
    for (r, &l) in ranked.iter().zip(labels) {
        h.top1 += (r.first() == Some(&l)) as u64;
        h.top5 += r.contains(&l) as u64;
    }
    h
}

/// What a pass needs besides the configurations.
pub struct PassInput<'a> {
    pub graph: &'a Graph,
    pub backend: &'a Backend<'a>,
    pub dataset: Arc<dyn Dataset>,
    pub normalize: Normalize,
    pub indices: Vec<usize>,
    pub batch_size: usize,
    /// Shown while running (e.g. "exact statistics", "evaluation").
    pub title: String,
}

/// One pass: every batch through the exact network and each plan; counts accumulated.
pub fn evaluate(input: &PassInput, configs: &[ApproxConfig], plans: &[ActivationPlan]) -> Result<Tally, String> {
    let graph = input.graph;
    let exact_plan = ActivationPlan::exact(graph);
    let mut tally = Tally::new(graph, configs);
    let shape = graph.input;
    let data_shape = input.dataset.shape();
    if [shape.c, shape.h, shape.w] != data_shape {
        return Err(format!(
            "{} takes {}x{}x{} images but the dataset gives {}x{}x{}",
            graph.name, shape.c, shape.h, shape.w, data_shape[0], data_shape[1], data_shape[2]
        ));
    }
    let progress = progress_bar(input.indices.len() as u64, &input.title);
    let config = LoaderConfig {
        batch_size: input.batch_size,
        normalize: input.normalize,
        prefetch: 2,
    };
    let start = Instant::now();
    for batch in Loader::new(input.dataset.clone(), input.indices.clone(), config) {
        tally
            .failures
            .extend(batch.failures.iter().map(|f| (f.source.clone(), f.error.to_string())));
        progress.inc(batch.failures.len() as u64);
        if batch.is_empty() {
            continue;
        }
        let images = Batch::new(batch.len(), Shape::new(shape.c, shape.h, shape.w), batch.data)?;
        let exact = input.backend.run(graph, &images, &exact_plan)?;
        let exact_ranked = top5(&exact.logits, exact.classes);
        add_hits(&mut tally.exact, hits(&exact_ranked, &batch.labels));
        merge_sites(&mut tally.exact_sites, &exact.sites);
        for (approx_tally, plan) in tally.approx.iter_mut().zip(plans) {
            let approx = input.backend.run(graph, &images, plan)?;
            let ranked = top5(&approx.logits, approx.classes);
            add_hits(&mut approx_tally.hits, hits(&ranked, &batch.labels));
            approx_tally.agree += ranked
                .iter()
                .zip(&exact_ranked)
                .filter(|(a, e)| a.first() == e.first())
                .count() as u64;
            merge_sites(&mut approx_tally.sites, &approx.sites);
        }
        tally.images += images.n as u64;
        progress.inc(images.n as u64);
    }
    progress.finish_and_clear();
    tally.seconds = start.elapsed().as_secs_f64();
    Ok(tally)
}

fn add_hits(total: &mut Hits, h: Hits) {
    total.top1 += h.top1;
    total.top5 += h.top5;
}

fn merge_sites(total: &mut [SiteStats], batch: &[SiteStats]) {
    total.iter_mut().zip(batch).for_each(|(t, b)| t.merge(b));
}

fn progress_bar(len: u64, title: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    let style = indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} images  {per_sec}  ETA {eta}")
        .expect("valid template")
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(title.to_string());
    bar
}
