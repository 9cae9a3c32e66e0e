//! Per-layer precision plans: a precision α (and a bound B) per activation site instead of the
//! paper's one α for the whole network, chosen to minimise the homomorphic cost while the
//! approximate network's top-1 stays within a budget of the exact network's.
//!
//! Cost model: `model::cost` (a site costs `evaluations × non-scalar multiplications` of its
//! α's composite; depth is the activations' multiplicative depth on the critical path).
//!
//! Search ([`search_plan`]), every step a single pass of [`evaluate`] over the calibration split
//! that runs many candidate plans per batch:
//! 1. B per site from an exact statistics pass: max |x| on the calibration images × margin.
//! 2. Uniform pass: every candidate α everywhere, with the same per-site B; the uniform baseline
//!    is the cheapest α among those from which every higher α is within budget.
//! 3. Rounds: (a) sensitivity pass: from the current plan, each site alone lowered by 1..=`STEP`
//!    levels; (b) the single moves are ordered greedily by HE multiplications saved per image
//!    lost (assuming losses add up), and the prefixes of that order, as whole plans, are measured in
//!    one pass; the cheapest prefix within budget becomes the current plan. Stops when a round
//!    finds nothing cheaper.
//! 4. Held-out pass: exact, uniform baseline and plan on the images after the calibration split.
//!
//! A candidate is acceptable when a one-sided 95 % upper confidence bound of its top-1 drop
//! against exact on the calibration split, from the paired flips (`eval::paired`: exact right →
//! approximation wrong against the reverse), is within budget, and none of its activations
//! became non-finite (a polynomial fed far beyond its B diverges). The held-out drop is reported
//! with its 95 % interval.
//!
//! Objective: non-scalar multiplications per image; with a CKKS preset, bootstrapped ciphertexts
//! per image of the optimal placement (`he`) first, multiplications breaking ties. Candidate
//! degree lists per α come from `poly::degrees::degrees_for` (the paper's, the optimizer's, or
//! the paper's where it has one; α up to 20).
//!
//! The plan is a JSON file ([`PrecisionPlan`]) that `polycnn eval --plan` runs
//! ([`super::prepared_plan::PreparedPlan`]).

use super::bounds::{BoundRule, choose_bounds};
use super::config::{ApproxConfig, Mode};
use super::dataset::open_dataset;
use super::paired::Flips;
use super::pass::{PassInput, evaluate};
use super::plan_file::{PlanCkks, PlanCost, PrecisionPlan, SearchSummary, SitePlan, SplitAccuracy, plan_cost};
use super::preprocess::checkpoint_warnings;
use super::request::EvalRequest;
use crate::cpu::CpuBackend;
use crate::data::select::spread_and_rest;
use crate::data::{Dataset, Normalize};
use crate::exec::{ActivationPlan, Backend, Precision, Progress, SiteMode};
use crate::he::{CkksPreset, ckks_cost};
use crate::model::cost::{SitePrecision, SiteShape, network_cost, site_shapes};
use crate::model::{Graph, NetworkDescriptor};
use crate::poly::degrees::{DegreeLists, degrees_for};
use crate::poly::{Composite, optimise_eps};
use crate::weights::sha256::{hex, sha256_file};
use std::sync::Arc;
use std::time::Instant;

type AnyError = Box<dyn std::error::Error>;

/// How far below its current α one site is tried in a sensitivity pass.
const STEP: usize = 3;
/// Most prefix plans measured in one verification pass.
const MAX_PREFIXES: usize = 30;
/// Confidence of the one-sided bound a candidate's drop must keep within budget.
const CONFIDENCE: f64 = 0.95;
/// Weight of one bootstrapped ciphertext against one multiplication when ranking savings: any
/// ciphertext saved outweighs the multiplications of a network (10^7..10^9 per image).
const CIPHERTEXT_WEIGHT: f64 = 1e12;

/// A candidate precision: α, its composite and its HE cost per evaluation.
struct Level {
    alpha: u32,
    degrees: Vec<usize>,
    composite: Composite,
}

fn candidate_levels(alphas: &[u32], lists: DegreeLists) -> Result<Vec<Level>, AnyError> {
    let mut alphas = alphas.to_vec();
    alphas.sort_unstable();
    alphas.dedup();
    alphas
        .into_iter()
        .map(|alpha| {
            let degrees = degrees_for(alpha, lists)?;
            Ok(Level {
                alpha,
                degrees: degrees.to_vec(),
                composite: optimise_eps(degrees)?.composite,
            })
        })
        .collect()
}

/// What `polycnn plan` needs.
#[derive(Clone, Debug)]
pub struct PlanRequest {
    /// Model, weights, data (labels, class index, cache), batch size and image limit.
    pub eval: EvalRequest,
    /// Allowed top-1 drop against exact on the calibration split, percentage points.
    pub budget: f64,
    /// Candidate α, with their degree lists from `lists`.
    pub alphas: Vec<u32>,
    pub lists: DegreeLists,
    /// Minimise bootstrapped ciphertexts under these CKKS parameters.
    pub ckks: Option<CkksPreset>,
    /// This many images, spread evenly over the evaluated ones, are the calibration split; the
    /// rest (up to the limit) the held-out one.
    pub calibration_images: usize,
    /// B = max |x| on the calibration split × margin.
    pub margin: f64,
    /// Greedy rounds at most.
    pub rounds: usize,
}

/// Runs candidate plans (a level index per site) over a split, counting top-1 hits.
struct Searcher<'a> {
    graph: &'a Graph,
    backend: &'a dyn Backend,
    progress: &'a dyn Progress,
    dataset: Arc<dyn Dataset>,
    normalize: Normalize,
    batch: usize,
    levels: &'a [Level],
    bounds: Vec<f64>,
    shapes: Vec<SiteShape>,
    ckks: Option<CkksPreset>,
    plans_evaluated: u64,
}

/// What the search minimises, in order: bootstrapped ciphertexts (0 without a preset), then
/// non-scalar multiplications.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Objective {
    ciphertexts: u64,
    mults: u64,
}

/// Top-1 hits of the exact network and of each candidate over a split, and each candidate's
/// activations beyond B and non-finite ones (summed over its sites).
struct Measured {
    images: u64,
    exact: u64,
    candidates: Vec<u64>,
    out_of_range: Vec<u64>,
    non_finite: Vec<u64>,
    flips: Vec<Flips>,
}

impl Measured {
    fn percent(&self, hits: u64) -> f64 {
        100.0 * hits as f64 / self.images.max(1) as f64
    }

    /// Candidate `i`'s drop is within budget at 95 % confidence and it never blew up (a
    /// polynomial fed far beyond its bound diverges; a plan that does so on calibration images
    /// does so more on others).
    fn acceptable(&self, i: usize, budget: f64) -> bool {
        self.non_finite[i] == 0 && self.flips[i].drop_upper_bound(CONFIDENCE) <= budget + 1e-9
    }
}

type Assignment = Vec<usize>;

impl Searcher<'_> {
    fn activation_plan(&self, assignment: &[usize]) -> ActivationPlan<'_> {
        let modes = assignment
            .iter()
            .zip(&self.bounds)
            .map(|(&l, &bound)| SiteMode::approx(&self.levels[l].composite, self.levels[l].alpha, bound))
            .collect();
        ActivationPlan { modes, noise: None }
    }

    fn pass(&self, indices: &[usize], title: String) -> PassInput<'_> {
        PassInput {
            graph: self.graph,
            backend: self.backend,
            progress: self.progress,
            dataset: self.dataset.clone(),
            normalize: self.normalize,
            indices: indices.to_vec(),
            batch_size: self.batch,
            title,
        }
    }

    fn measure(&mut self, indices: &[usize], candidates: &[Assignment], title: &str) -> Result<Measured, String> {
        let configs: Vec<ApproxConfig> = (0..candidates.len())
            .map(|i| ApproxConfig {
                label: format!("candidate {i}"),
                alpha: 0,
                composite: &self.levels[0].composite,
                relu: Mode::Approx,
                maxpool: Mode::Approx,
                clamp: false,
                precision: Precision::default(),
            })
            .collect();
        let plans: Vec<ActivationPlan> = candidates.iter().map(|a| self.activation_plan(a)).collect();
        let title = format!("{title} ({} plans)", candidates.len());
        let tally = evaluate(&self.pass(indices, title), &configs, &plans)?;
        if !tally.failures.is_empty() {
            return Err(format!(
                "{} images could not be read (e.g. {}: {})",
                tally.failures.len(),
                tally.failures[0].0,
                tally.failures[0].1
            ));
        }
        self.plans_evaluated += candidates.len() as u64;
        Ok(Measured {
            images: tally.images,
            exact: tally.exact.top1,
            candidates: tally.approx.iter().map(|a| a.hits.top1).collect(),
            out_of_range: tally
                .approx
                .iter()
                .map(|a| a.sites.iter().map(|s| s.out_of_range).sum())
                .collect(),
            non_finite: tally
                .approx
                .iter()
                .map(|a| a.sites.iter().map(|s| s.non_finite).sum())
                .collect(),
            flips: tally.approx.iter().map(|a| Flips::from(a.paired)).collect(),
        })
    }

    /// HE multiplications per image of one site at one level.
    fn site_mults(&self, site: usize, level: usize) -> u64 {
        self.shapes[site].nonscalar_mults(&self.levels[level].degrees)
    }

    fn site_precisions(&self, assignment: &[usize]) -> Vec<SitePrecision> {
        assignment
            .iter()
            .map(|&l| SitePrecision::Approx {
                alpha: Some(self.levels[l].alpha),
                degrees: self.levels[l].degrees.clone(),
            })
            .collect()
    }

    /// The optimal placement's bootstrapped ciphertexts and points; `None` when no placement
    /// exists (a stage deeper than the levels a bootstrap gives).
    fn bootstraps(&self, assignment: &[usize], preset: &CkksPreset) -> Option<(u64, u32)> {
        ckks_cost(self.graph, &self.site_precisions(assignment), preset)
            .ok()
            .map(|c| (c.optimal.bootstrapped_ciphertexts, c.optimal.bootstrap_points))
    }

    fn objective(&self, assignment: &[usize]) -> Objective {
        Objective {
            ciphertexts: self
                .ckks
                .as_ref()
                .map_or(0, |p| self.bootstraps(assignment, p).map_or(u64::MAX, |b| b.0)),
            mults: (0..assignment.len()).map(|s| self.site_mults(s, assignment[s])).sum(),
        }
    }

    /// What the search minimises for `plan`, against `uniform`: bootstrapped ciphertexts under
    /// CKKS parameters, non-scalar multiplications otherwise.
    fn describe_saving(&self, plan: &[usize], uniform: &[usize]) -> String {
        let (o, u) = (self.objective(plan), self.objective(uniform));
        let percent = |a: u64, b: u64| 100.0 * a as f64 / b.max(1) as f64;
        match self.ckks {
            Some(_) => format!(
                "{} bootstrapped ciphertexts per image ({:.1}% of uniform), {} non-scalar mults",
                o.ciphertexts,
                percent(o.ciphertexts, u.ciphertexts),
                o.mults
            ),
            None => format!(
                "{} non-scalar mults per image ({:.1}% of uniform)",
                o.mults,
                percent(o.mults, u.mults)
            ),
        }
    }

    /// The objective as one number, for ranking savings.
    fn score(&self, assignment: &[usize]) -> f64 {
        let o = self.objective(assignment);
        o.ciphertexts as f64 * CIPHERTEXT_WEIGHT + o.mults as f64
    }

    fn cost(&self, assignment: &[usize]) -> PlanCost {
        let precisions: Vec<SitePrecision> = assignment
            .iter()
            .map(|&l| SitePrecision::Approx {
                alpha: Some(self.levels[l].alpha),
                degrees: self.levels[l].degrees.clone(),
            })
            .collect();
        let cost = network_cost(self.graph, &precisions).expect("the paper's degree lists fit the cost model");
        PlanCost {
            nonscalar_mults: cost.nonscalar_mults,
            depth: cost.critical_depth,
        }
    }
}

/// Single-site lowerings of `current`: (site, level) with level 1..=STEP below the site's and a
/// strictly lower objective (the cost is not monotone in α: the paper's α=5 composite, one
/// degree-13 stage, needs more multiplications than α=6's [3, 7]).
fn single_moves(searcher: &Searcher, current: &[usize]) -> Vec<(usize, usize)> {
    let now = searcher.objective(current);
    current
        .iter()
        .enumerate()
        .flat_map(|(s, &l)| (l.saturating_sub(STEP)..l).map(move |lower| (s, lower)))
        .filter(|&(s, lower)| searcher.objective(&with_move(current, s, lower)) < now)
        .collect()
}

fn with_move(plan: &[usize], site: usize, level: usize) -> Assignment {
    let mut next = plan.to_vec();
    next[site] = level;
    next
}

/// Greedy order of the measured single moves: repeatedly the move with the most objective
/// saved per image lost (a move's loss is its measured drop from `current`, losses assumed to
/// add). Returns the prefixes as whole plans with their predicted loss in images.
fn greedy_prefixes(
    searcher: &Searcher,
    current: &[usize],
    moves: &[(usize, usize)],
    losses: &[u64],
) -> Vec<(Assignment, u64)> {
    let mut plan = current.to_vec();
    let mut lost = vec![0u64; current.len()];
    let mut predicted = 0u64;
    let mut prefixes = Vec::new();
    loop {
        let now = searcher.score(&plan);
        let best = moves
            .iter()
            .zip(losses)
            .filter_map(|(&(s, l), &loss)| {
                let saved = now - searcher.score(&with_move(&plan, s, l));
                let extra = loss.saturating_sub(lost[s]);
                (saved > 0.0).then_some((saved / (extra as f64 + 0.5), s, l, loss, extra))
            })
            .max_by(|a, b| a.0.total_cmp(&b.0));
        let Some((_, s, l, loss, extra)) = best else { break };
        plan[s] = l;
        lost[s] = lost[s].max(loss);
        predicted += extra;
        prefixes.push((plan.clone(), predicted));
    }
    prefixes
}

/// At most `max` of `items`, evenly spread, the first always kept.
fn spread<T: Clone>(items: &[T], max: usize) -> Vec<T> {
    if items.len() <= max {
        return items.to_vec();
    }
    (0..max).map(|i| items[i * items.len() / max].clone()).collect()
}

/// What `eval` warns of in its report about this checkpoint and preprocessing (e.g. torchvision
/// V2 weights at the V1 resize): a plan tuned under the wrong preprocessing is as misleading.
fn checkpoint_warnings_of(req: &EvalRequest, network: &NetworkDescriptor) -> Result<Vec<String>, AnyError> {
    let Some(file) = req.model.weights_file() else {
        return Ok(Vec::new());
    };
    let preprocessing = req.preprocessing.apply(network)?;
    let sha256 = hex(&sha256_file(file).map_err(|e| format!("{}: {e}", file.display()))?);
    Ok(checkpoint_warnings(
        &file.display().to_string(),
        &sha256,
        &preprocessing,
    ))
}

/// The precision plan search (see the module docs); logs each round's result. Returns the plan
/// and the network's graph it was searched on (for [`format_plan`], without loading the
/// weights again).
pub fn search_plan(req: &PlanRequest, progress: &dyn Progress) -> Result<(PrecisionPlan, Graph), AnyError> {
    let start = Instant::now();
    if !(req.budget.is_finite() && req.budget >= 0.0) {
        return Err(format!(
            "--budget {}: expected a non-negative number of percentage points",
            req.budget
        )
        .into());
    }
    if !(req.margin.is_finite() && req.margin > 0.0) {
        return Err(format!("--margin {}: expected a positive factor", req.margin).into());
    }
    let network = req.eval.model.open()?;
    let graph = network.graph;
    let (dataset, normalize) = open_dataset(&req.eval, &network.descriptor)?;
    for warning in checkpoint_warnings_of(&req.eval, &network.descriptor)? {
        log::warn!("{warning}");
    }
    let count = req.eval.limit.map_or(dataset.len(), |l| l.min(dataset.len()));
    if req.calibration_images == 0 || req.calibration_images >= count {
        return Err(format!(
            "--calibration {}: needs at least one image and fewer than the {count} evaluated, the rest being the held-out split",
            req.calibration_images
        )
        .into());
    }
    let levels = candidate_levels(&req.alphas, req.lists)?;
    let (calibration, held_out) = spread_and_rest(count, req.calibration_images);
    let mut searcher = Searcher {
        graph: &graph,
        backend: &CpuBackend::new(&graph),
        progress,
        dataset,
        normalize,
        batch: req.eval.batch,
        levels: &levels,
        bounds: Vec::new(),
        shapes: site_shapes(&graph)?,
        ckks: req.ckks.clone(),
        plans_evaluated: 0,
    };
    if let Some(preset) = &req.ckks {
        let top = vec![levels.len() - 1; graph.sites.len()];
        ckks_cost(&graph, &searcher.site_precisions(&top), preset).map_err(|e| {
            format!(
                "α={} everywhere under {}: {e}",
                levels[levels.len() - 1].alpha,
                preset.name
            )
        })?;
    }
    let rule = BoundRule::Calibrate {
        margin: req.margin,
        images: calibration.len(),
    };
    let stats = evaluate(&searcher.pass(&calibration, "range statistics".into()), &[], &[])?;
    let bounds = choose_bounds(&graph, &rule, &rule, Some(&stats.exact_sites))?;
    searcher.bounds = bounds.per_site.iter().map(|b| b.bound).collect();

    let sites = graph.sites.len();
    let uniform_plans: Vec<Assignment> = (0..levels.len()).map(|l| vec![l; sites]).collect();
    let uniform = searcher.measure(&calibration, &uniform_plans, "uniform α")?;
    let top = levels.len() - 1;
    if !uniform.acceptable(top, req.budget) {
        return Err(format!(
            "even α={} everywhere loses {:.2} points of top-1 on the calibration split (95 % upper bound {:.2}; \
             budget {}; {} non-finite activations): try a larger --margin or budget, or more calibration images",
            levels[top].alpha,
            uniform.flips[top].drop_points(),
            uniform.flips[top].drop_upper_bound(CONFIDENCE),
            req.budget,
            uniform.non_finite[top]
        )
        .into());
    }
    // the cheapest α among those from which every higher α is within budget
    let u = (0..=top)
        .rev()
        .take_while(|&l| uniform.acceptable(l, req.budget))
        .min_by_key(|&l| searcher.objective(&uniform_plans[l]))
        .expect("the top level is within budget");
    log::info!(
        "exact top-1 {:.2}%; uniform α={} (cheapest within budget) {:.2}%",
        uniform.percent(uniform.exact),
        levels[u].alpha,
        uniform.percent(uniform.candidates[u])
    );
    let mut current = uniform_plans[u].clone();
    let mut current_hits = uniform.candidates[u];
    let mut current_ranges = (uniform.out_of_range[u], uniform.non_finite[u]);
    let mut current_flips = uniform.flips[u];
    for round in 1..=req.rounds {
        let moves = single_moves(&searcher, &current);
        if moves.is_empty() {
            break;
        }
        let candidates: Vec<Assignment> = moves
            .iter()
            .map(|&(s, l)| {
                let mut a = current.clone();
                a[s] = l;
                a
            })
            .collect();
        let singles = searcher.measure(&calibration, &candidates, &format!("round {round}: single sites"))?;
        let losses: Vec<u64> = singles
            .candidates
            .iter()
            .map(|&h| current_hits.saturating_sub(h))
            .collect();
        let budget_images = (req.budget * singles.images as f64 / 100.0).floor() as u64;
        let prefixes: Vec<Assignment> = greedy_prefixes(&searcher, &current, &moves, &losses)
            .into_iter()
            .filter(|(_, predicted)| *predicted <= 2 * budget_images + 2)
            .map(|(a, _)| a)
            .collect();
        let prefixes = spread(&prefixes, MAX_PREFIXES);
        if prefixes.is_empty() {
            break;
        }
        let measured = searcher.measure(&calibration, &prefixes, &format!("round {round}: combined"))?;
        let best = (0..prefixes.len())
            .filter(|&i| measured.acceptable(i, req.budget))
            .min_by_key(|&i| searcher.objective(&prefixes[i]));
        let Some(best) = best else { break };
        let (plan, hits) = (&prefixes[best], measured.candidates[best]);
        if searcher.objective(plan) >= searcher.objective(&current) {
            break;
        }
        current = plan.clone();
        current_hits = hits;
        current_ranges = (measured.out_of_range[best], measured.non_finite[best]);
        current_flips = measured.flips[best];
        log::info!(
            "round {round}: {}, top-1 {:.2}%",
            searcher.describe_saving(&current, &uniform_plans[u]),
            measured.percent(hits)
        );
    }
    let held = searcher.measure(
        &held_out,
        &[uniform_plans[u].clone(), current.clone()],
        "held-out split",
    )?;
    let (cost, uniform_cost) = (searcher.cost(&current), searcher.cost(&uniform_plans[u]));
    let split =
        |m: &Measured, uniform_hits: u64, plan_hits: u64, (out_of_range, non_finite): (u64, u64), flips: Flips| {
            SplitAccuracy {
                images: m.images,
                exact_top1: m.percent(m.exact),
                uniform_top1: m.percent(uniform_hits),
                plan_top1: m.percent(plan_hits),
                plan_out_of_range: out_of_range,
                plan_non_finite: non_finite,
                plan_drop: Some(flips.drop_interval(CONFIDENCE)),
                plan_drop_upper: Some(flips.drop_upper_bound(CONFIDENCE)),
            }
        };
    let ckks = req.ckks.as_ref().and_then(|preset| {
        let (plan, uniform) = (
            searcher.bootstraps(&current, preset)?,
            searcher.bootstraps(&uniform_plans[u], preset)?,
        );
        Some(PlanCkks {
            preset: preset.name.clone(),
            bootstrapped_ciphertexts: plan.0,
            bootstrap_points: plan.1,
            uniform_bootstrapped_ciphertexts: uniform.0,
            uniform_bootstrap_points: uniform.1,
            saving_percent: 100.0 * (1.0 - plan.0 as f64 / uniform.0.max(1) as f64),
        })
    });
    let summary = SearchSummary {
        weights: req
            .eval
            .model
            .weights_file()
            .map_or_else(String::new, |p| p.display().to_string()),
        data: req.eval.data.display().to_string(),
        budget: req.budget,
        alphas: levels.iter().map(|l| l.alpha).collect(),
        uniform_alpha: levels[u].alpha,
        cost,
        uniform_cost,
        saving_percent: 100.0 * (1.0 - cost.nonscalar_mults as f64 / uniform_cost.nonscalar_mults.max(1) as f64),
        calibration: split(
            &uniform,
            uniform.candidates[u],
            current_hits,
            current_ranges,
            current_flips,
        ),
        held_out: split(
            &held,
            held.candidates[0],
            held.candidates[1],
            (held.out_of_range[1], held.non_finite[1]),
            held.flips[1],
        ),
        plans_evaluated: searcher.plans_evaluated,
        ckks,
        seconds: start.elapsed().as_secs_f64(),
    };
    let sites = graph
        .sites
        .iter()
        .zip(&bounds.per_site)
        .zip(&current)
        .map(|((site, b), &l)| SitePlan {
            site: site.name.clone(),
            kind: b.kind.to_string(),
            alpha: levels[l].alpha,
            degrees: levels[l].degrees.clone(),
            bound: b.bound,
        })
        .collect();
    let plan = PrecisionPlan {
        model: graph.name.clone(),
        bound_rule: rule,
        sites,
        search: Some(summary),
    };
    Ok((plan, graph))
}

/// The plan as a table: per site α, B and multiplications, then the totals and accuracies.
pub fn format_plan(plan: &PrecisionPlan, graph: &Graph) -> Result<String, String> {
    let shapes = site_shapes(graph).map_err(|e| e.to_string())?;
    let mut out = format!("precision plan for {} ({})\n", plan.model, plan.alpha_range());
    out += "  site                      kind      evaluations    α  degrees          B   non-scalar mults\n";
    for (s, shape) in plan.sites.iter().zip(&shapes) {
        let mults = shape.nonscalar_mults(&s.degrees);
        out += &format!(
            "  {:<24}  {:<8}  {:>11}  {:>3}  {:<12}  {:>8.3}  {:>16}\n",
            s.site,
            s.kind,
            shape.evaluations,
            s.alpha,
            format!("{:?}", s.degrees),
            s.bound,
            mults
        );
    }
    let cost = plan_cost(graph, plan).map_err(|e| e.to_string())?;
    out += &format!(
        "  total per image: {} non-scalar mults, activation depth {}\n",
        cost.nonscalar_mults, cost.depth
    );
    if let Some(s) = &plan.search {
        out += &format!(
            "  uniform α={}: {} non-scalar mults, depth {} → plan saves {:.1}% of the multiplications\n",
            s.uniform_alpha, s.uniform_cost.nonscalar_mults, s.uniform_cost.depth, s.saving_percent
        );
        out += "  split           images   exact top-1   uniform top-1   plan top-1   plan |x|>B   plan NaN/inf\n";
        for (name, a) in [("calibration", &s.calibration), ("held-out", &s.held_out)] {
            out += &format!(
                "  {name:<14} {:>7}   {:>10.2}%   {:>12.2}%   {:>9.2}%   {:>10}   {:>12}\n",
                a.images, a.exact_top1, a.uniform_top1, a.plan_top1, a.plan_out_of_range, a.plan_non_finite
            );
        }
        for (name, a) in [("calibration", &s.calibration), ("held-out", &s.held_out)] {
            if let (Some(d), Some(upper)) = (a.plan_drop, a.plan_drop_upper) {
                out += &format!(
                    "  {name:<14} plan drop vs exact {:+.2} points, 95 % interval [{:+.2}, {:+.2}], 95 % upper bound {:+.2}\n",
                    d.drop, d.lower, d.upper, upper
                );
            }
        }
        if let Some(c) = &s.ckks {
            out += &format!(
                "  CKKS {}: plan {} bootstrapped ciphertexts ({} points) per image, uniform α={} {} ({} points) → {:.1}% fewer\n",
                c.preset,
                c.bootstrapped_ciphertexts,
                c.bootstrap_points,
                s.uniform_alpha,
                c.uniform_bootstrapped_ciphertexts,
                c.uniform_bootstrap_points,
                c.saving_percent
            );
        }
        out += &format!(
            "  budget {} points on the calibration split (95 % upper bound of the paired drop); {} candidate plans in {:.0} s\n",
            s.budget, s.plans_evaluated, s.seconds
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::prepared_plan::PreparedPlan;
    use crate::model::{self, Arch, Op, SiteKind};
    use crate::poly::cost::relu_cost;
    use crate::poly::paper_degrees;

    fn uniform_plan(graph: &Graph, alpha: u32) -> PrecisionPlan {
        PrecisionPlan {
            model: graph.name.clone(),
            bound_rule: BoundRule::Fixed { bound: 10.0 },
            sites: graph
                .sites
                .iter()
                .map(|s| SitePlan {
                    site: s.name.clone(),
                    kind: if s.kind == SiteKind::Relu { "relu" } else { "maxpool" }.into(),
                    alpha,
                    degrees: paper_degrees(alpha).unwrap().to_vec(),
                    bound: 10.0,
                })
                .collect(),
            search: None,
        }
    }

    #[test]
    fn a_v2_checkpoint_at_the_v1_resize_is_warned_of_and_the_v2_resize_is_not() {
        let dir = std::env::temp_dir().join(format!("polycnn-plan-v2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // torchvision's IMAGENET1K_V2 ResNet-50 file name; the content does not matter here
        let weights = dir.join("resnet50-11ad3fa6.pth");
        std::fs::write(&weights, b"not read").unwrap();
        let mut req = EvalRequest::new(Arch::ResNet(50), weights, dir.clone());
        let descriptor = Arch::ResNet(50).descriptor();
        let warnings = checkpoint_warnings_of(&req, &descriptor).unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("232"), "{}", warnings[0]);
        req.preprocessing.resize = Some(232);
        assert!(checkpoint_warnings_of(&req, &descriptor).unwrap().is_empty());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn resnet20_cost_counts_every_relu_element() {
        // ResNet-20: the stem ReLU and 2 per block, 3 stages of 3 blocks at 16x32x32, 32x16x16, 64x8x8
        let graph = model::random(Arch::CifarResNet(20), 1).unwrap();
        let plan = uniform_plan(&graph, 7);
        let per = relu_cost(&[7, 7]);
        let elements = 16 * 32 * 32 * 7 + 32 * 16 * 16 * 6 + 64 * 8 * 8 * 6;
        let cost = plan_cost(&graph, &plan).unwrap();
        assert_eq!(cost.nonscalar_mults, elements * per.nonscalar_mults as u64);
        // every ReLU is on the main path (shortcuts join before the block's second ReLU)
        assert_eq!(cost.depth, 19 * per.depth);
    }

    #[test]
    fn max_pool_sites_cost_a_tree_of_maxima() {
        let graph = model::random(Arch::DigitsCnn, 1).unwrap();
        let shapes = site_shapes(&graph).unwrap();
        let out = graph.shapes().unwrap();
        for (site, shape) in graph.sites.iter().zip(&shapes) {
            if let Op::MaxPool { pool, .. } = &graph.nodes[site.node].op {
                let window = pool.taps();
                assert_eq!(shape.evaluations, (out[site.node].numel() * (window - 1)) as u64);
                assert_eq!(1u64 << shape.levels, (window as u64).next_power_of_two());
            }
        }
        assert!(shapes.iter().any(|s| s.kind == SiteKind::MaxPool));
    }

    #[test]
    fn plan_json_round_trips_and_bad_plans_name_the_site() {
        let graph = model::random(Arch::DigitsCnn, 1).unwrap();
        let mut plan = uniform_plan(&graph, 8);
        plan.sites[0].alpha = 5;
        plan.sites[0].degrees = vec![13];
        plan.sites[0].bound = 3.0625;
        let text = serde_json::to_string_pretty(&plan).unwrap();
        let back: PrecisionPlan = serde_json::from_str(&text).unwrap();
        assert_eq!(back, plan);
        let prepared = PreparedPlan::new(&back, &graph).unwrap();
        let modes = prepared.activation_plan(false).modes;
        assert!(matches!(modes[0], SiteMode::Approx(a) if a.alpha == 5 && a.bound == 3.0625));
        assert_eq!(prepared.bounds().per_site[0].bound, 3.0625);

        let refused = |edit: &dyn Fn(&mut PrecisionPlan), needle: &str| {
            let mut p = plan.clone();
            edit(&mut p);
            let err = PreparedPlan::new(&p, &graph).err().expect("refused");
            assert!(err.contains(needle), "expected '{needle}' in: {err}");
        };
        let first = plan.sites[0].site.clone();
        refused(&|p| p.model = "resnet20".into(), "resnet20");
        refused(&|p| p.sites[0].site = "nope".into(), "`nope`");
        refused(&|p| p.sites[0].bound = f64::NAN, &first);
        refused(&|p| p.sites[0].degrees = vec![8], &first);
        refused(&|p| p.sites[0].kind = "maxpool".into(), "kind");
        refused(&|p| p.sites.truncate(1), "no entry for site");
        refused(&|p| p.sites.swap(0, 1), "expected");
    }

    #[test]
    fn greedy_prefixes_take_free_savings_first() {
        // two sites at level 2; site 1 loses nothing when lowered, site 0 loses 3 images
        let graph = model::random(Arch::CifarResNet(20), 1).unwrap();
        let levels = candidate_levels(&[6, 7, 8], DegreeLists::Paper).unwrap();
        let shapes = site_shapes(&graph).unwrap()[..2].to_vec();
        let searcher = Searcher {
            graph: &graph,
            backend: &CpuBackend::new(&graph),
            progress: &crate::exec::NoProgress,
            dataset: Arc::new(
                crate::data::digits::DigitsDataset::open(std::path::Path::new(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/datasets/digits/digits_test.bin"
                )))
                .unwrap(),
            ),
            normalize: Arch::DigitsCnn.descriptor().preprocessing.normalize,
            batch: 1,
            levels: &levels,
            bounds: vec![1.0; 2],
            shapes,
            ckks: None,
            plans_evaluated: 0,
        };
        let current = vec![2, 2];
        let moves = single_moves(&searcher, &current);
        assert_eq!(moves, vec![(0, 0), (0, 1), (1, 0), (1, 1)]);
        // α=5 ([13], 8 mults) is dearer than α=6 ([3, 7], 7 mults): never a move from 6 to 5
        let dearer = candidate_levels(&[5, 6], DegreeLists::Paper).unwrap();
        let from_6 = Searcher {
            levels: &dearer,
            dataset: searcher.dataset.clone(),
            bounds: searcher.bounds.clone(),
            shapes: searcher.shapes.clone(),
            ckks: None,
            ..searcher
        };
        assert!(single_moves(&from_6, &[1, 1]).is_empty());
        let prefixes = greedy_prefixes(&searcher, &current, &moves, &[3, 3, 0, 0]);
        assert_eq!(prefixes[0], (vec![2, 0], 0));
        assert_eq!(prefixes.last().unwrap().0, vec![0, 0]);
        assert_eq!(prefixes.last().unwrap().1, 3);
    }
}
