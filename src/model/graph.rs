//! The network IR shared by every architecture and every executor (CPU here, WGSL on the GPU).
//!
//! A [`Graph`] is a list of [`Node`]s in topological order. Node 0 is always [`Op::Input`]; every
//! node produces exactly one NCHW f32 value, referred to by its [`NodeId`] (its index). The batch
//! size N is not part of the graph: shapes are per image, `(c, h, w)` ([`Shape`]); a flattened
//! value has shape `(features, 1, 1)`.
//!
//! BatchNorm does not appear in the built-in architectures: it is folded into the preceding
//! convolution's weight and bias at load time, so a [`Conv2d`] always has a bias. A BatchNorm
//! that cannot be folded (an imported graph) is an [`Op::Affine`].
//!
//! The two approximable operations ([`Op::Relu`], [`Op::MaxPool`]) carry a [`SiteId`], an index
//! into [`Graph::sites`]: an executor is told per site whether to evaluate exactly or with the
//! polynomial, and reports per-site statistics under the site's human-readable name. Every other
//! non-linearity is exact-only ([`Op::Pointwise`]): a graph holding one runs exactly, and
//! [`Graph::exact_only_nodes`] names them so a caller can refuse an approximate run up front.
//! ReLU6 is two ReLU sites ([`GraphBuilder::relu6`]) whose B must be equal ([`Site::shares_bound_with`]).
//!
//! Semantics an executor must follow (they are PyTorch's / ONNX's unless stated):
//! - Window geometry ([`Window2d`]) is per axis `[h, w]`: kernel, stride, dilation, and padding
//!   `[top, left, bottom, right]` (ONNX `pads` order), possibly asymmetric.
//! - `Conv2d`: cross-correlation, zero padding, `groups` (depthwise when groups = in channels),
//!   dilation; output size `⌊(len + pad_begin + pad_end − dilation·(k − 1) − 1) / stride⌋ + 1`.
//! - `MaxPool` (exact): padding acts as −∞; `ceil_mode` as in PyTorch (a window may not start in
//!   the right/bottom padding). Approximate max-pool (the paper's tree) reads zeros wherever a
//!   window leaves the input: the official code's `ZeroPad2d(p)` and, in ceil mode, its extra
//!   zero row/column on the bottom/right. The output size is PyTorch's either way; it equals the
//!   official one except where PyTorch's ceil-mode rule drops a window starting in the padding
//!   (no network here has one). (The official code's *exact* GoogLeNet drops `ceil_mode`
//!   altogether, 112 → 55 after the stem; exact mode here is torchvision's, 112 → 56.)
//! - `AvgPool`: with `count_include_pad` the divisor counts the window's taps inside the padded
//!   input (padding included, a ceil-mode overhang past the padding not: PyTorch's rule); without
//!   it only the taps inside the input.
//! - `Affine`: `y[c] = x[c] · scale[c] + shift[c]`, `scale`/`shift` of length C or 1 (broadcast).
//! - `Sub`: `a − b`, equal shapes.
//! - `Pointwise`: the exact function of [`Pointwise`], elementwise.
//! - `ShortcutA`: `y = x[:, :, ::stride, ::stride]` then zero channel planes, `(out − in)/2` on
//!   each side (akamaster's option A, `F.pad(x[:, :, ::2, ::2], (0,0,0,0,planes//4,planes//4))`).
//! - `Flatten`: `(c, h, w)` → `(c·h·w, 1, 1)` in C-major order, as `torch.flatten(x, 1)`.
//! - `Concat`: the inputs' channels one after the other, as `torch.cat(xs, 1)` (equal h, w).
//! - `Linear`: `y = W x + b`, `W` is `[out, in]`.
//!
//! For an importer (ONNX → this IR), the intended mapping:
//! - `Conv` → [`Conv2d`] with `window` from `kernel_shape`, `strides`, `dilations`, `pads` (ONNX's
//!   `[x1_begin, x2_begin, x1_end, x2_end]` is `pads` here as is; `auto_pad` SAME_* resolved to
//!   explicit pads first) and `group`; no bias → zeros. `Gemm`/`MatMul` on a flat value → `Linear`.
//! - `BatchNormalization` after a conv → folded into it; otherwise → [`Op::Affine`] with
//!   `scale = γ/√(var + ε)`, `shift = β − mean·scale`. `Mul`/`Div`/`Add`/`Sub` by a constant of
//!   one value or one per channel → `Affine`; `Add`/`Sub` of two computed values → `Add`/`Sub`.
//! - `Relu` → [`GraphBuilder::relu`] (a site); `Clip(0, 6)` (and PyTorch's ReLU6) →
//!   [`GraphBuilder::relu6`]; `Clip(0, +∞)` → a ReLU; any other `Clip` → `Pointwise::Clip`.
//! - `Sigmoid`, `Tanh`, `Gelu` (erf form), `HardSwish`, `HardSigmoid` → [`Op::Pointwise`];
//!   `Mul(x, Sigmoid(x))` → `Pointwise::Silu`. These make the graph exact-only.
//! - `MaxPool` → [`GraphBuilder::max_pool`] (a site; approximable for 2x2 and 3x3 windows);
//!   `AveragePool` → `AvgPool` with its `count_include_pad`; `GlobalAveragePool` →
//!   `GlobalAvgPool`; `Flatten` → `Flatten`; `Concat` on channels → `Concat`.
//! - Node names: the ONNX node name (made unique, or `<OpType>_<index>` when empty); sites are
//!   named after their node.

use crate::weights::Tensor;
use std::fmt;

/// Index of a node in [`Graph::nodes`] (and of the value it produces).
pub type NodeId = usize;
/// Index of an activation site in [`Graph::sites`].
pub type SiteId = usize;

/// Per-image shape of a value: channels, height, width.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Shape {
    pub const fn new(c: usize, h: usize, w: usize) -> Shape {
        Shape { c, h, w }
    }
    pub const fn numel(&self) -> usize {
        self.c * self.h * self.w
    }
    pub const fn plane(&self) -> usize {
        self.h * self.w
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}x{}", self.c, self.h, self.w)
    }
}

/// A network: nodes in topological order, node 0 the input, `output` the logits `(classes, 1, 1)`.
#[derive(Clone, Debug)]
pub struct Graph {
    /// e.g. "resnet20", "resnet152", "vgg11_bn_cifar10".
    pub name: String,
    pub input: Shape,
    pub nodes: Vec<Node>,
    pub sites: Vec<Site>,
    pub output: NodeId,
}

/// One operation; `name` is where it came from, used in error messages, profiles and (for the
/// nodes of sites) site names: the PyTorch module path for the built-in architectures (e.g.
/// "layer1.0.conv1"), the ONNX node name for an imported graph (an importer makes up a unique
/// one, e.g. "Conv_12", where the file has none).
#[derive(Clone, Debug)]
pub struct Node {
    pub name: String,
    pub op: Op,
}

#[derive(Clone, Debug)]
pub enum Op {
    /// The batch itself; only node 0.
    Input,
    Conv2d(Conv2d),
    Relu {
        input: NodeId,
        site: SiteId,
    },
    MaxPool {
        input: NodeId,
        pool: Window2d,
        site: SiteId,
    },
    AvgPool {
        input: NodeId,
        pool: Window2d,
        /// Whether padding counts in the divisor (PyTorch's default true; ONNX's default false).
        count_include_pad: bool,
    },
    /// Mean over each channel plane: `(c, h, w)` → `(c, 1, 1)`.
    GlobalAvgPool {
        input: NodeId,
    },
    /// Elementwise sum of two values of equal shape (residual connection).
    Add {
        a: NodeId,
        b: NodeId,
    },
    /// Elementwise difference `a − b` of two values of equal shape (the second half of ReLU6).
    Sub {
        a: NodeId,
        b: NodeId,
    },
    /// Per-channel `y = x · scale[c] + shift[c]`: ONNX Mul/Add/Sub/Div by a per-channel or scalar
    /// constant, an unfoldable BatchNormalization, and the `x − 6` of ReLU6.
    Affine(Affine),
    /// An exact-only elementwise non-linearity (not an approximation site).
    Pointwise {
        input: NodeId,
        func: Pointwise,
    },
    /// CIFAR ResNet option-A shortcut: spatial subsampling and zero channel padding.
    ShortcutA {
        input: NodeId,
        out_channels: usize,
        stride: usize,
    },
    Flatten {
        input: NodeId,
    },
    /// Channel concatenation of values of equal height and width (inception branches).
    Concat {
        inputs: Vec<NodeId>,
    },
    Linear(Linear),
}

/// A convolution (with BatchNorm folded in, for the built-in architectures).
///
/// Output channel `o` belongs to group `g = o / (O / groups)` and reads input channels
/// `g·(C / groups) .. (g + 1)·(C / groups)`; both O and C must be multiples of `groups`.
#[derive(Clone, Debug)]
pub struct Conv2d {
    pub input: NodeId,
    /// `[out_channels, in_channels / groups, kh, kw]`, row-major (PyTorch's and ONNX's layout).
    pub weight: Tensor,
    /// `out_channels` values (zeros for a convolution without bias).
    pub bias: Vec<f32>,
    /// Kernel (must equal the weight's `[kh, kw]`), stride, dilation, padding; `ceil_mode` false.
    pub window: Window2d,
    /// 1 for a dense convolution, the input channel count for a depthwise one.
    pub groups: usize,
}

impl Conv2d {
    /// A dense (groups = 1, no dilation) convolution with symmetric padding `[rows, columns]`:
    /// what the built-in architectures use.
    pub fn dense(input: NodeId, weight: Tensor, bias: Vec<f32>, stride: usize, padding: [usize; 2]) -> Conv2d {
        let kernel = [
            weight.shape.get(2).copied().unwrap_or(0),
            weight.shape.get(3).copied().unwrap_or(0),
        ];
        Conv2d {
            input,
            weight,
            bias,
            window: Window2d::new(kernel, [stride; 2], padding),
            groups: 1,
        }
    }
    pub fn out_channels(&self) -> usize {
        self.weight.shape[0]
    }
    /// Input channels each output channel reads (C / groups).
    pub fn group_in_channels(&self) -> usize {
        self.weight.shape[1]
    }
    /// `[kh, kw]`.
    pub fn kernel(&self) -> [usize; 2] {
        [self.weight.shape[2], self.weight.shape[3]]
    }
}

/// Per-channel affine map `y = x · scale[c] + shift[c]`; `scale` and `shift` each hold C values
/// or one value applied to every channel.
#[derive(Clone, Debug)]
pub struct Affine {
    pub input: NodeId,
    pub scale: Vec<f32>,
    pub shift: Vec<f32>,
}

impl Affine {
    /// Scale and shift of channel `c` (a length-1 vector broadcasts).
    pub fn of_channel(&self, c: usize) -> (f32, f32) {
        let pick = |v: &[f32]| if v.len() == 1 { v[0] } else { v[c] };
        (pick(&self.scale), pick(&self.shift))
    }
}

/// Exact-only elementwise functions: they have no polynomial form here, so a graph holding one
/// can only run exactly (an approximate run is refused naming the node).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pointwise {
    /// 1 / (1 + e^−x).
    Sigmoid,
    /// x · sigmoid(x) (ONNX's Swish / SiLU pattern).
    Silu,
    /// x · Φ(x) = x/2 · (1 + erf(x/√2)) (the exact, erf form; ONNX Gelu approximate="none").
    Gelu,
    Tanh,
    /// x · HardSigmoid(x) with α = 1/6, β = 1/2 (ONNX HardSwish).
    HardSwish,
    /// max(0, min(1, α·x + β)) (ONNX defaults α = 0.2, β = 0.5; PyTorch's is α = 1/6).
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    /// min(max(x, min), max) (a general ONNX Clip; Clip(0, 6) is better built as
    /// [`GraphBuilder::relu6`], which is approximable, and Clip(0, ∞) as a ReLU).
    Clip {
        min: f32,
        max: f32,
    },
}

impl Pointwise {
    /// ONNX-style operator name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Pointwise::Sigmoid => "Sigmoid",
            Pointwise::Silu => "SiLU",
            Pointwise::Gelu => "Gelu",
            Pointwise::Tanh => "Tanh",
            Pointwise::HardSwish => "HardSwish",
            Pointwise::HardSigmoid { .. } => "HardSigmoid",
            Pointwise::Clip { .. } => "Clip",
        }
    }

    /// The function in f64: the reference every executor is tested against.
    pub fn eval_f64(&self, x: f64) -> f64 {
        let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
        match *self {
            Pointwise::Sigmoid => sigmoid(x),
            Pointwise::Silu => x * sigmoid(x),
            Pointwise::Gelu => 0.5 * x * libm::erfc(-x / std::f64::consts::SQRT_2),
            Pointwise::Tanh => x.tanh(),
            Pointwise::HardSwish => x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
            Pointwise::HardSigmoid { alpha, beta } => (alpha as f64 * x + beta as f64).clamp(0.0, 1.0),
            Pointwise::Clip { min, max } => x.max(min as f64).min(max as f64),
        }
    }

    fn check(&self) -> Result<(), String> {
        match *self {
            Pointwise::HardSigmoid { alpha, beta } if !(alpha.is_finite() && beta.is_finite()) => Err(format!(
                "HardSigmoid needs finite alpha and beta, got {alpha} and {beta}"
            )),
            Pointwise::Clip { min, max } if min.is_nan() || max.is_nan() || min > max => {
                Err(format!("Clip needs min ≤ max, got [{min}, {max}]"))
            }
            _ => Ok(()),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Linear {
    pub input: NodeId,
    /// `[out_features, in_features]`, row-major.
    pub weight: Tensor,
    pub bias: Vec<f32>,
}

/// The sliding-window geometry of a convolution or a pooling: the one type the graph's shape
/// rules, the CPU kernels and the GPU kernels read. Every array is per axis `[h, w]`, except
/// `pads`, which is `[top, left, bottom, right]` (ONNX's `pads` order: begins, then ends).
///
/// Tap `k` of output `o` along an axis reads input coordinate
/// `o · stride + k · dilation − pad_begin` ([`Window2d::input_coord`]); coordinates outside
/// `0..len` are padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Window2d {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    pub pads: [usize; 4],
    /// PyTorch's / ONNX's `ceil_mode` (pools only; a convolution's is false).
    pub ceil_mode: bool,
}

impl Window2d {
    /// No dilation, symmetric padding `[rows, columns]`, floor mode.
    pub const fn new(kernel: [usize; 2], stride: [usize; 2], padding: [usize; 2]) -> Window2d {
        Window2d {
            kernel,
            stride,
            dilation: [1, 1],
            pads: [padding[0], padding[1], padding[0], padding[1]],
            ceil_mode: false,
        }
    }

    /// A square window: kernel, stride and padding the same along both axes (every built-in
    /// architecture's pools).
    pub const fn square(kernel: usize, stride: usize, padding: usize) -> Window2d {
        Window2d::new([kernel; 2], [stride; 2], [padding; 2])
    }

    /// The same window with `ceil_mode` set as given.
    pub const fn with_ceil_mode(self, ceil_mode: bool) -> Window2d {
        Window2d { ceil_mode, ..self }
    }

    /// Taps per window (kh · kw).
    pub const fn taps(&self) -> usize {
        self.kernel[0] * self.kernel[1]
    }

    /// Padding before (top/left) the input along `axis` (0: rows, 1: columns).
    pub const fn pad_begin(&self, axis: usize) -> usize {
        self.pads[axis]
    }

    /// Padding after (bottom/right) the input along `axis`.
    pub const fn pad_end(&self, axis: usize) -> usize {
        self.pads[axis + 2]
    }

    /// Input positions one window spans along `axis`: dilation · (k − 1) + 1.
    pub const fn extent(&self, axis: usize) -> usize {
        self.dilation[axis] * (self.kernel[axis].saturating_sub(1)) + 1
    }

    /// Whether padding is the same before and after on both axes.
    pub const fn is_symmetric(&self) -> bool {
        self.pads[0] == self.pads[2] && self.pads[1] == self.pads[3]
    }

    /// Input coordinate along `axis` of tap `k` of output `o` (negative or ≥ len: padding).
    pub const fn input_coord(&self, axis: usize, o: usize, k: usize) -> isize {
        (o * self.stride[axis] + k * self.dilation[axis]) as isize - self.pads[axis] as isize
    }

    /// Output size along `axis` for an input of `len`: PyTorch's formula, with the ceil-mode
    /// correction that the last window must start inside the input or the begin padding.
    /// None when the window does not fit or a stride/dilation/kernel is zero.
    pub fn out_len(&self, axis: usize, len: usize) -> Option<usize> {
        let (stride, pad_begin) = (self.stride[axis], self.pad_begin(axis));
        if stride == 0 || self.dilation[axis] == 0 || self.kernel[axis] == 0 {
            return None;
        }
        let span = (len + pad_begin + self.pad_end(axis)).checked_sub(self.extent(axis))?;
        let mut out = if self.ceil_mode {
            span.div_ceil(stride) + 1
        } else {
            span / stride + 1
        };
        if self.ceil_mode && (out - 1) * stride >= len + pad_begin {
            out -= 1;
        }
        Some(out)
    }

    /// `(out_h, out_w)` for an input plane `h × w`.
    pub fn out_hw(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        Some((self.out_len(0, h)?, self.out_len(1, w)?))
    }

    /// Taps of output `o`'s window along `axis` that lie inside the padded input
    /// `[-pad_begin, len + pad_end)` (a ceil-mode window may overhang it) and inside the input
    /// itself: the two divisors of average pooling.
    pub fn taps_inside(&self, axis: usize, o: usize, len: usize) -> (usize, usize) {
        let (lo, hi) = (-(self.pad_begin(axis) as isize), (len + self.pad_end(axis)) as isize);
        let (mut padded, mut inside) = (0, 0);
        for k in 0..self.kernel[axis] {
            let i = self.input_coord(axis, o, k);
            padded += (lo <= i && i < hi) as usize;
            inside += (0 <= i && i < len as isize) as usize;
        }
        (padded, inside)
    }

    /// Zero strides/dilations/kernels, and (pools) padding beyond half the window, which would
    /// let a window lie wholly in the padding (PyTorch refuses it too).
    fn check_pool(&self) -> Result<(), String> {
        let ok = (0..2).all(|a| {
            self.stride[a] > 0
                && self.dilation[a] > 0
                && self.kernel[a] > 0
                && 2 * self.pad_begin(a) <= self.extent(a)
                && 2 * self.pad_end(a) <= self.extent(a)
        });
        if ok {
            Ok(())
        } else {
            Err(format!(
                "bad pooling geometry {self:?} (needs positive kernel/stride/dilation and padding ≤ window/2)"
            ))
        }
    }
}

/// What kind of operation an activation site is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SiteKind {
    Relu,
    MaxPool,
}

impl SiteKind {
    /// "relu" or "maxpool", as reports and plan files spell it.
    pub fn name(self) -> &'static str {
        match self {
            SiteKind::Relu => "relu",
            SiteKind::MaxPool => "maxpool",
        }
    }
}

/// An approximable activation: a ReLU or a max-pool, with a stable human-readable name
/// ("relu" for the stem, "layer1.0.relu1", "layer1.0.relu2", "maxpool", "features.3", ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    pub name: String,
    pub kind: SiteKind,
    pub node: NodeId,
    /// Another (earlier) site whose bound B this one must use: the second ReLU of a ReLU6,
    /// ReLU(x) − ReLU(x − 6), is only a clip if both halves see the same polynomial scale.
    /// Executors refuse a plan that gives the two different bounds; bound rules pick one B for
    /// the whole group ([`Graph::unify_shared_bounds`]).
    pub shares_bound_with: Option<SiteId>,
}

/// A graph that does not hang together (a builder bug or a hand-made graph).
#[derive(Debug, Clone, PartialEq)]
pub struct GraphError {
    pub node: String,
    pub detail: String,
}

impl fmt::Display for GraphError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node `{}`: {}", self.node, self.detail)
    }
}

impl std::error::Error for GraphError {}

impl Op {
    /// The values this op reads.
    pub fn inputs(&self) -> Vec<NodeId> {
        match self {
            Op::Input => vec![],
            Op::Conv2d(c) => vec![c.input],
            Op::Linear(l) => vec![l.input],
            Op::Add { a, b } | Op::Sub { a, b } => vec![*a, *b],
            Op::Concat { inputs } => inputs.clone(),
            Op::Affine(af) => vec![af.input],
            Op::Relu { input, .. }
            | Op::MaxPool { input, .. }
            | Op::AvgPool { input, .. }
            | Op::GlobalAvgPool { input }
            | Op::ShortcutA { input, .. }
            | Op::Flatten { input }
            | Op::Pointwise { input, .. } => vec![*input],
        }
    }

    /// Whether this op is a non-linearity with no approximation: a graph holding one can only
    /// run with every site exact.
    pub fn is_exact_only(&self) -> bool {
        matches!(self, Op::Pointwise { .. })
    }

    pub fn site(&self) -> Option<SiteId> {
        match self {
            Op::Relu { site, .. } | Op::MaxPool { site, .. } => Some(*site),
            _ => None,
        }
    }
}

impl Graph {
    /// Checks the graph and returns every node's output shape (per image). Executors call this
    /// first; everything they index afterwards is then in bounds.
    pub fn shapes(&self) -> Result<Vec<Shape>, GraphError> {
        if !matches!(self.nodes.first().map(|n| &n.op), Some(Op::Input)) {
            return Err(self.error(0, "node 0 must be the input".into()));
        }
        let mut shapes: Vec<Shape> = Vec::with_capacity(self.nodes.len());
        for (id, node) in self.nodes.iter().enumerate() {
            for input in node.op.inputs() {
                if input >= id {
                    return Err(self.error(id, format!("reads node {input}, which does not come before it")));
                }
            }
            let shape = self.node_shape(id, &shapes).map_err(|detail| self.error(id, detail))?;
            if shape.numel() == 0 {
                return Err(self.error(id, format!("produces an empty value ({shape})")));
            }
            shapes.push(shape);
        }
        self.check_sites()?;
        if self.output >= self.nodes.len() {
            return Err(GraphError {
                node: self.name.clone(),
                detail: format!("output node {} does not exist", self.output),
            });
        }
        Ok(shapes)
    }

    /// Number of classes (the output's element count).
    pub fn classes(&self) -> Result<usize, GraphError> {
        Ok(self.shapes()?[self.output].numel())
    }

    /// For every node, the index of the last node reading it (itself if none; `usize::MAX` for
    /// the output), so executors can free buffers early.
    pub fn last_uses(&self) -> Vec<usize> {
        let mut last: Vec<usize> = (0..self.nodes.len()).collect();
        for (id, node) in self.nodes.iter().enumerate() {
            for input in node.op.inputs() {
                if input < last.len() {
                    last[input] = last[input].max(id);
                }
            }
        }
        if let Some(out) = last.get_mut(self.output) {
            *out = usize::MAX;
        }
        last
    }

    /// Number of nodes reading each node.
    pub fn consumer_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.nodes.len()];
        for node in &self.nodes {
            for input in node.op.inputs() {
                if let Some(c) = counts.get_mut(input) {
                    *c += 1;
                }
            }
        }
        counts
    }

    /// Site index by name.
    pub fn site_named(&self, name: &str) -> Option<SiteId> {
        self.sites.iter().position(|s| s.name == name)
    }

    /// The nodes no polynomial replaces ([`Op::is_exact_only`]: sigmoid, GELU, a general clip…),
    /// in graph order. A caller asked for an approximate run of a graph with any fails before
    /// reading an image, naming them ([`Graph::refuse_approximation`]).
    pub fn exact_only_nodes(&self) -> Vec<NodeId> {
        (0..self.nodes.len())
            .filter(|&id| self.nodes[id].op.is_exact_only())
            .collect()
    }

    /// An error naming the first exact-only node (and how many there are), if any: what an
    /// approximate run of this graph must refuse with.
    pub fn refuse_approximation(&self) -> Result<(), GraphError> {
        let nodes = self.exact_only_nodes();
        let Some(&first) = nodes.first() else {
            return Ok(());
        };
        let Op::Pointwise { func, .. } = &self.nodes[first].op else {
            unreachable!("exact-only nodes are pointwise")
        };
        let more = match nodes.len() {
            1 => String::new(),
            n => format!(" (and {} more exact-only nodes)", n - 1),
        };
        Err(self.error(
            first,
            format!(
                "{} has no polynomial approximation, so {} cannot run approximated; run it exact{more}",
                func.name(),
                self.name
            ),
        ))
    }

    /// The site whose B site `site` must use: itself, or the first of its shared-bound group.
    pub fn bound_leader(&self, site: SiteId) -> SiteId {
        let mut s = site;
        while let Some(next) = self.sites.get(s).and_then(|x| x.shares_bound_with) {
            s = next;
        }
        s
    }

    /// Per-site bounds made to hold for shared-bound groups: every member of a group gets the
    /// group's largest bound (so none of them sees more inputs out of range than it did alone).
    /// `bounds` is indexed by [`SiteId`].
    pub fn unify_shared_bounds(&self, bounds: &mut [f64]) {
        let mut group_max: Vec<f64> = bounds.to_vec();
        for (s, &bound) in bounds.iter().enumerate().take(self.sites.len()) {
            let leader = self.bound_leader(s);
            group_max[leader] = group_max[leader].max(bound);
        }
        for (s, bound) in bounds.iter_mut().enumerate().take(self.sites.len()) {
            *bound = group_max[self.bound_leader(s)];
        }
    }

    /// Checks that sites sharing a bound got equal ones (`bounds[site]`, None for an exact
    /// site); the error names both sites (and the node of the first that differs).
    pub fn check_shared_bounds(&self, bounds: &[Option<f64>]) -> Result<(), GraphError> {
        for (s, site) in self.sites.iter().enumerate() {
            let leader = self.bound_leader(s);
            let (mine, theirs) = (bounds.get(s).copied().flatten(), bounds.get(leader).copied().flatten());
            if mine != theirs {
                return Err(self.error(
                    site.node,
                    format!(
                        "site `{}` shares its bound with `{}` (the halves of one ReLU6), but the plan gives {} and {}",
                        site.name,
                        self.sites[leader].name,
                        describe_bound(mine),
                        describe_bound(theirs)
                    ),
                ));
            }
        }
        Ok(())
    }

    fn check_sites(&self) -> Result<(), GraphError> {
        for (sid, site) in self.sites.iter().enumerate() {
            let node = self.nodes.get(site.node).ok_or_else(|| GraphError {
                node: site.name.clone(),
                detail: format!("site points at missing node {}", site.node),
            })?;
            let kind = match node.op {
                Op::Relu { site, .. } if site == sid => SiteKind::Relu,
                Op::MaxPool { site, .. } if site == sid => SiteKind::MaxPool,
                _ => return Err(self.error(site.node, format!("is not the node of site {sid} `{}`", site.name))),
            };
            if kind != site.kind {
                return Err(self.error(site.node, format!("site `{}` has the wrong kind", site.name)));
            }
            if let Some(other) = site.shares_bound_with
                && (other >= sid || self.sites[other].kind != site.kind)
            {
                return Err(self.error(
                    site.node,
                    format!(
                        "site `{}` shares its bound with site {other}, which is not an earlier site of its kind",
                        site.name
                    ),
                ));
            }
        }
        for (id, node) in self.nodes.iter().enumerate() {
            if let Some(s) = node.op.site()
                && self.sites.get(s).is_none_or(|site| site.node != id)
            {
                return Err(self.error(id, format!("refers to site {s}, which does not point back at it")));
            }
        }
        Ok(())
    }

    fn node_shape(&self, id: NodeId, shapes: &[Shape]) -> Result<Shape, String> {
        let of = |n: NodeId| shapes[n];
        match &self.nodes[id].op {
            Op::Input if id == 0 => Ok(self.input),
            Op::Input => Err("only node 0 may be the input".into()),
            Op::Conv2d(conv) => conv_shape(conv, of(conv.input)),
            Op::Relu { input, .. } => Ok(of(*input)),
            Op::MaxPool { input, pool, .. } | Op::AvgPool { input, pool, .. } => pool_shape(pool, of(*input)),
            Op::GlobalAvgPool { input } => Ok(Shape::new(of(*input).c, 1, 1)),
            Op::Add { a, b } | Op::Sub { a, b } if of(*a) == of(*b) => Ok(of(*a)),
            Op::Add { a, b } | Op::Sub { a, b } => {
                Err(format!("combines values of different shapes {} and {}", of(*a), of(*b)))
            }
            Op::Affine(af) => affine_shape(af, of(af.input)),
            Op::Pointwise { input, func } => func.check().map(|()| of(*input)),
            Op::ShortcutA {
                input,
                out_channels,
                stride,
            } => shortcut_shape(of(*input), *out_channels, *stride),
            Op::Flatten { input } => Ok(Shape::new(of(*input).numel(), 1, 1)),
            Op::Concat { inputs } => concat_shape(&inputs.iter().map(|&i| of(i)).collect::<Vec<_>>()),
            Op::Linear(lin) => linear_shape(lin, of(lin.input)),
        }
    }

    fn error(&self, id: NodeId, detail: String) -> GraphError {
        let node = self.nodes.get(id).map_or_else(|| format!("#{id}"), |n| n.name.clone());
        GraphError { node, detail }
    }
}

fn conv_shape(conv: &Conv2d, x: Shape) -> Result<Shape, String> {
    let w = &conv.weight;
    if w.shape.len() != 4 || w.shape[2] == 0 || w.shape[3] == 0 {
        return Err(format!("weight shape {:?} is not [O, I/groups, kh, kw]", w.shape));
    }
    if w.numel() != w.shape.iter().product::<usize>() {
        return Err(format!("weight has {} values for shape {:?}", w.numel(), w.shape));
    }
    let (groups, out_c) = (conv.groups, w.shape[0]);
    if groups == 0 || !out_c.is_multiple_of(groups) || !x.c.is_multiple_of(groups) {
        return Err(format!(
            "{groups} groups do not divide {} input and {out_c} output channels",
            x.c
        ));
    }
    if w.shape[1] * groups != x.c {
        return Err(format!(
            "weight expects {} input channels per group ({groups} groups), input has {} ({x})",
            w.shape[1], x.c
        ));
    }
    if conv.bias.len() != out_c {
        return Err(format!(
            "bias has {} values for {out_c} output channels",
            conv.bias.len()
        ));
    }
    let win = &conv.window;
    if win.kernel != conv.kernel() {
        return Err(format!(
            "window kernel {:?} differs from the weight's {:?}",
            win.kernel,
            conv.kernel()
        ));
    }
    if win.ceil_mode || win.stride.contains(&0) || win.dilation.contains(&0) {
        return Err(format!(
            "bad convolution geometry {win:?} (zero stride/dilation or ceil mode)"
        ));
    }
    let (h, w) = win.out_hw(x.h, x.w).ok_or_else(|| {
        format!(
            "kernel {:?} (dilation {:?}) does not fit input {x}",
            win.kernel, win.dilation
        )
    })?;
    Ok(Shape::new(out_c, h, w))
}

fn pool_shape(pool: &Window2d, x: Shape) -> Result<Shape, String> {
    pool.check_pool()?;
    let (h, w) = pool
        .out_hw(x.h, x.w)
        .ok_or_else(|| format!("window {:?} does not fit input {x}", pool.kernel))?;
    Ok(Shape::new(x.c, h, w))
}

fn affine_shape(af: &Affine, x: Shape) -> Result<Shape, String> {
    for (what, v) in [("scale", &af.scale), ("shift", &af.shift)] {
        if v.len() != 1 && v.len() != x.c {
            return Err(format!(
                "{what} has {} values for {} channels (needs {} or 1)",
                v.len(),
                x.c,
                x.c
            ));
        }
        if let Some(bad) = v.iter().find(|v| !v.is_finite()) {
            return Err(format!("{what} holds the non-finite value {bad}"));
        }
    }
    Ok(x)
}

fn describe_bound(b: Option<f64>) -> String {
    b.map_or("exact".into(), |b| format!("B = {b}"))
}

fn shortcut_shape(x: Shape, out_channels: usize, stride: usize) -> Result<Shape, String> {
    if stride == 0 || out_channels < x.c || !(out_channels - x.c).is_multiple_of(2) {
        return Err(format!(
            "option-A shortcut from {} to {out_channels} channels with stride {stride} (needs an even channel increase)",
            x.c
        ));
    }
    Ok(Shape::new(out_channels, x.h.div_ceil(stride), x.w.div_ceil(stride)))
}

fn concat_shape(parts: &[Shape]) -> Result<Shape, String> {
    let Some(first) = parts.first() else {
        return Err("concatenates nothing".into());
    };
    if let Some(bad) = parts.iter().find(|s| (s.h, s.w) != (first.h, first.w)) {
        return Err(format!("concatenates values of different planes {first} and {bad}"));
    }
    Ok(Shape::new(parts.iter().map(|s| s.c).sum(), first.h, first.w))
}

fn linear_shape(lin: &Linear, x: Shape) -> Result<Shape, String> {
    let w = &lin.weight;
    if w.shape.len() != 2 || w.numel() != w.shape[0] * w.shape[1] {
        return Err(format!("weight shape {:?} is not [out, in]", w.shape));
    }
    if x.h != 1 || x.w != 1 || x.c != w.shape[1] {
        return Err(format!("expects {} input features, input is {x}", w.shape[1]));
    }
    if lin.bias.len() != w.shape[0] {
        return Err(format!("bias has {} values for {} outputs", lin.bias.len(), w.shape[0]));
    }
    Ok(Shape::new(w.shape[0], 1, 1))
}

/// A batch of images, NCHW f32.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub n: usize,
    pub shape: Shape,
    pub data: Vec<f32>,
}

impl Batch {
    /// Checks that the data length matches `n · c·h·w`.
    pub fn new(n: usize, shape: Shape, data: Vec<f32>) -> Result<Batch, String> {
        if data.len() != n * shape.numel() {
            return Err(format!(
                "batch of {n} images {shape} needs {} values, got {}",
                n * shape.numel(),
                data.len()
            ));
        }
        Ok(Batch { n, shape, data })
    }

    /// Whether this batch can run through `graph`: its image shape, its length, and finite values
    /// (a NaN in the input would be indistinguishable from one an approximation produced).
    /// Shared by every backend so they refuse the same inputs with the same words.
    pub fn check_against(&self, graph: &Graph) -> Result<(), String> {
        if self.shape != graph.input {
            return Err(format!(
                "{} takes {} images, the batch holds {}",
                graph.name, graph.input, self.shape
            ));
        }
        let per_image = self.shape.numel();
        if self.data.len() != self.n * per_image {
            return Err(format!(
                "batch of {} images {} has {} values",
                self.n,
                self.shape,
                self.data.len()
            ));
        }
        // A branch-free pass first (it vectorises; pieces on every thread), the position only
        // for the error.
        use rayon::prelude::*;
        let finite = |piece: &[f32]| piece.iter().fold(true, |ok, v| ok & v.is_finite());
        let all_finite = self.data.par_chunks(1 << 16).all(finite);
        if let Some(i) = (!all_finite)
            .then(|| self.data.iter().position(|v| !v.is_finite()))
            .flatten()
        {
            return Err(format!(
                "image {} holds a non-finite value (at offset {})",
                i / per_image,
                i % per_image
            ));
        }
        Ok(())
    }

    /// Images `start..start+count` as a new batch (for chunked runs).
    pub fn slice(&self, start: usize, count: usize) -> Batch {
        let per = self.shape.numel();
        let end = (start + count).min(self.n);
        let start = start.min(end);
        Batch {
            n: end - start,
            shape: self.shape,
            data: self.data[start * per..end * per].to_vec(),
        }
    }
}

/// A small builder that keeps node names, sites and ids consistent; used by every architecture.
pub struct GraphBuilder {
    graph: Graph,
}

impl GraphBuilder {
    pub fn new(name: &str, input: Shape) -> GraphBuilder {
        GraphBuilder {
            graph: Graph {
                name: name.to_string(),
                input,
                nodes: vec![Node {
                    name: "input".into(),
                    op: Op::Input,
                }],
                sites: Vec::new(),
                output: 0,
            },
        }
    }

    pub const INPUT: NodeId = 0;

    /// The graph so far (an importer checks shapes as it goes).
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// A node's op, for folding a later operation into it at load time (BatchNorm into the
    /// convolution before it); the caller must keep the node's inputs and output shape.
    pub fn op_mut(&mut self, id: NodeId) -> Option<&mut Op> {
        self.graph.nodes.get_mut(id).map(|n| &mut n.op)
    }

    pub fn push(&mut self, name: &str, op: Op) -> NodeId {
        self.graph.nodes.push(Node {
            name: name.to_string(),
            op,
        });
        self.graph.nodes.len() - 1
    }

    pub fn relu(&mut self, name: &str, input: NodeId) -> NodeId {
        let site = self.new_site(name, SiteKind::Relu);
        self.push(name, Op::Relu { input, site })
    }

    pub fn max_pool(&mut self, name: &str, input: NodeId, pool: Window2d) -> NodeId {
        let site = self.new_site(name, SiteKind::MaxPool);
        self.push(name, Op::MaxPool { input, pool, site })
    }

    /// ReLU6 = min(max(x, 0), 6) as ReLU(x) − ReLU(x − 6): nodes `{name}.relu` (site), `{name}.minus6`
    /// (Affine), `{name}.relu_minus6` (site, sharing the first one's bound) and `{name}` (Sub),
    /// which is returned. Exact, the difference is the clip itself for every |x| < 2^25 (x − 6
    /// is exact in f32 there); approximated, both halves use one B, which must cover |x| and
    /// |x − 6|, and the HE cost is two ReLUs.
    pub fn relu6(&mut self, name: &str, input: NodeId) -> NodeId {
        let low = self.relu(&format!("{name}.relu"), input);
        let low_site = self.graph.sites.len() - 1;
        let shifted = self.push(
            &format!("{name}.minus6"),
            Op::Affine(Affine {
                input,
                scale: vec![1.0],
                shift: vec![-6.0],
            }),
        );
        let high = self.relu(&format!("{name}.relu_minus6"), shifted);
        self.graph
            .sites
            .last_mut()
            .expect("relu pushed a site")
            .shares_bound_with = Some(low_site);
        self.push(name, Op::Sub { a: low, b: high })
    }

    fn new_site(&mut self, name: &str, kind: SiteKind) -> SiteId {
        let node = self.graph.nodes.len();
        self.graph.sites.push(Site {
            name: name.to_string(),
            kind,
            node,
            shares_bound_with: None,
        });
        self.graph.sites.len() - 1
    }

    /// Finishes with `output` as the logits node, checking the whole graph.
    pub fn finish(mut self, output: NodeId) -> Result<Graph, GraphError> {
        self.graph.output = output;
        self.graph.shapes()?;
        Ok(self.graph)
    }
}
