//! torchvision's GoogLeNet (Inception v1, ported from TensorFlow), as loaded with its pretrained
//! weights: no auxiliary heads at inference (their tensors, when a checkpoint holds them, are
//! dropped), every conv a `BasicConv2d` (bias-free conv, BatchNorm eps 1e-3, ReLU), stem and
//! stage max-pools 3x3/2 (2x2/2 before stage 5) with `ceil_mode=True`.
//!
//! `transform_input` (applied by torchvision for the pretrained weights) is not a node: it is
//! linear and composes with the ImageNet normalisation into (x/255 − 0.5)/0.5, which is what
//! its [`super::NetworkDescriptor`] (from `Arch::descriptor`) gives this network.

use super::ModelError;
use super::graph::{Graph, GraphBuilder, NodeId, Op, Shape, Window2d};
use super::params::{ConvSpec, ParamSource, push_conv_bn, push_linear};

/// `BasicConv2d` `name` (`name.conv`, `name.bn`) and its ReLU site `name.relu`.
pub fn basic_conv(
    b: &mut GraphBuilder,
    params: &mut dyn ParamSource,
    name: &str,
    input: NodeId,
    spec: ConvSpec,
) -> Result<NodeId, ModelError> {
    let (conv, bn) = (format!("{name}.conv"), format!("{name}.bn"));
    let x = push_conv_bn(b, params, (&conv, &bn), input, spec, false)?;
    Ok(b.relu(&format!("{name}.relu"), x))
}

/// A max-pool with torchvision's `ceil_mode=True`.
fn ceil_pool(kernel: usize, stride: usize, padding: usize) -> Window2d {
    Window2d::square(kernel, stride, padding).with_ceil_mode(true)
}

/// One inception block's widths: `(1x1, 3x3 reduce, 3x3, "5x5" reduce, "5x5", pool projection)`.
type Widths = (usize, usize, usize, usize, usize, usize);

/// torchvision's `Inception`: four branches concatenated. The "5x5" branch is a 3x3 conv, as in
/// torchvision (pytorch/vision#906), which its pretrained weights expect.
fn inception(
    b: &mut GraphBuilder,
    params: &mut dyn ParamSource,
    name: &str,
    x: NodeId,
    in_ch: usize,
    (c1, c3r, c3, c5r, c5, proj): Widths,
) -> Result<(NodeId, usize), ModelError> {
    let conv = |i, o, k: usize| ConvSpec::inception(i, o, [k; 2], 1, [k / 2; 2]);
    let b1 = basic_conv(b, params, &format!("{name}.branch1"), x, conv(in_ch, c1, 1))?;
    let b2 = basic_conv(b, params, &format!("{name}.branch2.0"), x, conv(in_ch, c3r, 1))?;
    let b2 = basic_conv(b, params, &format!("{name}.branch2.1"), b2, conv(c3r, c3, 3))?;
    let b3 = basic_conv(b, params, &format!("{name}.branch3.0"), x, conv(in_ch, c5r, 1))?;
    let b3 = basic_conv(b, params, &format!("{name}.branch3.1"), b3, conv(c5r, c5, 3))?;
    let pooled = b.max_pool(&format!("{name}.branch4.0"), x, ceil_pool(3, 1, 1));
    let b4 = basic_conv(b, params, &format!("{name}.branch4.1"), pooled, conv(in_ch, proj, 1))?;
    let out = b.push(
        name,
        Op::Concat {
            inputs: vec![b1, b2, b3, b4],
        },
    );
    Ok((out, c1 + c3 + c5 + proj))
}

/// GoogLeNet for `input`-sized images (224x224 for the pretrained weights; any size whose
/// stage-5 plane is not empty works, the head being a global average pool).
pub fn googlenet(params: &mut dyn ParamSource, input: Shape) -> Result<Graph, ModelError> {
    let mut b = GraphBuilder::new("googlenet", input);
    let x = basic_conv(
        &mut b,
        params,
        "conv1",
        GraphBuilder::INPUT,
        ConvSpec::inception(3, 64, [7; 2], 2, [3; 2]),
    )?;
    let x = b.max_pool("maxpool1", x, ceil_pool(3, 2, 0));
    let x = basic_conv(
        &mut b,
        params,
        "conv2",
        x,
        ConvSpec::inception(64, 64, [1; 2], 1, [0; 2]),
    )?;
    let x = basic_conv(
        &mut b,
        params,
        "conv3",
        x,
        ConvSpec::inception(64, 192, [3; 2], 1, [1; 2]),
    )?;
    let mut x = b.max_pool("maxpool2", x, ceil_pool(3, 2, 0));
    let mut channels = 192;
    let stages: [(&str, Widths); 9] = [
        ("inception3a", (64, 96, 128, 16, 32, 32)),
        ("inception3b", (128, 128, 192, 32, 96, 64)),
        ("inception4a", (192, 96, 208, 16, 48, 64)),
        ("inception4b", (160, 112, 224, 24, 64, 64)),
        ("inception4c", (128, 128, 256, 24, 64, 64)),
        ("inception4d", (112, 144, 288, 32, 64, 64)),
        ("inception4e", (256, 160, 320, 32, 128, 128)),
        ("inception5a", (256, 160, 320, 32, 128, 128)),
        ("inception5b", (384, 192, 384, 48, 128, 128)),
    ];
    for (name, widths) in stages {
        (x, channels) = inception(&mut b, params, name, x, channels, widths)?;
        match name {
            "inception3b" => x = b.max_pool("maxpool3", x, ceil_pool(3, 2, 0)),
            "inception4e" => x = b.max_pool("maxpool4", x, ceil_pool(2, 2, 0)),
            _ => {}
        }
    }
    // Training-only heads; torchvision's pretrained file holds them.
    params.discard("aux1.");
    params.discard("aux2.");
    let pooled = b.push("avgpool", Op::GlobalAvgPool { input: x });
    let flat = b.push("flatten", Op::Flatten { input: pooled });
    let logits = push_linear(&mut b, params, "fc", flat, (channels, 1000))?;
    Ok(b.finish(logits)?)
}
