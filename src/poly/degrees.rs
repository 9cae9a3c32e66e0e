//! Degree optimizer: the cheapest odd degree list (depth first, then non-scalar multiplications,
//! as [`relu_cost`] measures them) whose composite meets the ReLU bound 2^-α on [-1, 1].
//!
//! Model. A stage of degree d on [a, 1] (after normalising its domain) has the minimax error
//! E(d, a) and maps the domain onto [1 − δ, 1 + δ], δ = E(d, a); normalised, the next stage sees
//! [a', 1] with a' = (1 − δ)/(1 + δ). Stage 1 starts at a = ε. The ReLU error of the composite is
//! the larger of the tail δ_k/2 and the gap error on [0, ε] (where |x| governs it). The gap term
//! depends on the whole composite, so the search tries ε = 2^(−α + o) for a few offsets o (the
//! composites found by `optimise_eps` have ε between 2^(2.4 − α) and 2^(4 − α)) and asks for
//! δ_k ≤ 2^(1−α).
//!
//! Search. E(d, a) is tabulated once per run ([`ErrorTable`], one Remez per degree and grid
//! point; the grid is in u = log2(a/(1 − a)), which resolves both small a and a near 1). A dynamic
//! programme over grid states gives a lower bound on the cost still to pay from any state; a
//! depth-first enumeration uses it to list every degree list within a cost budget (lists whose
//! gap error, estimated from the composite's slope at 0, misses the bound by over a bit are
//! dropped). The model is only a candidate generator: each candidate, cheapest first (equal
//! costs: smallest predicted error first), is **built for real** and its ReLU error verified
//! (`optimise_eps` + `verify::relu_error`; a quick 8-step ε bisection rejects the clear misses
//! first); failures are rejected and the next candidate tried, and the budget grows by one depth
//! level when all fail. So the answer is the cheapest list *among those the model proposes*
//! that passes verification: a list the model wrongly rules out is never built.

use super::composite::relu_error_terms;
use super::cost::{HeCost, odd_poly_cost, relu_cost};
use super::dd::Dd;
use super::remez::minimax_sign;
use super::verify::relu_error;
use super::{PolyError, build_sign_composite, optimise_eps, paper_degrees};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::HashSet;

/// What the search may use.
#[derive(Clone, Copy, Debug)]
pub struct SearchLimits {
    pub min_degree: usize,
    pub max_degree: usize,
    pub max_stages: usize,
    /// Grid step in u = log2(a/(1 − a)).
    pub grid_step: f64,
    /// The finest α the table must serve (sets the grid's lower end).
    pub max_alpha: u32,
    /// Candidates built and verified per α before giving up.
    pub max_verifications: usize,
}

impl Default for SearchLimits {
    fn default() -> Self {
        SearchLimits {
            min_degree: 3,
            max_degree: 63,
            max_stages: 6,
            grid_step: 0.25,
            max_alpha: 20,
            max_verifications: 300,
        }
    }
}

/// Beyond this u (1 − a ≈ 2^-12) even a degree-3 stage has error below 2^-26: finer than any
/// α ≤ 20 needs, so larger u are treated as this one (which overestimates their error).
const U_MAX: f64 = 12.0;
/// ε = 2^(−α + o) for these offsets o.
const EPS_OFFSETS: [f64; 6] = [2.0, 2.5, 3.0, 3.5, 4.0, 4.5];
/// Candidates whose estimated gap error exceeds the bound by more than this many bits are not
/// built (the estimate is rough, see `Search::log2_gap_estimate`).
const GAP_MARGIN_LOG2: f64 = 1.0;
/// Lexicographic (depth, mults) as one integer.
const DEPTH_UNIT: u64 = 100_000;

fn key(c: HeCost) -> u64 {
    c.depth as u64 * DEPTH_UNIT + c.nonscalar_mults as u64
}

fn a_of_u(u: f64) -> f64 {
    1.0 / (1.0 + (-u).exp2())
}

fn u_of_a(a: f64) -> f64 {
    (a / (1.0 - a)).log2()
}

/// State after a stage of error δ: a' = (1 − δ)/(1 + δ), so a'/(1 − a') = (1 − δ)/(2δ).
fn u_after(delta: f64) -> f64 {
    ((1.0 - delta) / (2.0 * delta)).log2()
}

/// log2 E(d, a) of single odd minimax approximations of sign on [a, 1], on a grid of u.
pub struct ErrorTable {
    pub degrees: Vec<usize>,
    u_min: f64,
    step: f64,
    /// `[degree index][grid index]`, non-increasing in the grid index; +∞ where Remez failed.
    log2_error: Vec<Vec<f64>>,
    /// log2 of the stage's slope at 0, same layout.
    log2_slope: Vec<Vec<f64>>,
}

impl ErrorTable {
    /// One Remez per (degree, grid point), in parallel.
    pub fn build(limits: &SearchLimits) -> ErrorTable {
        let degrees: Vec<usize> = (limits.min_degree..=limits.max_degree).filter(|d| d % 2 == 1).collect();
        let u_min = -(limits.max_alpha as f64) - 1.0;
        let points = ((U_MAX - u_min) / limits.grid_step).ceil() as usize + 1;
        let (log2_error, log2_slope) = degrees
            .par_iter()
            .map(|&d| {
                let (mut errors, slopes): (Vec<f64>, Vec<f64>) = (0..points)
                    .into_par_iter()
                    .map(|i| stage_log2_error_and_slope(d, a_of_u(u_min + i as f64 * limits.grid_step)))
                    .unzip();
                // E falls as a grows; a Remez that levels less well at one point must not make
                // the table claim otherwise (the search's lower bounds rely on monotonicity).
                for i in 1..errors.len() {
                    errors[i] = errors[i].min(errors[i - 1]);
                }
                (errors, slopes)
            })
            .unzip();
        ErrorTable {
            degrees,
            u_min,
            step: limits.grid_step,
            log2_error,
            log2_slope,
        }
    }

    fn points(&self) -> usize {
        self.log2_error[0].len()
    }

    /// Grid index at or above u (clamped to the grid).
    fn ceil_index(&self, u: f64) -> usize {
        (((u - self.u_min) / self.step).ceil().max(0.0) as usize).min(self.points() - 1)
    }

    /// E(degree index j, state u), linear in log2 E between grid points, clamped at the ends.
    pub fn error(&self, j: usize, u: f64) -> f64 {
        self.interpolate(&self.log2_error[j], u).exp2()
    }

    /// log2 p'(0) of the stage for degree index j on [a(u), 1].
    fn log2_slope(&self, j: usize, u: f64) -> f64 {
        self.interpolate(&self.log2_slope[j], u)
    }

    fn interpolate(&self, column: &[f64], u: f64) -> f64 {
        let x = ((u - self.u_min) / self.step).clamp(0.0, (self.points() - 1) as f64);
        let i = (x.floor() as usize).min(self.points() - 2);
        let t = x - i as f64;
        if t == 0.0 {
            column[i]
        } else {
            column[i] * (1.0 - t) + column[i + 1] * t
        }
    }
}

/// log2 of the minimax error of degree d on [a, 1] (+∞ if Remez cannot level it) and log2 of
/// the polynomial's slope at 0.
fn stage_log2_error_and_slope(degree: usize, a: f64) -> (f64, f64) {
    match minimax_sign(degree, Dd::new(a), Dd::ONE, Dd::ONE) {
        Ok(stage) => {
            let slope = stage.poly.eval_with_derivative(Dd::ZERO).1.to_f64();
            (stage.error.to_f64().max(1e-300).log2(), slope.max(1e-300).log2())
        }
        Err(_) => (f64::INFINITY, f64::NEG_INFINITY),
    }
}

/// A degree list the model predicts to meet the bound.
#[derive(Clone, Debug)]
struct Candidate {
    degrees: Vec<usize>,
    key: u64,
    /// The ε offset of the prediction kept (smaller: a stronger composite).
    min_offset: f64,
    /// The model's ReLU error estimate (log2): max(δ_k/2, gap estimate).
    predicted_log2: f64,
}

/// Where a partial degree list has brought the domain: its normalised state u, the composite's
/// slope at 0 so far, and the scale of the next stage's domain [1 − δ, 1 + δ] = (1 + δ)·[a', 1].
#[derive(Clone, Copy)]
struct Path {
    u: f64,
    log2_slope: f64,
    scale: f64,
}

/// The search for one target sign error δ_k ≤ `target`.
struct Search<'a> {
    table: &'a ErrorTable,
    limits: &'a SearchLimits,
    target: f64,
    stage_keys: Vec<u64>,
    /// `lower[r][i]`: lower bound on the cost of the stages still needed from grid state i with
    /// at most r stages (u::MAX = impossible).
    lower: Vec<Vec<u64>>,
}

impl<'a> Search<'a> {
    fn new(table: &'a ErrorTable, limits: &'a SearchLimits, target: f64) -> Search<'a> {
        let stage_keys: Vec<u64> = table.degrees.iter().map(|&d| key(odd_poly_cost(d))).collect();
        let mut lower = vec![vec![u64::MAX; table.points()]];
        for r in 1..=limits.max_stages {
            let row = (0..table.points())
                .map(|i| {
                    (0..table.degrees.len())
                        .filter_map(|j| {
                            let delta = table.log2_error[j][i].exp2();
                            let rest = Self::rest_bound(table, &lower[r - 1], &stage_keys, delta, target)?;
                            Some(stage_keys[j] + rest)
                        })
                        .min()
                        .unwrap_or(u64::MAX)
                })
                .collect();
            lower.push(row);
        }
        Search {
            table,
            limits,
            target,
            stage_keys,
            lower,
        }
    }

    /// Lower bound on what follows a stage of error δ, from `row` (the bounds with one stage
    /// fewer); None when no continuation can work. Rounding the next state up keeps it a lower
    /// bound (E falls as a grows); beyond the grid at least one stage is still needed.
    fn rest_bound(table: &ErrorTable, row: &[u64], stage_keys: &[u64], delta: f64, target: f64) -> Option<u64> {
        if delta <= target {
            return Some(0);
        }
        if delta >= 1.0 || row.iter().all(|&v| v == u64::MAX) {
            return None;
        }
        let u = u_after(delta);
        let bound = if u > U_MAX {
            *stage_keys.iter().min().expect("degrees")
        } else {
            row[table.ceil_index(u)]
        };
        (bound != u64::MAX).then_some(bound)
    }

    fn lower_bound(&self, u: f64, stages_left: usize) -> u64 {
        if u > U_MAX {
            return if stages_left == 0 { u64::MAX } else { self.stage_keys[0] };
        }
        self.lower[stages_left][self.table.ceil_index(u)]
    }

    /// Every degree list of total composite cost ≤ `budget` the model accepts from state u.
    fn enumerate(&self, u: f64, budget: u64, offset: f64, out: &mut Vec<Candidate>) {
        let start = Path {
            u,
            log2_slope: 0.0,
            scale: 1.0,
        };
        self.dfs(start, &mut Vec::new(), 0, budget, offset, out);
    }

    /// Estimate of the gap error on [0, ε] (log2): where the composite is still linear,
    /// p(x) ≈ S·x, and x(1 − S·x)/2 peaks at 1/(8S). Not a bound (a stage can be steeper inside
    /// (0, a) than at 0), so it only orders the candidates and drops those it misses by more
    /// than [`GAP_MARGIN_LOG2`].
    fn log2_gap_estimate(log2_slope: f64) -> f64 {
        -(log2_slope + 3.0)
    }

    fn dfs(&self, at: Path, stages: &mut Vec<usize>, spent: u64, budget: u64, offset: f64, out: &mut Vec<Candidate>) {
        for (j, &degree) in self.table.degrees.iter().enumerate() {
            let total = spent + self.stage_keys[j];
            if total > budget {
                break; // stage costs grow with the degree
            }
            let delta = self.table.error(j, at.u);
            if delta.is_nan() || delta >= 1.0 {
                continue;
            }
            // The stage sees its domain scaled by 1/scale, so its slope is divided by it.
            let log2_slope = at.log2_slope + self.table.log2_slope(j, at.u) - at.scale.log2();
            stages.push(degree);
            let bound_log2 = self.target.log2() - 1.0;
            let gap_log2 = Self::log2_gap_estimate(log2_slope);
            if delta <= self.target {
                if gap_log2 <= bound_log2 + GAP_MARGIN_LOG2 {
                    out.push(Candidate {
                        degrees: stages.clone(),
                        key: total,
                        min_offset: offset,
                        predicted_log2: gap_log2.max(delta.log2() - 1.0),
                    });
                }
            } else if stages.len() < self.limits.max_stages {
                let next = Path {
                    u: u_after(delta),
                    log2_slope,
                    scale: 1.0 + delta,
                };
                let left = self.limits.max_stages - stages.len();
                if total.saturating_add(self.lower_bound(next.u, left)) <= budget {
                    self.dfs(next, stages, total, budget, offset, out);
                }
            }
            stages.pop();
        }
    }
}

/// A degree list built and verified for one α.
#[derive(Clone, Debug, Serialize)]
pub struct VerifiedList {
    pub degrees: Vec<usize>,
    pub eps: f64,
    /// Verified max |x(1+p(x))/2 − ReLU(x)| on [-1, 1], log2.
    pub relu_error_log2: f64,
    pub relu_cost: HeCost,
}

/// The optimizer's answer for one α.
#[derive(Clone, Debug, Serialize)]
pub struct DegreeChoice {
    pub alpha: u32,
    /// The cheapest verified list (None if none within the limits passed).
    pub best: Option<VerifiedList>,
    /// Candidates built and verified (rejections included).
    pub verified: usize,
    /// Candidates the model proposed but that failed verification, cheapest first.
    pub rejected: Vec<(Vec<usize>, f64)>,
}

/// Builds `degrees` with the ε `optimise_eps` chooses and verifies its ReLU error.
pub fn verify_list(degrees: &[usize]) -> Result<VerifiedList, PolyError> {
    verify_list_against(degrees, f64::INFINITY)
}

/// As [`verify_list`], but a composite whose cheap estimate (`relu_error_terms`: the exact tail
/// term and a sampled gap term, so never above the true error) already exceeds `bound` is
/// returned with that estimate, without the full verification.
fn verify_list_against(degrees: &[usize], bound: f64) -> Result<VerifiedList, PolyError> {
    if let Some((eps, estimate)) = quick_estimate(degrees, bound)
        && estimate > QUICK_REJECT * bound
    {
        return Ok(VerifiedList {
            degrees: degrees.to_vec(),
            eps,
            relu_error_log2: estimate.log2(),
            relu_cost: relu_cost(degrees),
        });
    }
    let sc = optimise_eps(degrees)?;
    let (tail, gap) = relu_error_terms(&sc);
    let estimate = tail.max(gap);
    let error_log2 = if estimate > bound {
        estimate.log2()
    } else {
        relu_error(&sc.composite).log2
    };
    Ok(VerifiedList {
        degrees: degrees.to_vec(),
        eps: sc.eps,
        relu_error_log2: error_log2,
        relu_cost: relu_cost(degrees),
    })
}

/// Cheapest odd degree list whose composite meets the ReLU bound 2^-α (see the module docs).
pub fn optimise_degrees(table: &ErrorTable, limits: &SearchLimits, alpha: u32) -> DegreeChoice {
    let bound = (-(alpha as f64)).exp2();
    let search = Search::new(table, limits, 2.0 * bound);
    let starts: Vec<(f64, f64)> = EPS_OFFSETS
        .iter()
        .map(|&o| (o, u_of_a((o - alpha as f64).exp2().min(0.5))))
        .collect();
    let floor = starts
        .iter()
        .map(|&(_, u)| search.lower_bound(u, limits.max_stages))
        .min()
        .unwrap_or(u64::MAX);
    let mut choice = DegreeChoice {
        alpha,
        best: None,
        verified: 0,
        rejected: Vec::new(),
    };
    if floor == u64::MAX {
        return choice;
    }
    let mut tried: HashSet<Vec<usize>> = HashSet::new();
    let first_depth = floor / DEPTH_UNIT;
    for depth in first_depth..=first_depth + 4 {
        let budget = depth * DEPTH_UNIT + (DEPTH_UNIT - 1);
        let mut candidates = Vec::new();
        for &(offset, u) in &starts {
            search.enumerate(u, budget, offset, &mut candidates);
        }
        for candidate in merge_candidates(candidates) {
            if !tried.insert(candidate.degrees.clone()) {
                continue;
            }
            if choice.verified >= limits.max_verifications {
                return choice;
            }
            choice.verified += 1;
            match verify_list_against(&candidate.degrees, bound) {
                Ok(v) if v.relu_error_log2 <= -(alpha as f64) => {
                    choice.best = Some(v);
                    return choice;
                }
                Ok(v) => choice.rejected.push((candidate.degrees, v.relu_error_log2)),
                Err(_) => choice.rejected.push((candidate.degrees, f64::NAN)),
            }
        }
    }
    choice
}

/// A list whose quick estimate exceeds the bound by this factor is rejected without the full ε
/// search (which can only move the crossing point a little within the bracket searched).
const QUICK_REJECT: f64 = 1.03;

/// The same bisection as `optimise_eps` (ReLU error = max(tail, gap), balanced over log2 ε), on
/// the bracket where composites for `bound` put ε (2^-3·bound .. 2^7·bound) and with 8 steps
/// instead of 15: the best (ε, estimate) seen. None when no ε in the bracket builds.
fn quick_estimate(degrees: &[usize], bound: f64) -> Option<(f64, f64)> {
    let (mut lo, mut hi) = (bound.log2() - 3.0, (bound.log2() + 7.0).min(-0.05));
    let mut best: Option<(f64, f64)> = None;
    for _ in 0..8 {
        let mid = 0.5 * (lo + hi);
        let (tail, gap) = match build_sign_composite(degrees, mid.exp2()) {
            Ok(sc) => relu_error_terms(&sc),
            Err(PolyError::StageCollapsed { .. }) => (f64::INFINITY, 0.0),
            Err(_) => (0.0, f64::INFINITY),
        };
        let value = tail.max(gap);
        if value.is_finite() && best.is_none_or(|(_, v)| value < v) {
            best = Some((mid.exp2(), value));
        }
        if tail > gap { lo = mid } else { hi = mid }
    }
    best
}

/// One entry per degree list (its best prediction), cheapest first; among equal cost, the
/// smallest predicted error first (then the smallest ε offset).
fn merge_candidates(mut candidates: Vec<Candidate>) -> Vec<Candidate> {
    let strongest_first = |a: &Candidate, b: &Candidate| {
        a.predicted_log2
            .total_cmp(&b.predicted_log2)
            .then(a.min_offset.total_cmp(&b.min_offset))
    };
    candidates.sort_by(|a, b| a.degrees.cmp(&b.degrees).then(strongest_first(a, b)));
    candidates.dedup_by(|later, first| later.degrees == first.degrees);
    candidates.sort_by(|a, b| a.key.cmp(&b.key).then(strongest_first(a, b)));
    candidates
}

/// One row of `polycnn degrees`: the optimizer's choice and the paper's list (built and verified
/// here, for α = 4..14).
pub type DegreeRow = (DegreeChoice, Option<VerifiedList>);

/// Builds the error table once and optimises every α in `alphas`.
pub fn degree_rows(alphas: &[u32], limits: &SearchLimits) -> Result<Vec<DegreeRow>, PolyError> {
    let limits = SearchLimits {
        max_alpha: limits.max_alpha.max(alphas.iter().copied().max().unwrap_or(0)),
        ..*limits
    };
    let started = std::time::Instant::now();
    let table = ErrorTable::build(&limits);
    log::info!("error table: {:.1} s", started.elapsed().as_secs_f64());
    alphas
        .iter()
        .map(|&alpha| {
            let paper = paper_degrees(alpha).map(verify_list).transpose()?;
            let choice = optimise_degrees(&table, &limits, alpha);
            let found = choice.best.as_ref().map(|b| b.degrees.clone());
            log::info!(
                "α = {alpha}: {found:?} after {} builds, {:.1} s",
                choice.verified,
                started.elapsed().as_secs_f64()
            );
            Ok((choice, paper))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_after_a_stage_is_the_normalised_image() {
        for delta in [0.5, 0.1, 1e-3, 1e-6] {
            let a = (1.0 - delta) / (1.0 + delta);
            assert!(
                (u_after(delta) - u_of_a(a)).abs() < 1e-6 * (1.0 + u_of_a(a).abs()),
                "δ={delta}"
            );
        }
        for u in [-20.0, -3.5, 0.0, 2.25, 11.0] {
            assert!((u_of_a(a_of_u(u)) - u).abs() < 1e-9, "u={u}");
        }
    }

    #[test]
    fn table_matches_remez_at_grid_points_and_interpolates_between() {
        let limits = SearchLimits {
            max_degree: 7,
            max_alpha: 6,
            grid_step: 0.5,
            ..SearchLimits::default()
        };
        let table = ErrorTable::build(&limits);
        assert_eq!(table.degrees, vec![3, 5, 7]);
        let u = -2.0; // a = 1/5
        let remez = minimax_sign(7, Dd::new(a_of_u(u)), Dd::ONE, Dd::ONE)
            .unwrap()
            .error
            .to_f64();
        assert!((table.error(2, u) / remez - 1.0).abs() < 1e-9);
        // Between grid points the error lies between its neighbours (it falls as a grows).
        let (lo, mid, hi) = (table.error(2, -2.0), table.error(2, -1.75), table.error(2, -1.5));
        assert!(lo > mid && mid > hi, "{lo} {mid} {hi}");
    }
}
