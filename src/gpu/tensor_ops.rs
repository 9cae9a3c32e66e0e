//! Host side of shaders/tensor_ops.wgsl: residual add, subtraction, per-channel affine, the
//! exact-only pointwise functions, option-A shortcut, channel concatenation, average pooling.

use super::{Gpu, GpuError};
use crate::model::{Pointwise, Window2d};

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    count: u32,
    row_stride: u32,
    in_c: u32,
    in_h: u32,
    in_w: u32,
    out_c: u32,
    out_h: u32,
    out_w: u32,
    kernel_h: u32,
    kernel_w: u32,
    stride_h: u32,
    pad_top: u32,
    channel_offset: u32,
    stride_w: u32,
    pad_left: u32,
    pad_bottom: u32,
    pad_right: u32,
    dilation_h: u32,
    dilation_w: u32,
    count_include_pad: u32,
    function: u32,
    alpha: f32,
    beta: f32,
    _pad: u32,
}

/// An NCHW tensor's dimensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

impl Dims {
    pub fn len(&self) -> usize {
        self.n * self.c * self.h * self.w
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

const GROUP: u32 = 256;

fn shader_source() -> String {
    include_str!("../../shaders/tensor_ops.wgsl").to_string()
}

fn dispatch(
    gpu: &Gpu,
    encoder: &mut wgpu::CommandEncoder,
    entry: &str,
    mut params: Params,
    inputs: (&wgpu::Buffer, &wgpu::Buffer),
    output: &wgpu::Buffer,
) -> Result<(), GpuError> {
    let grid = Gpu::grid_for(params.count as u64, GROUP);
    params.row_stride = grid.0 * GROUP;
    let pipeline = gpu.pipeline("tensor_ops", entry, shader_source)?;
    let uniform = gpu.uniform_from("tensor op params", &params);
    gpu.encode_dispatch(
        encoder,
        &pipeline,
        &[
            uniform.as_entire_binding(),
            inputs.0.as_entire_binding(),
            inputs.1.as_entire_binding(),
            output.as_entire_binding(),
        ],
        grid,
    );
    Ok(())
}

/// out = a + b over `count` elements.
pub fn encode_add(
    gpu: &Gpu,
    encoder: &mut wgpu::CommandEncoder,
    count: usize,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    output: &wgpu::Buffer,
) -> Result<(), GpuError> {
    encode_elementwise(gpu, encoder, "add", count, (a, b), output)
}

/// out = a − b over `count` elements.
pub fn encode_sub(
    gpu: &Gpu,
    encoder: &mut wgpu::CommandEncoder,
    count: usize,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    output: &wgpu::Buffer,
) -> Result<(), GpuError> {
    encode_elementwise(gpu, encoder, "sub", count, (a, b), output)
}

fn encode_elementwise(
    gpu: &Gpu,
    encoder: &mut wgpu::CommandEncoder,
    entry: &str,
    count: usize,
    inputs: (&wgpu::Buffer, &wgpu::Buffer),
    output: &wgpu::Buffer,
) -> Result<(), GpuError> {
    let params = Params {
        count: checked_count(count)?,
        ..Params::default()
    };
    dispatch(gpu, encoder, entry, params, inputs, output)
}

fn checked_count(count: usize) -> Result<u32, GpuError> {
    u32::try_from(count)
        .ok()
        .filter(|&c| c <= u32::MAX / 2)
        .ok_or_else(|| GpuError::BadInput(format!("{count} elements exceed one dispatch; lower the batch")))
}

/// The constants buffer of [`encode_affine`]: C scales then C shifts (length-1 vectors
/// broadcast to every channel here, so the shader needs no case for them).
pub fn affine_constants(channels: usize, scale: &[f32], shift: &[f32]) -> Vec<f32> {
    let pick = |v: &[f32], c: usize| if v.len() == 1 { v[0] } else { v[c] };
    (0..channels)
        .map(|c| pick(scale, c))
        .chain((0..channels).map(|c| pick(shift, c)))
        .collect()
}

/// `out[n, c] = input[n, c] · scale[c] + shift[c]`; `constants` holds [`affine_constants`].
pub fn encode_affine(
    gpu: &Gpu,
    encoder: &mut wgpu::CommandEncoder,
    dims: Dims,
    constants: &wgpu::Buffer,
    input: &wgpu::Buffer,
    output: &wgpu::Buffer,
) -> Result<(), GpuError> {
    if constants.size() < (2 * dims.c * 4) as u64 {
        return Err(GpuError::BadInput(format!(
            "affine constants of {} bytes for {} channels",
            constants.size(),
            dims.c
        )));
    }
    let params = Params {
        count: checked_count(dims.len())?,
        in_c: dims.c as u32,
        in_h: dims.h as u32,
        in_w: dims.w as u32,
        ..Params::default()
    };
    dispatch(gpu, encoder, "affine", params, (input, constants), output)
}

/// out = func(input) over `count` elements (the exact-only non-linearities).
pub fn encode_pointwise(
    gpu: &Gpu,
    encoder: &mut wgpu::CommandEncoder,
    count: usize,
    func: Pointwise,
    input: &wgpu::Buffer,
    output: &wgpu::Buffer,
) -> Result<(), GpuError> {
    // Codes and constants as shaders/tensor_ops.wgsl's FN_* and pointwise_function read them.
    let (function, alpha, beta) = match func {
        Pointwise::Sigmoid => (0, 0.0, 0.0),
        Pointwise::Silu => (1, 0.0, 0.0),
        Pointwise::Gelu => (2, 0.0, 0.0),
        Pointwise::Tanh => (3, 0.0, 0.0),
        Pointwise::HardSwish => (4, 0.0, 0.0),
        Pointwise::HardSigmoid { alpha, beta } => (5, alpha, beta),
        Pointwise::Clip { min, max } => (6, min, max),
    };
    let params = Params {
        count: checked_count(count)?,
        function,
        alpha,
        beta,
        ..Params::default()
    };
    dispatch(gpu, encoder, "pointwise", params, (input, gpu.placeholder()), output)
}

/// Option-A shortcut from `input` (dims `from`) to `out_channels` channels, subsampled by `stride`.
pub fn encode_shortcut_a(
    gpu: &Gpu,
    encoder: &mut wgpu::CommandEncoder,
    from: Dims,
    out_channels: usize,
    stride: usize,
    input: &wgpu::Buffer,
    output: &wgpu::Buffer,
) -> Result<(), GpuError> {
    if out_channels < from.c || stride == 0 {
        return Err(GpuError::BadInput(format!(
            "option-A shortcut from {from:?} to {out_channels} channels, stride {stride}"
        )));
    }
    let (out_h, out_w) = (from.h.div_ceil(stride), from.w.div_ceil(stride));
    let params = Params {
        count: (from.n * out_channels * out_h * out_w) as u32,
        in_c: from.c as u32,
        in_h: from.h as u32,
        in_w: from.w as u32,
        out_c: out_channels as u32,
        out_h: out_h as u32,
        out_w: out_w as u32,
        stride_h: stride as u32,
        stride_w: stride as u32,
        channel_offset: ((out_channels - from.c) / 2) as u32,
        ..Params::default()
    };
    dispatch(gpu, encoder, "shortcut_a", params, (input, gpu.placeholder()), output)
}

/// Copies `input` (dims `from`) into channels `channel_offset..channel_offset + from.c` of
/// `output`, which has `out_channels` channels of the same plane: one input of a concat.
pub fn encode_copy_channels(
    gpu: &Gpu,
    encoder: &mut wgpu::CommandEncoder,
    from: Dims,
    (channel_offset, out_channels): (usize, usize),
    input: &wgpu::Buffer,
    output: &wgpu::Buffer,
) -> Result<(), GpuError> {
    if channel_offset + from.c > out_channels {
        return Err(GpuError::BadInput(format!(
            "channels {channel_offset}..{} of a {out_channels}-channel concat",
            channel_offset + from.c
        )));
    }
    let params = Params {
        count: from.len() as u32,
        in_c: from.c as u32,
        in_h: from.h as u32,
        in_w: from.w as u32,
        out_c: out_channels as u32,
        channel_offset: channel_offset as u32,
        ..Params::default()
    };
    dispatch(
        gpu,
        encoder,
        "copy_channels",
        params,
        (input, gpu.placeholder()),
        output,
    )
}

/// Average pooling over `pool`'s window producing `out_hw` (the graph's output size), the
/// divisor as `count_include_pad` says; a kernel equal to the input plane with no padding is the
/// global average pool.
#[allow(clippy::too_many_arguments)]
pub fn encode_avg_pool(
    gpu: &Gpu,
    encoder: &mut wgpu::CommandEncoder,
    from: Dims,
    pool: &Window2d,
    count_include_pad: bool,
    out_hw: (usize, usize),
    input: &wgpu::Buffer,
    output: &wgpu::Buffer,
) -> Result<(), GpuError> {
    let params = Params {
        count: checked_count(from.n * from.c * out_hw.0 * out_hw.1)?,
        in_c: from.c as u32,
        in_h: from.h as u32,
        in_w: from.w as u32,
        out_c: from.c as u32,
        out_h: out_hw.0 as u32,
        out_w: out_hw.1 as u32,
        kernel_h: pool.kernel[0] as u32,
        kernel_w: pool.kernel[1] as u32,
        stride_h: pool.stride[0] as u32,
        stride_w: pool.stride[1] as u32,
        pad_top: pool.pads[0] as u32,
        pad_left: pool.pads[1] as u32,
        pad_bottom: pool.pads[2] as u32,
        pad_right: pool.pads[3] as u32,
        dilation_h: pool.dilation[0] as u32,
        dilation_w: pool.dilation[1] as u32,
        count_include_pad: count_include_pad as u32,
        ..Params::default()
    };
    dispatch(gpu, encoder, "avg_pool", params, (input, gpu.placeholder()), output)
}
