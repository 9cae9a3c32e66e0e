//! ONNX files as a model source: [`load`] reads an `.onnx` model (weights inline, in an
//! external-data file beside it, float32/float16/bfloat16/double) and translates its graph into
//! the network IR ([`Graph`]) that every backend runs.
//!
//! - `proto`: the needed subset of onnx.proto as prost messages (no `protoc` at build time).
//! - `decode`: the file and its tensors, every size checked against the bytes present.
//! - `fold`: constants and the shape arithmetic evaluated at load time.
//! - `order`: the nodes the output needs, topologically sorted (cycles, dangling inputs).
//! - `translate` / `ops`: each node to graph nodes; BatchNormalization and Mul/Add/Sub/Div by
//!   per-channel constants fold into the convolution or linear layer before them, a zero Pad into
//!   the next convolution or pool, `x[:, :, ::2, ::2]` + channel Pad into an option-A shortcut.
//!
//! Opsets 11–21 of the default domain. The batch dimension is free whatever the file declares.
//! Activation sites (ReLU, MaxPool) are named after their ONNX nodes. Anything the IR cannot
//! express is an error naming the file, the node, its operator and the opset, at load time.

mod decode;
mod error;
mod fold;
mod node;
mod ops;
mod order;
pub mod proto;
mod translate;

pub use error::{OnnxError, Place};

use crate::data::{Geometry, Normalize};
use crate::model::graph::{Graph, GraphBuilder, Shape};
use crate::model::{DatasetFamily, Network, NetworkDescriptor, Preprocessing, SearchGrid};
use decode::ModelFile;
use node::NodeView;
use proto::{DimensionValue, GraphProto, ModelProto, ValueInfoProto};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use translate::{Act, Translator, Value};

/// The default-domain opsets this importer reads.
pub const OPSETS: std::ops::RangeInclusive<i64> = 11..=21;

/// Whether `path` names an ONNX model (by its extension).
pub fn is_onnx_path(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
}

/// Reads `path` into a [`Network`]: its graph and the descriptor its input shape implies
/// ([`descriptor`]).
pub fn open(path: &Path) -> Result<Network, OnnxError> {
    let graph = load(path)?;
    let classes = graph
        .classes()
        .map_err(|e| OnnxError::file(&path.display().to_string(), e.to_string()))?;
    let descriptor = descriptor(&graph.name, graph.input, classes);
    Ok(Network { graph, descriptor })
}

/// What an imported network is taken to expect, from its input alone: a 3x224x224 input the
/// ImageNet evaluation (Resize 256, CenterCrop 224, ImageNet statistics, ImageNet B grid), a
/// 3x32x32 one CIFAR-10's (no resize, the ImageNet statistics akamaster's CIFAR ResNets were
/// trained with, CIFAR grid), anything else its own size without resizing, ImageNet statistics
/// and no dataset family.
pub fn descriptor(name: &str, input: Shape, classes: usize) -> NetworkDescriptor {
    let mut d = match (input.c, input.h, input.w) {
        (3, 224, 224) => NetworkDescriptor::imagenet(name, 224, None),
        (3, 32, 32) => NetworkDescriptor::cifar10(name, None),
        _ => NetworkDescriptor {
            name: name.to_string(),
            input,
            family: DatasetFamily::Other,
            preprocessing: Preprocessing {
                geometry: Geometry::Exact {
                    width: input.w,
                    height: input.h,
                },
                normalize: Normalize::IMAGENET,
            },
            classes,
            search_grid: SearchGrid::IMAGENET,
        },
    };
    d.classes = classes;
    d
}

/// Reads `path` and translates it into a [`Graph`] named after the file.
pub fn load(path: &Path) -> Result<Graph, OnnxError> {
    let file = ModelFile::new(path);
    let model = file.read(path)?;
    let opset = default_opset(&file, &model)?;
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| OnnxError::file(&file.display, "the model has no graph"))?;
    let name = path
        .file_stem()
        .map_or("onnx".into(), |s| s.to_string_lossy().into_owned());
    translate_graph(&file, graph, opset, &name)
}

fn default_opset(file: &ModelFile, model: &ModelProto) -> Result<i64, OnnxError> {
    let version = model
        .opset_import
        .iter()
        .find(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")))
        .and_then(|o| o.version)
        .ok_or_else(|| OnnxError::file(&file.display, "the model imports no default-domain opset"))?;
    if !OPSETS.contains(&version) {
        return Err(OnnxError::file(
            &file.display,
            format!(
                "opset {version} is not supported (opsets {}–{} are)",
                OPSETS.start(),
                OPSETS.end()
            ),
        ));
    }
    Ok(version)
}

fn translate_graph(file: &ModelFile, graph: &GraphProto, opset: i64, name: &str) -> Result<Graph, OnnxError> {
    let initializers: HashMap<&str, &proto::TensorProto> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_deref().unwrap_or(""), t))
        .collect();
    let inputs: Vec<&ValueInfoProto> = graph
        .input
        .iter()
        .filter(|i| !initializers.contains_key(i.name.as_deref().unwrap_or("")))
        .collect();
    let [input] = inputs[..] else {
        return Err(OnnxError::file(
            &file.display,
            format!(
                "the graph has {} inputs besides its initializers; one image input is supported",
                inputs.len()
            ),
        ));
    };
    let input_name = input.name.clone().unwrap_or_default();
    let (shape, static_batch) = input_shape(file, input)?;
    let outputs: Vec<String> = graph.output.iter().filter_map(|o| o.name.clone()).collect();
    let [output] = &outputs[..] else {
        return Err(OnnxError::file(
            &file.display,
            format!("the graph has {} outputs; one (the logits) is supported", outputs.len()),
        ));
    };

    let mut available: HashSet<String> = initializers.keys().map(|k| k.to_string()).collect();
    available.insert(input_name.clone());
    let names = node::unique_names(&graph.node);
    let view = |i: usize| NodeView::new(&graph.node[i], names[i].clone(), opset, &file.display);
    let order = order::needed_in_order(graph, &available, &outputs, &view)?;

    let mut consumers: HashMap<String, usize> = HashMap::new();
    for &i in &order {
        for s in graph.node[i].input.iter().filter(|s| !s.is_empty()) {
            *consumers.entry(s.clone()).or_default() += 1;
        }
    }
    *consumers.entry(output.clone()).or_default() += 1;

    let mut t = Translator::new(file, GraphBuilder::new(name, shape), consumers, static_batch);
    t.set(&input_name, Value::Act(Act::plain(GraphBuilder::INPUT, false)));
    for &i in &order {
        for s in &graph.node[i].input {
            if t.get(s).is_none()
                && let Some(tensor) = initializers.get(s.as_str())
            {
                let c = file.constant(tensor)?;
                t.set(s, Value::Const(c));
            }
        }
        let n = view(i);
        ops::translate(&mut t, &n)?;
        check_outputs_bound(&t, &n)?;
    }
    finish(file, t, output)
}

/// A node whose later outputs (BatchNorm's running statistics, MaxPool's indices, Dropout's
/// mask) are read by another node: we only produce output 0.
fn check_outputs_bound(t: &Translator, n: &NodeView) -> Result<(), OnnxError> {
    for (i, out) in n.proto.output.iter().enumerate() {
        if !out.is_empty() && t.get(out).is_none() {
            return Err(n.error(format!("output #{i} `{out}` is not supported")));
        }
    }
    Ok(())
}

fn finish(file: &ModelFile, t: Translator, output: &str) -> Result<Graph, OnnxError> {
    let tensor_err = |detail: String| OnnxError::tensor(&file.display, output, detail);
    let a = match t.get(output) {
        Some(Value::Act(a)) => *a,
        Some(Value::Const(_)) => return Err(tensor_err("the output does not depend on the image".into())),
        None => return Err(tensor_err("no node produces the output".into())),
    };
    if a.pad != [0; 4] || a.subsample != [1, 1] {
        return Err(tensor_err("the output is a padded or sliced value".into()));
    }
    let graph = t.builder.graph();
    let shape = graph.shapes().map_err(|e| tensor_err(e.to_string()))?[a.node];
    if shape.h != 1 || shape.w != 1 {
        return Err(tensor_err(format!(
            "the output is an image ({shape}), not one score per class"
        )));
    }
    t.builder.finish(a.node).map_err(|e| tensor_err(e.to_string()))
}

/// The per-image shape `[C, H, W]` of a float image input, and the batch size if a number.
fn input_shape(file: &ModelFile, input: &ValueInfoProto) -> Result<(Shape, Option<usize>), OnnxError> {
    let name = input.name.as_deref().unwrap_or("");
    let err = |detail: String| OnnxError::tensor(&file.display, name, detail);
    let tensor = input
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .ok_or_else(|| err("the graph input is not a tensor".into()))?;
    if !matches!(tensor.elem_type, Some(1 | 10 | 11 | 16)) {
        return Err(err(format!(
            "the graph input has element type {:?}, not float",
            tensor.elem_type
        )));
    }
    let dims: Vec<Option<&DimensionValue>> = tensor
        .shape
        .as_ref()
        .map(|s| s.dim.iter().map(|d| d.value.as_ref()).collect())
        .unwrap_or_default();
    let known = |d: Option<&DimensionValue>| match d {
        Some(DimensionValue::DimValue(v)) if *v > 0 => usize::try_from(*v).ok(),
        _ => None,
    };
    let [batch, c, h, w] = dims[..] else {
        return Err(err(format!(
            "the graph input has rank {}, expected [N, C, H, W]",
            dims.len()
        )));
    };
    match (known(c), known(h), known(w)) {
        (Some(c), Some(h), Some(w)) if c.checked_mul(h).and_then(|x| x.checked_mul(w)).is_some() => {
            Ok((Shape::new(c, h, w), known(batch)))
        }
        _ => Err(err("the graph input's C, H and W must be fixed positive numbers".into())),
    }
}

#[cfg(test)]
mod tests;
