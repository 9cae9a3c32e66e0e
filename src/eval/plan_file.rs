//! The precision-plan file: what `polycnn plan` writes and `polycnn eval --plan` reads, and its
//! HE cost on a graph.

use super::bounds::BoundRule;
use crate::model::Graph;
use crate::model::cost::{CostError, SitePrecision, network_cost};
use serde::{Deserialize, Serialize};

/// One site of a plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SitePlan {
    pub site: String,
    /// "relu" or "maxpool".
    pub kind: String,
    pub alpha: u32,
    /// Stage degrees of the composite (the paper's list for α unless chosen otherwise).
    pub degrees: Vec<usize>,
    pub bound: f64,
}

/// HE cost of a plan, per image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanCost {
    /// Σ over sites of evaluations × non-scalar multiplications per evaluation.
    pub nonscalar_mults: u64,
    /// Multiplicative depth consumed by activations on the critical path.
    pub depth: u32,
}

/// Top-1 of the exact network, the uniform baseline and the plan on one split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitAccuracy {
    pub images: u64,
    pub exact_top1: f64,
    pub uniform_top1: f64,
    pub plan_top1: f64,
    /// The plan's activations beyond their site's B, and non-finite ones, on this split.
    #[serde(default)]
    pub plan_out_of_range: u64,
    #[serde(default)]
    pub plan_non_finite: u64,
}

/// What the search found and measured (absent from a hand-written plan).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchSummary {
    pub weights: String,
    pub data: String,
    /// Allowed top-1 drop against exact on the calibration split, percentage points.
    pub budget: f64,
    pub alphas: Vec<u32>,
    pub uniform_alpha: u32,
    pub cost: PlanCost,
    pub uniform_cost: PlanCost,
    /// 100 × (1 − plan / uniform non-scalar multiplications).
    pub saving_percent: f64,
    pub calibration: SplitAccuracy,
    pub held_out: SplitAccuracy,
    /// Candidate plans run over the calibration split.
    pub plans_evaluated: u64,
    pub seconds: f64,
}

/// A precision plan: the JSON file `polycnn plan` writes and `polycnn eval --plan` reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrecisionPlan {
    pub model: String,
    /// How the bounds were chosen.
    pub bound_rule: BoundRule,
    /// In the graph's site order.
    pub sites: Vec<SitePlan>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<SearchSummary>,
}

impl PrecisionPlan {
    pub fn load(path: &std::path::Path) -> Result<PrecisionPlan, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read plan {}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("plan {}: {e}", path.display()))
    }

    /// "α=7" or "α=6..9".
    pub fn alpha_range(&self) -> String {
        let lo = self.sites.iter().map(|s| s.alpha).min().unwrap_or(0);
        let hi = self.sites.iter().map(|s| s.alpha).max().unwrap_or(0);
        if lo == hi {
            format!("α={lo}")
        } else {
            format!("α={lo}..{hi}")
        }
    }
}

/// Each site of `plan` as the cost model takes it.
pub fn site_precisions(plan: &PrecisionPlan) -> Vec<SitePrecision> {
    plan.sites
        .iter()
        .map(|s| SitePrecision::Approx {
            alpha: Some(s.alpha),
            degrees: s.degrees.clone(),
        })
        .collect()
}

/// The HE cost of a plan on its graph.
pub fn plan_cost(graph: &Graph, plan: &PrecisionPlan) -> Result<PlanCost, CostError> {
    let cost = network_cost(graph, &site_precisions(plan))?;
    Ok(PlanCost {
        nonscalar_mults: cost.nonscalar_mults,
        depth: cost.critical_depth,
    })
}
