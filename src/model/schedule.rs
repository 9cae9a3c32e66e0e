//! The fusion schedule both executors follow: which ops run as one step.
//!
//! A conv whose value only a ReLU reads, or only an `Add` whose other operand already exists
//! (then possibly only a ReLU reads the sum), runs as one [`Step::Conv`]: the residual is added
//! and the ReLU site applied in the conv's epilogue, and the fused-away intermediate values are
//! never stored. Every other node is a [`Step::Node`]. Steps are in graph (topological) order
//! of their first node, so every value a step reads was produced by an earlier step.
//!
//! A node counts as read once more than the graph says when it is the output or a node the
//! caller keeps ([`reader_counts`]): such a node is never fused away nor freed.

use super::graph::{Graph, NodeId, Op, SiteId};

/// One unit of execution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Any node but the input and the convs, run on its own.
    Node(NodeId),
    /// Every conv: `output = site(conv(input) + bias (+ residual))`, `site` the ReLU site
    /// applied in the epilogue. `output` is the last node fused (the conv itself when nothing
    /// is, else the Add or the ReLU); the result is stored as that node's value.
    Conv {
        conv: NodeId,
        residual: Option<NodeId>,
        site: Option<SiteId>,
        output: NodeId,
    },
}

impl Step {
    /// The node whose value this step produces.
    pub fn output(&self) -> NodeId {
        match *self {
            Step::Node(id) => id,
            Step::Conv { output, .. } => output,
        }
    }

    /// Stored values this step reads (one entry per read; fused intermediates are not stored).
    pub fn reads(&self, graph: &Graph) -> Vec<NodeId> {
        match *self {
            Step::Node(id) => graph.nodes[id].op.inputs(),
            Step::Conv { conv, residual, .. } => match &graph.nodes[conv].op {
                Op::Conv2d(c) => std::iter::once(c.input).chain(residual).collect(),
                _ => unreachable!("a conv step is built on a conv node"),
            },
        }
    }
}

/// The steps for `graph` (only the output is kept).
pub fn fused_schedule(graph: &Graph) -> Vec<Step> {
    fused_schedule_keeping(graph, &[])
}

/// Per node, how many times its value is read by later nodes, plus one for the output and for
/// each kept node: an executor frees a value when its count reaches zero, which those never do.
pub fn reader_counts(graph: &Graph, keep: &[NodeId]) -> Vec<usize> {
    let mut readers = graph.consumer_counts();
    for &id in keep.iter().chain([&graph.output]) {
        if let Some(r) = readers.get_mut(id) {
            *r += 1;
        }
    }
    readers
}

/// The steps for `graph`, with the nodes `keep` (whose values a caller wants to see) never
/// fused away.
pub fn fused_schedule_keeping(graph: &Graph, keep: &[NodeId]) -> Vec<Step> {
    let readers = reader_counts(graph, keep);
    let mut reader_of: Vec<Option<NodeId>> = vec![None; graph.nodes.len()];
    for (id, node) in graph.nodes.iter().enumerate() {
        for input in node.op.inputs() {
            reader_of[input] = Some(id);
        }
    }
    // The single reader of `id`, unless it has several (the output and kept nodes count one more).
    let sole_reader = |id: NodeId| (readers[id] == 1).then(|| reader_of[id]).flatten();
    let relu_site = |id: NodeId| match graph.nodes[id].op {
        Op::Relu { site, .. } => Some(site),
        _ => None,
    };
    let mut fused = vec![false; graph.nodes.len()];
    let mut steps = Vec::new();
    for (id, node) in graph.nodes.iter().enumerate() {
        if fused[id] || matches!(node.op, Op::Input) {
            continue;
        }
        if !matches!(node.op, Op::Conv2d(_)) {
            steps.push(Step::Node(id));
            continue;
        }
        let (mut residual, mut site, mut absorbed) = (None, None, Vec::new());
        if let Some(next) = sole_reader(id) {
            match graph.nodes[next].op {
                Op::Relu { site: s, .. } => {
                    site = Some(s);
                    absorbed.push(next);
                }
                Op::Add { a, b } if a != b => {
                    let other = if a == id { b } else { a };
                    // The residual must already exist when the conv runs.
                    if other < id {
                        residual = Some(other);
                        absorbed.push(next);
                        if let Some(relu) = sole_reader(next)
                            && let Some(s) = relu_site(relu)
                        {
                            site = Some(s);
                            absorbed.push(relu);
                        }
                    }
                }
                _ => {}
            }
        }
        let output = absorbed.last().copied().unwrap_or(id);
        absorbed.into_iter().for_each(|a| fused[a] = true);
        steps.push(Step::Conv {
            conv: id,
            residual,
            site,
            output,
        });
    }
    steps
}
