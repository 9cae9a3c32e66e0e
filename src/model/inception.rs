//! torchvision's Inception-v3 (ported from TensorFlow), as loaded with its pretrained weights:
//! `BasicConv2d` everywhere (bias-free conv, BatchNorm eps 1e-3, ReLU), asymmetric 1x7 / 7x1 and
//! 1x3 / 3x1 convolutions, 3x3/1 average-pool branches counting the padding, 3x3/2 max-pools
//! (no padding, floor mode). The training-only `AuxLogits` head is dropped when present.
//! `transform_input` is folded into the normalisation, as for GoogLeNet ([`super::googlenet`]).

use super::ModelError;
use super::googlenet::basic_conv;
use super::graph::{Graph, GraphBuilder, NodeId, Op, Shape, Window2d};
use super::params::{ConvSpec, ParamSource, push_linear};

/// Builds one block's branches: `conv(name, input, in, out, [kh, kw], stride)` pushes a
/// `BasicConv2d` with torchvision's "same" padding `[kh/2, kw/2]` (none when strided).
struct Block<'a, 'b> {
    b: &'a mut GraphBuilder,
    params: &'b mut dyn ParamSource,
    name: &'a str,
}

impl Block<'_, '_> {
    fn conv(&mut self, branch: &str, x: NodeId, io: (usize, usize), kernel: [usize; 2]) -> Result<NodeId, ModelError> {
        let padding = [kernel[0] / 2, kernel[1] / 2];
        let spec = ConvSpec::inception(io.0, io.1, kernel, 1, padding);
        basic_conv(self.b, self.params, &format!("{}.{branch}", self.name), x, spec)
    }

    /// A 3x3 stride-2 conv without padding (the grid-reduction blocks).
    fn reduce(&mut self, branch: &str, x: NodeId, io: (usize, usize)) -> Result<NodeId, ModelError> {
        let spec = ConvSpec::inception(io.0, io.1, [3, 3], 2, [0, 0]);
        basic_conv(self.b, self.params, &format!("{}.{branch}", self.name), x, spec)
    }

    /// `F.avg_pool2d(x, 3, stride=1, padding=1)` (count_include_pad), then the 1x1 `branch_pool`.
    fn pool_branch(&mut self, x: NodeId, io: (usize, usize)) -> Result<NodeId, ModelError> {
        let pool = Window2d::square(3, 1, 1);
        let pooled = self.b.push(
            &format!("{}.avg_pool", self.name),
            Op::AvgPool {
                input: x,
                pool,
                count_include_pad: true,
            },
        );
        self.conv("branch_pool", pooled, io, [1, 1])
    }

    /// `F.max_pool2d(x, 3, stride=2)`, an approximation site `<block>.max_pool`.
    fn max_pool(&mut self, x: NodeId) -> NodeId {
        self.b.max_pool(&format!("{}.max_pool", self.name), x, reduction_pool())
    }

    fn concat(&mut self, inputs: Vec<NodeId>) -> NodeId {
        self.b.push(self.name, Op::Concat { inputs })
    }
}

fn reduction_pool() -> Window2d {
    Window2d::square(3, 2, 0)
}

/// InceptionA: 1x1 | 1x1→5x5 | 1x1→3x3→3x3 | avg→1x1; 224 + `pool_features` channels.
fn inception_a(k: &mut Block, x: NodeId, c: usize, pool_features: usize) -> Result<(NodeId, usize), ModelError> {
    let b1 = k.conv("branch1x1", x, (c, 64), [1, 1])?;
    let b5 = k.conv("branch5x5_1", x, (c, 48), [1, 1])?;
    let b5 = k.conv("branch5x5_2", b5, (48, 64), [5, 5])?;
    let b3 = k.conv("branch3x3dbl_1", x, (c, 64), [1, 1])?;
    let b3 = k.conv("branch3x3dbl_2", b3, (64, 96), [3, 3])?;
    let b3 = k.conv("branch3x3dbl_3", b3, (96, 96), [3, 3])?;
    let bp = k.pool_branch(x, (c, pool_features))?;
    Ok((k.concat(vec![b1, b5, b3, bp]), 224 + pool_features))
}

/// InceptionB (grid reduction): 3x3/2 | 1x1→3x3→3x3/2 | max-pool; 480 + c channels.
fn inception_b(k: &mut Block, x: NodeId, c: usize) -> Result<(NodeId, usize), ModelError> {
    let b3 = k.reduce("branch3x3", x, (c, 384))?;
    let bd = k.conv("branch3x3dbl_1", x, (c, 64), [1, 1])?;
    let bd = k.conv("branch3x3dbl_2", bd, (64, 96), [3, 3])?;
    let bd = k.reduce("branch3x3dbl_3", bd, (96, 96))?;
    let bp = k.max_pool(x);
    Ok((k.concat(vec![b3, bd, bp]), 480 + c))
}

/// InceptionC: 1x1 | 1x1→1x7→7x1 | 1x1→7x1→1x7→7x1→1x7 | avg→1x1; 768 channels.
fn inception_c(k: &mut Block, x: NodeId, c: usize, c7: usize) -> Result<(NodeId, usize), ModelError> {
    let (row, col) = ([1, 7], [7, 1]);
    let b1 = k.conv("branch1x1", x, (c, 192), [1, 1])?;
    let b7 = k.conv("branch7x7_1", x, (c, c7), [1, 1])?;
    let b7 = k.conv("branch7x7_2", b7, (c7, c7), row)?;
    let b7 = k.conv("branch7x7_3", b7, (c7, 192), col)?;
    let bd = k.conv("branch7x7dbl_1", x, (c, c7), [1, 1])?;
    let bd = k.conv("branch7x7dbl_2", bd, (c7, c7), col)?;
    let bd = k.conv("branch7x7dbl_3", bd, (c7, c7), row)?;
    let bd = k.conv("branch7x7dbl_4", bd, (c7, c7), col)?;
    let bd = k.conv("branch7x7dbl_5", bd, (c7, 192), row)?;
    let bp = k.pool_branch(x, (c, 192))?;
    Ok((k.concat(vec![b1, b7, bd, bp]), 768))
}

/// InceptionD (grid reduction): 1x1→3x3/2 | 1x1→1x7→7x1→3x3/2 | max-pool; 512 + c channels.
fn inception_d(k: &mut Block, x: NodeId, c: usize) -> Result<(NodeId, usize), ModelError> {
    let b3 = k.conv("branch3x3_1", x, (c, 192), [1, 1])?;
    let b3 = k.reduce("branch3x3_2", b3, (192, 320))?;
    let b7 = k.conv("branch7x7x3_1", x, (c, 192), [1, 1])?;
    let b7 = k.conv("branch7x7x3_2", b7, (192, 192), [1, 7])?;
    let b7 = k.conv("branch7x7x3_3", b7, (192, 192), [7, 1])?;
    let b7 = k.reduce("branch7x7x3_4", b7, (192, 192))?;
    let bp = k.max_pool(x);
    Ok((k.concat(vec![b3, b7, bp]), 512 + c))
}

/// InceptionE: 1x1 | 1x1→(1x3, 3x1) | 1x1→3x3→(1x3, 3x1) | avg→1x1; 2048 channels. torchvision
/// concatenates the split pairs first; one concat of all six is the same channel order.
fn inception_e(k: &mut Block, x: NodeId, c: usize) -> Result<(NodeId, usize), ModelError> {
    let b1 = k.conv("branch1x1", x, (c, 320), [1, 1])?;
    let b3 = k.conv("branch3x3_1", x, (c, 384), [1, 1])?;
    let b3a = k.conv("branch3x3_2a", b3, (384, 384), [1, 3])?;
    let b3b = k.conv("branch3x3_2b", b3, (384, 384), [3, 1])?;
    let bd = k.conv("branch3x3dbl_1", x, (c, 448), [1, 1])?;
    let bd = k.conv("branch3x3dbl_2", bd, (448, 384), [3, 3])?;
    let bda = k.conv("branch3x3dbl_3a", bd, (384, 384), [1, 3])?;
    let bdb = k.conv("branch3x3dbl_3b", bd, (384, 384), [3, 1])?;
    let bp = k.pool_branch(x, (c, 192))?;
    Ok((k.concat(vec![b1, b3a, b3b, bda, bdb, bp]), 2048))
}

/// Inception-v3 for `input`-sized images (299x299 for the pretrained weights; 75x75 is the
/// smallest size whose last stage is not empty).
pub fn inception_v3(params: &mut dyn ParamSource, input: Shape) -> Result<Graph, ModelError> {
    let mut b = GraphBuilder::new("inception_v3", input);
    let stem = |b: &mut GraphBuilder, params: &mut dyn ParamSource, name, x, io: (usize, usize), k: usize, s, p| {
        let spec = ConvSpec::inception(io.0, io.1, [k; 2], s, [p; 2]);
        basic_conv(b, params, name, x, spec)
    };
    let x = stem(&mut b, params, "Conv2d_1a_3x3", GraphBuilder::INPUT, (3, 32), 3, 2, 0)?;
    let x = stem(&mut b, params, "Conv2d_2a_3x3", x, (32, 32), 3, 1, 0)?;
    let x = stem(&mut b, params, "Conv2d_2b_3x3", x, (32, 64), 3, 1, 1)?;
    let x = b.max_pool("maxpool1", x, reduction_pool());
    let x = stem(&mut b, params, "Conv2d_3b_1x1", x, (64, 80), 1, 1, 0)?;
    let x = stem(&mut b, params, "Conv2d_4a_3x3", x, (80, 192), 3, 1, 0)?;
    let (mut x, mut c) = (b.max_pool("maxpool2", x, reduction_pool()), 192);
    for (name, pool_features) in [("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)] {
        (x, c) = inception_a(
            &mut Block {
                b: &mut b,
                params,
                name,
            },
            x,
            c,
            pool_features,
        )?;
    }
    (x, c) = inception_b(
        &mut Block {
            b: &mut b,
            params,
            name: "Mixed_6a",
        },
        x,
        c,
    )?;
    for (name, c7) in [
        ("Mixed_6b", 128),
        ("Mixed_6c", 160),
        ("Mixed_6d", 160),
        ("Mixed_6e", 192),
    ] {
        (x, c) = inception_c(
            &mut Block {
                b: &mut b,
                params,
                name,
            },
            x,
            c,
            c7,
        )?;
    }
    // Training-only head; torchvision's pretrained file holds it.
    params.discard("AuxLogits.");
    (x, c) = inception_d(
        &mut Block {
            b: &mut b,
            params,
            name: "Mixed_7a",
        },
        x,
        c,
    )?;
    for name in ["Mixed_7b", "Mixed_7c"] {
        (x, c) = inception_e(
            &mut Block {
                b: &mut b,
                params,
                name,
            },
            x,
            c,
        )?;
    }
    let pooled = b.push("avgpool", Op::GlobalAvgPool { input: x });
    let flat = b.push("flatten", Op::Flatten { input: pooled });
    let logits = push_linear(&mut b, params, "fc", flat, (c, 1000))?;
    Ok(b.finish(logits)?)
}
