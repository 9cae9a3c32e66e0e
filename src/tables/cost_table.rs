//! Tables of `polycnn cost` (HE cost of a network's activations) and `polycnn degrees` (the
//! degree optimizer next to the paper's lists).

use crate::he::{CkksCost, CkksPreset, HeCost};
use crate::model::ModelSource;
use crate::model::cost::{NetworkCost, network_cost, uniform_plan};
use crate::poly::degrees::{DegreeLists, DegreeRow, VerifiedList, degrees_for};

/// Per-site rows and the totals of one plan.
pub fn format_network_cost(c: &NetworkCost) -> String {
    let mut out = format!(
        "{} — HE cost of the activations per image (depth: levels; ns/sc: non-scalar/scalar mults)\n",
        c.model
    );
    out += "  site                      kind      α  degrees          elements   evaluations  depth  ns/eval   non-scalar        scalar     additions\n";
    for s in &c.sites {
        out += &format!(
            "  {:<24}  {:<7} {:>3}  {:<14} {:>10} {:>13}  {:>5}  {:>7} {:>12} {:>13} {:>13}\n",
            s.site,
            s.kind,
            s.alpha.map_or("-".to_string(), |a| a.to_string()),
            degrees_label(&s.degrees),
            s.elements,
            s.evaluations,
            s.depth,
            s.per_evaluation.nonscalar_mults,
            s.nonscalar_mults,
            s.scalar_mults,
            s.additions
        );
    }
    out += &format!(
        "  {:<24}  {:<7} {:>3}  {:<14} {:>10} {:>13}  {:>5}  {:>7} {:>12} {:>13} {:>13}\n",
        "total",
        "",
        "",
        "",
        c.elements,
        c.evaluations,
        c.critical_depth,
        "",
        c.nonscalar_mults,
        c.scalar_mults,
        c.additions
    );
    out += &format!(
        "  depth: {} levels on the critical path ({} if every site were in series)\n",
        c.critical_depth, c.summed_depth
    );
    out
}

/// One line per α of several plans (e.g. a range of α): the totals only.
pub fn format_cost_summary(costs: &[HeCost]) -> String {
    let mut out =
        String::from("  α    degrees          depth   evaluations      non-scalar          scalar       additions\n");
    for c in costs {
        let first = c.sites.iter().find(|s| !s.degrees.is_empty());
        out += &format!(
            "  {:>3}  {:<14} {:>7} {:>13} {:>15} {:>15} {:>15}\n",
            first.and_then(|s| s.alpha).map_or("-".to_string(), |a| a.to_string()),
            first.map_or("-".to_string(), |s| degrees_label(&s.degrees)),
            c.critical_depth,
            c.evaluations,
            c.nonscalar_mults,
            c.scalar_mults,
            c.additions
        );
    }
    out
}

fn degrees_label(degrees: &[usize]) -> String {
    if degrees.is_empty() {
        return "exact".into();
    }
    let d: Vec<String> = degrees.iter().map(usize::to_string).collect();
    d.join(",")
}

fn list_cells(v: Option<&VerifiedList>) -> String {
    match v {
        Some(v) => format!(
            "{:<16} {:>5} {:>5}  2^{:<7.2}",
            degrees_label(&v.degrees),
            v.relu_cost.depth,
            v.relu_cost.nonscalar_mults,
            v.relu_error_log2
        ),
        None => format!("{:<16} {:>5} {:>5}  {:<9}", "-", "-", "-", "-"),
    }
}

/// The optimizer's list per α next to the paper's (depth and mults of the ReLU circuit, verified
/// ReLU error of our build of each list).
pub fn format_degree_table(rows: &[DegreeRow]) -> String {
    let mut out = String::from(
        "   α  optimized        depth mults  ReLU err   | paper            depth mults  ReLU err   | tried\n",
    );
    for (choice, paper) in rows {
        out += &format!(
            "  {:>2}  {} | {} | {:>5}\n",
            choice.alpha,
            list_cells(choice.best.as_ref()),
            list_cells(paper.as_ref()),
            choice.verified
        );
    }
    out += "depth/mults: the ReLU x(1+p(x))/2 by odd baby-step giant-step (non-scalar multiplications).\n\
            ReLU err: verified max |x(1+p(x))/2 − ReLU(x)| on [-1,1] of the list built here (ε by optimise_eps).\n";
    out
}

/// What `polycnn cost` is asked.
#[derive(Clone, Debug)]
pub struct CostRequest {
    /// Only the graph's shapes matter: a built-in architecture may have random weights
    /// ([`ModelSource::Random`]); an ONNX file is read.
    pub model: ModelSource,
    pub alphas: Vec<u32>,
    /// One degree list for every α (default: `lists`).
    pub degrees: Option<Vec<usize>>,
    pub lists: DegreeLists,
    pub relu: bool,
    pub maxpool: bool,
    /// Also the CKKS levels and bootstrap placement under this preset.
    pub ckks: Option<CkksPreset>,
}

/// The network's activation cost for each α of the request.
pub fn network_costs(req: &CostRequest) -> Result<Vec<HeCost>, Box<dyn std::error::Error>> {
    let graph = req.model.open()?.graph;
    req.alphas
        .iter()
        .map(|&alpha| {
            let degrees = match &req.degrees {
                Some(d) => d.as_slice(),
                None => degrees_for(alpha, req.lists)?,
            };
            let plan = uniform_plan(&graph, Some(alpha), degrees, req.relu, req.maxpool);
            Ok(HeCost::with_ckks(
                network_cost(&graph, &plan)?,
                &graph,
                &plan,
                req.ckks.as_ref(),
            )?)
        })
        .collect()
}

/// The CKKS table: bootstraps per node, greedy and optimal placement, and the totals.
pub fn format_ckks_cost(c: &CkksCost) -> String {
    let mut out = format!(
        "CKKS {}: {} slots, {} levels after bootstrapping; the network consumes {} levels without \
         bootstrapping\n  node                          greedy: points  ciphertexts   optimal: points  ciphertexts\n",
        c.preset, c.slots, c.levels_after_bootstrap, c.total_depth
    );
    for r in &c.per_node {
        out += &format!(
            "  {:<28} {:>14} {:>12} {:>17} {:>12}\n",
            r.node, r.greedy_points, r.greedy_ciphertexts, r.optimal_points, r.optimal_ciphertexts
        );
    }
    out += &format!(
        "  {:<28} {:>14} {:>12} {:>17} {:>12}\n",
        "total",
        c.greedy.bootstrap_points,
        c.greedy.bootstrapped_ciphertexts,
        c.optimal.bootstrap_points,
        c.optimal.bootstrapped_ciphertexts
    );
    out += "  (per image; ciphertexts = Σ ceil(elements / slots) over the bootstrap points)\n";
    out
}

/// One line per α with the CKKS totals.
pub fn format_ckks_summary(rows: &[HeCost]) -> String {
    let mut out =
        String::from("  α    degrees          depth   greedy: points  ciphertexts   optimal: points  ciphertexts\n");
    for row in rows {
        let Some(c) = &row.ckks else { continue };
        let first = row.sites.iter().find(|s| !s.degrees.is_empty());
        out += &format!(
            "  {:>3}  {:<14} {:>7} {:>16} {:>12} {:>17} {:>12}\n",
            first.and_then(|s| s.alpha).map_or("-".to_string(), |a| a.to_string()),
            first.map_or("-".to_string(), |s| degrees_label(&s.degrees)),
            c.total_depth,
            c.greedy.bootstrap_points,
            c.greedy.bootstrapped_ciphertexts,
            c.optimal.bootstrap_points,
            c.optimal.bootstrapped_ciphertexts
        );
    }
    out
}
