// 2-D convolution as a tiled implicit GEMM with a fused epilogue (prepend sign_poly.wgsl,
// range_stats.wgsl and the tile constants below). NCHW activations, weights [O, C/G·KH·KW] as
// PyTorch and ONNX store them, any kernel size, per-axis stride and dilation, padding (only the
// top/left pads matter here: the bottom/right ones are implied by the output size the host
// computed), G groups, batch ≥ 1.
//
// GEMM view, one per group g (workgroup z): out[m, g·O/G + o] = Σ_k A_g[m, k] · W[g·O/G + o, k]
// with m = (n, oy, ox) an output pixel and k = (c, ky, kx), c among the group's C/G input
// channels; A is never materialised (im2col happens while loading a tile). A tile's output
// channels all lie in one group, so they share its A tile.
// The host prepends the tile configuration (src/gpu/conv.rs `TileConfig`):
//   const THREADS_M, THREADS_N: u32 (workgroup size), BLOCK_M, BLOCK_N: u32 (register block),
//   TILE_K: u32 (K values per slice).
// A workgroup computes a TILE_M (pixels) × TILE_N (channels) block; each thread keeps a
// BLOCK_M × BLOCK_N register block, reading TILE_K-deep slices of A and W staged in workgroup
// memory. Integer division is slow on every target (lavapipe scalarises it), so none happens in
// the K loop: each thread's pixel is decoded once, and the TILE_K taps of the next slice are
// decoded once per workgroup into `tap_*` while the current slice is multiplied.
// Epilogue: + bias, (+ residual), then none / exact ReLU / polynomial ReLU x(1+p(x/B))/2,
// recording the activation's input range. Every output is written once.

struct Params {
    batch: u32,
    in_c: u32,         // input channels of the whole tensor
    in_h: u32,
    in_w: u32,
    out_c: u32,        // output channels per group (all of them when G = 1)
    out_h: u32,
    out_w: u32,
    kernel_h: u32,
    kernel_w: u32,
    stride_h: u32,
    pad_h: u32,        // top
    pad_w: u32,        // left
    activation: u32, // ACT_*
    has_residual: u32,
    scheme: u32,
    bound: f32,
    out_c_offset: u32, // this dispatch computes output channels [offset, offset + out_c·groups) …
    out_c_total: u32,  // … of a tensor with out_c_total channels (weights bound from row offset)
    clamp: u32,        // 1: the polynomial ReLU sees inputs clamped to [-B, B]
    stride_w: u32,
    dilation_h: u32,
    dilation_w: u32,
    group_in_c: u32,   // input channels per group (in_c when G = 1)
    first_group: u32,  // the group of output channel out_c_offset
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
@group(0) @binding(7) var<storage, read_write> range_stats: array<atomic<u32>, STATS_WORDS>;

const TILE_M: u32 = THREADS_M * BLOCK_M;
const TILE_N: u32 = THREADS_N * BLOCK_N;
const THREADS: u32 = THREADS_M * THREADS_N;
// Each thread stages A values of one pixel (THREADS is a multiple of TILE_M), at taps
// lid / TILE_M + A_TAP_STEP · r.
const A_TAP_STEP: u32 = THREADS / TILE_M;
const A_LOADS: u32 = TILE_K / A_TAP_STEP;
const W_LOADS: u32 = TILE_K * TILE_N / THREADS;

// [TILE_K][TILE_M] and [TILE_K][TILE_N], four values per element: a thread's BLOCK_M pixels
// (and BLOCK_N channels) are consecutive, so it reads them as BLOCK_M / 4 vectors.
var<workgroup> tile_a: array<vec4<f32>, TILE_K * TILE_M / 4u>;
var<workgroup> tile_w: array<vec4<f32>, TILE_K * TILE_N / 4u>;
// Per tap of the current slice: the input offset of (c, ky, kx) relative to a pixel's window
// origin, and (ky, kx) for the padding test; ky = TAP_NONE past the end of K.
var<workgroup> tap_offset: array<i32, TILE_K>;
var<workgroup> tap_y: array<u32, TILE_K>;
var<workgroup> tap_x: array<u32, TILE_K>;
const TAP_NONE: u32 = 0x40000000u;

fn decode_tap(slot: u32, k: u32, total_k: u32) {
    if k >= total_k {
        tap_offset[slot] = 0;
        tap_y[slot] = TAP_NONE;
        tap_x[slot] = 0u;
        return;
    }
    let taps = params.kernel_h * params.kernel_w;
    let c = k / taps;
    let ky = (k % taps) / params.kernel_w * params.dilation_h;
    let kx = k % params.kernel_w * params.dilation_w;
    tap_offset[slot] = i32((c * params.in_h + ky) * params.in_w + kx);
    tap_y[slot] = ky;
    tap_x[slot] = kx;
}

// Where one output pixel's receptive field starts: its image's first input value of the
// group's first channel plus the window's top-left corner (possibly in the padding), and that
// corner's coordinates.
struct Pixel {
    base: i32,
    y0: i32,
    x0: i32,
    valid: bool,
}

fn decode_pixel(m: u32, total_m: u32, group: u32) -> Pixel {
    let plane = params.out_h * params.out_w;
    let mm = min(m, total_m - 1u);
    let n = mm / plane;
    let oy = (mm % plane) / params.out_w;
    let ox = mm % params.out_w;
    let y0 = i32(oy * params.stride_h) - i32(params.pad_h);
    let x0 = i32(ox * params.stride_w) - i32(params.pad_w);
    let first_channel = n * params.in_c + (params.first_group + group) * params.group_in_c;
    let base = i32(first_channel * params.in_h * params.in_w) + y0 * i32(params.in_w) + x0;
    return Pixel(base, y0, x0, m < total_m);
}

// A[m, slot]: the input under tap `slot` of the current slice for pixel p (0 in the padding).
fn load_a(p: Pixel, slot: u32) -> f32 {
    // Unsigned compares also reject negative coordinates (and TAP_NONE).
    let iy = u32(p.y0 + i32(tap_y[slot]));
    let ix = u32(p.x0 + i32(tap_x[slot]));
    if !p.valid || iy >= params.in_h || ix >= params.in_w {
        return 0.0;
    }
    return input[p.base + tap_offset[slot]];
}

// o: the output channel relative to out_c_offset (group · out_c + channel in the group).
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
            v = approx_relu(v, params.bound, params.scheme);
        }
    }
    output[index] = v;
}

@compute @workgroup_size(THREADS_M, THREADS_N)
fn conv2d(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_id) local: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let total_m = params.batch * params.out_h * params.out_w;
    let total_k = params.group_in_c * params.kernel_h * params.kernel_w;
    let m0 = group.x * TILE_M;
    let o0 = group.y * TILE_N;
    // Weight rows and output channels of this group, relative to out_c_offset.
    let group_row = group.z * params.out_c;
    let a_m = lid % TILE_M;
    let a_tap = lid / TILE_M;
    let pixel = decode_pixel(m0 + a_m, total_m, group.z);
    let w_k = lid % TILE_K;
    let w_o = lid / TILE_K;
    if lid < TILE_K {
        decode_tap(lid, lid, total_k);
    }
    workgroupBarrier();
    var acc: array<array<vec4<f32>, BLOCK_N / 4u>, BLOCK_M>;
    for (var k0 = 0u; k0 < total_k; k0 += TILE_K) {
        for (var r = 0u; r < A_LOADS; r++) {
            let e = (a_tap + A_TAP_STEP * r) * TILE_M + a_m;
            tile_a[e / 4u][e % 4u] = load_a(pixel, a_tap + A_TAP_STEP * r);
        }
        // Consecutive threads read consecutive taps of one weight row (contiguous).
        for (var r = 0u; r < W_LOADS; r++) {
            let o = w_o + (THREADS / TILE_K) * r;
            var w = 0.0;
            if o0 + o < params.out_c && k0 + w_k < total_k {
                w = weight[(group_row + o0 + o) * total_k + k0 + w_k];
            }
            let e = w_k * TILE_N + o;
            tile_w[e / 4u][e % 4u] = w;
        }
        workgroupBarrier();
        // Every tap of this slice has been read: decode the next slice's.
        if lid < TILE_K {
            decode_tap(lid, k0 + TILE_K + lid, total_k);
        }
        for (var kk = 0u; kk < TILE_K; kk++) {
            var a: array<vec4<f32>, BLOCK_M / 4u>;
            var b: array<vec4<f32>, BLOCK_N / 4u>;
            for (var v = 0u; v < BLOCK_M / 4u; v++) {
                a[v] = tile_a[(kk * TILE_M + local.x * BLOCK_M) / 4u + v];
            }
            for (var v = 0u; v < BLOCK_N / 4u; v++) {
                b[v] = tile_w[(kk * TILE_N + local.y * BLOCK_N) / 4u + v];
            }
            for (var i = 0u; i < BLOCK_M; i++) {
                let ai = vec4<f32>(a[i / 4u][i % 4u]);
                for (var v = 0u; v < BLOCK_N / 4u; v++) {
                    acc[i][v] = fma(ai, b[v], acc[i][v]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < BLOCK_M; i++) {
        let m = m0 + local.x * BLOCK_M + i;
        for (var j = 0u; j < BLOCK_N; j++) {
            let o = o0 + local.y * BLOCK_N + j;
            if m < total_m && o < params.out_c {
                epilogue(m, group_row + o, acc[i][j / 4u][j % 4u]);
            }
        }
    }
    flush_range(lid);
}
