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
pub mod report;
pub mod shard;

use crate::cpu::{self, ActivationPlan, RunOutput, SiteMode, SiteStats};
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

/// Whether a kind of activation is approximated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Exact,
    Approx,
}

/// How the bound B of approximate sites is chosen.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
#[serde(tag = "rule", rename_all = "lowercase")]
pub enum BoundRule {
    /// One global B (the paper's setting).
    Fixed { bound: f64 },
    /// The paper's procedure: the smallest B = start + k·step with no exact activation outside
    /// [-B, B], from one statistics pass over the whole dataset.
    Search { start: f64, step: f64 },
    /// Per site: max |x| over the first `images` images times `margin`.
    Calibrate { margin: f64, images: usize },
}

impl BoundRule {
    /// "50", "search", "search:50:5", "calibrate", "calibrate:1.2".
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
            ["calibrate"] => Ok(BoundRule::Calibrate { margin: 1.1, images: 0 }),
            ["calibrate", margin] => Ok(BoundRule::Calibrate {
                margin: number(margin, "margin")?,
                images: 0,
            }),
            [value] => Ok(BoundRule::Fixed {
                bound: number(value, "value")?,
            }),
            _ => Err(format!(
                "bound '{s}': expected a number, search[:START:STEP] or calibrate[:MARGIN]"
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
                    BoundRule::Search { .. } => stats
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
                BoundRule::Search { start, step } => {
                    let max = observed("search")?;
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
    })
}

/// The activation plan of one approximate configuration with these bounds.
pub fn approx_plan<'a>(graph: &Graph, config: &ApproxConfig<'a>, bounds: &Bounds) -> ActivationPlan<'a> {
    let modes = graph
        .sites
        .iter()
        .zip(&bounds.per_site)
        .map(|(site, b)| {
            let mode = if site.kind == SiteKind::Relu {
                config.relu
            } else {
                config.maxpool
            };
            match mode {
                Mode::Exact => SiteMode::Exact,
                Mode::Approx => SiteMode::approx(config.composite, config.alpha, b.bound).clamped(config.clamp),
            }
        })
        .collect();
    ActivationPlan { modes }
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
