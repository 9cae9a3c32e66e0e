//! VGG with batch norm: torchvision's ImageNet VGG-11/13/16/19-bn and two CIFAR-10 layouts at
//! depths 11/13/16/19 (a single `classifier`, as this project's VGG-11-bn; the paper's three
//! Linear layers). Layers are numbered as torchvision's `features.N`: a conv at N, its BatchNorm at
//! N+1, its ReLU at N+2; a 2x2/2 max-pool takes one index.

use super::ModelError;
use super::graph::{Graph, GraphBuilder, NodeId, Op, Window2d};
use super::params::{ConvSpec, ParamSource, push_conv_bn, push_linear};

/// One entry of torchvision's VGG configuration: a 3x3 conv's output channels, or a max-pool.
#[derive(Clone, Copy)]
enum Layer {
    Conv(usize),
    Pool,
}

/// Convolutions per stage of VGG-11/13/16/19 (configurations A, B, D, E of Simonyan & Zisserman,
/// torchvision's `cfgs`); every other depth is refused where the architecture is parsed.
fn convs_per_stage(depth: usize) -> [usize; 5] {
    match depth {
        11 => [1, 1, 2, 2, 2],
        13 => [2, 2, 2, 2, 2],
        16 => [2, 2, 3, 3, 3],
        _ => [2, 2, 4, 4, 4],
    }
}

/// torchvision's configuration list: each stage's convs at its width, then a max-pool.
fn config(depth: usize) -> Vec<Layer> {
    const WIDTHS: [usize; 5] = [64, 128, 256, 512, 512];
    WIDTHS
        .iter()
        .zip(convs_per_stage(depth))
        .flat_map(|(&width, convs)| std::iter::repeat_n(Layer::Conv(width), convs).chain([Layer::Pool]))
        .collect()
}

/// torchvision `vgg{depth}_bn` at 224x224: features, then (the 7x7 adaptive average pool being
/// the identity at this size) classifier.0 / .3 / .6 with ReLU sites classifier.1 and .4.
pub fn imagenet_vgg_bn(depth: usize, params: &mut dyn ParamSource) -> Result<Graph, ModelError> {
    let mut b = GraphBuilder::new(&format!("vgg{depth}_bn"), super::Arch::VggBn(depth).descriptor().input);
    let features = push_features(&mut b, params, &config(depth), 3, true)?;
    let mut x = b.push("flatten", Op::Flatten { input: features });
    let widths = [512 * 7 * 7, 4096, 4096, 1000];
    for (i, pair) in widths.windows(2).enumerate() {
        x = push_linear(&mut b, params, &format!("classifier.{}", 3 * i), x, (pair[0], pair[1]))?;
        if i < 2 {
            x = b.relu(&format!("classifier.{}", 3 * i + 1), x);
        }
    }
    Ok(b.finish(x)?)
}

/// CIFAR-10 VGG-bn as shared/data/cifar10/weights_vgg's VGG-11: features on 32x32 (ending at
/// 512x1x1), flattened into a single `classifier` Linear(512, 10).
pub fn cifar_vgg_bn(depth: usize, params: &mut dyn ParamSource) -> Result<Graph, ModelError> {
    let mut b = GraphBuilder::new(
        &format!("vgg{depth}_bn_cifar10"),
        super::Arch::CifarVggBn(depth).descriptor().input,
    );
    let features = push_features(&mut b, params, &config(depth), 3, true)?;
    let flat = b.push("flatten", Op::Flatten { input: features });
    let logits = push_linear(&mut b, params, "classifier", flat, (512, 10))?;
    Ok(b.finish(logits)?)
}

/// The paper's CIFAR-10 VGG-bn (snu-ccl/approxCNN `models/vgg_cifar10.py`): features, then
/// `linear1` (512→512), ReLU, `linear2` (512→512), ReLU, `linear3` (512→10). Its two classifier
/// ReLUs are approximation sites like the others (sites `relu1`, `relu2`).
pub fn cifar_vgg_bn_paper(depth: usize, params: &mut dyn ParamSource) -> Result<Graph, ModelError> {
    let mut b = GraphBuilder::new(
        &format!("vgg{depth}_bn_cifar10_paper"),
        super::Arch::CifarVggPaper(depth).descriptor().input,
    );
    let features = push_features(&mut b, params, &config(depth), 3, true)?;
    let mut x = b.push("flatten", Op::Flatten { input: features });
    for i in 1..=2 {
        x = push_linear(&mut b, params, &format!("linear{i}"), x, (512, 512))?;
        x = b.relu(&format!("relu{i}"), x);
    }
    let logits = push_linear(&mut b, params, "linear3", x, (512, 10))?;
    Ok(b.finish(logits)?)
}

/// The small CNN of datasets/digits (trained by scripts/train_digits.py on scikit-learn's 8x8
/// digits): VGG-style features [16, M, 32, M] with bias-free convs + BatchNorm on 1x8x8 input,
/// flattened (32x2x2) into a single `classifier` Linear(128, 10).
pub fn digits_cnn(params: &mut dyn ParamSource) -> Result<Graph, ModelError> {
    let mut b = GraphBuilder::new("digits_cnn", super::Arch::DigitsCnn.descriptor().input);
    let layers = [Layer::Conv(16), Layer::Pool, Layer::Conv(32), Layer::Pool];
    let features = push_features(&mut b, params, &layers, 1, false)?;
    let flat = b.push("flatten", Op::Flatten { input: features });
    let logits = push_linear(&mut b, params, "classifier", flat, (128, 10))?;
    Ok(b.finish(logits)?)
}

/// `features.N` layers from `in_channels` input planes; `conv_bias`: whether the convs carry a
/// bias before their BatchNorm (torchvision's VGG does, the digits CNN does not).
fn push_features(
    b: &mut GraphBuilder,
    params: &mut dyn ParamSource,
    layers: &[Layer],
    in_channels: usize,
    conv_bias: bool,
) -> Result<NodeId, ModelError> {
    let pool = Window2d::square(2, 2, 0);
    let (mut x, mut channels, mut index) = (GraphBuilder::INPUT, in_channels, 0);
    for &layer in layers {
        match layer {
            Layer::Conv(out) => {
                let names = (format!("features.{index}"), format!("features.{}", index + 1));
                let conv = push_conv_bn(
                    b,
                    params,
                    (&names.0, &names.1),
                    x,
                    ConvSpec::same(channels, out, 3, 1),
                    conv_bias,
                )?;
                x = b.relu(&format!("features.{}", index + 2), conv);
                channels = out;
                index += 3;
            }
            Layer::Pool => {
                x = b.max_pool(&format!("features.{index}"), x, pool);
                index += 1;
            }
        }
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_depth_counts_its_three_linear_layers_and_five_pools() {
        for depth in [11, 13, 16, 19] {
            let layers = config(depth);
            let convs = layers.iter().filter(|l| matches!(l, Layer::Conv(_))).count();
            assert_eq!(convs + 3, depth, "VGG-{depth}");
            assert_eq!(layers.len() - convs, 5, "VGG-{depth}");
            assert!(matches!(layers.last(), Some(Layer::Pool)));
        }
        // torchvision's cfgs["A"]
        let widths: Vec<usize> = config(11)
            .iter()
            .map(|l| match l {
                Layer::Conv(w) => *w,
                Layer::Pool => 0,
            })
            .collect();
        assert_eq!(widths, [64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0]);
    }
}
