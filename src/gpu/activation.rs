//! The approximate-activation kernel (shaders/sign_poly.wgsl + shaders/activation.wgsl): one
//! parameterised WGSL kernel for every α and scheme, in ReLU mode and max-pool mode.

use super::{Gpu, GpuError};
use crate::exec::{HIST_BINS, LOG2_MIN, STATS_HEADER_WORDS, STATS_WORDS};
use crate::model::Window2d;
use crate::poly::{Composite, Dd};
use serde::Serialize;
use std::str::FromStr;

/// How the GPU evaluates each stage of the composite in float32.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    /// Power basis, Horner in x² with fma: the representation of the paper's published files
    /// (whose own code evaluates it in float64). Unstable in float32 at high α.
    Horner,
    /// Odd Clenshaw on each stage's Chebyshev series over its own domain: stable, float32
    /// evaluation error ≈ 2^-20.
    Clenshaw,
    /// The same Clenshaw recurrence in double-float arithmetic (two f32 words): error ≈ 2^-40
    /// of the evaluation itself, for α up to 20, at ~10x the arithmetic.
    ClenshawDf,
}

impl Scheme {
    pub const ALL: [Scheme; 3] = [Scheme::Horner, Scheme::Clenshaw, Scheme::ClenshawDf];
    /// The fastest scheme whose float32 error stays ≤ 5% of 2^-α for every α 4..14 (measured
    /// by `polycnn poly` and asserted in tests/gpu_activation.rs): Horner fails from α = 9.
    pub const DEFAULT: Scheme = Scheme::Clenshaw;

    pub fn name(self) -> &'static str {
        match self {
            Scheme::Horner => "horner",
            Scheme::Clenshaw => "clenshaw",
            Scheme::ClenshawDf => "clenshaw-df",
        }
    }

    fn shader_id(self) -> u32 {
        match self {
            Scheme::Horner => 0,
            Scheme::Clenshaw => 1,
            Scheme::ClenshawDf => 2,
        }
    }
}

impl FromStr for Scheme {
    type Err = String;
    fn from_str(s: &str) -> Result<Scheme, String> {
        Scheme::ALL
            .into_iter()
            .find(|sc| sc.name() == s)
            .ok_or_else(|| format!("unknown scheme '{s}' (expected one of: horner, clenshaw, clenshaw-df)"))
    }
}

/// The coefficient buffer layout of sign_poly.wgsl: [stages, 0, (n, scale_hi, scale_lo,
/// c_hi…, c_lo…)…]. Every scheme uses the same layout; only the double-float one reads low words.
pub fn pack_coefficients(composite: &Composite, scheme: Scheme) -> Vec<f32> {
    let mut out = vec![composite.stages.len() as f32, 0.0];
    for stage in &composite.stages {
        let (scale, coeffs): (Dd, Vec<Dd>) = match scheme {
            Scheme::Horner => (Dd::ONE, stage.to_power_basis().into_iter().skip(1).step_by(2).collect()),
            Scheme::Clenshaw | Scheme::ClenshawDf => (Dd::ONE / stage.half_width, stage.cheb.clone()),
        };
        out.push(coeffs.len() as f32);
        out.extend(split_f32(scale));
        out.extend(coeffs.iter().map(|&c| split_f32(c)[0]));
        out.extend(coeffs.iter().map(|&c| split_f32(c)[1]));
    }
    out
}

/// A double-double as two float32 words, hi + lo (lo carries the next 24 bits).
fn split_f32(x: Dd) -> [f32; 2] {
    let hi = x.to_f64() as f32;
    let lo = (x - Dd::new(hi as f64)).to_f64() as f32;
    [hi, lo]
}

/// What one dispatch saw of its activation inputs (shaders/range_stats.wgsl): inputs outside
/// [-B, B] (counted, never clipped), non-finite ones, the largest finite |x| and a histogram of
/// ⌊log2 |x|⌋ with the CPU backend's bins.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RangeStats {
    pub out_of_range: u64,
    pub max_abs: f32,
    pub non_finite: u64,
    pub log2_hist: Vec<u64>,
}

/// shaders/range_stats.wgsl with its layout constants from `crate::exec` prepended.
pub fn range_stats_source() -> String {
    format!(
        "const HIST_BINS: u32 = {HIST_BINS}u;\nconst LOG2_MIN: i32 = {LOG2_MIN};\n\
         const STATS_HEADER_WORDS: u32 = {STATS_HEADER_WORDS}u;\nconst STATS_WORDS: u32 = {STATS_WORDS}u;\n{}",
        include_str!("../../shaders/range_stats.wgsl")
    )
}

/// Bytes between the statistics of consecutive sites in a shared buffer (a multiple of every
/// adapter's storage-offset alignment, 256).
pub const RANGE_STATS_STRIDE: u64 = 256;

/// A zeroed buffer with range-statistics slots for `sites` sites.
pub fn range_stats_buffer_for(gpu: &Gpu, sites: usize) -> wgpu::Buffer {
    let words = (RANGE_STATS_STRIDE as usize / 4) * sites.max(1);
    gpu.storage_from("range stats", &vec![0u32; words])
}

/// A zeroed range-statistics buffer for one dispatch.
pub fn range_stats_buffer(gpu: &Gpu) -> wgpu::Buffer {
    range_stats_buffer_for(gpu, 1)
}

/// One site's statistics inside a (possibly shared) range-statistics buffer.
#[derive(Clone, Copy)]
pub struct StatsSlot<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub site: usize,
}

impl<'a> StatsSlot<'a> {
    pub fn whole(buffer: &'a wgpu::Buffer) -> StatsSlot<'a> {
        StatsSlot { buffer, site: 0 }
    }

    pub fn binding(&self) -> wgpu::BindingResource<'a> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: self.buffer,
            offset: self.site as u64 * RANGE_STATS_STRIDE,
            size: std::num::NonZeroU64::new(STATS_WORDS as u64 * 4),
        })
    }
}

/// Decode one site's statistics from the words of a range-statistics buffer.
pub fn decode_range_stats(words: &[u32], site: usize) -> RangeStats {
    let w = &words[site * RANGE_STATS_STRIDE as usize / 4..][..STATS_WORDS];
    RangeStats {
        out_of_range: w[0] as u64,
        max_abs: f32::from_bits(w[1]),
        non_finite: w[2] as u64,
        log2_hist: w[STATS_HEADER_WORDS..].iter().map(|&c| c as u64).collect(),
    }
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    count: u32,
    scheme: u32,
    approximate: u32,
    row_stride: u32,
    kernel_h: u32,
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    stride_h: u32,
    pad_h: u32,
    bound: f32,
    pool_scale: f32,
    clamp: u32,
    scaled: u32,
    kernel_w: u32,
    stride_w: u32,
    pad_w: u32,
    dilation_h: u32,
    dilation_w: u32,
}

/// Max-pooling geometry on an NCHW tensor: `planes` (N·C) planes of `height × width`, and the
/// graph's window ([`Window2d`]).
#[derive(Clone, Copy, Debug)]
pub struct PoolShape {
    pub planes: usize,
    pub height: usize,
    pub width: usize,
    pub window: Window2d,
}

/// The largest approximate window (the paper's trees are 2x2 and 3x3; the shader keeps 9 values).
const MAX_APPROX_TAPS: usize = 9;

impl PoolShape {
    /// PyTorch's output size (ceil-mode rule included), as the graph computes it; (0, 0) when
    /// the window does not fit (`validate` reports that).
    pub fn out_hw(&self) -> (usize, usize) {
        self.window.out_hw(self.height, self.width).unwrap_or((0, 0))
    }

    fn validate(&self, approximate: bool) -> Result<(), GpuError> {
        let w = &self.window;
        let fits = self
            .window
            .out_hw(self.height, self.width)
            .is_some_and(|(h, w)| h > 0 && w > 0);
        if fits && (!approximate || w.taps() <= MAX_APPROX_TAPS) {
            Ok(())
        } else {
            Err(GpuError::BadInput(format!(
                "unsupported max-pool geometry {self:?} (approximate windows have at most {MAX_APPROX_TAPS} taps)"
            )))
        }
    }

    /// The window's fields of the shader's parameters.
    fn params(&self) -> Params {
        let (out_h, out_w) = self.out_hw();
        let w = &self.window;
        Params {
            kernel_h: w.kernel[0] as u32,
            kernel_w: w.kernel[1] as u32,
            in_h: self.height as u32,
            in_w: self.width as u32,
            out_h: out_h as u32,
            out_w: out_w as u32,
            stride_h: w.stride[0] as u32,
            stride_w: w.stride[1] as u32,
            pad_h: w.pad_begin(0) as u32,
            pad_w: w.pad_begin(1) as u32,
            dilation_h: w.dilation[0] as u32,
            dilation_w: w.dilation[1] as u32,
            ..Params::default()
        }
    }
}

/// How a ReLU or max-pool site is evaluated on the GPU.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SiteEval {
    /// PyTorch semantics; no bound, so nothing is counted out of range.
    Exact,
    /// The polynomial bound to B; max-pooling also needs the rescaling factor s. With `clamp`,
    /// inputs are clamped to [-B, B] before the polynomial (they are counted either way).
    Approx { bound: f32, pool_scale: f32, clamp: bool },
    /// ReLU only: the power-basis polynomial of a [`PolyBuffer::power`] buffer on x, or on x/B
    /// times B when `scaled`; |x| > B is counted (and clamped first with `clamp`).
    Power { bound: f32, scaled: bool, clamp: bool },
}

impl SiteEval {
    /// (approximate, bound, pool_scale, clamp) as the shader's parameters.
    fn fields(self) -> Result<(u32, f32, f32, u32), GpuError> {
        match self {
            SiteEval::Exact => Ok((0, f32::INFINITY, 1.0, 0)),
            SiteEval::Power { bound, clamp, .. } => {
                check_bound(bound)?;
                Ok((2, bound, 1.0, clamp as u32))
            }
            SiteEval::Approx {
                bound,
                pool_scale,
                clamp,
            } => {
                check_bound(bound)?;
                Ok((1, bound, pool_scale, clamp as u32))
            }
        }
    }
}

const GROUP: u32 = 256;

/// Range statistics of one dispatch (or site), read back from its buffer.
pub fn read_range_stats(gpu: &Gpu, buffer: &wgpu::Buffer) -> Result<RangeStats, GpuError> {
    Ok(decode_range_stats(&gpu.read_back::<u32>(buffer, STATS_WORDS)?, 0))
}

fn shader_source() -> String {
    [
        include_str!("../../shaders/sign_poly.wgsl"),
        &range_stats_source(),
        include_str!("../../shaders/activation.wgsl"),
    ]
    .concat()
}

/// A composite packed for one scheme and uploaded: what every kernel with a polynomial
/// activation binds as `poly_coeffs`.
pub struct PolyBuffer {
    pub buffer: wgpu::Buffer,
    pub scheme: Scheme,
}

impl PolyBuffer {
    pub fn new(gpu: &Gpu, composite: &Composite, scheme: Scheme) -> PolyBuffer {
        PolyBuffer {
            buffer: gpu.storage_from("poly coefficients", &pack_coefficients(composite, scheme)),
            scheme,
        }
    }

    /// A power-basis polynomial c_0, c_1, … for [`SiteEval::Power`]: [n, c_0, …, c_{n-1}].
    pub fn power(gpu: &Gpu, coeffs: &[f64]) -> PolyBuffer {
        let packed: Vec<f32> = std::iter::once(coeffs.len() as f32)
            .chain(coeffs.iter().map(|&c| c as f32))
            .collect();
        PolyBuffer {
            buffer: gpu.storage_from("power-basis ReLU polynomial", &packed),
            scheme: Scheme::DEFAULT,
        }
    }

    /// A composite with no stages, for dispatches whose activations are all exact.
    pub fn empty(gpu: &Gpu) -> PolyBuffer {
        PolyBuffer {
            buffer: gpu.storage_from("poly coefficients (none)", &[0.0f32, 0.0]),
            scheme: Scheme::DEFAULT,
        }
    }

    pub fn shader_scheme(&self) -> u32 {
        self.scheme.shader_id()
    }
}

/// Device buffers of one activation dispatch.
pub struct SiteBuffers<'a> {
    pub input: &'a wgpu::Buffer,
    pub output: &'a wgpu::Buffer,
    pub range_stats: StatsSlot<'a>,
}

/// Record a ReLU over `count` elements.
pub fn encode_relu(
    gpu: &Gpu,
    encoder: &mut wgpu::CommandEncoder,
    poly: &PolyBuffer,
    eval: SiteEval,
    count: usize,
    buffers: &SiteBuffers,
) -> Result<(), GpuError> {
    let (approximate, bound, _, clamp) = eval.fields()?;
    let params = Params {
        count: count as u32,
        approximate,
        bound,
        clamp,
        scaled: matches!(eval, SiteEval::Power { scaled: true, .. }) as u32,
        ..Params::default()
    };
    dispatch(gpu, encoder, "relu", poly, params, count, buffers)
}

/// Record a max-pooling of an NCHW tensor.
pub fn encode_max_pool(
    gpu: &Gpu,
    encoder: &mut wgpu::CommandEncoder,
    poly: &PolyBuffer,
    eval: SiteEval,
    shape: PoolShape,
    buffers: &SiteBuffers,
) -> Result<(), GpuError> {
    shape.validate(matches!(eval, SiteEval::Approx { .. }))?;
    if let SiteEval::Power { .. } = eval {
        return Err(GpuError::BadInput(
            "a ReLU polynomial has no max-pool form (use exact max-pooling with it)".into(),
        ));
    }
    let (approximate, bound, pool_scale, clamp) = eval.fields()?;
    let (out_h, out_w) = shape.out_hw();
    let count = shape.planes * out_h * out_w;
    let params = Params {
        count: count as u32,
        approximate,
        bound,
        pool_scale,
        clamp,
        ..shape.params()
    };
    dispatch(gpu, encoder, "max_pool", poly, params, count, buffers)
}

fn dispatch(
    gpu: &Gpu,
    encoder: &mut wgpu::CommandEncoder,
    entry: &str,
    poly: &PolyBuffer,
    mut params: Params,
    count: usize,
    buffers: &SiteBuffers,
) -> Result<(), GpuError> {
    if count > u32::MAX as usize / 2 {
        return Err(GpuError::BadInput(format!(
            "{count} elements exceed one dispatch; split the tensor"
        )));
    }
    let grid = Gpu::grid_for(count as u64, GROUP);
    params.row_stride = grid.0 * GROUP;
    params.scheme = poly.shader_scheme();
    let pipeline = gpu.pipeline("activation", entry, shader_source)?;
    let uniform = gpu.uniform_from("activation params", &params);
    gpu.encode_dispatch(
        encoder,
        &pipeline,
        &[
            uniform.as_entire_binding(),
            poly.buffer.as_entire_binding(),
            buffers.input.as_entire_binding(),
            buffers.output.as_entire_binding(),
            buffers.range_stats.binding(),
        ],
        grid,
    );
    Ok(())
}

/// A composite uploaded for one scheme, with host-side entry points (upload, run, read back)
/// for tests, measurements and one-off use.
pub struct ActivationKernel<'g> {
    gpu: &'g Gpu,
    poly: PolyBuffer,
}

impl<'g> ActivationKernel<'g> {
    pub fn new(gpu: &'g Gpu, composite: &Composite, scheme: Scheme) -> ActivationKernel<'g> {
        ActivationKernel {
            gpu,
            poly: PolyBuffer::new(gpu, composite, scheme),
        }
    }

    /// A power-basis ReLU polynomial c_0, c_1, … uploaded, for [`SiteEval::Power`] ReLUs.
    pub fn power(gpu: &'g Gpu, coeffs: &[f64]) -> ActivationKernel<'g> {
        ActivationKernel {
            gpu,
            poly: PolyBuffer::power(gpu, coeffs),
        }
    }

    /// y = x(1 + p(x/B))/2 for every element.
    pub fn relu(&self, input: &[f32], bound: f32) -> Result<(Vec<f32>, RangeStats), GpuError> {
        self.relu_with(
            input,
            SiteEval::Approx {
                bound,
                pool_scale: 1.0,
                clamp: false,
            },
        )
    }

    /// A ReLU site evaluated as `eval` says (exact, approximate, clamped or not).
    pub fn relu_with(&self, input: &[f32], eval: SiteEval) -> Result<(Vec<f32>, RangeStats), GpuError> {
        self.run_host(input, input.len(), |gpu, encoder, buffers| {
            encode_relu(gpu, encoder, &self.poly, eval, input.len(), buffers)
        })
    }

    /// Max-pooling of an NCHW tensor, exact or approximate.
    pub fn max_pool(
        &self,
        input: &[f32],
        shape: PoolShape,
        eval: SiteEval,
    ) -> Result<(Vec<f32>, RangeStats), GpuError> {
        shape.validate(matches!(eval, SiteEval::Approx { .. }))?;
        if input.len() != shape.planes * shape.height * shape.width {
            return Err(GpuError::BadInput(format!(
                "max-pool input has {} values, shape says {}x{}x{}",
                input.len(),
                shape.planes,
                shape.height,
                shape.width
            )));
        }
        let (oh, ow) = shape.out_hw();
        self.run_host(input, shape.planes * oh * ow, |gpu, encoder, buffers| {
            encode_max_pool(gpu, encoder, &self.poly, eval, shape, buffers)
        })
    }

    fn run_host(
        &self,
        input: &[f32],
        out_len: usize,
        encode: impl FnOnce(&Gpu, &mut wgpu::CommandEncoder, &SiteBuffers) -> Result<(), GpuError>,
    ) -> Result<(Vec<f32>, RangeStats), GpuError> {
        let gpu = self.gpu;
        let input_buf = gpu.storage_from("activation input", input);
        let output_buf = gpu.storage_zeroed("activation output", (out_len * 4) as u64);
        let stats_buf = range_stats_buffer(gpu);
        let buffers = SiteBuffers {
            input: &input_buf,
            output: &output_buf,
            range_stats: StatsSlot::whole(&stats_buf),
        };
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        encode(gpu, &mut encoder, &buffers)?;
        gpu.submit_and_wait(encoder)?;
        Ok((
            gpu.read_back::<f32>(&output_buf, out_len)?,
            read_range_stats(gpu, &stats_buf)?,
        ))
    }

    /// Seconds per approximate-ReLU pass over a device-resident buffer of `count` elements
    /// (benchmark; one untimed warm-up pass).
    pub fn time_relu(&self, count: usize, repeats: usize) -> Result<f64, GpuError> {
        let gpu = self.gpu;
        let data: Vec<f32> = (0..count).map(|i| ((i % 2001) as f32 / 1000.0) - 1.0).collect();
        let input_buf = gpu.storage_from("bench input", &data);
        let output_buf = gpu.storage_zeroed("bench output", (count * 4) as u64);
        let stats_buf = range_stats_buffer(gpu);
        let buffers = SiteBuffers {
            input: &input_buf,
            output: &output_buf,
            range_stats: StatsSlot::whole(&stats_buf),
        };
        let eval = SiteEval::Approx {
            bound: 1.0,
            pool_scale: 1.0,
            clamp: false,
        };
        gpu.seconds_per_repeat(repeats, |encoder| {
            encode_relu(gpu, encoder, &self.poly, eval, count, &buffers)
        })
    }
}

/// [`crate::exec::check_bound`] as a GPU error.
pub(super) fn check_bound(bound: f32) -> Result<(), GpuError> {
    crate::exec::check_bound(bound as f64).map_err(GpuError::BadInput)
}
