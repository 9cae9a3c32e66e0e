//! HE (CKKS) cost of a whole network's approximate activations under a precision plan.
//!
//! Per site: the elements it produces, the composite evaluations they take (a ReLU: one per
//! element; a max-pool: k² − 1 approximate max per window, the paper's tree), the depth the site
//! consumes (ReLU: the ReLU circuit's; max-pool: ceil(log2 k²) tree levels of the max circuit) and
//! the operation counts (per-evaluation cost × evaluations, from `poly::cost`). For the network:
//! totals of the counts, and the depth consumed by activations along the **critical path**: value
//! by value through the graph, a node's depth is the largest of its inputs' (so parallel residual
//! branches count once, by the deeper one) plus its own site's depth.
//!
//! Only the activations are costed: convolutions, additions and the scaling by 1/B (folded into
//! the first stage's coefficients, as the max-pool rescaling is) are outside this model. All
//! figures are per image.

use super::graph::{Graph, Op, SiteKind};
use crate::poly::PolyError;
use crate::poly::cost::{HeCost, max_cost, relu_cost};
use serde::{Deserialize, Serialize};
use std::fmt;

/// How one site is evaluated: exactly (no HE cost in this model) or by a composite of `degrees`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SitePrecision {
    Exact,
    Approx {
        /// The precision the composite was built for, when it was chosen by α (for display).
        alpha: Option<u32>,
        degrees: Vec<usize>,
    },
}

/// The cost of one activation site (per image).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SiteCost {
    pub site: String,
    /// "relu" or "maxpool".
    pub kind: String,
    pub alpha: Option<u32>,
    /// Empty for an exact site.
    pub degrees: Vec<usize>,
    /// Output elements of the site.
    pub elements: u64,
    /// Composite evaluations: elements for a ReLU, windows × (k² − 1) for a max-pool.
    pub evaluations: u64,
    /// Cost of one evaluation (the ReLU or the max(a, b) circuit).
    pub per_evaluation: HeCost,
    /// Levels the site consumes on every path through it.
    pub depth: u32,
    pub nonscalar_mults: u64,
    pub scalar_mults: u64,
    pub additions: u64,
}

/// The cost of a network's activations under one plan (per image).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetworkCost {
    pub model: String,
    pub sites: Vec<SiteCost>,
    /// Elements of the approximated sites.
    pub elements: u64,
    pub evaluations: u64,
    /// Depth consumed by activations on the deepest input → output path.
    pub critical_depth: u32,
    /// Sum of the site depths: what the critical depth would be if no two sites ran in parallel.
    pub summed_depth: u32,
    pub nonscalar_mults: u64,
    pub scalar_mults: u64,
    pub additions: u64,
}

#[derive(Debug)]
pub enum CostError {
    /// The plan has a different number of entries than the graph has sites.
    PlanLength { model: String, sites: usize, plan: usize },
    /// A site's degree list is unusable.
    Degrees { site: String, why: PolyError },
    /// The graph does not hang together.
    Graph(String),
}

impl fmt::Display for CostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CostError::PlanLength { model, sites, plan } => {
                write!(f, "{model} has {sites} activation sites but the plan gives {plan}")
            }
            CostError::Degrees { site, why } => write!(f, "site `{site}`: {why}"),
            CostError::Graph(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for CostError {}

/// One precision for every site: sites of an approximated kind get `degrees`, the others stay
/// exact.
pub fn uniform_plan(
    graph: &Graph,
    alpha: Option<u32>,
    degrees: &[usize],
    relu: bool,
    maxpool: bool,
) -> Vec<SitePrecision> {
    graph
        .sites
        .iter()
        .map(|s| {
            let approximated = match s.kind {
                SiteKind::Relu => relu,
                SiteKind::MaxPool => maxpool,
            };
            if approximated {
                SitePrecision::Approx {
                    alpha,
                    degrees: degrees.to_vec(),
                }
            } else {
                SitePrecision::Exact
            }
        })
        .collect()
}

/// How one site's evaluations chain, per image: what any cost of it is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SiteShape {
    pub kind: SiteKind,
    /// Output elements of the site.
    pub elements: u64,
    /// Composite evaluations: elements for a ReLU, windows × (k² − 1) for a max-pool.
    pub evaluations: u64,
    /// Sequential evaluations on every path through the site: 1 for a ReLU, the max tree's
    /// ⌈log2 k²⌉ levels for a max-pool.
    pub levels: u32,
}

impl SiteShape {
    /// The cost of one evaluation at this site with a composite of `degrees` (the ReLU or the
    /// max(a, b) circuit).
    pub fn evaluation_cost(&self, degrees: &[usize]) -> HeCost {
        match self.kind {
            SiteKind::Relu => relu_cost(degrees),
            SiteKind::MaxPool => max_cost(degrees),
        }
    }

    /// Non-scalar multiplications per image with a composite of `degrees`.
    pub fn nonscalar_mults(&self, degrees: &[usize]) -> u64 {
        self.evaluations * self.evaluation_cost(degrees).nonscalar_mults as u64
    }
}

/// The shape of every site of `graph`, in `graph.sites` order.
pub fn site_shapes(graph: &Graph) -> Result<Vec<SiteShape>, CostError> {
    let shapes = graph.shapes().map_err(|e| CostError::Graph(e.to_string()))?;
    graph
        .sites
        .iter()
        .map(|site| {
            let elements = shapes[site.node].numel() as u64;
            match &graph.nodes[site.node].op {
                Op::Relu { .. } => Ok(SiteShape {
                    kind: SiteKind::Relu,
                    elements,
                    evaluations: elements,
                    levels: 1,
                }),
                Op::MaxPool { pool, .. } => {
                    let inputs = pool.taps() as u64;
                    Ok(SiteShape {
                        kind: SiteKind::MaxPool,
                        elements,
                        evaluations: elements * (inputs - 1),
                        levels: tree_levels(inputs),
                    })
                }
                _ => Err(CostError::Graph(format!(
                    "site `{}` is not a ReLU or max-pool node",
                    site.name
                ))),
            }
        })
        .collect()
}

/// The cost of `graph`'s activations under `plan` (one entry per site, in `graph.sites` order).
pub fn network_cost(graph: &Graph, plan: &[SitePrecision]) -> Result<NetworkCost, CostError> {
    if plan.len() != graph.sites.len() {
        return Err(CostError::PlanLength {
            model: graph.name.clone(),
            sites: graph.sites.len(),
            plan: plan.len(),
        });
    }
    let shapes = site_shapes(graph)?;
    let sites = graph
        .sites
        .iter()
        .zip(&shapes)
        .zip(plan)
        .map(|((site, shape), precision)| site_cost(&site.name, shape, precision))
        .collect::<Result<Vec<_>, _>>()?;
    let critical_depth = critical_depth(graph, &sites);
    Ok(NetworkCost {
        model: graph.name.clone(),
        elements: sites.iter().filter(|s| !s.degrees.is_empty()).map(|s| s.elements).sum(),
        evaluations: sites.iter().map(|s| s.evaluations).sum(),
        critical_depth,
        summed_depth: sites.iter().map(|s| s.depth).sum(),
        nonscalar_mults: sites.iter().map(|s| s.nonscalar_mults).sum(),
        scalar_mults: sites.iter().map(|s| s.scalar_mults).sum(),
        additions: sites.iter().map(|s| s.additions).sum(),
        sites,
    })
}

fn site_cost(name: &str, shape: &SiteShape, precision: &SitePrecision) -> Result<SiteCost, CostError> {
    let mut cost = SiteCost {
        site: name.to_string(),
        kind: shape.kind.name().to_string(),
        alpha: None,
        degrees: Vec::new(),
        elements: shape.elements,
        evaluations: 0,
        per_evaluation: HeCost::default(),
        depth: 0,
        nonscalar_mults: 0,
        scalar_mults: 0,
        additions: 0,
    };
    let SitePrecision::Approx { alpha, degrees } = precision else {
        return Ok(cost);
    };
    check_degrees(degrees).map_err(|why| CostError::Degrees {
        site: name.to_string(),
        why,
    })?;
    let per_evaluation = shape.evaluation_cost(degrees);
    cost.alpha = *alpha;
    cost.degrees = degrees.clone();
    cost.evaluations = shape.evaluations;
    cost.per_evaluation = per_evaluation;
    cost.depth = shape.levels * per_evaluation.depth;
    cost.nonscalar_mults = shape.evaluations * per_evaluation.nonscalar_mults as u64;
    cost.scalar_mults = shape.evaluations * per_evaluation.scalar_mults as u64;
    cost.additions = shape.evaluations * per_evaluation.additions as u64;
    Ok(cost)
}

/// The `poly::cost` evaluator's domain (odd degrees in 1..=255, at least one stage), as an error
/// instead of its panic.
fn check_degrees(degrees: &[usize]) -> Result<(), PolyError> {
    if degrees.is_empty() {
        return Err(PolyError::BadDegreeList("empty degree list".into()));
    }
    match degrees
        .iter()
        .find(|&&d| d.is_multiple_of(2) || !(1..=255).contains(&d))
    {
        Some(&d) => Err(PolyError::BadDegree(d)),
        None => Ok(()),
    }
}

/// Levels of the pairwise max tree over n inputs: ceil(log2 n) (an odd one out is carried up
/// without a comparison, so it never adds a level).
fn tree_levels(n: u64) -> u32 {
    if n <= 1 { 0 } else { u64::BITS - (n - 1).leading_zeros() }
}

/// Largest activation depth over all input → output paths: each node takes the deepest of its
/// inputs and adds its own site's depth.
fn critical_depth(graph: &Graph, sites: &[SiteCost]) -> u32 {
    let mut depth = vec![0u32; graph.nodes.len()];
    for (id, node) in graph.nodes.iter().enumerate() {
        let deepest_input = node.op.inputs().iter().map(|&i| depth[i]).max().unwrap_or(0);
        let own = node.op.site().map_or(0, |s| sites[s].depth);
        depth[id] = deepest_input + own;
    }
    depth[graph.output]
}
