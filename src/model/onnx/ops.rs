//! One function per supported ONNX operator: each reads its inputs and attributes, checks what
//! the graph IR can express, and binds its output (a folded constant or a graph node).

use super::OnnxError;
use super::fold::{self, Arith, Constant, Data};
use super::node::NodeView;
use super::translate::{Act, Affine, Translator, Value};
use crate::model::graph::{Conv2d, Linear, Op, Pointwise, Window2d};
use crate::weights::Tensor;

type R = Result<(), OnnxError>;

/// Translates one node (of the default ONNX domain).
pub fn translate(t: &mut Translator, n: &NodeView) -> R {
    if !n.domain().is_empty() {
        return Err(n.error(format!("operator domain `{}` is not supported", n.domain())));
    }
    match n.op {
        "Constant" => constant(t, n),
        "Identity" | "Dropout" => alias(t, n),
        "Shape" => shape(t, n),
        "Gather" => gather(t, n),
        "Unsqueeze" | "Squeeze" => squeeze_or_unsqueeze(t, n),
        "Concat" => concat(t, n),
        "Cast" | "CastLike" => cast(t, n),
        "Reshape" => reshape(t, n),
        "Flatten" => flatten(t, n),
        "Slice" => slice(t, n),
        "ConstantOfShape" => constant_of_shape(t, n),
        "Transpose" => transpose(t, n),
        "Expand" => expand(t, n),
        "Add" | "Sub" | "Mul" | "Div" => arithmetic(t, n),
        "Conv" => conv(t, n),
        "BatchNormalization" => batch_norm(t, n),
        "Relu" => relu(t, n),
        "Clip" => clip(t, n),
        "MaxPool" => max_pool(t, n),
        "AveragePool" => average_pool(t, n),
        "GlobalAveragePool" => global_average_pool(t, n),
        "ReduceMean" => reduce_mean(t, n),
        "Gemm" => gemm(t, n),
        "MatMul" => matmul(t, n),
        "Pad" => pad(t, n),
        "Sigmoid" | "Tanh" | "HardSwish" | "HardSigmoid" | "Gelu" => pointwise(t, n),
        _ => Err(n.error("operator not supported")),
    }
}

fn folded(t: &mut Translator, n: &NodeView, result: Result<Constant, String>) -> R {
    let c = result.map_err(|e| n.error(e))?;
    t.output(n, 0, Value::Const(c))
}

fn ints_of(n: &NodeView, c: &Constant) -> Result<Vec<i64>, OnnxError> {
    c.known_ints().map_err(|e| n.error(e))
}

fn constant(t: &mut Translator, n: &NodeView) -> R {
    let c = if let Some(tensor) = n.tensor("value") {
        t.file.constant(tensor)?
    } else if let Some(f) = n.float("value_float") {
        Constant::scalar_float(f)
    } else if n.has("value_floats") {
        let v = n
            .proto
            .attribute
            .iter()
            .find(|a| a.name.as_deref() == Some("value_floats"))
            .map(|a| a.floats.clone())
            .unwrap_or_default();
        Constant {
            dims: vec![v.len()],
            data: Data::Float(v),
        }
    } else if n.has("value_int") {
        Constant::ints(vec![], vec![Some(n.int("value_int", 0))])
    } else if let Some(v) = n.ints("value_ints") {
        Constant::ints(vec![v.len()], v.into_iter().map(Some).collect())
    } else {
        return Err(n.error("only tensor, float and integer constants are supported"));
    };
    t.output(n, 0, Value::Const(c))
}

fn alias(t: &mut Translator, n: &NodeView) -> R {
    if n.op == "Dropout" && n.int("training_mode", 0) != 0 {
        return Err(n.error("dropout in training mode"));
    }
    let v = t.input(n, 0)?.clone();
    t.output(n, 0, v)
}

fn shape(t: &mut Translator, n: &NodeView) -> R {
    let dims = match t.input(n, 0)?.clone() {
        Value::Const(c) => c.dims.iter().map(|&d| Some(d)).collect(),
        Value::Act(a) => t.onnx_dims(n, a)?,
    };
    let start = n.has("start").then(|| n.int("start", 0));
    let end = n.has("end").then(|| n.int("end", 0));
    t.output(n, 0, Value::Const(fold::shape_of(&dims, start, end)))
}

fn gather(t: &mut Translator, n: &NodeView) -> R {
    let r = fold::gather(t.constant(n, 0)?, t.constant(n, 1)?, n.int("axis", 0));
    folded(t, n, r)
}

/// The `axes` of Squeeze/Unsqueeze/ReduceMean: an attribute before the opset that made them an
/// input (13 for Squeeze/Unsqueeze, 18 for ReduceMean).
fn axes(t: &Translator, n: &NodeView, input_since: i64) -> Result<Option<Vec<i64>>, OnnxError> {
    if n.opset < input_since {
        return Ok(n.ints("axes"));
    }
    t.opt_constant(n, 1)?.map(|c| ints_of(n, c)).transpose()
}

fn squeeze_or_unsqueeze(t: &mut Translator, n: &NodeView) -> R {
    let axes = axes(t, n, 13)?;
    let data = t.constant(n, 0)?;
    let r = if n.op == "Unsqueeze" {
        match axes {
            Some(a) => fold::unsqueeze(data, &a),
            None => Err("Unsqueeze without axes".into()),
        }
    } else {
        fold::squeeze(data, axes.as_deref())
    };
    folded(t, n, r)
}

fn concat(t: &mut Translator, n: &NodeView) -> R {
    let axis = n.int("axis", 0);
    let inputs: Vec<Value> = (0..n.proto.input.len())
        .map(|i| t.input(n, i).cloned())
        .collect::<Result<_, _>>()?;
    if inputs.iter().all(|v| matches!(v, Value::Const(_))) {
        let parts: Vec<&Constant> = inputs
            .iter()
            .map(|v| match v {
                Value::Const(c) => c,
                Value::Act(_) => unreachable!("all constant"),
            })
            .collect();
        return folded(t, n, fold::concat(&parts, axis));
    }
    let mut nodes = Vec::with_capacity(inputs.len());
    let mut flat = None;
    for i in 0..inputs.len() {
        let a = t.plain_act(n, i)?;
        if *flat.get_or_insert(a.flat) != a.flat {
            return Err(n.error("concatenates flat and image values"));
        }
        nodes.push(a.node);
    }
    let flat = flat.unwrap_or(false);
    let rank = if flat { 2 } else { 4 };
    if fold::normalise_axis(axis, rank).map_err(|e| n.error(e))? != 1 {
        return Err(n.error(format!(
            "concatenation along axis {axis}; only the channel axis is supported"
        )));
    }
    let id = t.push(n, Op::Concat { inputs: nodes })?;
    t.output(n, 0, Value::Act(Act::plain(id, flat)))
}

fn cast(t: &mut Translator, n: &NodeView) -> R {
    let to = if n.op == "CastLike" {
        match t.input(n, 1)? {
            Value::Act(_) => 1,
            Value::Const(c) => match c.data {
                Data::Float(_) => 1,
                Data::Int(_) => 7,
            },
        }
    } else {
        n.int("to", 0)
    };
    match t.input(n, 0)?.clone() {
        Value::Const(c) => folded(t, n, fold::cast(&c, to)),
        // Casting the image to a float type: the network runs in f32 either way.
        Value::Act(a) if matches!(to, 1 | 10 | 11 | 16) => t.output(n, 0, Value::Act(a)),
        Value::Act(_) => Err(n.error(format!("casts the image to element type {to}"))),
    }
}

/// `target` as the dims of a run-time value: its first entry must be the batch.
fn reshape_act(t: &mut Translator, n: &NodeView, a: Act, target: &Constant) -> R {
    let dims = t.onnx_dims(n, a)?;
    let a = t.materialise(n, a)?;
    let Data::Int(target) = &target.data else {
        return Err(n.error("reshape target is not an integer tensor"));
    };
    let is_batch = |d: Option<i64>, rest_known: bool| match d {
        None | Some(0) => true,
        Some(-1) => rest_known,
        Some(k) => Some(k as usize) == t.static_batch,
    };
    let rest: Option<Vec<i64>> = target.iter().skip(1).copied().collect();
    let (Some(&first), Some(rest)) = (target.first(), rest) else {
        return Err(n.error("reshape target must start with the batch size and be known otherwise"));
    };
    if !is_batch(first, !rest.contains(&-1)) {
        return Err(n.error(format!(
            "reshape target {target:?} does not keep the batch dimension first"
        )));
    }
    let per_image: Vec<usize> = dims[1..].iter().map(|d| d.expect("per-image dims are known")).collect();
    let per_image_target: Vec<i64> = rest
        .iter()
        .enumerate()
        .map(|(i, &d)| {
            if d == 0 {
                per_image.get(i).map_or(0, |&x| x as i64)
            } else {
                d
            }
        })
        .collect();
    let new = fold::reshape_dims(&per_image, &per_image_target, true).map_err(|e| n.error(e))?;
    let result = if new == per_image {
        a
    } else if new.len() == 1 {
        let id = t.push(n, Op::Flatten { input: a.node })?;
        Act::plain(id, true)
    } else {
        return Err(n.error(format!(
            "reshapes {per_image:?} to {new:?} per image; only [N, -1] (flatten) is supported"
        )));
    };
    t.output(n, 0, Value::Act(result))
}

fn reshape(t: &mut Translator, n: &NodeView) -> R {
    let target = t.constant(n, 1)?.clone();
    match t.input(n, 0)?.clone() {
        Value::Const(c) => {
            let target = ints_of(n, &target)?;
            folded(t, n, fold::reshape(&c, &target, n.int("allowzero", 0) != 0))
        }
        Value::Act(a) => reshape_act(t, n, a, &target),
    }
}

fn flatten(t: &mut Translator, n: &NodeView) -> R {
    let axis = n.int("axis", 1);
    match t.input(n, 0)?.clone() {
        Value::Const(c) => {
            let axis = fold::normalise_axis(axis, c.dims.len() + 1).map_err(|e| n.error(e))?;
            let outer: usize = c.dims[..axis].iter().product();
            folded(t, n, fold::reshape(&c, &[outer as i64, -1], false))
        }
        Value::Act(a) => {
            let a = t.materialise(n, a)?;
            let rank = if a.flat { 2 } else { 4 };
            if fold::normalise_axis(axis, rank).map_err(|e| n.error(e))? != 1 {
                return Err(n.error(format!("flattens from axis {axis}; only axis 1 keeps the batch")));
            }
            let out = if a.flat {
                a
            } else {
                Act::plain(t.push(n, Op::Flatten { input: a.node })?, true)
            };
            t.output(n, 0, Value::Act(out))
        }
    }
}

fn slice(t: &mut Translator, n: &NodeView) -> R {
    let list = |t: &Translator, i| -> Result<Option<Vec<i64>>, OnnxError> {
        t.opt_constant(n, i)?.map(|c| ints_of(n, c)).transpose()
    };
    let starts = list(t, 1)?.ok_or_else(|| n.error("Slice without starts"))?;
    let ends = list(t, 2)?.ok_or_else(|| n.error("Slice without ends"))?;
    let (axes, steps) = (list(t, 3)?, list(t, 4)?);
    match t.input(n, 0)?.clone() {
        Value::Const(c) => {
            let r = fold::slice_axes(&c.dims, &starts, &ends, axes.as_deref(), steps.as_deref())
                .and_then(|a| fold::slice(&c, &a));
            folded(t, n, r)
        }
        Value::Act(a) => {
            let spec = SliceSpec {
                starts: &starts,
                ends: &ends,
                axes: axes.as_deref(),
                steps: steps.as_deref(),
            };
            slice_act(t, n, a, spec)
        }
    }
}

/// The inputs of a `Slice` after the data.
struct SliceSpec<'s> {
    starts: &'s [i64],
    ends: &'s [i64],
    axes: Option<&'s [i64]>,
    steps: Option<&'s [i64]>,
}

/// Slicing a run-time value: only `x[:, :, ::s, ::s]` (the option-A shortcut's subsampling).
fn slice_act(t: &mut Translator, n: &NodeView, a: Act, spec: SliceSpec) -> R {
    let SliceSpec {
        starts,
        ends,
        axes,
        steps,
    } = spec;
    if a.flat || a.pad != [0; 4] {
        return Err(n.error("slices a flat or padded value; only x[:, :, ::s, ::s] is supported"));
    }
    let shape = t.shape(n, a.node)?;
    // The batch length is unknown; any whole-range slice of it keeps everything.
    let dims = [usize::MAX >> 2, shape.c, shape.h, shape.w];
    let sliced = fold::slice_axes(&dims, starts, ends, axes, steps).map_err(|e| n.error(e))?;
    let mut out = a;
    for s in &sliced {
        let len = dims[s.axis];
        let step = if s.keep.len() > 1 {
            s.keep[1] - s.keep[0]
        } else {
            len.max(1)
        };
        let strided = s.keep.first() == Some(&0)
            && s.keep.len() == len.div_ceil(step)
            && s.keep.windows(2).all(|w| w[1] == w[0] + step);
        match s.axis {
            0 | 1 if s.keep.len() == len && strided => {}
            2 | 3 if strided => out.subsample[s.axis - 2] *= step,
            _ => return Err(n.error("slices a run-time value other than x[:, :, ::s, ::s]")),
        }
    }
    t.output(n, 0, Value::Act(out))
}

fn constant_of_shape(t: &mut Translator, n: &NodeView) -> R {
    let value = n.tensor("value").map(|v| t.file.constant(v)).transpose()?;
    let r = fold::constant_of_shape(t.constant(n, 0)?, value.as_ref());
    folded(t, n, r)
}

fn transpose(t: &mut Translator, n: &NodeView) -> R {
    let c = t.constant(n, 0)?;
    let r = fold::transpose(c, n.ints("perm").as_deref());
    folded(t, n, r)
}

fn expand(t: &mut Translator, n: &NodeView) -> R {
    let shape = ints_of(n, t.constant(n, 1)?)?;
    let r = fold::expand(t.constant(n, 0)?, &shape);
    folded(t, n, r)
}

/// Per-channel values of a constant combined with a run-time value: a scalar, `[C]`/`[1, C]` for
/// a flat value, or `[C, 1, 1]` / `[1, C, 1, 1]` for an image.
fn per_channel(t: &mut Translator, n: &NodeView, a: Act, c: &Constant) -> Result<Vec<f64>, OnnxError> {
    let values = c.floats().map_err(|e| n.error(e))?;
    if values.len() == 1 && c.dims.len() <= if a.flat { 2 } else { 4 } {
        return Ok(values);
    }
    let shape = t.shape(n, a.node)?;
    let dims: Vec<usize> = c.dims.iter().copied().skip_while(|&d| d == 1).collect();
    let fits = if a.flat {
        dims == [shape.numel()] && c.dims.len() <= 2
    } else {
        dims == [shape.c, 1, 1] && c.dims.len() <= 4
    };
    if !fits {
        return Err(n.error(format!(
            "constant of shape {:?} is not per-channel for this value",
            c.dims
        )));
    }
    Ok(values)
}

fn arithmetic(t: &mut Translator, n: &NodeView) -> R {
    let op = Arith::from_op(n.op).expect("dispatched on these names");
    match (t.input(n, 0)?.clone(), t.input(n, 1)?.clone()) {
        (Value::Const(a), Value::Const(b)) => folded(t, n, fold::arith(op, &a, &b)),
        (Value::Act(_), Value::Act(_)) if matches!(op, Arith::Add | Arith::Sub) => {
            let (a, b) = (t.plain_act(n, 0)?, t.plain_act(n, 1)?);
            if a.flat != b.flat {
                return Err(n.error("combines a flat and an image value"));
            }
            let node = if op == Arith::Add {
                Op::Add { a: a.node, b: b.node }
            } else {
                Op::Sub { a: a.node, b: b.node }
            };
            let id = t.push(n, node)?;
            t.output(n, 0, Value::Act(Act::plain(id, a.flat)))
        }
        (Value::Act(_), Value::Act(_)) if op == Arith::Mul => silu(t, n),
        (Value::Act(_), Value::Act(_)) => Err(n.error(format!("{} of two run-time values is not supported", n.op))),
        (Value::Act(a), Value::Const(c)) => {
            let v = per_channel(t, n, a, &c)?;
            let affine = match op {
                Arith::Add => Affine::shift(v),
                Arith::Sub => Affine::shift(v.iter().map(|x| -x).collect()),
                Arith::Mul => Affine::scale(v),
                Arith::Div => Affine::scale(v.iter().map(|x| 1.0 / x).collect()),
            };
            let out = t.affine(n, 0, affine)?;
            t.output(n, 0, Value::Act(out))
        }
        (Value::Const(c), Value::Act(a)) => {
            let v = per_channel(t, n, a, &c)?;
            let affine = match op {
                Arith::Add => Affine::shift(v),
                Arith::Mul => Affine::scale(v),
                Arith::Sub => Affine {
                    pre: vec![0.0],
                    scale: vec![-1.0],
                    post: v,
                },
                Arith::Div => return Err(n.error("divides a constant by a run-time value")),
            };
            let out = t.affine(n, 1, affine)?;
            t.output(n, 0, Value::Act(out))
        }
    }
}

/// The window of a Conv or pool from its attributes (`kernel` from the weight for Conv), the
/// input's pending zero padding added to its own.
fn window(n: &NodeView, a: &Act, kernel: Option<[usize; 2]>) -> Result<Window2d, OnnxError> {
    let two = |name: &str, default: i64| -> Result<[usize; 2], OnnxError> {
        match n.ints(name).as_deref() {
            None => Ok([default as usize; 2]),
            Some([h, w]) if *h >= 0 && *w >= 0 => Ok([*h as usize, *w as usize]),
            Some(v) => Err(n.error(format!("{name} {v:?} is not two non-negative numbers"))),
        }
    };
    let auto_pad = n.string("auto_pad").unwrap_or_else(|| "NOTSET".into());
    if auto_pad != "NOTSET" && auto_pad != "VALID" {
        return Err(n.error(format!(
            "auto_pad {auto_pad} is not supported (export with explicit pads)"
        )));
    }
    let kernel = match kernel {
        Some(k) => k,
        None => two("kernel_shape", 0)?,
    };
    if let Some(k) = n.ints("kernel_shape")
        && k != [kernel[0] as i64, kernel[1] as i64]
    {
        return Err(n.error(format!("kernel_shape {k:?} disagrees with the weight's {kernel:?}")));
    }
    let pads = match n.ints("pads").as_deref() {
        None => [0; 4],
        Some(&[t, l, b, r]) if t >= 0 && l >= 0 && b >= 0 && r >= 0 => [t as usize, l as usize, b as usize, r as usize],
        Some(v) => Err(n.error(format!("pads {v:?} are not four non-negative numbers")))?,
    };
    Ok(Window2d {
        kernel,
        stride: two("strides", 1)?,
        dilation: two("dilations", 1)?,
        pads: [0, 1, 2, 3].map(|i| pads[i] + a.pad[i]),
        ceil_mode: n.int("ceil_mode", 0) != 0,
    })
}

fn conv(t: &mut Translator, n: &NodeView) -> R {
    let a = t.act(n, 0)?;
    if a.subsample != [1, 1] || a.flat {
        return Err(n.error("convolves a flat or strided-sliced value"));
    }
    let w = t.constant(n, 1)?.clone();
    let Data::Float(weight) = w.data else {
        return Err(n.error("integer convolution weights"));
    };
    let [o, i, kh, kw] = w.dims[..] else {
        return Err(n.error(format!("weight of shape {:?} is not [O, I, kH, kW]", w.dims)));
    };
    let bias = match t.opt_constant(n, 2)? {
        Some(b) if b.numel() == o => b
            .floats()
            .map_err(|e| n.error(e))?
            .into_iter()
            .map(|x| x as f32)
            .collect(),
        Some(b) => return Err(n.error(format!("bias of shape {:?} for {o} output channels", b.dims))),
        None => vec![0.0; o],
    };
    let groups = usize::try_from(n.int("group", 1))
        .ok()
        .filter(|&g| g > 0)
        .ok_or_else(|| n.error("group must be positive"))?;
    let window = window(n, &a, Some([kh, kw]))?;
    if window.ceil_mode {
        return Err(n.error("a convolution has no ceil_mode"));
    }
    let op = Op::Conv2d(Conv2d {
        input: a.node,
        weight: Tensor {
            shape: vec![o, i, kh, kw],
            data: weight,
        },
        bias,
        window,
        groups,
    });
    let id = t.push(n, op)?;
    t.output(n, 0, Value::Act(Act::plain(id, false)))
}

/// The eps attribute is a float32; exporters write a decimal like 1e-5, so the shortest decimal
/// that rounds to it is what the model was trained with (and folds as the built-in nets fold).
fn decimal_eps(eps: f32) -> f64 {
    format!("{eps}").parse().unwrap_or(eps as f64)
}

fn batch_norm(t: &mut Translator, n: &NodeView) -> R {
    if n.int("training_mode", 0) != 0 {
        return Err(n.error("batch normalization in training mode"));
    }
    let vector =
        |t: &Translator, i| -> Result<Vec<f64>, OnnxError> { t.constant(n, i)?.floats().map_err(|e| n.error(e)) };
    let (gamma, beta, mean, var) = (vector(t, 1)?, vector(t, 2)?, vector(t, 3)?, vector(t, 4)?);
    let eps = n.float("epsilon").map_or(1e-5, decimal_eps);
    let mut scale = Vec::with_capacity(gamma.len());
    for (c, (&g, &v)) in gamma.iter().zip(&var).enumerate() {
        if v + eps <= 0.0 {
            return Err(n.error(format!("running variance {v} of channel {c} is negative")));
        }
        scale.push(g / (v + eps).sqrt());
    }
    if [beta.len(), mean.len(), var.len()] != [gamma.len(); 3] {
        return Err(n.error("scale, bias, mean and variance differ in length"));
    }
    let affine = Affine {
        pre: mean.iter().map(|m| -m).collect(),
        scale,
        post: beta,
    };
    let out = t.affine(n, 0, affine)?;
    t.output(n, 0, Value::Act(out))
}

/// `x · Sigmoid(x)`, the form exporters give SiLU: one exact-only SiLU node.
fn silu(t: &mut Translator, n: &NodeView) -> R {
    let (a, b) = (t.plain_act(n, 0)?, t.plain_act(n, 1)?);
    let graph = t.builder.graph();
    let sigmoid_of = |s: usize, x: usize| matches!(graph.nodes[s].op, Op::Pointwise { input, func: Pointwise::Sigmoid } if input == x);
    let x = match (sigmoid_of(b.node, a.node), sigmoid_of(a.node, b.node)) {
        (true, _) => a,
        (_, true) => b,
        _ => return Err(n.error("Mul of two run-time values other than x · Sigmoid(x) is not supported")),
    };
    let id = t.push(
        n,
        Op::Pointwise {
            input: x.node,
            func: Pointwise::Silu,
        },
    )?;
    t.output(n, 0, Value::Act(Act::plain(id, x.flat)))
}

fn relu(t: &mut Translator, n: &NodeView) -> R {
    let a = t.plain_act(n, 0)?;
    let id = t.relu(n, a.node)?;
    t.output(n, 0, Value::Act(Act::plain(id, a.flat)))
}

fn clip(t: &mut Translator, n: &NodeView) -> R {
    let bound = |t: &Translator, i: usize, attr: &str| -> Result<Option<f64>, OnnxError> {
        if n.opset < 11 {
            return Ok(n.float(attr).map(f64::from));
        }
        t.opt_constant(n, i)?
            .map(|c| c.scalar().map_err(|e| n.error(e)))
            .transpose()
    };
    let (lo, hi) = (bound(t, 1, "min")?, bound(t, 2, "max")?);
    match (lo, hi) {
        (Some(0.0), None) => relu(t, n),
        (Some(0.0), Some(6.0)) => {
            let a = t.plain_act(n, 0)?;
            let id = t.relu6(n, a.node)?;
            t.output(n, 0, Value::Act(Act::plain(id, a.flat)))
        }
        (lo, hi) => {
            let func = Pointwise::Clip {
                min: lo.map_or(f32::NEG_INFINITY, |v| v as f32),
                max: hi.map_or(f32::INFINITY, |v| v as f32),
            };
            push_pointwise(t, n, func)
        }
    }
}

/// Exact-only non-linearities (no approximation site; an approximate run refuses the graph).
fn pointwise(t: &mut Translator, n: &NodeView) -> R {
    let func = match n.op {
        "Sigmoid" => Pointwise::Sigmoid,
        "Tanh" => Pointwise::Tanh,
        "HardSwish" => Pointwise::HardSwish,
        "HardSigmoid" => Pointwise::HardSigmoid {
            alpha: n.float("alpha").unwrap_or(0.2),
            beta: n.float("beta").unwrap_or(0.5),
        },
        "Gelu" if n.string("approximate").is_none_or(|a| a == "none") => Pointwise::Gelu,
        _ => return Err(n.error("only the erf form of GELU is supported")),
    };
    push_pointwise(t, n, func)
}

fn push_pointwise(t: &mut Translator, n: &NodeView, func: Pointwise) -> R {
    let a = t.plain_act(n, 0)?;
    let id = t.push(n, Op::Pointwise { input: a.node, func })?;
    t.output(n, 0, Value::Act(Act::plain(id, a.flat)))
}

fn max_pool(t: &mut Translator, n: &NodeView) -> R {
    let a = t.act(n, 0)?;
    if a.subsample != [1, 1] || a.flat {
        return Err(n.error("pools a flat or strided-sliced value"));
    }
    if n.int("storage_order", 0) != 0 {
        return Err(n.error("column-major storage order"));
    }
    // Zero padding acts as the −∞ padding of max-pooling only on non-negative values.
    if a.pad != [0; 4] && !matches!(t.builder.graph().nodes[a.node].op, Op::Relu { .. }) {
        return Err(n.error("max-pools a zero-padded value that may be negative"));
    }
    let id = t.max_pool(n, a.node, window(n, &a, None)?)?;
    t.output(n, 0, Value::Act(Act::plain(id, false)))
}

fn average_pool(t: &mut Translator, n: &NodeView) -> R {
    let a = t.act(n, 0)?;
    if a.subsample != [1, 1] || a.flat {
        return Err(n.error("pools a flat or strided-sliced value"));
    }
    let own = window(n, &Act::plain(a.node, false), None)?;
    let mut count_include_pad = n.int("count_include_pad", 0) != 0;
    // A pending zero Pad is data: it always counts, which the pool's own padding then must too.
    if a.pad != [0; 4] {
        if own.pads != [0; 4] && !count_include_pad {
            return Err(n.error("average pooling without its padding of a zero-padded value"));
        }
        count_include_pad = true;
    }
    let pool = window(n, &a, None)?;
    let id = t.push(
        n,
        Op::AvgPool {
            input: a.node,
            pool,
            count_include_pad,
        },
    )?;
    t.output(n, 0, Value::Act(Act::plain(id, false)))
}

fn global_average_pool(t: &mut Translator, n: &NodeView) -> R {
    let a = t.plain_act(n, 0)?;
    if a.flat {
        return Err(n.error("global pooling of a flat value"));
    }
    let id = t.push(n, Op::GlobalAvgPool { input: a.node })?;
    t.output(n, 0, Value::Act(Act::plain(id, false)))
}

fn reduce_mean(t: &mut Translator, n: &NodeView) -> R {
    let a = t.plain_act(n, 0)?;
    let axes = axes(t, n, 18)?.unwrap_or_default();
    let mut axes: Vec<usize> = axes
        .iter()
        .map(|&x| fold::normalise_axis(x, 4))
        .collect::<Result<_, _>>()
        .map_err(|e| n.error(e))?;
    axes.sort_unstable();
    if a.flat || axes != [2, 3] {
        return Err(n.error(format!(
            "mean over axes {axes:?}; only over H and W ([2, 3]) is supported"
        )));
    }
    let id = t.push(n, Op::GlobalAvgPool { input: a.node })?;
    t.output(n, 0, Value::Act(Act::plain(id, n.int("keepdims", 1) == 0)))
}

/// Pushes `y = x Wᵀ + b` for a flat run-time input.
fn linear(t: &mut Translator, n: &NodeView, a: Act, weight: Tensor, bias: Vec<f32>) -> R {
    if !a.flat {
        return Err(n.error("matrix product of a 4-D value (flatten it first)"));
    }
    let id = t.push(
        n,
        Op::Linear(Linear {
            input: a.node,
            weight,
            bias,
        }),
    )?;
    t.output(n, 0, Value::Act(Act::plain(id, true)))
}

fn float_matrix(n: &NodeView, c: &Constant) -> Result<(usize, usize, Vec<f32>), OnnxError> {
    match (&c.dims[..], &c.data) {
        (&[r, k], Data::Float(v)) => Ok((r, k, v.clone())),
        _ => Err(n.error(format!("weight of shape {:?} is not a float matrix", c.dims))),
    }
}

fn transposed(rows: usize, cols: usize, v: &[f32]) -> Vec<f32> {
    (0..cols)
        .flat_map(|c| (0..rows).map(move |r| v[r * cols + c]))
        .collect()
}

fn gemm(t: &mut Translator, n: &NodeView) -> R {
    let a = t.plain_act(n, 0)?;
    if n.int("transA", 0) != 0 {
        return Err(n.error("transA = 1 (the batch would move)"));
    }
    let (r, k, b) = float_matrix(n, t.constant(n, 1)?)?;
    let (out, weight) = if n.int("transB", 0) != 0 {
        (r, b)
    } else {
        (k, transposed(r, k, &b))
    };
    let alpha = n.float("alpha").unwrap_or(1.0) as f64;
    let beta = n.float("beta").unwrap_or(1.0) as f64;
    let weight: Vec<f32> = if alpha == 1.0 {
        weight
    } else {
        weight.iter().map(|&w| (w as f64 * alpha) as f32).collect()
    };
    let bias = match t.opt_constant(n, 2)? {
        None => vec![0.0; out],
        Some(c) => {
            let v = c.floats().map_err(|e| n.error(e))?;
            match v.len() {
                1 => vec![(v[0] * beta) as f32; out],
                len if len == out && c.dims.iter().filter(|&&d| d != 1).count() <= 1 => {
                    v.iter().map(|&x| (x * beta) as f32).collect()
                }
                _ => return Err(n.error(format!("bias of shape {:?} for {out} outputs", c.dims))),
            }
        }
    };
    let in_f = weight.len() / out.max(1);
    linear(
        t,
        n,
        a,
        Tensor {
            shape: vec![out, in_f],
            data: weight,
        },
        bias,
    )
}

fn matmul(t: &mut Translator, n: &NodeView) -> R {
    let a = t.plain_act(n, 0)?;
    let (k, out, b) = float_matrix(n, t.constant(n, 1)?)?;
    linear(
        t,
        n,
        a,
        Tensor {
            shape: vec![out, k],
            data: transposed(k, out, &b),
        },
        vec![0.0; out],
    )
}

fn pad(t: &mut Translator, n: &NodeView) -> R {
    let a = t.act(n, 0)?;
    let mode = n.string("mode").unwrap_or_else(|| "constant".into());
    if mode != "constant" {
        return Err(n.error(format!("{mode} padding; only constant zero padding is supported")));
    }
    if let Some(v) = t.opt_constant(n, 2)?
        && v.scalar().map_err(|e| n.error(e))? != 0.0
    {
        return Err(n.error("padding with a non-zero constant"));
    }
    if a.flat {
        return Err(n.error("pads a flat value"));
    }
    let pads = ints_of(n, t.constant(n, 1)?)?;
    let axes = match t.opt_constant(n, 3)? {
        Some(c) => ints_of(n, c)?
            .iter()
            .map(|&x| fold::normalise_axis(x, 4))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| n.error(e))?,
        None => vec![0, 1, 2, 3],
    };
    if pads.len() != 2 * axes.len() || pads.iter().any(|&p| p < 0) {
        return Err(n.error(format!(
            "pads {pads:?} are not non-negative begin/end pairs for axes {axes:?}"
        )));
    }
    let mut per_axis = [[0usize; 2]; 4];
    for (i, &axis) in axes.iter().enumerate() {
        per_axis[axis] = [pads[i] as usize, pads[i + axes.len()] as usize];
    }
    let [batch, channels, rows, cols] = per_axis;
    if batch != [0, 0] {
        return Err(n.error("pads the batch dimension"));
    }
    let out = if channels != [0, 0] {
        if rows != [0, 0] || cols != [0, 0] || channels[0] != channels[1] || a.pad != [0; 4] {
            return Err(n.error("pads channels other than equally on both sides of an unpadded value"));
        }
        t.shortcut(n, a, channels[0])?
    } else {
        let a = if a.subsample != [1, 1] { t.shortcut(n, a, 0)? } else { a };
        let add = [rows[0], cols[0], rows[1], cols[1]];
        Act {
            pad: [0, 1, 2, 3].map(|i| a.pad[i] + add[i]),
            ..a
        }
    };
    t.output(n, 0, Value::Act(out))
}
