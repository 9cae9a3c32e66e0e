//! The network IR shared by every architecture and every executor (CPU here, WGSL on the GPU).
//!
//! A [`Graph`] is a list of [`Node`]s in topological order. Node 0 is always [`Op::Input`]; every
//! node produces exactly one NCHW f32 value, referred to by its [`NodeId`] (its index). The batch
//! size N is not part of the graph: shapes are per image, `(c, h, w)` ([`Shape`]); a flattened
//! value has shape `(features, 1, 1)`.
//!
//! BatchNorm does not appear: it is folded into the preceding convolution's weight and bias at
//! load time, so a [`Conv2d`] always has a bias.
//!
//! The two approximable operations ([`Op::Relu`], [`Op::MaxPool`]) carry a [`SiteId`], an index
//! into [`Graph::sites`]: an executor is told per site whether to evaluate exactly or with the
//! polynomial, and reports per-site statistics under the site's human-readable name.
//!
//! Semantics an executor must follow (they are PyTorch's unless stated):
//! - `Conv2d`: cross-correlation, square kernel/stride/padding, zero padding, groups = 1.
//! - `MaxPool` (exact): padding acts as −∞; `ceil_mode` as in PyTorch (a window may not start in
//!   the right/bottom padding). Approximate max-pool (the paper's tree) reads zeros wherever a
//!   window leaves the input: the official code's `ZeroPad2d(p)` and, in ceil mode, its extra
//!   zero row/column on the bottom/right. The output size is PyTorch's either way; it equals the
//!   official one except where PyTorch's ceil-mode rule drops a window starting in the padding
//!   (no network here has one). (The official code's *exact* GoogLeNet drops `ceil_mode`
//!   altogether, 112 → 55 after the stem; exact mode here is torchvision's, 112 → 56.)
//! - `AvgPool`: `count_include_pad = true` (PyTorch's default).
//! - `ShortcutA`: `y = x[:, :, ::stride, ::stride]` then zero channel planes, `(out − in)/2` on
//!   each side (akamaster's option A, `F.pad(x[:, :, ::2, ::2], (0,0,0,0,planes//4,planes//4))`).
//! - `Flatten`: `(c, h, w)` → `(c·h·w, 1, 1)` in C-major order, as `torch.flatten(x, 1)`.
//! - `Concat`: the inputs' channels one after the other, as `torch.cat(xs, 1)` (equal h, w).
//! - `Linear`: `y = W x + b`, `W` is `[out, in]`.

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

/// One operation; `name` is the PyTorch module path it came from (e.g. "layer1.0.conv1"), used
/// in error messages and profiles.
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
        pool: Pool2d,
        site: SiteId,
    },
    AvgPool {
        input: NodeId,
        pool: Pool2d,
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

/// A convolution with BatchNorm folded in.
#[derive(Clone, Debug)]
pub struct Conv2d {
    pub input: NodeId,
    /// `[out_channels, in_channels, kh, kw]`, row-major.
    pub weight: Tensor,
    /// `out_channels` values.
    pub bias: Vec<f32>,
    /// The same stride along both axes (true of every supported network).
    pub stride: usize,
    /// Zero padding `[rows, columns]` (Inception-v3's 1x7 / 7x1 convolutions pad one axis only).
    pub padding: [usize; 2],
}

impl Conv2d {
    pub fn out_channels(&self) -> usize {
        self.weight.shape[0]
    }
    pub fn in_channels(&self) -> usize {
        self.weight.shape[1]
    }
    /// `[kh, kw]`.
    pub fn kernel(&self) -> [usize; 2] {
        [self.weight.shape[2], self.weight.shape[3]]
    }
}

#[derive(Clone, Debug)]
pub struct Linear {
    pub input: NodeId,
    /// `[out_features, in_features]`, row-major.
    pub weight: Tensor,
    pub bias: Vec<f32>,
}

/// Square pooling window geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2d {
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    pub ceil_mode: bool,
}

impl Pool2d {
    /// Output size along one axis, PyTorch's formula (with the ceil-mode correction that the last
    /// window must start inside the input or the left padding).
    pub fn out_len(&self, len: usize) -> Option<usize> {
        let span = (len + 2 * self.padding).checked_sub(self.kernel)?;
        let mut out = if self.ceil_mode {
            span.div_ceil(self.stride) + 1
        } else {
            span / self.stride + 1
        };
        if self.ceil_mode && (out - 1) * self.stride >= len + self.padding {
            out -= 1;
        }
        Some(out)
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
            Op::Add { a, b } => vec![*a, *b],
            Op::Concat { inputs } => inputs.clone(),
            Op::Relu { input, .. }
            | Op::MaxPool { input, .. }
            | Op::AvgPool { input, .. }
            | Op::GlobalAvgPool { input }
            | Op::ShortcutA { input, .. }
            | Op::Flatten { input } => vec![*input],
        }
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
            Op::MaxPool { input, pool, .. } | Op::AvgPool { input, pool } => pool_shape(pool, of(*input)),
            Op::GlobalAvgPool { input } => Ok(Shape::new(of(*input).c, 1, 1)),
            Op::Add { a, b } if of(*a) == of(*b) => Ok(of(*a)),
            Op::Add { a, b } => Err(format!("adds values of different shapes {} and {}", of(*a), of(*b))),
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
        return Err(format!("weight shape {:?} is not [O, I, kh, kw]", w.shape));
    }
    if w.numel() != w.shape.iter().product::<usize>() {
        return Err(format!("weight has {} values for shape {:?}", w.numel(), w.shape));
    }
    if w.shape[1] != x.c {
        return Err(format!(
            "weight expects {} input channels, input has {} ({x})",
            w.shape[1], x.c
        ));
    }
    if conv.bias.len() != w.shape[0] {
        return Err(format!(
            "bias has {} values for {} output channels",
            conv.bias.len(),
            w.shape[0]
        ));
    }
    if conv.stride == 0 {
        return Err("stride 0".into());
    }
    let axis = |axis: usize| Pool2d {
        kernel: w.shape[2 + axis],
        stride: conv.stride,
        padding: conv.padding[axis],
        ceil_mode: false,
    };
    let out = |a: usize, len| {
        axis(a)
            .out_len(len)
            .ok_or_else(|| format!("kernel {:?} does not fit input {x}", conv.kernel()))
    };
    Ok(Shape::new(w.shape[0], out(0, x.h)?, out(1, x.w)?))
}

fn pool_shape(pool: &Pool2d, x: Shape) -> Result<Shape, String> {
    if pool.kernel == 0 || pool.stride == 0 || 2 * pool.padding > pool.kernel {
        return Err(format!(
            "bad pooling geometry {pool:?} (PyTorch requires padding ≤ kernel/2)"
        ));
    }
    let out = |len| {
        pool.out_len(len)
            .ok_or_else(|| format!("window {} does not fit input {x}", pool.kernel))
    };
    Ok(Shape::new(x.c, out(x.h)?, out(x.w)?))
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
        if let Some(i) = self.data.iter().position(|v| !v.is_finite()) {
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

    pub fn max_pool(&mut self, name: &str, input: NodeId, pool: Pool2d) -> NodeId {
        let site = self.new_site(name, SiteKind::MaxPool);
        self.push(name, Op::MaxPool { input, pool, site })
    }

    fn new_site(&mut self, name: &str, kind: SiteKind) -> SiteId {
        let node = self.graph.nodes.len();
        self.graph.sites.push(Site {
            name: name.to_string(),
            kind,
            node,
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
