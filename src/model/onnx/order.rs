//! Which nodes to translate, in which order: the nodes the graph output depends on, topologically
//! sorted (the standard requires sorted files; we sort anyway and detect what cannot be sorted).

use super::error::OnnxError;
use super::node::NodeView;
use super::proto::GraphProto;
use std::collections::{BTreeSet, HashMap, HashSet};

/// Indices of the nodes `outputs` depend on, producers first (ties in file order). Fails on a
/// value produced twice, a node input that nothing provides, and a cycle.
pub fn needed_in_order<'a>(
    graph: &GraphProto,
    available: &HashSet<String>,
    outputs: &[String],
    view: &dyn Fn(usize) -> NodeView<'a>,
) -> Result<Vec<usize>, OnnxError> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, node) in graph.node.iter().enumerate() {
        for out in node.output.iter().filter(|o| !o.is_empty()) {
            if producer.insert(out.as_str(), i).is_some() || available.contains(out) {
                return Err(view(i).error(format!("value `{out}` is produced more than once")));
            }
        }
    }
    let needed = needed_nodes(graph, &producer, outputs);
    let mut waiting_on: HashMap<usize, usize> = HashMap::new();
    let mut readers: HashMap<usize, Vec<usize>> = HashMap::new();
    for &i in &needed {
        let mut deps = BTreeSet::new();
        for input in graph.node[i].input.iter().filter(|s| !s.is_empty()) {
            match producer.get(input.as_str()) {
                Some(&p) => {
                    deps.insert(p);
                }
                None if available.contains(input) => {}
                None => {
                    return Err(view(i).error(format!(
                        "input `{input}` is neither a graph input, an initializer nor any node's output"
                    )));
                }
            }
        }
        waiting_on.insert(i, deps.len());
        for d in deps {
            readers.entry(d).or_default().push(i);
        }
    }
    let mut ready: BTreeSet<usize> = needed.iter().copied().filter(|i| waiting_on[i] == 0).collect();
    let mut order = Vec::with_capacity(needed.len());
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &r in readers.get(&i).map_or(&[][..], Vec::as_slice) {
            let left = waiting_on.get_mut(&r).expect("readers are needed nodes");
            *left -= 1;
            if *left == 0 {
                ready.insert(r);
            }
        }
    }
    if let Some(&stuck) = needed.iter().find(|i| waiting_on[i] > 0) {
        return Err(view(stuck).error("is part of a cycle (its inputs depend on its own output)".to_string()));
    }
    Ok(order)
}

/// The nodes some output depends on, found backwards from the outputs.
fn needed_nodes(graph: &GraphProto, producer: &HashMap<&str, usize>, outputs: &[String]) -> BTreeSet<usize> {
    let mut needed = BTreeSet::new();
    let mut stack: Vec<usize> = outputs
        .iter()
        .filter_map(|o| producer.get(o.as_str()).copied())
        .collect();
    while let Some(i) = stack.pop() {
        if needed.insert(i) {
            stack.extend(
                graph.node[i]
                    .input
                    .iter()
                    .filter_map(|s| producer.get(s.as_str()).copied()),
            );
        }
    }
    needed
}
