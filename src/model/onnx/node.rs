//! A node as the translator sees it: its display name, operator, attributes and inputs.

use super::error::{OnnxError, Place};
use super::proto::{AttributeProto, NodeProto, TensorProto};

pub struct NodeView<'n> {
    pub proto: &'n NodeProto,
    /// The node's name ([`unique_names`]).
    pub name: String,
    pub op: &'n str,
    pub opset: i64,
    pub file: &'n str,
}

impl<'n> NodeView<'n> {
    pub fn new(proto: &'n NodeProto, name: String, opset: i64, file: &'n str) -> NodeView<'n> {
        NodeView {
            proto,
            name,
            op: proto.op_type.as_deref().unwrap_or(""),
            opset,
            file,
        }
    }

    pub fn error(&self, detail: impl Into<String>) -> OnnxError {
        OnnxError {
            file: self.file.to_string(),
            place: Place::Node {
                name: self.name.clone(),
                op_type: self.op.to_string(),
                opset: self.opset,
            },
            detail: detail.into(),
        }
    }

    /// The operator's domain, `""` for the default ONNX one.
    pub fn domain(&self) -> &str {
        match self.proto.domain.as_deref() {
            None | Some("ai.onnx") => "",
            Some(d) => d,
        }
    }

    /// Input `i`'s value name; `None` when absent or omitted (empty name).
    pub fn input(&self, i: usize) -> Option<&'n str> {
        self.proto.input.get(i).map(String::as_str).filter(|s| !s.is_empty())
    }

    pub fn output(&self, i: usize) -> Option<&'n str> {
        self.proto.output.get(i).map(String::as_str).filter(|s| !s.is_empty())
    }

    fn attr(&self, name: &str) -> Option<&'n AttributeProto> {
        self.proto.attribute.iter().find(|a| a.name.as_deref() == Some(name))
    }

    pub fn int(&self, name: &str, default: i64) -> i64 {
        self.attr(name).and_then(|a| a.i).unwrap_or(default)
    }

    pub fn ints(&self, name: &str) -> Option<Vec<i64>> {
        self.attr(name).map(|a| a.ints.clone())
    }

    pub fn float(&self, name: &str) -> Option<f32> {
        self.attr(name).and_then(|a| a.f)
    }

    pub fn string(&self, name: &str) -> Option<String> {
        self.attr(name)
            .and_then(|a| a.s.as_ref())
            .map(|s| String::from_utf8_lossy(s).into_owned())
    }

    pub fn tensor(&self, name: &str) -> Option<&'n TensorProto> {
        self.attr(name).and_then(|a| a.t.as_ref())
    }

    /// Attribute names present on the node (for errors about unexpected attributes).
    pub fn has(&self, name: &str) -> bool {
        self.attr(name).is_some()
    }
}

/// A name per node, unique within the graph (they name activation sites): the node's own, its
/// first output's when it has none, and either followed by ` (output)` when already taken.
pub fn unique_names(nodes: &[NodeProto]) -> Vec<String> {
    let mut taken = std::collections::HashSet::new();
    nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let output = node.output.first().filter(|o| !o.is_empty()).cloned();
            let own = node.name.clone().filter(|n| !n.is_empty());
            let mut name = own.or_else(|| output.clone()).unwrap_or_else(|| format!("#{i}"));
            if taken.contains(&name) {
                name = format!("{name} ({})", output.unwrap_or_else(|| format!("#{i}")));
            }
            taken.insert(name.clone());
            name
        })
        .collect()
}
