//! Where an architecture's parameter tensors come from (a checkpoint, a random generator, or a
//! lister that only records names and shapes), and BatchNorm folding.

use super::ModelError;
use super::graph::{Conv2d, GraphBuilder, Linear, NodeId, Op};
use crate::weights::{StateDict, Tensor};

/// BatchNorm2d's default eps (ResNets, VGG).
pub const BN_EPS: f64 = 1e-5;
/// The eps of torchvision's GoogLeNet and Inception-v3 `BasicConv2d` (ported from TensorFlow).
pub const BN_EPS_INCEPTION: f64 = 1e-3;

/// What a parameter tensor is; random sources draw each kind from a sensible distribution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// Conv or Linear weight; its fan-in sets the He scale.
    Weight {
        fan_in: usize,
    },
    /// Conv or Linear bias.
    Bias,
    BnWeight,
    BnBias,
    BnMean,
    BnVar,
    /// BatchNorm's int64 `num_batches_tracked` (listed, never read).
    Counter,
}

/// One expected tensor: name, shape and kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamInfo {
    pub name: String,
    pub shape: Vec<usize>,
    pub kind: ParamKind,
}

/// A supplier of named tensors. Architectures ask in torchvision `state_dict()` order.
pub trait ParamSource {
    /// The tensor `name` with exactly `shape`, all values finite.
    fn tensor(&mut self, name: &str, shape: &[usize], kind: ParamKind) -> Result<Tensor, ModelError>;
    /// Notes a bookkeeping tensor (BatchNorm's counter) that is not read.
    fn counter(&mut self, _name: &str) {}
    /// Drops every tensor under `prefix` (e.g. training-only auxiliary heads): a checkpoint may
    /// or may not hold them, and inference never reads them.
    fn discard(&mut self, _prefix: &str) {}
}

/// Takes tensors out of a checkpoint, by name and shape.
pub struct StateDictParams<'a> {
    dict: &'a mut StateDict,
}

impl<'a> StateDictParams<'a> {
    pub fn new(dict: &'a mut StateDict) -> Self {
        StateDictParams { dict }
    }
}

impl ParamSource for StateDictParams<'_> {
    fn tensor(&mut self, name: &str, shape: &[usize], kind: ParamKind) -> Result<Tensor, ModelError> {
        let t = self.dict.take_shaped(name, shape)?;
        let path = || self.dict.path().display().to_string();
        if t.data.iter().any(|v| !v.is_finite()) {
            return Err(ModelError::NonFinite {
                path: path(),
                tensor: name.to_string(),
            });
        }
        // Running variances are averages of squares: a negative one is a damaged file.
        if let Some(&value) = t.data.iter().find(|&&v| kind == ParamKind::BnVar && v < 0.0) {
            return Err(ModelError::BadVariance {
                path: Some(path()),
                tensor: name.to_string(),
                value: value.into(),
            });
        }
        Ok(t)
    }

    fn discard(&mut self, prefix: &str) {
        let names: Vec<String> = self
            .dict
            .remaining()
            .into_iter()
            .filter(|n| n.starts_with(prefix))
            .collect();
        for name in names {
            // Listed by `remaining` just above, so present.
            let _ = self.dict.take(&name);
        }
    }
}

/// Records what is asked for and hands out zeros (cheap: untouched zero pages).
#[derive(Default)]
pub struct ListParams {
    list: Vec<ParamInfo>,
}

impl ListParams {
    pub fn into_list(self) -> Vec<ParamInfo> {
        self.list
    }
}

impl ParamSource for ListParams {
    fn tensor(&mut self, name: &str, shape: &[usize], kind: ParamKind) -> Result<Tensor, ModelError> {
        self.list.push(ParamInfo {
            name: name.to_string(),
            shape: shape.to_vec(),
            kind,
        });
        // BatchNorm variance 1 so folding stays finite; everything else zero.
        let fill = if kind == ParamKind::BnVar { 1.0 } else { 0.0 };
        Ok(Tensor {
            shape: shape.to_vec(),
            data: vec![fill; shape.iter().product()],
        })
    }

    fn counter(&mut self, name: &str) {
        self.list.push(ParamInfo {
            name: name.to_string(),
            shape: vec![],
            kind: ParamKind::Counter,
        });
    }
}

/// Deterministic random weights: He-normal weights (std √(2/fan_in)), small biases, BatchNorm
/// γ ∈ [0.5, 1], β, mean ~ N(0, 0.1²), var ∈ [0.5, 1.5] — activations stay O(1) through a
/// deep network instead of exploding or vanishing.
pub struct RandomParams {
    rng: SplitMix64,
}

impl RandomParams {
    pub fn new(seed: u64) -> Self {
        RandomParams { rng: SplitMix64(seed) }
    }
}

impl ParamSource for RandomParams {
    fn tensor(&mut self, _name: &str, shape: &[usize], kind: ParamKind) -> Result<Tensor, ModelError> {
        let n: usize = shape.iter().product();
        let rng = &mut self.rng;
        let data = (0..n)
            .map(|_| match kind {
                ParamKind::Weight { fan_in } => rng.normal() * (2.0 / fan_in.max(1) as f64).sqrt(),
                ParamKind::Bias | ParamKind::BnBias | ParamKind::BnMean => 0.1 * rng.normal(),
                ParamKind::BnWeight => 0.5 + 0.5 * rng.uniform(),
                ParamKind::BnVar => 0.5 + rng.uniform(),
                ParamKind::Counter => 0.0,
            } as f32)
            .collect();
        Ok(Tensor {
            shape: shape.to_vec(),
            data,
        })
    }
}

/// Counter-based random weights, reproducible outside Rust (scripts/make_net_fixtures.py draws the
/// same numbers in numpy): element `e` of the `t`-th tensor asked for (t from 1, in state_dict
/// order) is a function of `(seed, t, e)` only ([`counter_uniform`]), uniform per kind: weights
/// ±√(6/fan_in) (He-uniform), biases, BatchNorm β and means ±0.1, γ in [0.5, 1), variances in
/// [0.5, 1.5). Fixtures of big networks then hold no weights, only names, shapes and logits.
pub struct CounterParams {
    seed: u64,
    tensors: u64,
}

impl CounterParams {
    /// `seed` below 2^24.
    pub fn new(seed: u64) -> Self {
        CounterParams { seed, tensors: 0 }
    }

    /// The input images a fixture generated with the same seed: uniform in [-2, 2) (stream t = 0).
    pub fn input(seed: u64, len: usize) -> Vec<f32> {
        (0..len as u64)
            .map(|e| (4.0 * counter_uniform(seed << 16, e) - 2.0) as f32)
            .collect()
    }
}

impl ParamSource for CounterParams {
    fn tensor(&mut self, _name: &str, shape: &[usize], kind: ParamKind) -> Result<Tensor, ModelError> {
        self.tensors += 1;
        let stream = (self.seed << 16) + self.tensors;
        let n: usize = shape.iter().product();
        let data = (0..n as u64)
            .map(|e| {
                let u = counter_uniform(stream, e);
                let symmetric = 2.0 * u - 1.0;
                (match kind {
                    ParamKind::Weight { fan_in } => symmetric * (6.0 / fan_in.max(1) as f64).sqrt(),
                    ParamKind::Bias | ParamKind::BnBias | ParamKind::BnMean => 0.1 * symmetric,
                    ParamKind::BnWeight => 0.5 + 0.5 * u,
                    ParamKind::BnVar => 0.5 + u,
                    ParamKind::Counter => 0.0,
                }) as f32
            })
            .collect();
        Ok(Tensor {
            shape: shape.to_vec(),
            data,
        })
    }
}

/// Uniform in [0, 1): the SplitMix64 output for state `(stream << 40) | index` (index < 2^40).
pub fn counter_uniform(stream: u64, index: u64) -> f64 {
    let mut rng = SplitMix64((stream << 40) | index);
    rng.uniform()
}

/// A tiny, fast, well-mixed PRNG (Steele et al.); enough for weights, needs no dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    /// Standard normal (Box–Muller; one of the pair is dropped for simplicity).
    fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]: ln is finite
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// The four BatchNorm2d tensors of one layer, in state_dict order, and its eps.
pub struct BatchNorm {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
    pub eps: f64,
    pub name: String,
}

/// Reads BatchNorm2d `name` with `channels` channels (weight, bias, running_mean, running_var,
/// then the counter, as torchvision orders them).
pub fn batch_norm(
    params: &mut dyn ParamSource,
    name: &str,
    channels: usize,
    eps: f64,
) -> Result<BatchNorm, ModelError> {
    let mut take = |suffix: &str, kind| -> Result<Vec<f32>, ModelError> {
        Ok(params.tensor(&format!("{name}.{suffix}"), &[channels], kind)?.data)
    };
    let bn = BatchNorm {
        weight: take("weight", ParamKind::BnWeight)?,
        bias: take("bias", ParamKind::BnBias)?,
        mean: take("running_mean", ParamKind::BnMean)?,
        var: take("running_var", ParamKind::BnVar)?,
        eps,
        name: name.to_string(),
    };
    params.counter(&format!("{name}.num_batches_tracked"));
    Ok(bn)
}

/// Folds eval-mode BatchNorm into the conv before it, in f64:
/// w' = w·γ/√(σ²+ε), b' = (b − μ)·γ/√(σ²+ε) + β. `weight` is `[O, ...]`, `bias` `O` values.
pub fn fold_batch_norm(weight: &mut Tensor, bias: &mut [f32], bn: &BatchNorm) -> Result<(), ModelError> {
    if bias.is_empty() {
        return Ok(());
    }
    let per_out = weight.data.len() / bias.len();
    for (o, (row, b)) in weight.data.chunks_exact_mut(per_out).zip(bias.iter_mut()).enumerate() {
        let var = bn.var[o] as f64;
        if var + bn.eps <= 0.0 {
            return Err(ModelError::BadVariance {
                path: None,
                tensor: format!("{}.running_var", bn.name),
                value: var,
            });
        }
        let scale = bn.weight[o] as f64 / (var + bn.eps).sqrt();
        for w in row {
            *w = (*w as f64 * scale) as f32;
        }
        *b = ((*b as f64 - bn.mean[o] as f64) * scale + bn.bias[o] as f64) as f32;
    }
    Ok(())
}

/// A k×k convolution's weight (and bias, when the layer has one) followed by BatchNorm `bn`
/// (with its eps), folded: returns the conv weight `[out, in, k, k]` and bias.
pub fn conv_bn(
    params: &mut dyn ParamSource,
    conv: &str,
    bn: &str,
    (in_ch, out_ch, [kh, kw]): (usize, usize, [usize; 2]),
    conv_has_bias: bool,
    eps: f64,
) -> Result<(Tensor, Vec<f32>), ModelError> {
    let fan_in = in_ch * kh * kw;
    let mut weight = params.tensor(
        &format!("{conv}.weight"),
        &[out_ch, in_ch, kh, kw],
        ParamKind::Weight { fan_in },
    )?;
    let mut bias = if conv_has_bias {
        params.tensor(&format!("{conv}.bias"), &[out_ch], ParamKind::Bias)?.data
    } else {
        vec![0.0; out_ch]
    };
    let bn = batch_norm(params, bn, out_ch, eps)?;
    fold_batch_norm(&mut weight, &mut bias, &bn)?;
    Ok((weight, bias))
}

/// A Linear layer's weight `[out, in]` and bias.
pub fn linear(
    params: &mut dyn ParamSource,
    name: &str,
    in_f: usize,
    out_f: usize,
) -> Result<(Tensor, Vec<f32>), ModelError> {
    let weight = params.tensor(
        &format!("{name}.weight"),
        &[out_f, in_f],
        ParamKind::Weight { fan_in: in_f },
    )?;
    let bias = params.tensor(&format!("{name}.bias"), &[out_f], ParamKind::Bias)?.data;
    Ok((weight, bias))
}

/// Geometry of one convolution: channels in and out, kernel `[kh, kw]`, stride, padding
/// `[rows, columns]`; and the eps of the BatchNorm that follows it.
#[derive(Clone, Copy, Debug)]
pub struct ConvSpec {
    pub in_ch: usize,
    pub out_ch: usize,
    pub kernel: [usize; 2],
    pub stride: usize,
    pub padding: [usize; 2],
    pub bn_eps: f64,
}

impl ConvSpec {
    /// A k×k convolution with "same" padding k/2.
    pub fn same(in_ch: usize, out_ch: usize, kernel: usize, stride: usize) -> ConvSpec {
        ConvSpec {
            in_ch,
            out_ch,
            kernel: [kernel; 2],
            stride,
            padding: [kernel / 2; 2],
            bn_eps: BN_EPS,
        }
    }

    /// torchvision's `BasicConv2d(in, out, kernel_size=[kh, kw], stride, padding=[ph, pw])` of
    /// GoogLeNet and Inception-v3 (BatchNorm eps 1e-3).
    pub fn inception(in_ch: usize, out_ch: usize, kernel: [usize; 2], stride: usize, padding: [usize; 2]) -> ConvSpec {
        ConvSpec {
            in_ch,
            out_ch,
            kernel,
            stride,
            padding,
            bn_eps: BN_EPS_INCEPTION,
        }
    }
}

/// Pushes conv `conv` + BatchNorm `bn` (folded) reading `input`; the node is named after the conv.
pub fn push_conv_bn(
    b: &mut GraphBuilder,
    params: &mut dyn ParamSource,
    (conv, bn): (&str, &str),
    input: NodeId,
    spec: ConvSpec,
    conv_has_bias: bool,
) -> Result<NodeId, ModelError> {
    let shape = (spec.in_ch, spec.out_ch, spec.kernel);
    let (weight, bias) = conv_bn(params, conv, bn, shape, conv_has_bias, spec.bn_eps)?;
    let op = Op::Conv2d(Conv2d::dense(input, weight, bias, spec.stride, spec.padding));
    Ok(b.push(conv, op))
}

/// Pushes Linear `name` reading `input` (a `(in_f, 1, 1)` value).
pub fn push_linear(
    b: &mut GraphBuilder,
    params: &mut dyn ParamSource,
    name: &str,
    input: NodeId,
    (in_f, out_f): (usize, usize),
) -> Result<NodeId, ModelError> {
    let (weight, bias) = linear(params, name, in_f, out_f)?;
    Ok(b.push(name, Op::Linear(Linear { input, weight, bias })))
}
