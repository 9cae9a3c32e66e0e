//! Where a CKKS evaluation of a network adds error and how much: one additive Gaussian per graph
//! node output, its variance the sum of the operations that produce that value under
//! encryption (`NoiseModel` gives each one's std). Backends add `NoisePlan::nodes[id].scale`
//! times the counter-based Gaussian (`he::noise_rng`) keyed by (seed, node, image, element)
//! to the node's output; errors that arrived with the inputs propagate through the plaintext
//! arithmetic itself.
//!
//! What each node adds (assumptions of the model, in one place):
//! - the input: encoding + encryption of the normalised image (`fresh_std`);
//! - a convolution (kh×kw over C_in channels), a linear layer, an average pool: one rescale after
//!   the plaintext-weight products, and one key switch per rotation of the multiplexed packing
//!   of Lee et al. (ICML 2022): kh·kw − 1 rotations for the kernel taps and ⌈log2 C_in⌉ for the
//!   rotate-and-sum over input channels (linear: ⌈log2 in_features⌉; average pool k×k: k² − 1;
//!   global average pool over h·w: ⌈log2 h·w⌉); the option-A shortcut: one mask product and one
//!   rotation. The rotated partial sums are added unweighted, so their key-switching errors add
//!   in variance;
//! - a bootstrap (where `he::placement` puts them, [`BootstrapAt`]): its error σ_boot is relative
//!   to the range the value was scaled into [-1, 1] with, which is the bound B of the activation
//!   site the value flows into: B·σ_boot on that node's output. A bootstrap between two stages
//!   of a composite refreshes sign values in [-1, 1]; it reaches the ReLU's output times B·t/2,
//!   taken at |t| = 1: (B/2)·σ_boot on the site's output;
//! - an approximated activation site with bound B: the composite's own evaluation error on its
//!   output (`NoiseModel::relu_eval_std`; a max-pool window of k×k values runs ⌈log2 k²⌉ levels
//!   of max, each one such evaluation);
//! - exact activations, additions, concatenation, flattening: nothing (additions add the
//!   errors their inputs carry).
//!
//! Errors far below an activation's f32 resolution (fresh/rescale/key-switch errors at scales
//! 2^40..2^50 are ~2^-35) vanish when added in f32, as they would in any f32 simulation; the
//! bootstrapping error (2^-10..2^-30) and low-scale presets are what the twin measures.

use super::levels::level_graph;
use super::noise::NoiseModel;
use super::noise_rng::quantise_scale;
use super::placement::{Placement, optimal};
use super::preset::CkksPreset;
use crate::model::cost::SitePrecision;
use crate::model::{Graph, NodeId, Op, Shape, SiteKind};
use crate::poly::Composite;
use serde::Serialize;

/// How one activation site is approximated (what the noise plan needs to know of it).
#[derive(Clone, Copy, Debug)]
pub struct NoisySite<'a> {
    pub composite: &'a Composite,
    pub bound: f64,
}

/// Where a bootstrap refreshes a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootstrapAt {
    /// The output of this node.
    Output(NodeId),
    /// Between the stages of the composite of this activation node.
    InsideActivation(NodeId),
}

/// The bootstraps of a placement, by node name; points of nodes the graph does not have are
/// an error (the placement was made for another graph).
pub fn bootstraps_of(graph: &Graph, placement: &Placement) -> Result<Vec<BootstrapAt>, String> {
    placement
        .points
        .iter()
        .map(|p| {
            let id = graph.nodes.iter().position(|n| n.name == p.node).ok_or_else(|| {
                format!(
                    "bootstrap placement names node `{}`, which {} lacks",
                    p.node, graph.name
                )
            })?;
            Ok(if p.part == "output" {
                BootstrapAt::Output(id)
            } else {
                BootstrapAt::InsideActivation(id)
            })
        })
        .collect()
}

/// The bootstraps of the fewest-ciphertext placement (`he::placement::optimal`) of `graph`
/// with the per-site precisions `precisions` under `preset`.
pub fn placed_bootstraps(
    graph: &Graph,
    precisions: &[SitePrecision],
    preset: &CkksPreset,
) -> Result<Vec<BootstrapAt>, String> {
    let lg = level_graph(graph, precisions).map_err(|e| e.to_string())?;
    let placement = optimal(&lg, preset.levels_after_bootstrap, preset.slots).map_err(|e| e.to_string())?;
    bootstraps_of(graph, &placement)
}

/// The noise added to one node's output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct NodeNoise {
    /// Standard deviation in the node's units.
    pub std: f64,
    /// `std` in the generator's integer units, rounded so that integer × scale is exact in f32.
    pub scale: f32,
}

/// Variance added per kind of operation, summed over the nodes (for reports: what dominates).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct NoiseBudget {
    pub encryption: f64,
    pub rescale: f64,
    pub key_switching: f64,
    pub bootstrapping: f64,
    pub activation_evaluation: f64,
}

/// Per node: the noise a CKKS evaluation adds there.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NoisePlan {
    pub seed: u64,
    pub nodes: Vec<NodeNoise>,
    pub budget: NoiseBudget,
}

impl NoisePlan {
    /// The plan for `graph` under `model`; `sites[s]` says how activation site `s` is
    /// approximated (None: exact, no noise there); `bootstraps` where values are refreshed.
    pub fn build(
        graph: &Graph,
        shapes: &[Shape],
        model: &NoiseModel,
        sites: &[Option<NoisySite>],
        bootstraps: &[BootstrapAt],
        seed: u64,
    ) -> NoisePlan {
        let mut var = vec![0.0f64; graph.nodes.len()];
        let mut budget = NoiseBudget::default();
        let rescale = model.rescale_std().powi(2);
        let ks = model.key_switch_std().powi(2);
        let linear = |var: &mut Vec<f64>, budget: &mut NoiseBudget, id: NodeId, rotations: u32| {
            var[id] += rescale + f64::from(rotations) * ks;
            budget.rescale += rescale;
            budget.key_switching += f64::from(rotations) * ks;
        };
        for (id, node) in graph.nodes.iter().enumerate() {
            match &node.op {
                Op::Input => {
                    let fresh = model.fresh_std().powi(2);
                    var[id] += fresh;
                    budget.encryption += fresh;
                }
                Op::Conv2d(conv) => {
                    let [kh, kw] = conv.kernel();
                    let taps = (kh * kw).saturating_sub(1) as u32;
                    linear(&mut var, &mut budget, id, taps + ceil_log2(conv.group_in_channels()));
                }
                Op::Linear(l) => linear(&mut var, &mut budget, id, ceil_log2(l.weight.shape[1])),
                Op::AvgPool { pool, .. } => linear(
                    &mut var,
                    &mut budget,
                    id,
                    (pool.kernel[0] * pool.kernel[1]).saturating_sub(1) as u32,
                ),
                Op::GlobalAvgPool { input } => {
                    let s = shapes[*input];
                    linear(&mut var, &mut budget, id, ceil_log2(s.h * s.w))
                }
                Op::ShortcutA { .. } => linear(&mut var, &mut budget, id, 1),
                Op::Relu { site, .. } | Op::MaxPool { site, .. } => {
                    let Some(s) = sites.get(*site).copied().flatten() else {
                        continue;
                    };
                    let levels = match (&node.op, graph.sites[*site].kind) {
                        (Op::MaxPool { pool, .. }, SiteKind::MaxPool) => {
                            ceil_log2(pool.kernel[0] * pool.kernel[1]).max(1)
                        }
                        _ => 1,
                    };
                    let v = f64::from(levels) * model.relu_eval_std(s.composite, s.bound).powi(2);
                    var[id] += v;
                    budget.activation_evaluation += v;
                }
                _ => {}
            }
        }
        if let Some(boot) = model.bootstrap_std() {
            for &at in bootstraps {
                let (id, range) = match at {
                    BootstrapAt::Output(id) => (id, range_of(graph, sites, id)),
                    BootstrapAt::InsideActivation(id) => (id, site_bound(graph, sites, id).unwrap_or(0.0) / 2.0),
                };
                let v = (range * boot).powi(2);
                var[id] += v;
                budget.bootstrapping += v;
            }
        }
        let nodes = var
            .iter()
            .map(|&v| NodeNoise {
                std: v.sqrt(),
                scale: quantise_scale(v.sqrt()),
            })
            .collect();
        NoisePlan { seed, nodes, budget }
    }

    /// Whether any node gets noise.
    pub fn is_silent(&self) -> bool {
        self.nodes.iter().all(|n| n.scale == 0.0)
    }

    /// The nodes that get noise (backends keep them unfused so the noise lands between the
    /// node and its consumers).
    pub fn noisy_nodes(&self) -> Vec<NodeId> {
        (0..self.nodes.len()).filter(|&i| self.nodes[i].scale != 0.0).collect()
    }
}

/// A noise plan applied to one batch: the dataset index of each image keys its draws, so a
/// batch, a shard or a rerun gives every image the same noise.
#[derive(Clone, Copy, Debug)]
pub struct NoiseRun<'a> {
    pub plan: &'a NoisePlan,
    pub images: &'a [u32],
}

/// The bound of the approximated site at node `id`, if it is one.
fn site_bound(graph: &Graph, sites: &[Option<NoisySite>], id: NodeId) -> Option<f64> {
    graph.nodes[id]
        .op
        .site()
        .and_then(|s| sites.get(s).copied().flatten())
        .map(|s| s.bound)
}

/// The range a bootstrap of node `id`'s value scales by: the bound of the first approximated
/// site it flows into (breadth first through its consumers), else the largest bound.
fn range_of(graph: &Graph, sites: &[Option<NoisySite>], id: NodeId) -> f64 {
    let mut queue = std::collections::VecDeque::from([id]);
    let mut seen = vec![false; graph.nodes.len()];
    while let Some(n) = queue.pop_front() {
        if let Some(b) = site_bound(graph, sites, n) {
            return b;
        }
        for (c, node) in graph.nodes.iter().enumerate() {
            if !seen[c] && node.op.inputs().contains(&n) {
                seen[c] = true;
                queue.push_back(c);
            }
        }
    }
    sites.iter().flatten().map(|s| s.bound).fold(0.0, f64::max)
}

fn ceil_log2(n: usize) -> u32 {
    n.max(1).next_power_of_two().trailing_zeros()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::he::noise::NoiseParams;
    use crate::model::{Arch, random};
    use crate::poly::{optimise_eps, paper_degrees};

    fn model(boot_bits: Option<f64>) -> NoiseModel {
        let mut p = NoiseParams::openfhe(16, 40, 60, 20, 3, 3.19);
        p.bootstrap_std = boot_bits.map(|b| (-b).exp2());
        NoiseModel::new(p).unwrap()
    }

    #[test]
    fn every_linear_node_and_approximated_site_gets_noise() {
        let graph = random(Arch::CifarResNet(20), 1).unwrap();
        let shapes = graph.shapes().unwrap();
        let composite = optimise_eps(paper_degrees(10).unwrap()).unwrap().composite;
        let sites = vec![
            Some(NoisySite {
                composite: &composite,
                bound: 10.0
            });
            graph.sites.len()
        ];
        // a bootstrap at the input of every ReLU (the values it reads)
        let boots: Vec<BootstrapAt> = graph
            .nodes
            .iter()
            .filter_map(|n| match n.op {
                Op::Relu { input, .. } => Some(BootstrapAt::Output(input)),
                _ => None,
            })
            .collect();
        let plan = NoisePlan::build(&graph, &shapes, &model(Some(12.0)), &sites, &boots, 5);
        for (id, node) in graph.nodes.iter().enumerate() {
            let noisy = plan.nodes[id].std > 0.0;
            match node.op {
                Op::Input | Op::Conv2d(_) | Op::Linear(_) | Op::Relu { .. } | Op::GlobalAvgPool { .. } => {
                    assert!(noisy, "{}", node.name)
                }
                Op::Add { .. } | Op::Flatten { .. } => {}
                _ => {}
            }
        }
        // the bootstrap (10 · 2^-12) dominates the conv feeding the first ReLU
        let first_conv = graph.nodes.iter().position(|n| matches!(n.op, Op::Conv2d(_))).unwrap();
        assert!((plan.nodes[first_conv].std / (10.0 * 2f64.powi(-12)) - 1.0).abs() < 1e-3);
        assert!(plan.budget.bootstrapping > 1e3 * plan.budget.rescale);
        // exact sites and no bootstrap: only the arithmetic's noise
        let none = vec![None; graph.sites.len()];
        let quiet = NoisePlan::build(&graph, &shapes, &model(None), &none, &boots, 5);
        assert_eq!(quiet.budget.bootstrapping, 0.0);
        assert_eq!(quiet.budget.activation_evaluation, 0.0);
        assert!(quiet.nodes[0].std > 0.0);
    }

    #[test]
    fn the_placement_bootstraps_resnet20_at_nodes_it_has() {
        let graph = random(Arch::CifarResNet(20), 1).unwrap();
        let degrees = paper_degrees(10).unwrap();
        let precisions = crate::model::cost::uniform_plan(&graph, Some(10), degrees, true, true);
        let preset = crate::he::load_preset("N16QP1546H192H32").unwrap();
        let boots = placed_bootstraps(&graph, &precisions, &preset).unwrap();
        assert!(boots.len() >= graph.sites.len() / 2, "{} bootstraps", boots.len());
    }

    #[test]
    fn rotations_follow_the_packing() {
        assert_eq!(ceil_log2(1), 0);
        assert_eq!(ceil_log2(16), 4);
        assert_eq!(ceil_log2(17), 5);
    }
}
