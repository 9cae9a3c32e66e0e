//! The translator's state: what every ONNX value is (a constant, or a node of the graph being
//! built), node pushing with shape checks, and per-channel affine maps folded into the
//! convolution or linear layer before them (BatchNormalization, Mul/Add/Sub/Div by constants).

use super::decode::ModelFile;
use super::fold::Constant;
use super::node::NodeView;
use crate::model::graph::{self, GraphBuilder, NodeId, Op, Shape};
use std::collections::HashMap;

/// An ONNX value during translation.
#[derive(Clone, Debug)]
pub enum Value {
    /// Known at load time (initializers, constants, shape arithmetic).
    Const(Constant),
    /// Computed at run time by a graph node.
    Act(Act),
}

/// A run-time value: a graph node, how ONNX sees its rank, and the zero padding and strided
/// slicing that have been read but not applied yet (they fold into the next conv, pool or
/// option-A shortcut).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Act {
    pub node: NodeId,
    /// `[N, features]` rather than `[N, C, H, W]`.
    pub flat: bool,
    /// Zero padding `[top, left, bottom, right]` still to apply.
    pub pad: [usize; 4],
    /// `x[:, :, ::sh, ::sw]` still to apply.
    pub subsample: [usize; 2],
}

impl Act {
    pub fn plain(node: NodeId, flat: bool) -> Act {
        Act {
            node,
            flat,
            pad: [0; 4],
            subsample: [1, 1],
        }
    }
}

/// `y = (x + pre)·scale + post` per channel (per feature of a flat value); a length-1 vector
/// applies to every channel. BatchNormalization is (x − mean)·γ/√(var+ε) + β in this form, which
/// folds into a convolution exactly as the built-in architectures fold it.
#[derive(Clone, Debug, PartialEq)]
pub struct Affine {
    pub pre: Vec<f64>,
    pub scale: Vec<f64>,
    pub post: Vec<f64>,
}

impl Affine {
    pub fn scale(scale: Vec<f64>) -> Affine {
        Affine {
            pre: vec![0.0],
            scale,
            post: vec![0.0],
        }
    }

    pub fn shift(post: Vec<f64>) -> Affine {
        Affine {
            pre: vec![0.0],
            scale: vec![1.0],
            post,
        }
    }

    fn at(v: &[f64], c: usize) -> f64 {
        if v.len() == 1 { v[0] } else { v[c] }
    }

    /// Whether every vector has one value or `channels`.
    fn fits(&self, channels: usize) -> bool {
        [&self.pre, &self.scale, &self.post]
            .iter()
            .all(|v| v.len() == 1 || v.len() == channels)
    }

    /// Applies the map to the output rows of a weight `[out, ...]` and its bias.
    fn fold_into(&self, weight: &mut [f32], bias: &mut [f32]) {
        let per_out = weight.len() / bias.len().max(1);
        for (c, (row, b)) in weight.chunks_exact_mut(per_out).zip(bias.iter_mut()).enumerate() {
            let scale = Self::at(&self.scale, c);
            for w in row {
                *w = (*w as f64 * scale) as f32;
            }
            *b = ((*b as f64 + Self::at(&self.pre, c)) * scale + Self::at(&self.post, c)) as f32;
        }
    }
}

pub struct Translator<'f> {
    pub file: &'f ModelFile,
    pub builder: GraphBuilder,
    values: HashMap<String, Value>,
    /// How many node inputs (and graph outputs) read each ONNX value.
    consumers: HashMap<String, usize>,
    /// How many ONNX values are bound to each graph node (aliases through Identity count).
    bound: HashMap<NodeId, usize>,
    shapes: Vec<Shape>,
    /// The batch size the file declares, if a number (a constant reshape target may repeat it).
    pub static_batch: Option<usize>,
}

impl<'f> Translator<'f> {
    pub fn new(
        file: &'f ModelFile,
        builder: GraphBuilder,
        consumers: HashMap<String, usize>,
        static_batch: Option<usize>,
    ) -> Translator<'f> {
        Translator {
            file,
            builder,
            values: HashMap::new(),
            consumers,
            bound: HashMap::new(),
            shapes: Vec::new(),
            static_batch,
        }
    }

    /// Binds an ONNX value name.
    pub fn set(&mut self, name: &str, value: Value) {
        if let Value::Act(a) = &value {
            *self.bound.entry(a.node).or_default() += 1;
        }
        self.values.insert(name.to_string(), value);
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name)
    }

    /// Binds output `i` of `n`.
    pub fn output(&mut self, n: &NodeView, i: usize, value: Value) -> Result<(), crate::model::onnx::OnnxError> {
        let name = n.output(i).ok_or_else(|| n.error(format!("has no output #{i}")))?;
        self.set(name, value);
        Ok(())
    }

    pub fn input(&self, n: &NodeView, i: usize) -> Result<&Value, super::OnnxError> {
        let name = n.input(i).ok_or_else(|| n.error(format!("input #{i} is missing")))?;
        self.values.get(name).ok_or_else(|| {
            n.error(format!(
                "input `{name}` has no value (an output this importer does not produce)"
            ))
        })
    }

    /// Input `i`, which must be known at load time.
    pub fn constant(&self, n: &NodeView, i: usize) -> Result<&Constant, super::OnnxError> {
        match self.input(n, i)? {
            Value::Const(c) => Ok(c),
            Value::Act(_) => Err(n.error(format!(
                "input #{i} `{}` must be a constant known at load time, it is computed from the image",
                n.input(i).unwrap_or_default()
            ))),
        }
    }

    pub fn opt_constant(&self, n: &NodeView, i: usize) -> Result<Option<&Constant>, super::OnnxError> {
        match n.input(i) {
            None => Ok(None),
            Some(_) => self.constant(n, i).map(Some),
        }
    }

    /// Input `i` as a run-time value, with any pending pad or slice still attached.
    pub fn act(&self, n: &NodeView, i: usize) -> Result<Act, super::OnnxError> {
        match self.input(n, i)? {
            Value::Act(a) => Ok(*a),
            Value::Const(_) => Err(n.error(format!(
                "input #{i} `{}` is a constant; only shape arithmetic is evaluated at load time",
                n.input(i).unwrap_or_default()
            ))),
        }
    }

    /// Input `i` as a run-time value with pending slicing applied; a pending Pad is an error
    /// here (it folds only into a following Conv, MaxPool or AveragePool).
    pub fn plain_act(&mut self, n: &NodeView, i: usize) -> Result<Act, super::OnnxError> {
        let a = self.act(n, i)?;
        self.materialise(n, a)
    }

    pub fn materialise(&mut self, n: &NodeView, a: Act) -> Result<Act, super::OnnxError> {
        if a.pad != [0; 4] {
            return Err(
                n.error("reads a zero-padded value; Pad is supported only right before Conv, MaxPool or AveragePool")
            );
        }
        if a.subsample == [1, 1] {
            return Ok(a);
        }
        self.shortcut(n, a, 0)
    }

    /// `x[:, :, ::s, ::s]` then `extra` zero channels on each side (the option-A shortcut).
    pub fn shortcut(&mut self, n: &NodeView, a: Act, extra: usize) -> Result<Act, super::OnnxError> {
        let [sh, sw] = a.subsample;
        if sh != sw {
            return Err(n.error(format!(
                "strided slicing by {sh} and {sw} along H and W (must be equal)"
            )));
        }
        let channels = self.shape(n, a.node)?.c;
        let op = Op::ShortcutA {
            input: a.node,
            out_channels: channels + 2 * extra,
            stride: sh,
        };
        Ok(Act::plain(self.push(n, op)?, a.flat))
    }

    /// Per-image dims of a value as ONNX sees it, `None` for the batch.
    pub fn onnx_dims(&mut self, n: &NodeView, a: Act) -> Result<Vec<Option<usize>>, super::OnnxError> {
        let a = self.materialise(n, a)?;
        let s = self.shape(n, a.node)?;
        Ok(if a.flat {
            vec![None, Some(s.numel())]
        } else {
            vec![None, Some(s.c), Some(s.h), Some(s.w)]
        })
    }

    pub fn push(&mut self, n: &NodeView, op: Op) -> Result<NodeId, super::OnnxError> {
        let id = self.builder.push(&n.name, op);
        self.check_shapes(n)?;
        Ok(id)
    }

    /// A ReLU activation site named after the node.
    pub fn relu(&mut self, n: &NodeView, input: NodeId) -> Result<NodeId, super::OnnxError> {
        let id = self.builder.relu(&n.name, input);
        self.check_shapes(n)?;
        Ok(id)
    }

    /// ReLU6 as two ReLU sites sharing B, named `{node}.relu` and `{node}.relu_minus6`.
    pub fn relu6(&mut self, n: &NodeView, input: NodeId) -> Result<NodeId, super::OnnxError> {
        let id = self.builder.relu6(&n.name, input);
        self.check_shapes(n)?;
        Ok(id)
    }

    pub fn max_pool(
        &mut self,
        n: &NodeView,
        input: NodeId,
        pool: crate::model::Window2d,
    ) -> Result<NodeId, super::OnnxError> {
        let id = self.builder.max_pool(&n.name, input, pool);
        self.check_shapes(n)?;
        Ok(id)
    }

    fn check_shapes(&mut self, n: &NodeView) -> Result<(), super::OnnxError> {
        self.shapes = self.builder.graph().shapes().map_err(|e| n.error(e.detail))?;
        Ok(())
    }

    pub fn shape(&mut self, n: &NodeView, node: NodeId) -> Result<Shape, super::OnnxError> {
        if node >= self.shapes.len() {
            self.check_shapes(n)?;
        }
        Ok(self.shapes[node])
    }

    /// An affine node: `y = x·scale + (pre·scale + post)`.
    fn push_affine(&mut self, n: &NodeView, a: Act, affine: &Affine) -> Result<Act, super::OnnxError> {
        let len = [&affine.pre, &affine.scale, &affine.post]
            .iter()
            .map(|v| v.len())
            .max()
            .unwrap_or(1);
        let scale: Vec<f32> = (0..len).map(|c| Affine::at(&affine.scale, c) as f32).collect();
        let shift: Vec<f32> = (0..len)
            .map(|c| (Affine::at(&affine.pre, c) * Affine::at(&affine.scale, c) + Affine::at(&affine.post, c)) as f32)
            .collect();
        let op = Op::Affine(graph::Affine {
            input: a.node,
            scale,
            shift,
        });
        Ok(Act::plain(self.push(n, op)?, a.flat))
    }

    /// Applies `affine` to input `i`: folded into the convolution or linear layer that produces
    /// it when nothing else reads that layer's output, otherwise an affine node.
    pub fn affine(&mut self, n: &NodeView, i: usize, affine: Affine) -> Result<Act, super::OnnxError> {
        let a = self.plain_act(n, i)?;
        let shape = self.shape(n, a.node)?;
        let channels = if a.flat { shape.numel() } else { shape.c };
        if !affine.fits(channels) {
            return Err(n.error(format!(
                "per-channel constants of lengths {}/{}/{} do not fit {channels} channels",
                affine.pre.len(),
                affine.scale.len(),
                affine.post.len()
            )));
        }
        let input_name = n.input(i).unwrap_or_default();
        let sole_reader = self.consumers.get(input_name) == Some(&1) && self.bound.get(&a.node) == Some(&1);
        match self.builder.op_mut(a.node) {
            Some(Op::Conv2d(conv)) if sole_reader => affine.fold_into(&mut conv.weight.data, &mut conv.bias),
            Some(Op::Linear(lin)) if sole_reader => affine.fold_into(&mut lin.weight.data, &mut lin.bias),
            _ => return self.push_affine(n, a, &affine),
        }
        // The value read is dead now (its only reader was this node); the output takes its place.
        if let Some(count) = self.bound.get_mut(&a.node) {
            *count -= 1;
        }
        Ok(a)
    }
}
