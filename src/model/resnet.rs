//! ResNets: akamaster's CIFAR-10 ResNets (option-A shortcuts) and torchvision's ImageNet ResNets
//! (v1.5: a Bottleneck's stride sits on its 3x3 conv). Parameter names are the state_dict names.

use super::ModelError;
use super::graph::{Graph, GraphBuilder, NodeId, Op, Shape, Window2d};
use super::params::{ConvSpec, ParamSource, push_conv_bn, push_linear};
use crate::weights::{StateDict, WeightsError};

/// akamaster's `resnet{depth}`: n = (depth − 2)/6 BasicBlocks per stage at 16/32/64 channels.
pub fn cifar_resnet(depth: usize, params: &mut dyn ParamSource) -> Result<Graph, ModelError> {
    let blocks = (depth - 2) / 6;
    let mut b = GraphBuilder::new(
        &format!("resnet{depth}"),
        super::Arch::CifarResNet(depth).descriptor().input,
    );
    let stem = push_conv_bn(
        &mut b,
        params,
        ("conv1", "bn1"),
        GraphBuilder::INPUT,
        ConvSpec::same(3, 16, 3, 1),
        false,
    )?;
    let mut x = b.relu("relu", stem);
    let mut in_ch = 16;
    for (stage, planes) in [16, 32, 64].into_iter().enumerate() {
        for i in 0..blocks {
            let stride = if i == 0 && stage > 0 { 2 } else { 1 };
            let prefix = format!("layer{}.{i}", stage + 1);
            let shortcut = if stride != 1 || in_ch != planes {
                b.push(
                    &format!("{prefix}.shortcut"),
                    Op::ShortcutA {
                        input: x,
                        out_channels: planes,
                        stride,
                    },
                )
            } else {
                x
            };
            x = basic_block(&mut b, params, &prefix, x, shortcut, (in_ch, planes, stride))?;
            in_ch = planes;
        }
    }
    let pooled = b.push("avgpool", Op::GlobalAvgPool { input: x });
    let flat = b.push("flatten", Op::Flatten { input: pooled });
    let logits = push_linear(&mut b, params, "linear", flat, (64, 10))?;
    Ok(b.finish(logits)?)
}

/// The shape of a torchvision ResNet: what varies between resnet18..152, narrowed or
/// fine-tuned variants, and the input size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResNetLayout {
    /// Bottleneck (expansion 4, stride on the 3x3 conv) or BasicBlock.
    pub bottleneck: bool,
    pub blocks: [usize; 4],
    /// conv1's output channels (64).
    pub stem: usize,
    /// Per stage, the block's inner width (64, 128, 256, 512); outputs are ×4 for bottlenecks.
    pub planes: [usize; 4],
    pub classes: usize,
    pub input: Shape,
}

impl ResNetLayout {
    /// torchvision's `resnet{depth}` for ImageNet at 224x224.
    pub fn torchvision(depth: usize) -> ResNetLayout {
        let (bottleneck, blocks) = match depth {
            18 => (false, [2, 2, 2, 2]),
            34 => (false, [3, 4, 6, 3]),
            50 => (true, [3, 4, 6, 3]),
            101 => (true, [3, 4, 23, 3]),
            _ => (true, [3, 8, 36, 3]),
        };
        let input = super::Arch::ResNet(depth).descriptor().input;
        ResNetLayout {
            bottleneck,
            blocks,
            stem: 64,
            planes: [64, 128, 256, 512],
            classes: 1000,
            input,
        }
    }

    /// Reads the layout from a torchvision-named state dict: block type from `layer1.0.conv3`,
    /// block counts from the `layerS.I` present, widths and classes from the weight shapes.
    pub fn infer(dict: &StateDict, input: Shape) -> Result<ResNetLayout, ModelError> {
        let dim0 = |name: &str| -> Result<usize, ModelError> {
            let t = dict.get(name).ok_or_else(|| {
                ModelError::Weights(WeightsError::MissingTensor {
                    path: dict.path().to_path_buf(),
                    tensor: name.to_string(),
                    already_taken: false,
                })
            })?;
            Ok(t.shape.first().copied().unwrap_or(0))
        };
        let blocks: [usize; 4] = std::array::from_fn(|s| {
            (0..)
                .take_while(|i| dict.get(&format!("layer{}.{i}.conv1.weight", s + 1)).is_some())
                .count()
        });
        let planes = [0, 1, 2, 3].map(|s| dim0(&format!("layer{}.0.conv1.weight", s + 1)));
        let [p1, p2, p3, p4] = planes;
        Ok(ResNetLayout {
            bottleneck: dict.get("layer1.0.conv3.weight").is_some(),
            blocks,
            stem: dim0("conv1.weight")?,
            planes: [p1?, p2?, p3?, p4?],
            classes: dim0("fc.weight")?,
            input,
        })
    }

    fn name(&self) -> String {
        [18, 34, 50, 101, 152]
            .into_iter()
            .find(|&d| *self == ResNetLayout::torchvision(d))
            .map_or_else(|| "torchvision_resnet".to_string(), |d| format!("resnet{d}_imagenet"))
    }
}

/// torchvision `resnet{depth}` (ImageNet, 1000 classes).
pub fn imagenet_resnet(depth: usize, params: &mut dyn ParamSource) -> Result<Graph, ModelError> {
    torchvision_resnet(&ResNetLayout::torchvision(depth), params)
}

/// Any torchvision ResNet: 7x7/2 stem, 3x3/2 max-pool, four stages (stride 2 from the second),
/// global average pool, `fc`.
pub fn torchvision_resnet(layout: &ResNetLayout, params: &mut dyn ParamSource) -> Result<Graph, ModelError> {
    let expansion = if layout.bottleneck { 4 } else { 1 };
    let mut b = GraphBuilder::new(&layout.name(), layout.input);
    let stem_spec = ConvSpec::same(3, layout.stem, 7, 2);
    let stem = push_conv_bn(&mut b, params, ("conv1", "bn1"), GraphBuilder::INPUT, stem_spec, false)?;
    let stem = b.relu("relu", stem);
    let pool = Window2d::square(3, 2, 1);
    let mut x = b.max_pool("maxpool", stem, pool);
    let mut in_ch = layout.stem;
    for (stage, (planes, count)) in layout.planes.into_iter().zip(layout.blocks).enumerate() {
        for i in 0..count {
            let stride = if i == 0 && stage > 0 { 2 } else { 1 };
            let prefix = format!("layer{}.{i}", stage + 1);
            let out_ch = planes * expansion;
            let shape = (in_ch, planes, stride);
            // torchvision lists downsample.* after the block's own convs, so it is built last.
            x = if layout.bottleneck {
                bottleneck_block(&mut b, params, &prefix, x, shape)?
            } else {
                let needs_downsample = stride != 1 || in_ch != out_ch;
                let residual = |b: &mut GraphBuilder, params: &mut dyn ParamSource| {
                    downsample_or_identity(b, params, &prefix, x, (in_ch, out_ch, stride), needs_downsample)
                };
                basic_block_with(&mut b, params, &prefix, x, shape, residual)?
            };
            in_ch = out_ch;
        }
    }
    let pooled = b.push("avgpool", Op::GlobalAvgPool { input: x });
    let flat = b.push("flatten", Op::Flatten { input: pooled });
    let logits = push_linear(&mut b, params, "fc", flat, (in_ch, layout.classes))?;
    Ok(b.finish(logits)?)
}

/// BasicBlock with a residual computed beforehand (CIFAR option A needs no parameters).
fn basic_block(
    b: &mut GraphBuilder,
    params: &mut dyn ParamSource,
    prefix: &str,
    x: NodeId,
    residual: NodeId,
    shape: (usize, usize, usize),
) -> Result<NodeId, ModelError> {
    basic_block_with(b, params, prefix, x, shape, |_, _| Ok(residual))
}

/// conv3x3(stride)-bn-relu-conv3x3-bn, + residual, relu. `residual` is built after the block's
/// convs (torchvision's parameter order).
fn basic_block_with(
    b: &mut GraphBuilder,
    params: &mut dyn ParamSource,
    prefix: &str,
    x: NodeId,
    (in_ch, planes, stride): (usize, usize, usize),
    residual: impl FnOnce(&mut GraphBuilder, &mut dyn ParamSource) -> Result<NodeId, ModelError>,
) -> Result<NodeId, ModelError> {
    let names = |i: usize| (format!("{prefix}.conv{i}"), format!("{prefix}.bn{i}"));
    let (c1, n1) = names(1);
    let h = push_conv_bn(
        b,
        params,
        (&c1, &n1),
        x,
        ConvSpec::same(in_ch, planes, 3, stride),
        false,
    )?;
    let h = b.relu(&format!("{prefix}.relu1"), h);
    let (c2, n2) = names(2);
    let h = push_conv_bn(b, params, (&c2, &n2), h, ConvSpec::same(planes, planes, 3, 1), false)?;
    let shortcut = residual(b, params)?;
    let sum = b.push(&format!("{prefix}.add"), Op::Add { a: h, b: shortcut });
    Ok(b.relu(&format!("{prefix}.relu2"), sum))
}

/// torchvision Bottleneck (v1.5): 1x1 → 3x3(stride) → 1x1 (×4 channels), + residual, relu.
fn bottleneck_block(
    b: &mut GraphBuilder,
    params: &mut dyn ParamSource,
    prefix: &str,
    x: NodeId,
    (in_ch, planes, stride): (usize, usize, usize),
) -> Result<NodeId, ModelError> {
    let out_ch = planes * 4;
    let specs = [
        ConvSpec::same(in_ch, planes, 1, 1),
        ConvSpec::same(planes, planes, 3, stride),
        ConvSpec::same(planes, out_ch, 1, 1),
    ];
    let mut h = x;
    for (i, spec) in specs.into_iter().enumerate() {
        let (conv, bn) = (format!("{prefix}.conv{}", i + 1), format!("{prefix}.bn{}", i + 1));
        h = push_conv_bn(b, params, (&conv, &bn), h, spec, false)?;
        if i < 2 {
            h = b.relu(&format!("{prefix}.relu{}", i + 1), h);
        }
    }
    let needs_downsample = stride != 1 || in_ch != out_ch;
    let shortcut = downsample_or_identity(b, params, prefix, x, (in_ch, out_ch, stride), needs_downsample)?;
    let sum = b.push(&format!("{prefix}.add"), Op::Add { a: h, b: shortcut });
    Ok(b.relu(&format!("{prefix}.relu3"), sum))
}

/// torchvision's projection shortcut `downsample = Sequential(conv1x1(stride), BatchNorm2d)`,
/// or the block input itself.
fn downsample_or_identity(
    b: &mut GraphBuilder,
    params: &mut dyn ParamSource,
    prefix: &str,
    x: NodeId,
    (in_ch, out_ch, stride): (usize, usize, usize),
    needed: bool,
) -> Result<NodeId, ModelError> {
    if !needed {
        return Ok(x);
    }
    let (conv, bn) = (format!("{prefix}.downsample.0"), format!("{prefix}.downsample.1"));
    push_conv_bn(
        b,
        params,
        (&conv, &bn),
        x,
        ConvSpec::same(in_ch, out_ch, 1, stride),
        false,
    )
}
