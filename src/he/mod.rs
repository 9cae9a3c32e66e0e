//! CKKS deployment model: what an encrypted deployment of a network pays in levels and
//! bootstrapping. `preset` holds the parameter sets, `levels` turns a graph and a precision plan
//! into ciphertext values with level costs, `placement` places the bootstraps (greedy and
//! optimal), and [`ckks_cost`] puts them together for a report. `noise`, `noise_rng` and
//! `inject` simulate the errors a CKKS evaluation adds (the "+ CKKS noise" twins of `eval`);
//! `poly_eval` evaluates a composite in an HE evaluator's basis and order (`--ckks-poly-eval he`).
//!
//! # Assumptions of the level model (the one place they are written down)
//!
//! * **Packing.** Each activation tensor of one image is packed densely into
//!   ceil(elements / slots) ciphertexts (channel-major, as in multiplexed packing); a bootstrap
//!   of a value refreshes all of them, so a bootstrap point costs ceil(elements / slots)
//!   ciphertext bootstraps. Strided convolutions repack their output within their own
//!   rotations at no extra level.
//! * **Levels.** A level is one rescale by Δ. The input is encrypted at the top level, the
//!   preset's `levels_after_bootstrap` (L), and a bootstrap returns a value to L.
//! * **Convolution / linear layer** (BatchNorm folded into it): plaintext weights, one level.
//!   The rotations it needs (to line up the kernel taps / to sum the dot products) cost no level.
//! * **Average pooling / global average pooling**: rotations and additions, then the 1/k²
//!   constant: one level, or none when its only consumer (through flattens) is a convolution or
//!   linear layer, whose plaintext weights absorb the constant.
//! * **ReLU**: x·(1 + p(x))/2 with p the composite sign approximation. Each stage of p consumes
//!   its odd baby-step giant-step depth (`poly::cost::odd_poly_cost`, ceil(log2(d+1)) for degree
//!   d ≥ 3; the 1/B input scaling and the constants fold into coefficients), and the final
//!   product one level more; that product needs x itself, so x's level also bounds the output.
//!   A bootstrap may fall between stages; values inside hold the ReLU's elements.
//! * **Max-pool**: the pairwise max tree of Lee et al., ceil(log2 k²) rounds, each round one
//!   max ((a+b) + (a−b)·p(a−b))/2 on ciphertexts holding the pool's input elements (rotations
//!   bring the window partners together, no level); each round costs the composite's depth plus
//!   one.
//! * **Residual add / concat**: no level; the branches are aligned by dropping to the lowest
//!   level among them. **Option-A shortcut** (subsample + zero channels): one plaintext mask, one
//!   level. **Flatten**: free.
//! * **Exact sites** (a plan that keeps some activations exact) cost nothing here; an HE
//!   deployment would have to approximate them.
//!
//! Bootstrapping itself consumes `bootstrap_levels` from a larger modulus that only
//! bootstrapping uses, so it does not enter the placement.

pub mod inject;
pub mod levels;
pub mod noise;
pub mod noise_rng;
pub mod placement;
pub mod poly_eval;
pub mod preset;

pub use inject::{NoisePlan, NoiseRun, NoisySite};
pub use levels::{LevelError, LevelGraph, Unit, level_graph};
pub use noise::{NoiseError, NoiseModel, NoiseParams};
pub use placement::{BootstrapPoint, Placement, PlacementError, greedy, optimal};
pub use preset::{CkksPreset, PresetError, SecretDist, load_preset, preset_names, shipped_presets};

use crate::model::cost::{NetworkCost, SitePrecision};
use crate::model::graph::Graph;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Bootstraps attributed to one graph node (per image).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeBootstraps {
    pub node: String,
    pub greedy_points: u32,
    pub greedy_ciphertexts: u64,
    pub optimal_points: u32,
    pub optimal_ciphertexts: u64,
}

/// The CKKS cost of a network under a precision plan and a preset (per image).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CkksCost {
    pub preset: String,
    pub slots: u64,
    pub levels_after_bootstrap: u32,
    /// Levels the deepest input → output path consumes without bootstrapping.
    pub total_depth: u32,
    pub greedy: Placement,
    pub optimal: Placement,
    /// Nodes with at least one bootstrap in either placement, in graph order.
    pub per_node: Vec<NodeBootstraps>,
}

#[derive(Debug)]
pub enum CkksError {
    Levels(LevelError),
    Placement(PlacementError),
}

impl fmt::Display for CkksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CkksError::Levels(e) => write!(f, "{e}"),
            CkksError::Placement(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for CkksError {}

/// Level model, greedy and optimal placement of `graph` under `plan` with `preset`.
pub fn ckks_cost(graph: &Graph, plan: &[SitePrecision], preset: &CkksPreset) -> Result<CkksCost, CkksError> {
    let lg = level_graph(graph, plan).map_err(CkksError::Levels)?;
    cost_of_level_graph(&lg, preset).map_err(CkksError::Placement)
}

/// Greedy and optimal placement of an already built level graph.
pub fn cost_of_level_graph(lg: &LevelGraph, preset: &CkksPreset) -> Result<CkksCost, PlacementError> {
    let levels = preset.levels_after_bootstrap;
    let greedy = greedy(lg, levels, preset.slots)?;
    let optimal = optimal(lg, levels, preset.slots)?;
    let per_node = per_node(lg, &greedy, &optimal);
    Ok(CkksCost {
        preset: preset.name.clone(),
        slots: preset.slots,
        levels_after_bootstrap: levels,
        total_depth: lg.total_depth(),
        greedy,
        optimal,
        per_node,
    })
}

fn per_node(lg: &LevelGraph, greedy: &Placement, optimal: &Placement) -> Vec<NodeBootstraps> {
    let mut rows: Vec<NodeBootstraps> = Vec::new();
    // Units are in graph order, so rows come out in graph order.
    for unit in 0..lg.units.len() {
        let g = greedy.points.iter().find(|p| p.unit == unit);
        let o = optimal.points.iter().find(|p| p.unit == unit);
        if g.is_none() && o.is_none() {
            continue;
        }
        let node = &lg.units[unit].node;
        let i = match rows.iter().position(|r| &r.node == node) {
            Some(i) => i,
            None => {
                rows.push(NodeBootstraps {
                    node: node.clone(),
                    greedy_points: 0,
                    greedy_ciphertexts: 0,
                    optimal_points: 0,
                    optimal_ciphertexts: 0,
                });
                rows.len() - 1
            }
        };
        if let Some(p) = g {
            rows[i].greedy_points += 1;
            rows[i].greedy_ciphertexts += p.ciphertexts;
        }
        if let Some(p) = o {
            rows[i].optimal_points += 1;
            rows[i].optimal_ciphertexts += p.ciphertexts;
        }
    }
    rows
}

/// What a report calls a configuration's HE cost: the activations' multiplications and depth
/// ([`NetworkCost`]) and, when a preset is given (`--ckks`), the CKKS levels and bootstraps of
/// the same plan. The JSON is the network cost's fields with `ckks` beside them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeCost {
    #[serde(flatten)]
    pub network: NetworkCost,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ckks: Option<CkksCost>,
}

impl HeCost {
    /// `network` with the CKKS cost of the same `plan` under `preset` (none without a preset).
    pub fn with_ckks(
        network: NetworkCost,
        graph: &Graph,
        plan: &[SitePrecision],
        preset: Option<&CkksPreset>,
    ) -> Result<HeCost, CkksError> {
        let ckks = preset.map(|p| ckks_cost(graph, plan, p)).transpose()?;
        Ok(HeCost { network, ckks })
    }
}

impl std::ops::Deref for HeCost {
    type Target = NetworkCost;
    fn deref(&self) -> &NetworkCost {
        &self.network
    }
}
