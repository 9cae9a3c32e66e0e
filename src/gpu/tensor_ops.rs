//! Host side of shaders/tensor_ops.wgsl: residual add, option-A shortcut, channel concatenation,
//! average pooling.

use super::{Gpu, GpuError};

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
    stride: u32,
    pad: u32,
    channel_offset: u32,
    _pad: [u32; 3],
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
    dispatch(
        gpu,
        encoder,
        "add",
        Params {
            count: count as u32,
            ..Params::default()
        },
        (a, b),
        output,
    )
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
        stride: stride as u32,
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

/// Average pooling (count_include_pad) producing `out_hw`; a kernel equal to the input plane
/// with no padding is the global average pool.
#[allow(clippy::too_many_arguments)]
pub fn encode_avg_pool(
    gpu: &Gpu,
    encoder: &mut wgpu::CommandEncoder,
    from: Dims,
    kernel: (usize, usize),
    stride: usize,
    pad: usize,
    out_hw: (usize, usize),
    input: &wgpu::Buffer,
    output: &wgpu::Buffer,
) -> Result<(), GpuError> {
    let params = Params {
        count: (from.n * from.c * out_hw.0 * out_hw.1) as u32,
        in_c: from.c as u32,
        in_h: from.h as u32,
        in_w: from.w as u32,
        out_c: from.c as u32,
        out_h: out_hw.0 as u32,
        out_w: out_hw.1 as u32,
        kernel_h: kernel.0 as u32,
        kernel_w: kernel.1 as u32,
        stride: stride as u32,
        pad: pad as u32,
        ..Params::default()
    };
    dispatch(gpu, encoder, "avg_pool", params, (input, gpu.placeholder()), output)
}
