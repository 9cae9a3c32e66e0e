//! The level model of a network: the graph and a precision plan turned into a DAG of ciphertext
//! values ([`LevelGraph`]), each consuming a number of levels from the lowest of its inputs.
//! The rules (and the packing behind them) are in the module docs of `he`.

use crate::model::cost::SitePrecision;
use crate::model::graph::{Graph, NodeId, Op};
use crate::poly::cost::odd_poly_cost;
use std::fmt;

pub type UnitId = usize;

/// One ciphertext value (or group of ciphertexts holding one tensor) of the encrypted network.
#[derive(Clone, Debug, PartialEq)]
pub struct Unit {
    /// The values it is computed from; empty for the network input.
    pub inputs: Vec<UnitId>,
    /// Levels it consumes: its level is the lowest input level minus `depth`.
    pub depth: u32,
    /// Tensor elements the value holds (per image).
    pub elements: u64,
    /// The graph node it belongs to.
    pub node: String,
    /// Which value of the node: "output", or a composite stage inside an activation.
    pub part: String,
}

/// The network as ciphertext values in topological order (inputs before consumers); unit 0 is
/// the encrypted input, the last unit the output.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LevelGraph {
    pub units: Vec<Unit>,
}

impl LevelGraph {
    pub fn push(&mut self, inputs: Vec<UnitId>, depth: u32, elements: u64, node: &str, part: &str) -> UnitId {
        debug_assert!(inputs.iter().all(|&i| i < self.units.len()), "inputs must come first");
        self.units.push(Unit {
            inputs,
            depth,
            elements,
            node: node.to_string(),
            part: part.to_string(),
        });
        self.units.len() - 1
    }

    pub fn output(&self) -> UnitId {
        self.units.len() - 1
    }

    /// Number of consumers of each unit.
    pub fn consumer_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.units.len()];
        for u in &self.units {
            for &i in &u.inputs {
                counts[i] += 1;
            }
        }
        counts
    }

    /// Levels the network consumes on its deepest path (what a parameter set without
    /// bootstrapping would need above the base modulus).
    pub fn total_depth(&self) -> u32 {
        let mut consumed = vec![0u32; self.units.len()];
        for (id, u) in self.units.iter().enumerate() {
            consumed[id] = u.inputs.iter().map(|&i| consumed[i]).max().unwrap_or(0) + u.depth;
        }
        consumed.last().copied().unwrap_or(0)
    }

    /// The deepest single unit (a placement needs at least this many levels per bootstrap).
    pub fn max_unit_depth(&self) -> Option<&Unit> {
        self.units.iter().max_by_key(|u| u.depth)
    }
}

#[derive(Debug)]
pub enum LevelError {
    PlanLength { model: String, sites: usize, plan: usize },
    Degrees { site: String, why: String },
    Graph(String),
}

impl fmt::Display for LevelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LevelError::PlanLength { model, sites, plan } => {
                write!(f, "{model} has {sites} activation sites but the plan gives {plan}")
            }
            LevelError::Degrees { site, why } => write!(f, "site `{site}`: {why}"),
            LevelError::Graph(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for LevelError {}

/// The level model of `graph` under `plan` (one entry per site, in `graph.sites` order).
pub fn level_graph(graph: &Graph, plan: &[SitePrecision]) -> Result<LevelGraph, LevelError> {
    if plan.len() != graph.sites.len() {
        return Err(LevelError::PlanLength {
            model: graph.name.clone(),
            sites: graph.sites.len(),
            plan: plan.len(),
        });
    }
    let shapes = graph.shapes().map_err(|e| LevelError::Graph(e.to_string()))?;
    let numel = |id: NodeId| shapes[id].numel() as u64;
    let mut lg = LevelGraph::default();
    // The unit holding each node's output.
    let mut unit_of: Vec<UnitId> = Vec::with_capacity(graph.nodes.len());
    for (id, node) in graph.nodes.iter().enumerate() {
        let name = node.name.as_str();
        let out = numel(id);
        let unit = match &node.op {
            Op::Input => lg.push(vec![], 0, out, name, "output"),
            Op::Conv2d(c) => lg.push(vec![unit_of[c.input]], 1, out, name, "output"),
            Op::Linear(l) => lg.push(vec![unit_of[l.input]], 1, out, name, "output"),
            Op::Relu { input, site } | Op::MaxPool { input, site, .. } => {
                let stage_depths = stage_depths(graph, *site, &plan[*site])?;
                let x = unit_of[*input];
                let levels = match &node.op {
                    Op::MaxPool { pool, .. } => tree_levels((pool.kernel[0] * pool.kernel[1]) as u64),
                    _ => 1,
                };
                match stage_depths {
                    // Exact: no HE cost in this model (a deployment has to approximate it).
                    None => lg.push(vec![x], 0, out, name, "output"),
                    Some(depths) => sign_product_chain(&mut lg, x, &depths, levels, numel(*input), out, name),
                }
            }
            Op::AvgPool { input, .. } | Op::GlobalAvgPool { input } => {
                let depth = if folds_into_linear(graph, id) { 0 } else { 1 };
                lg.push(vec![unit_of[*input]], depth, out, name, "output")
            }
            Op::Add { a, b } | Op::Sub { a, b } => lg.push(vec![unit_of[*a], unit_of[*b]], 0, out, name, "output"),
            // A plaintext per-channel scale costs a level; a shift alone is an addition.
            Op::Affine(a) => {
                let depth = if a.scale.iter().all(|&s| s == 1.0) { 0 } else { 1 };
                lg.push(vec![unit_of[a.input]], depth, out, name, "output")
            }
            // Exact-only functions (sigmoid, GELU, ...): like an exact site, no HE cost in this model.
            Op::Pointwise { input, .. } => lg.push(vec![unit_of[*input]], 0, out, name, "output"),
            Op::Concat { inputs } => lg.push(inputs.iter().map(|&i| unit_of[i]).collect(), 0, out, name, "output"),
            // Subsampling and zero channel padding: one plaintext 0/1 mask (one level).
            Op::ShortcutA { input, .. } => lg.push(vec![unit_of[*input]], 1, out, name, "output"),
            Op::Flatten { input } => lg.push(vec![unit_of[*input]], 0, out, name, "output"),
        };
        unit_of.push(unit);
    }
    // The output node is the last unit only if it is the last node; make it so.
    let output = unit_of[graph.output];
    if output != lg.output() {
        let name = graph.nodes[graph.output].name.clone();
        let elements = lg.units[output].elements;
        lg.push(vec![output], 0, elements, &name, "result");
    }
    Ok(lg)
}

/// The composite's stage depths (odd BSGS depth of each degree), `None` for an exact site.
fn stage_depths(graph: &Graph, site: usize, precision: &SitePrecision) -> Result<Option<Vec<u32>>, LevelError> {
    let SitePrecision::Approx { degrees, .. } = precision else {
        return Ok(None);
    };
    let bad = |why: String| LevelError::Degrees {
        site: graph.sites[site].name.clone(),
        why,
    };
    if degrees.is_empty() {
        return Err(bad("empty degree list".into()));
    }
    if let Some(d) = degrees.iter().find(|&&d| d % 2 == 0 || !(1..=255).contains(&d)) {
        return Err(bad(format!("degree {d} is not an odd number in 1..=255")));
    }
    Ok(Some(degrees.iter().map(|&d| odd_poly_cost(d).depth).collect()))
}

/// `levels` rounds of sign-then-product (1 for a ReLU x·(1+p(x))/2, the tree depth for a
/// max-pool's pairwise maxima ((a+b)+(a−b)·p(a−b))/2). Each round: the composite's stages on
/// the round's input, then one product of that input with the last stage. Values inside the
/// rounds hold the activation's input elements (rotations keep the layout); the last product is
/// the node's output.
fn sign_product_chain(
    lg: &mut LevelGraph,
    x: UnitId,
    stage_depths: &[u32],
    levels: u32,
    inner_elements: u64,
    out_elements: u64,
    name: &str,
) -> UnitId {
    let mut round_input = x;
    for round in 0..levels {
        let mut s = round_input;
        for (k, &d) in stage_depths.iter().enumerate() {
            let part = if levels == 1 {
                format!("stage {}", k + 1)
            } else {
                format!("tree level {} stage {}", round + 1, k + 1)
            };
            s = lg.push(vec![s], d, inner_elements, name, &part);
        }
        let last = round + 1 == levels;
        let (elements, part) = if last {
            (out_elements, "output".to_string())
        } else {
            (inner_elements, format!("tree level {}", round + 1))
        };
        round_input = lg.push(vec![round_input, s], 1, elements, name, &part);
    }
    round_input
}

/// Levels of the pairwise max tree over n inputs: ceil(log2 n).
fn tree_levels(n: u64) -> u32 {
    if n <= 1 { 0 } else { u64::BITS - (n - 1).leading_zeros() }
}

/// Whether an average pool's 1/k² can be folded into the plaintext weights of the next linear
/// op: its only consumer (through flattens) is a convolution or linear layer.
fn folds_into_linear(graph: &Graph, pool: NodeId) -> bool {
    let mut current = pool;
    loop {
        let consumers: Vec<NodeId> = (0..graph.nodes.len())
            .filter(|&n| graph.nodes[n].op.inputs().contains(&current))
            .collect();
        match consumers.as_slice() {
            [only] => match graph.nodes[*only].op {
                Op::Conv2d(_) | Op::Linear(_) => return true,
                Op::Flatten { .. } => current = *only,
                _ => return false,
            },
            _ => return false,
        }
    }
}
