//! Convolution on the GPU (shaders/conv2d.wgsl): tiled implicit GEMM with bias, optional
//! residual add and an exact or polynomial ReLU fused into the epilogue.

use super::activation::{PolyBuffer, RangeStats, StatsSlot, range_stats_buffer, read_range_stats};
use super::{Gpu, GpuError, TilePolicy};
use crate::model::Window2d;

/// What the epilogue applies after bias (+ residual).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Epilogue {
    None,
    /// Exact ReLU (its inputs' statistics are still recorded; with no bound, none is out of range).
    Relu,
    /// x(1 + p(x/B))/2 with the polynomial buffer; |x| > B is counted, and clamped to [-B, B]
    /// first when `clamp` is set.
    PolyRelu {
        bound: f32,
        clamp: bool,
    },
}

impl Epilogue {
    fn code_and_bound(self) -> (u32, f32) {
        match self {
            Epilogue::None => (0, f32::INFINITY),
            Epilogue::Relu => (1, f32::INFINITY),
            Epilogue::PolyRelu { bound, .. } => (2, bound),
        }
    }
}

/// One convolution on a batch: NCHW input `batch × in_c × in_h × in_w`, `out_c` output channels
/// in `groups` groups, and the graph's window geometry ([`Window2d`]: per-axis kernel, stride,
/// dilation, `[top, left, bottom, right]` padding; no ceil mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvShape {
    pub batch: usize,
    pub in_c: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub out_c: usize,
    pub groups: usize,
    pub window: Window2d,
}

impl ConvShape {
    /// A dense convolution with a square stride and symmetric padding `[rows, columns]`.
    pub fn dense(
        batch: usize,
        in_c: usize,
        (in_h, in_w): (usize, usize),
        out_c: usize,
        kernel: [usize; 2],
        stride: usize,
        padding: [usize; 2],
    ) -> ConvShape {
        ConvShape {
            batch,
            in_c,
            in_h,
            in_w,
            out_c,
            groups: 1,
            window: Window2d::new(kernel, [stride; 2], padding),
        }
    }

    /// `(out_h, out_w)`; (0, 0) when the window does not fit (`validate` reports that).
    pub fn out_hw(&self) -> (usize, usize) {
        self.window.out_hw(self.in_h, self.in_w).unwrap_or((0, 0))
    }

    pub fn input_len(&self) -> usize {
        self.batch * self.in_c * self.in_h * self.in_w
    }

    pub fn output_len(&self) -> usize {
        let (oh, ow) = self.out_hw();
        self.batch * self.out_c * oh * ow
    }

    /// Input channels each output channel reads.
    pub fn group_in_c(&self) -> usize {
        self.in_c / self.groups.max(1)
    }

    /// Output channels per group.
    pub fn group_out_c(&self) -> usize {
        self.out_c / self.groups.max(1)
    }

    /// The GEMM depth: taps per output value, (C / groups)·kh·kw.
    pub fn depth(&self) -> usize {
        self.group_in_c() * self.window.taps()
    }

    pub fn weight_len(&self) -> usize {
        self.out_c * self.depth()
    }

    /// Multiply-adds ×2.
    pub fn flops(&self) -> f64 {
        2.0 * self.output_len() as f64 * self.depth() as f64
    }

    fn validate(&self) -> Result<(), GpuError> {
        let ok = self.batch > 0
            && self.in_c > 0
            && self.out_c > 0
            && self.groups > 0
            && self.in_c.is_multiple_of(self.groups)
            && self.out_c.is_multiple_of(self.groups)
            && !self.window.ceil_mode
            && self.window.out_hw(self.in_h, self.in_w).is_some();
        if ok {
            Ok(())
        } else {
            Err(GpuError::BadInput(format!("invalid convolution shape {self:?}")))
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    batch: u32,
    in_c: u32,
    in_h: u32,
    in_w: u32,
    out_c: u32,
    out_h: u32,
    out_w: u32,
    kernel_h: u32,
    kernel_w: u32,
    stride_h: u32,
    pad_h: u32,
    pad_w: u32,
    activation: u32,
    has_residual: u32,
    scheme: u32,
    bound: f32,
    out_c_offset: u32,
    out_c_total: u32,
    clamp: u32,
    stride_w: u32,
    dilation_h: u32,
    dilation_w: u32,
    group_in_c: u32,
    first_group: u32,
}

impl Params {
    /// The whole convolution's geometry, no epilogue (bias only), all output channels.
    fn geometry(shape: ConvShape) -> Params {
        let (out_h, out_w) = shape.out_hw();
        let w = shape.window;
        Params {
            batch: shape.batch as u32,
            in_c: shape.in_c as u32,
            in_h: shape.in_h as u32,
            in_w: shape.in_w as u32,
            out_c: shape.group_out_c() as u32,
            out_h: out_h as u32,
            out_w: out_w as u32,
            kernel_h: w.kernel[0] as u32,
            kernel_w: w.kernel[1] as u32,
            stride_h: w.stride[0] as u32,
            pad_h: w.pad_begin(0) as u32,
            pad_w: w.pad_begin(1) as u32,
            activation: 0,
            has_residual: 0,
            scheme: 0,
            bound: f32::INFINITY,
            out_c_offset: 0,
            out_c_total: shape.out_c as u32,
            clamp: 0,
            stride_w: w.stride[1] as u32,
            dilation_h: w.dilation[0] as u32,
            dilation_w: w.dilation[1] as u32,
            group_in_c: shape.group_in_c() as u32,
            first_group: 0,
        }
    }
}

/// A workgroup shape of the tiled kernel: `threads_m × threads_n` invocations, each holding a
/// `block_m × block_n` register block, so one workgroup computes a
/// `(threads_m·block_m) × (threads_n·block_n)` tile of (pixels × output channels).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileConfig {
    pub threads_m: u32,
    pub threads_n: u32,
    pub block_m: u32,
    pub block_n: u32,
    /// K values staged per slice (taps between two barriers).
    pub depth: u32,
}

impl TileConfig {
    /// 256 invocations with 4x4 blocks: a 64x64 tile.
    pub const WIDE: TileConfig = TileConfig {
        threads_m: 16,
        threads_n: 16,
        block_m: 4,
        block_n: 4,
        depth: 16,
    };
    /// 8x4 blocks: a 128 (pixels) x 64 (channels) tile.
    pub const TALL: TileConfig = TileConfig {
        block_m: 8,
        ..TileConfig::WIDE
    };
    /// 4x8 blocks: a 64 (pixels) x 128 (channels) tile.
    pub const BROAD: TileConfig = TileConfig {
        block_n: 8,
        ..TileConfig::WIDE
    };
    /// Every configuration `for_shape` may pick, largest tiles first.
    pub const ALL: [TileConfig; 3] = [TileConfig::BROAD, TileConfig::TALL, TileConfig::WIDE];

    /// The largest tile whose padding wastes at most 10% more work than the tightest fit.
    /// Measured on lavapipe (BENCHMARKS.md): larger tiles amortise each slice's barriers and
    /// workgroup-memory traffic over more multiply-adds (8x8 blocks, or 64-invocation
    /// workgroups, were slower), but a 128-wide tile over 49 pixels or 64 channels computes
    /// mostly padding.
    pub fn for_shape(shape: &ConvShape) -> TileConfig {
        let (oh, ow) = shape.out_hw();
        let (m, n) = ((shape.batch * oh * ow) as u64, shape.group_out_c() as u64);
        let padded = |t: TileConfig| m.next_multiple_of(t.tile_m()) * n.next_multiple_of(t.tile_n());
        let tightest = TileConfig::ALL
            .into_iter()
            .map(padded)
            .min()
            .expect("configurations exist");
        TileConfig::ALL
            .into_iter()
            .find(|&t| padded(t) * 10 <= tightest * 11)
            .expect("the tightest configuration qualifies")
    }

    pub fn tile_m(self) -> u64 {
        (self.threads_m * self.block_m) as u64
    }

    pub fn tile_n(self) -> u64 {
        (self.threads_n * self.block_n) as u64
    }

    pub fn name(self) -> String {
        format!(
            "{}x{} threads, {}x{} blocks, K slices of {}",
            self.threads_m, self.threads_n, self.block_m, self.block_n, self.depth
        )
    }

    fn shader_source(self) -> String {
        let constants = format!(
            "const THREADS_M: u32 = {}u;\nconst THREADS_N: u32 = {}u;\nconst BLOCK_M: u32 = {}u;\nconst BLOCK_N: u32 = {}u;\nconst TILE_K: u32 = {}u;\n",
            self.threads_m, self.threads_n, self.block_m, self.block_n, self.depth
        );
        [
            include_str!("../../shaders/sign_poly.wgsl"),
            &super::activation::range_stats_source(),
            &constants,
            include_str!("../../shaders/conv2d.wgsl"),
        ]
        .concat()
    }

    fn pipeline_name(self) -> String {
        format!(
            "conv2d_{}x{}_{}x{}_k{}",
            self.threads_m, self.threads_n, self.block_m, self.block_n, self.depth
        )
    }
}

/// Device buffers of one convolution call.
pub struct ConvBuffers<'a> {
    pub input: &'a wgpu::Buffer,
    pub weight: &'a wgpu::Buffer,
    pub bias: &'a wgpu::Buffer,
    /// Same shape as the output; with `None` the kernel reads no residual.
    pub residual: Option<&'a wgpu::Buffer>,
    pub output: &'a wgpu::Buffer,
    pub range_stats: StatsSlot<'a>,
}

/// Record one convolution into `encoder` (no host round trip), with the tiles [`tiles_for`]
/// picks.
pub fn encode_conv(
    gpu: &Gpu,
    encoder: &mut wgpu::CommandEncoder,
    shape: ConvShape,
    epilogue: Epilogue,
    poly: &PolyBuffer,
    buffers: &ConvBuffers,
) -> Result<(), GpuError> {
    let tiles = tiles_for(gpu, shape)?;
    encode_conv_tiled(gpu, encoder, shape, epilogue, poly, buffers, tiles)
}

/// Weights beyond this many values (a VGG classifier) are not timed: the rule decides.
const MAX_TIMED_WEIGHTS: usize = 1 << 24;

/// The tile configuration for `shape` on this adapter, decided once per shape for the run:
/// under [`TilePolicy::Timed`] the fastest of [`TileConfig::ALL`] (each timed over a few
/// dispatches on device-resident data with the ReLU epilogue), else [`TileConfig::for_shape`].
pub fn tiles_for(gpu: &Gpu, shape: ConvShape) -> Result<TileConfig, GpuError> {
    gpu.tile_choice(shape, |policy| {
        if policy == TilePolicy::Rule || shape.weight_len() > MAX_TIMED_WEIGHTS {
            return Ok(TileConfig::for_shape(&shape));
        }
        const REPEATS: usize = 3;
        let poly = PolyBuffer::empty(gpu);
        let mut best = (f64::INFINITY, TileConfig::for_shape(&shape));
        for tiles in TileConfig::ALL {
            let seconds = time_conv(gpu, shape, ConvKernel::Tiled(tiles), Epilogue::Relu, &poly, REPEATS)?;
            if seconds < best.0 {
                best = (seconds, tiles);
            }
        }
        Ok(best.1)
    })
}

/// [`encode_conv`] with the given tile configuration (tests and benchmarks cover each).
pub fn encode_conv_tiled(
    gpu: &Gpu,
    encoder: &mut wgpu::CommandEncoder,
    shape: ConvShape,
    epilogue: Epilogue,
    poly: &PolyBuffer,
    buffers: &ConvBuffers,
    tiles: TileConfig,
) -> Result<(), GpuError> {
    shape.validate()?;
    let (out_h, out_w) = shape.out_hw();
    let groups_m = ((shape.batch * out_h * out_w) as u64).div_ceil(tiles.tile_m());
    let groups_n = (shape.group_out_c() as u64).div_ceil(tiles.tile_n());
    if groups_m > 65_535 || groups_n > 65_535 || shape.groups > 65_535 {
        return Err(GpuError::BadInput(format!(
            "convolution {shape:?} is too large for one dispatch; lower the batch"
        )));
    }
    let (activation, bound) = epilogue.code_and_bound();
    if matches!(epilogue, Epilogue::PolyRelu { .. }) {
        super::activation::check_bound(bound)?;
    }
    check_binding_sizes(gpu, shape, buffers)?;
    let pipeline = gpu.pipeline(&tiles.pipeline_name(), "conv2d", || tiles.shader_source())?;
    let residual = buffers.residual.unwrap_or(gpu.placeholder());
    for (first, count) in weight_chunks(gpu, shape)? {
        // A grouped conv's chunk is whole groups, one workgroup layer (z) each; a dense one's
        // (groups = 1) may be any run of output channels.
        let per_group = if shape.groups == 1 { count } else { shape.group_out_c() };
        let params = Params {
            out_c: per_group as u32,
            activation,
            has_residual: buffers.residual.is_some() as u32,
            scheme: poly.shader_scheme(),
            bound,
            out_c_offset: first as u32,
            clamp: matches!(epilogue, Epilogue::PolyRelu { clamp: true, .. }) as u32,
            first_group: if shape.groups == 1 {
                0
            } else {
                (first / per_group) as u32
            },
            ..Params::geometry(shape)
        };
        let uniform = gpu.uniform_from("conv params", &params);
        let row_bytes = (shape.depth() * 4) as u64;
        let weight_rows = wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: buffers.weight,
            offset: first as u64 * row_bytes,
            size: std::num::NonZeroU64::new(count as u64 * row_bytes),
        });
        gpu.encode_dispatch(
            encoder,
            &pipeline,
            &[
                uniform.as_entire_binding(),
                poly.buffer.as_entire_binding(),
                buffers.input.as_entire_binding(),
                weight_rows,
                buffers.bias.as_entire_binding(),
                residual.as_entire_binding(),
                buffers.output.as_entire_binding(),
                buffers.range_stats.binding(),
            ],
            (
                groups_m as u32,
                (per_group as u64).div_ceil(tiles.tile_n()) as u32,
                (count / per_group) as u32,
            ),
        );
    }
    Ok(())
}

/// Output-channel ranges whose weight rows fit one storage binding (a VGG classifier matrix is
/// 400 MB; lavapipe binds at most 128 MiB), each starting at an aligned offset and holding
/// whole groups.
fn weight_chunks(gpu: &Gpu, shape: ConvShape) -> Result<Vec<(usize, usize)>, GpuError> {
    let limits = gpu.device.limits();
    let row_bytes = (shape.depth() * 4) as u64;
    let align = limits.min_storage_buffer_offset_alignment as u64;
    let per_group = if shape.groups == 1 {
        1
    } else {
        shape.group_out_c() as u64
    };
    let mut rows = (limits.max_storage_buffer_binding_size / row_bytes).min(shape.out_c as u64);
    if rows < shape.out_c as u64 {
        // every chunk but the last must end on an aligned offset, after a whole group
        rows -= rows % per_group;
        while rows > 0 && !(rows * row_bytes).is_multiple_of(align) {
            rows -= per_group;
        }
    }
    if rows == 0 {
        return Err(GpuError::BadInput(format!(
            "one output channel of convolution {shape:?} needs {row_bytes} bytes of weights, more than this adapter can bind"
        )));
    }
    let rows = rows as usize;
    Ok((0..shape.out_c)
        .step_by(rows)
        .map(|first| (first, rows.min(shape.out_c - first)))
        .collect())
}

/// Activations must fit one binding; say so (and what to change) instead of failing validation.
fn check_binding_sizes(gpu: &Gpu, shape: ConvShape, buffers: &ConvBuffers) -> Result<(), GpuError> {
    let limit = gpu.device.limits().max_storage_buffer_binding_size;
    for (what, buffer) in [("input", buffers.input), ("output", buffers.output)]
        .into_iter()
        .chain(buffers.residual.map(|r| ("residual", r)))
    {
        if buffer.size() > limit {
            return Err(GpuError::BadInput(format!(
                "convolution {what} of {shape:?} is {} MiB, more than this adapter binds ({} MiB): lower the batch",
                buffer.size() >> 20,
                limit >> 20
            )));
        }
    }
    Ok(())
}

/// Which kernel a timing measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvKernel {
    /// The tiled implicit GEMM used by the engine, with these tiles.
    Tiled(TileConfig),
    /// One thread per output, no reuse: the baseline the benchmark compares against.
    Naive,
}

/// Seconds per convolution of `shape` with `epilogue` (device-resident data, `repeats` timed
/// dispatches after one warm-up). The naive kernel has the bias epilogue only.
pub fn time_conv(
    gpu: &Gpu,
    shape: ConvShape,
    kernel: ConvKernel,
    epilogue: Epilogue,
    poly: &PolyBuffer,
    repeats: usize,
) -> Result<f64, GpuError> {
    shape.validate()?;
    if kernel == ConvKernel::Naive && epilogue != Epilogue::None {
        return Err(GpuError::BadInput(format!(
            "the naive convolution kernel has no {epilogue:?} epilogue"
        )));
    }
    let data = |n: usize, seed: usize| -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 7919 + seed) % 2003) as f32) / 2003.0 - 0.5)
            .collect()
    };
    let input = gpu.storage_from("bench conv input", &data(shape.input_len(), 1));
    let weight = gpu.storage_from("bench conv weight", &data(shape.weight_len(), 2));
    let bias = gpu.storage_from("bench conv bias", &data(shape.out_c, 3));
    let output = gpu.storage_zeroed("bench conv output", (shape.output_len() * 4) as u64);
    let stats = range_stats_buffer(gpu);
    let encode = |encoder: &mut wgpu::CommandEncoder| -> Result<(), GpuError> {
        match kernel {
            ConvKernel::Tiled(tiles) => {
                let buffers = ConvBuffers {
                    input: &input,
                    weight: &weight,
                    bias: &bias,
                    residual: None,
                    output: &output,
                    range_stats: StatsSlot::whole(&stats),
                };
                encode_conv_tiled(gpu, encoder, shape, epilogue, poly, &buffers, tiles)
            }
            ConvKernel::Naive => {
                let pipeline = gpu.pipeline("conv2d_naive", "conv2d_naive", || {
                    include_str!("../../shaders/conv2d_naive.wgsl").to_string()
                })?;
                let params = Params::geometry(shape);
                let uniform = gpu.uniform_from("naive conv params", &params);
                gpu.encode_dispatch(
                    encoder,
                    &pipeline,
                    &[
                        uniform.as_entire_binding(),
                        input.as_entire_binding(),
                        weight.as_entire_binding(),
                        bias.as_entire_binding(),
                        output.as_entire_binding(),
                    ],
                    Gpu::grid_for(shape.output_len() as u64, 256),
                );
                Ok(())
            }
        }
    };
    gpu.seconds_per_repeat(repeats, encode)
}

/// Host convenience: upload, convolve, read back (tests, one-off use).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_host(
    gpu: &Gpu,
    shape: ConvShape,
    input: &[f32],
    weight: &[f32],
    bias: &[f32],
    residual: Option<&[f32]>,
    epilogue: Epilogue,
    poly: &PolyBuffer,
) -> Result<(Vec<f32>, RangeStats), GpuError> {
    let tiles = tiles_for(gpu, shape)?;
    conv2d_host_tiled(gpu, tiles, shape, input, weight, bias, residual, epilogue, poly)
}

/// [`conv2d_host`] with the given tile configuration.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_host_tiled(
    gpu: &Gpu,
    tiles: TileConfig,
    shape: ConvShape,
    input: &[f32],
    weight: &[f32],
    bias: &[f32],
    residual: Option<&[f32]>,
    epilogue: Epilogue,
    poly: &PolyBuffer,
) -> Result<(Vec<f32>, RangeStats), GpuError> {
    let check = |what: &str, got: usize, want: usize| {
        if got == want {
            Ok(())
        } else {
            Err(GpuError::BadInput(format!(
                "convolution {what} has {got} values, the shape needs {want}"
            )))
        }
    };
    check("input", input.len(), shape.input_len())?;
    check("weight", weight.len(), shape.weight_len())?;
    check("bias", bias.len(), shape.out_c)?;
    if let Some(r) = residual {
        check("residual", r.len(), shape.output_len())?;
    }
    let input_buf = gpu.storage_from("conv input", input);
    let weight_buf = gpu.storage_from("conv weight", weight);
    let bias_buf = gpu.storage_from("conv bias", bias);
    let residual_buf = residual.map(|r| gpu.storage_from("conv residual", r));
    let output_buf = gpu.storage_zeroed("conv output", (shape.output_len() * 4) as u64);
    let stats_buf = range_stats_buffer(gpu);
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    let buffers = ConvBuffers {
        input: &input_buf,
        weight: &weight_buf,
        bias: &bias_buf,
        residual: residual_buf.as_ref(),
        output: &output_buf,
        range_stats: StatsSlot::whole(&stats_buf),
    };
    encode_conv_tiled(gpu, &mut encoder, shape, epilogue, poly, &buffers, tiles)?;
    gpu.submit_and_wait(encoder)?;
    Ok((
        gpu.read_back(&output_buf, shape.output_len())?,
        read_range_stats(gpu, &stats_buf)?,
    ))
}
