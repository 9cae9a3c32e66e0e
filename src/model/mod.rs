//! Network graphs: architecture descriptions and loading weights into them.
//!
//! - [`graph`]: the IR every executor runs ([`Graph`], [`Op`], activation [`Site`]s).
//! - [`schedule`]: the conv + residual + ReLU fusion both executors follow.
//! - Architectures (akamaster CIFAR ResNets, torchvision ResNets, VGG-bn, GoogLeNet, Inception-v3, the
//!   project's CIFAR VGG-11-bn and the CIFAR VGG-bn layouts of the paper's code), each written once against a [`ParamSource`]: the same code builds a graph from a
//!   checkpoint ([`load`], [`from_state_dict`]), from deterministic random weights ([`random`]),
//!   or only lists the tensors it expects in torchvision `state_dict()` order ([`list_layers`]).
//!   [`torchvision_resnet_from_state_dict`] reads a ResNet's widths and depths from the file.
//!
//! BatchNorm is folded into the preceding convolution while building (in f64, eval semantics,
//! eps 1e-5, or 1e-3 for GoogLeNet and Inception-v3). Every tensor is checked by name: missing, mis-shaped, non-finite or left-over
//! tensors are errors naming the file and the tensor.

pub mod cost;
pub mod descriptor;
mod googlenet;
pub mod graph;
mod inception;
pub mod onnx;
mod params;
mod resnet;
pub mod schedule;
mod vgg;

pub use descriptor::{DatasetFamily, NetworkDescriptor, Preprocessing, SearchGrid};
pub use graph::{
    Affine, Batch, Conv2d, Graph, GraphBuilder, GraphError, Linear, Node, NodeId, Op, Pointwise, Shape, Site, SiteId,
    SiteKind, Window2d,
};
pub use params::{CounterParams, ParamInfo, ParamKind, ParamSource, RandomParams, counter_uniform};
pub use resnet::ResNetLayout;

use crate::data::Normalize;
use crate::weights::{StateDict, WeightsError};
use params::{ListParams, StateDictParams};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Every architecture this crate builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    /// akamaster's CIFAR-10 ResNet (option-A shortcuts); depth 20, 32, 44, 56 or 110.
    CifarResNet(usize),
    /// torchvision ResNet; depth 18, 34, 50, 101 or 152.
    ResNet(usize),
    /// torchvision VGG with batch norm (ImageNet, 224x224); depth 11, 13, 16 or 19.
    VggBn(usize),
    /// This project's CIFAR-10 VGG-11-bn (shared/data/cifar10/weights_vgg): features, then a
    /// single `classifier` Linear(512, 10).
    CifarVgg11Bn,
    /// The same single-classifier CIFAR-10 layout at depth 13, 16 or 19.
    CifarVggBn(usize),
    /// The paper's CIFAR-10 VGG-bn (snu-ccl/approxCNN `vgg_cifar10.py`), depth 11, 13, 16 or 19:
    /// features, then `linear1` 512→512, ReLU, `linear2` 512→512, ReLU, `linear3` 512→10.
    CifarVggPaper(usize),
    /// torchvision GoogLeNet (224x224, pretrained layout: no auxiliary heads, transform_input).
    GoogLeNet,
    /// torchvision Inception-v3 (299x299, pretrained layout: no auxiliary head, transform_input).
    InceptionV3,
    /// The small CNN shipped in datasets/digits (8x8 grayscale digits).
    DigitsCnn,
}

impl Arch {
    pub const ALL: [Arch; 25] = [
        Arch::CifarResNet(20),
        Arch::CifarResNet(32),
        Arch::CifarResNet(44),
        Arch::CifarResNet(56),
        Arch::CifarResNet(110),
        Arch::ResNet(18),
        Arch::ResNet(34),
        Arch::ResNet(50),
        Arch::ResNet(101),
        Arch::ResNet(152),
        Arch::VggBn(11),
        Arch::VggBn(13),
        Arch::VggBn(16),
        Arch::VggBn(19),
        Arch::CifarVgg11Bn,
        Arch::CifarVggBn(13),
        Arch::CifarVggBn(16),
        Arch::CifarVggBn(19),
        Arch::CifarVggPaper(11),
        Arch::CifarVggPaper(13),
        Arch::CifarVggPaper(16),
        Arch::CifarVggPaper(19),
        Arch::GoogLeNet,
        Arch::InceptionV3,
        Arch::DigitsCnn,
    ];

    /// The name used on the command line and as [`Graph::name`].
    pub fn name(self) -> String {
        match self {
            Arch::CifarResNet(d) => format!("resnet{d}"),
            Arch::ResNet(d) => format!("resnet{d}_imagenet"),
            Arch::VggBn(d) => format!("vgg{d}_bn"),
            Arch::CifarVgg11Bn => "vgg11_bn_cifar10".into(),
            Arch::CifarVggBn(d) => format!("vgg{d}_bn_cifar10"),
            Arch::CifarVggPaper(d) => format!("vgg{d}_bn_cifar10_paper"),
            Arch::GoogLeNet => "googlenet".into(),
            Arch::InceptionV3 => "inception_v3".into(),
            Arch::DigitsCnn => "digits_cnn".into(),
        }
    }

    /// Everything about the network besides its graph (input, data, preprocessing, B grid).
    pub fn descriptor(self) -> NetworkDescriptor {
        // torchvision's transform_input after the ImageNet normalisation:
        // ((x − m)/s)·(s/0.5) + (m − 0.5)/0.5 = (x − 0.5)/0.5 for every channel.
        const TRANSFORM_INPUT: ([f32; 3], [f32; 3]) = ([0.5; 3], [0.5; 3]);
        let cifar_vgg = Normalize::CIFAR_VGG;
        // main_cifar10.py of the paper's code.
        const CIFAR_PAPER: ([f32; 3], [f32; 3]) = ([0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]);
        let name = self.name();
        match self {
            Arch::CifarResNet(_) => NetworkDescriptor::cifar10(&name, None),
            Arch::CifarVgg11Bn | Arch::CifarVggBn(_) => {
                NetworkDescriptor::cifar10(&name, Some((cifar_vgg.mean, cifar_vgg.std)))
            }
            Arch::CifarVggPaper(_) => NetworkDescriptor::cifar10(&name, Some(CIFAR_PAPER)),
            Arch::ResNet(_) | Arch::VggBn(_) => NetworkDescriptor::imagenet(&name, 224, None),
            Arch::GoogLeNet => NetworkDescriptor::imagenet(&name, 224, Some(TRANSFORM_INPUT)),
            Arch::InceptionV3 => NetworkDescriptor::imagenet(&name, 299, Some(TRANSFORM_INPUT)),
            Arch::DigitsCnn => NetworkDescriptor::digits(&name),
        }
    }

    fn check(self) -> Result<Arch, ModelError> {
        let ok = match self {
            Arch::CifarResNet(d) => [20, 32, 44, 56, 110].contains(&d),
            Arch::ResNet(d) => [18, 34, 50, 101, 152].contains(&d),
            Arch::VggBn(d) | Arch::CifarVggPaper(d) => [11, 13, 16, 19].contains(&d),
            Arch::CifarVggBn(d) => [13, 16, 19].contains(&d),
            Arch::CifarVgg11Bn | Arch::GoogLeNet | Arch::InceptionV3 | Arch::DigitsCnn => true,
        };
        if ok {
            Ok(self)
        } else {
            Err(ModelError::UnknownArch(format!("{self:?}")))
        }
    }
}

impl FromStr for Arch {
    type Err = ModelError;
    /// "resnet20" (CIFAR), "resnet50_imagenet" or "resnet50" for depths ≥ 18 that are not CIFAR
    /// depths, "vgg16_bn", "vgg11_bn_cifar10", "vgg16_bn_cifar10_paper", "googlenet".
    fn from_str(s: &str) -> Result<Arch, ModelError> {
        let unknown = || ModelError::UnknownArch(s.to_string());
        let depth = |t: &str| t.parse::<usize>().map_err(|_| unknown());
        let arch = if s == "vgg11_bn_cifar10" {
            Arch::CifarVgg11Bn
        } else if s == "digits_cnn" {
            Arch::DigitsCnn
        } else if s == "googlenet" {
            Arch::GoogLeNet
        } else if s == "inception_v3" {
            Arch::InceptionV3
        } else if let Some(rest) = s.strip_prefix("vgg").and_then(|r| r.strip_suffix("_bn_cifar10_paper")) {
            Arch::CifarVggPaper(depth(rest)?)
        } else if let Some(rest) = s.strip_prefix("vgg").and_then(|r| r.strip_suffix("_bn_cifar10")) {
            Arch::CifarVggBn(depth(rest)?)
        } else if let Some(rest) = s.strip_prefix("vgg").and_then(|r| r.strip_suffix("_bn")) {
            Arch::VggBn(depth(rest)?)
        } else if let Some(rest) = s.strip_prefix("resnet").and_then(|r| r.strip_suffix("_imagenet")) {
            Arch::ResNet(depth(rest)?)
        } else if let Some(rest) = s.strip_prefix("resnet") {
            match depth(rest)? {
                d @ (18 | 34 | 50 | 101 | 152) => Arch::ResNet(d),
                d => Arch::CifarResNet(d),
            }
        } else {
            return Err(unknown());
        };
        arch.check().map_err(|_| unknown())
    }
}

/// Why a model could not be built.
#[derive(Debug)]
pub enum ModelError {
    /// A tensor is missing, mis-shaped, or the file unreadable (names file and tensor).
    Weights(WeightsError),
    /// The checkpoint holds float tensors the architecture does not use.
    Unexpected {
        path: String,
        tensors: Vec<String>,
    },
    /// A tensor of the checkpoint `path` holds NaN or infinity.
    NonFinite {
        path: String,
        tensor: String,
    },
    /// A BatchNorm running variance below 0 in the checkpoint `path` (or below −eps when folded
    /// from another source: a sqrt of a negative).
    BadVariance {
        path: Option<String>,
        tensor: String,
        value: f64,
    },
    Graph(GraphError),
    UnknownArch(String),
    /// An ONNX model that cannot be read or translated (names file and node or tensor).
    Onnx(onnx::OnnxError),
    /// `--model` and `--weights` that do not go together.
    Source(String),
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelError::Weights(e) => write!(f, "{e}"),
            ModelError::Unexpected { path, tensors } => {
                let shown: Vec<&str> = tensors.iter().take(8).map(String::as_str).collect();
                let more = if tensors.len() > 8 {
                    format!(" and {} more", tensors.len() - 8)
                } else {
                    String::new()
                };
                write!(
                    f,
                    "{path}: {} tensors not used by the architecture: {}{more}",
                    tensors.len(),
                    shown.join(", ")
                )
            }
            ModelError::NonFinite { path, tensor } => write!(f, "{path}: tensor `{tensor}` holds NaN or infinity"),
            ModelError::BadVariance { path, tensor, value } => {
                if let Some(path) = path {
                    write!(f, "{path}: ")?;
                }
                write!(f, "tensor `{tensor}` holds a negative variance {value}")
            }
            ModelError::Graph(e) => write!(f, "bad graph: {e}"),
            ModelError::Onnx(e) => write!(f, "{e}"),
            ModelError::Source(s) => write!(f, "{s}"),
            ModelError::UnknownArch(s) => write!(
                f,
                "unknown architecture `{s}` (expected resnet20/32/44/56/110, resnet18/34/50/101/152, \
                 vgg11/13/16/19_bn, vgg11/13/16/19_bn_cifar10, vgg11/13/16/19_bn_cifar10_paper, googlenet, inception_v3 \
                 digits_cnn, or a FILE.onnx)"
            ),
        }
    }
}

impl std::error::Error for ModelError {}

impl From<WeightsError> for ModelError {
    fn from(e: WeightsError) -> Self {
        ModelError::Weights(e)
    }
}

impl From<onnx::OnnxError> for ModelError {
    fn from(e: onnx::OnnxError) -> Self {
        ModelError::Onnx(e)
    }
}

impl From<GraphError> for ModelError {
    fn from(e: GraphError) -> Self {
        ModelError::Graph(e)
    }
}

/// Where a network comes from: the one thing every command's `--model` (and `--weights`) names.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelSource {
    /// A built-in architecture with its checkpoint.
    Builtin { arch: Arch, weights: PathBuf },
    /// A built-in architecture with deterministic random weights ([`random`]): for what needs
    /// only the graph's shapes or speed (`cost` without `--weights`, `bench`).
    Random { arch: Arch, seed: u64 },
    /// An ONNX file: graph and weights (inline or in its external-data file).
    Onnx(PathBuf),
}

impl ModelSource {
    /// `--model NAME|FILE.onnx` with `--weights`, for commands that evaluate real weights: a
    /// built-in architecture needs its checkpoint, an ONNX file holds its own.
    pub fn parse(model: &str, weights: Option<PathBuf>) -> Result<ModelSource, ModelError> {
        match Self::parse_or_random(model, weights, 0)? {
            ModelSource::Random { arch, .. } => Err(ModelError::Source(format!(
                "--model {}: a built-in architecture needs --weights (its checkpoint)",
                arch.name()
            ))),
            source => Ok(source),
        }
    }

    /// As [`ModelSource::parse`], but a built-in architecture without `--weights` gets random
    /// weights from `seed` (commands that need only shapes or timings).
    pub fn parse_or_random(model: &str, weights: Option<PathBuf>, seed: u64) -> Result<ModelSource, ModelError> {
        let path = Path::new(model);
        if onnx::is_onnx_path(path) {
            return match weights {
                Some(w) => Err(ModelError::Source(format!(
                    "--weights {}: the ONNX model {model} holds its own weights; drop --weights",
                    w.display()
                ))),
                None => Ok(ModelSource::Onnx(path.to_path_buf())),
            };
        }
        let arch: Arch = model.parse()?;
        Ok(match weights {
            Some(weights) => ModelSource::Builtin { arch, weights },
            None => ModelSource::Random { arch, seed },
        })
    }

    /// The graph and its descriptor.
    pub fn open(&self) -> Result<Network, ModelError> {
        match self {
            ModelSource::Builtin { arch, weights } => open(*arch, weights),
            ModelSource::Random { arch, seed } => Ok(Network {
                graph: random(*arch, *seed)?,
                descriptor: arch.descriptor(),
            }),
            ModelSource::Onnx(path) => Ok(onnx::open(path)?),
        }
    }

    /// How messages name it: the architecture, or the ONNX file's name.
    pub fn name(&self) -> String {
        match self {
            ModelSource::Builtin { arch, .. } | ModelSource::Random { arch, .. } => arch.name(),
            ModelSource::Onnx(path) => path
                .file_name()
                .map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned()),
        }
    }

    /// The file holding the weights, which reports name and hash (None: random weights).
    pub fn weights_file(&self) -> Option<&Path> {
        match self {
            ModelSource::Builtin { weights, .. } => Some(weights),
            ModelSource::Onnx(path) => Some(path),
            ModelSource::Random { .. } => None,
        }
    }
}

/// A network ready to evaluate: its graph and what it expects.
#[derive(Clone, Debug)]
pub struct Network {
    pub graph: Graph,
    pub descriptor: NetworkDescriptor,
}

/// Builds `arch` from a checkpoint file, with its descriptor.
pub fn open(arch: Arch, weights: &Path) -> Result<Network, ModelError> {
    Ok(Network {
        graph: load(arch, weights)?,
        descriptor: arch.descriptor(),
    })
}

/// Builds `arch`'s graph from a checkpoint file (any format [`StateDict::load`] reads).
pub fn load(arch: Arch, path: &Path) -> Result<Graph, ModelError> {
    let mut dict = StateDict::load(path)?;
    from_state_dict(arch, &mut dict)
}

/// Builds `arch` taking its tensors from `dict`; fails naming any tensor missing, mis-shaped,
/// non-finite, or left over.
pub fn from_state_dict(arch: Arch, dict: &mut StateDict) -> Result<Graph, ModelError> {
    let graph = build(arch, &mut StateDictParams::new(dict))?;
    check_all_taken(dict)?;
    Ok(graph)
}

/// Fails naming the float tensors the architecture did not use.
fn check_all_taken(dict: &StateDict) -> Result<(), ModelError> {
    let left = dict.remaining();
    if left.is_empty() {
        return Ok(());
    }
    Err(ModelError::Unexpected {
        path: dict.path().display().to_string(),
        tensors: left,
    })
}

/// Builds a torchvision ResNet whose layout (block type and counts, widths, classes) is read
/// from the state dict itself — a narrowed or fine-tuned variant — for `input`-sized images.
pub fn torchvision_resnet_from_state_dict(dict: &mut StateDict, input: Shape) -> Result<Graph, ModelError> {
    let layout = ResNetLayout::infer(dict, input)?;
    let graph = resnet::torchvision_resnet(&layout, &mut StateDictParams::new(dict))?;
    check_all_taken(dict)?;
    Ok(graph)
}

/// Builds `arch` with deterministic random weights (He-normal convs, sane BatchNorm statistics):
/// for tests and benchmarks of networks whose weights are not at hand.
pub fn random(arch: Arch, seed: u64) -> Result<Graph, ModelError> {
    build(arch, &mut RandomParams::new(seed))
}

/// The parameter tensors `arch` expects, in torchvision `state_dict()` order, with BatchNorm's
/// int64 `num_batches_tracked` included (as `ParamKind::Counter`, shape `[]`), as in a
/// torchvision state dict. akamaster's files lack those counters; they are not float weights.
pub fn list_layers(arch: Arch) -> Result<Vec<ParamInfo>, ModelError> {
    let mut lister = ListParams::default();
    build(arch, &mut lister)?;
    Ok(lister.into_list())
}

/// Builds `arch` from any parameter source.
pub fn build(arch: Arch, params: &mut dyn ParamSource) -> Result<Graph, ModelError> {
    build_for_input(arch, params, arch.descriptor().input)
}

/// Builds `arch` for `input`-sized images: GoogLeNet and Inception-v3 end in a global average
/// pool and take smaller images too (tests run them at 64x64 / 75x75); every other architecture
/// only its own size.
pub fn build_for_input(arch: Arch, params: &mut dyn ParamSource, input: Shape) -> Result<Graph, ModelError> {
    let arch = arch.check()?;
    let own = arch.descriptor().input;
    if input != own && !matches!(arch, Arch::GoogLeNet | Arch::InceptionV3) {
        return Err(ModelError::Graph(GraphError {
            node: arch.name(),
            detail: format!("takes {own} images only, not {input}"),
        }));
    }
    match arch {
        Arch::GoogLeNet => googlenet::googlenet(params, input),
        Arch::InceptionV3 => inception::inception_v3(params, input),
        Arch::CifarResNet(depth) => resnet::cifar_resnet(depth, params),
        Arch::ResNet(depth) => resnet::imagenet_resnet(depth, params),
        Arch::VggBn(depth) => vgg::imagenet_vgg_bn(depth, params),
        Arch::CifarVgg11Bn => vgg::cifar_vgg_bn(11, params),
        Arch::CifarVggBn(depth) => vgg::cifar_vgg_bn(depth, params),
        Arch::CifarVggPaper(depth) => vgg::cifar_vgg_bn_paper(depth, params),
        Arch::DigitsCnn => vgg::digits_cnn(params),
    }
}

#[cfg(test)]
mod tests;
