// 2-D convolution as a tiled implicit GEMM with a fused epilogue (prepend sign_poly.wgsl and
// range_stats.wgsl). NCHW activations, weights [O, C·KH·KW] as PyTorch stores them, any kernel
// size, stride and padding, batch ≥ 1.
//
// GEMM view: out[m, o] = Σ_k A[m, k] · W[o, k] with m = (n, oy, ox) an output pixel and
// k = (c, ky, kx); A is never materialised (im2col happens while loading a tile).
// A workgroup computes a 64 (pixels) × 64 (channels) block; each of its 16×16 threads keeps a
// 4×4 register block, reading 16-deep slices of A and W staged in workgroup memory.
// Epilogue: + bias, (+ residual), then none / exact ReLU / polynomial ReLU x(1+p(x/B))/2,
// recording the activation's input range. Every output is written once.

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
    stride: u32,
    pad_h: u32,
    pad_w: u32,
    activation: u32, // ACT_*
    has_residual: u32,
    scheme: u32,
    bound: f32,
    out_c_offset: u32, // this dispatch computes output channels [offset, offset + out_c) …
    out_c_total: u32,  // … of a tensor with out_c_total channels (weights bound from row offset)
    clamp: u32,        // 1: the polynomial ReLU sees inputs clamped to [-B, B]
    _pad1: u32,
}

const ACT_NONE: u32 = 0u;
const ACT_RELU: u32 = 1u;
const ACT_POLY_RELU: u32 = 2u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> poly_coeffs: array<f32>;
@group(0) @binding(2) var<storage, read> input: array<f32>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read> residual: array<f32>;
@group(0) @binding(6) var<storage, read_write> output: array<f32>;
@group(0) @binding(7) var<storage, read_write> range_stats: array<atomic<u32>, 51>;

const TILE_M: u32 = 64u;
const TILE_N: u32 = 64u;
const TILE_K: u32 = 16u;

var<workgroup> tile_a: array<f32, 1024>; // [TILE_K][TILE_M]
var<workgroup> tile_w: array<f32, 1024>; // [TILE_K][TILE_N]

// A[m, k]: the input value under kernel tap k for output pixel m (0 in the padding).
fn load_a(m: u32, k: u32, total_m: u32, total_k: u32) -> f32 {
    if m >= total_m || k >= total_k {
        return 0.0;
    }
    let plane = params.out_h * params.out_w;
    let n = m / plane;
    let oy = (m % plane) / params.out_w;
    let ox = m % params.out_w;
    let taps = params.kernel_h * params.kernel_w;
    let c = k / taps;
    let ky = (k % taps) / params.kernel_w;
    let kx = k % params.kernel_w;
    let iy = i32(oy * params.stride + ky) - i32(params.pad_h);
    let ix = i32(ox * params.stride + kx) - i32(params.pad_w);
    if iy < 0 || ix < 0 || iy >= i32(params.in_h) || ix >= i32(params.in_w) {
        return 0.0;
    }
    return input[((n * params.in_c + c) * params.in_h + u32(iy)) * params.in_w + u32(ix)];
}

fn epilogue(m: u32, o: u32, acc: f32) {
    let plane = params.out_h * params.out_w;
    let n = m / plane;
    let channel = params.out_c_offset + o;
    let index = (n * params.out_c_total + channel) * plane + m % plane;
    var v = acc + bias[channel];
    if params.has_residual == 1u {
        v += residual[index];
    }
    if params.activation != ACT_NONE {
        record_range(v, params.bound);
        if params.activation == ACT_RELU {
            v = max(v, 0.0);
        } else {
            if params.clamp == 1u {
                v = clamp(v, -params.bound, params.bound);
            }
            v = 0.5 * v * (1.0 + sign_poly(v / params.bound, params.scheme));
        }
    }
    output[index] = v;
}

@compute @workgroup_size(16, 16)
fn conv2d(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_id) local: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let total_m = params.batch * params.out_h * params.out_w;
    let total_k = params.in_c * params.kernel_h * params.kernel_w;
    let m0 = group.x * TILE_M;
    let o0 = group.y * TILE_N;
    var acc: array<array<f32, 4>, 4>;
    for (var k0 = 0u; k0 < total_k; k0 += TILE_K) {
        // 256 threads stage 1024 values of each tile; consecutive threads take consecutive
        // pixels of A (neighbouring input columns) and consecutive taps of W (contiguous).
        for (var r = 0u; r < 4u; r++) {
            let e = lid + 256u * r;
            let a_k = e / TILE_M;
            let a_m = e % TILE_M;
            tile_a[a_k * TILE_M + a_m] = load_a(m0 + a_m, k0 + a_k, total_m, total_k);
            let w_k = e % TILE_K;
            let w_o = e / TILE_K;
            var w = 0.0;
            if o0 + w_o < params.out_c && k0 + w_k < total_k {
                w = weight[(o0 + w_o) * total_k + k0 + w_k];
            }
            tile_w[w_k * TILE_N + w_o] = w;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILE_K; kk++) {
            var a: array<f32, 4>;
            var b: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                a[i] = tile_a[kk * TILE_M + local.x + 16u * i];
                b[i] = tile_w[kk * TILE_N + local.y + 16u * i];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i][j] = fma(a[i], b[j], acc[i][j]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
            let m = m0 + local.x + 16u * i;
            let o = o0 + local.y + 16u * j;
            if m < total_m && o < params.out_c {
                epilogue(m, o, acc[i][j]);
            }
        }
    }
    flush_range(lid);
}
