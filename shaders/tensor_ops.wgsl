// Small elementwise and data-movement ops of the network graph, NCHW, one thread per output element:
//   add, sub:   out = a ± b (a residual sum the convolution epilogue could not absorb; the second
//               half of ReLU6)
//   affine:     out[n, c, y, x] = a[…] · b[c] + b[out_c + c] (per-channel scale then shift, one fma)
//   pointwise:  out = f(a), an exact-only function chosen by params.function (FN_*)
//   shortcut_a: CIFAR ResNet option A, out[n, o, y, x] = a[n, o − offset, y·s, x·s], zero for
//               channels outside the input (akamaster's F.pad(x[:, :, ::2, ::2], …))
//   copy_channels: a[n, c, y, x] → out[n, channel_offset + c, y, x] (one concat input into its
//               channel slice; thread per input element)
//   avg_pool:   window average over a per-axis kernel/stride/dilation/padding window; the divisor
//               counts the taps inside the padded input (count_include_pad = 1, PyTorch's rule for
//               a ceil-mode overhang) or inside the input; a window covering the whole plane is the
//               global average pool.

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
    function: u32, // FN_*
    alpha: f32,    // HardSigmoid α, Clip min
    beta: f32,     // HardSigmoid β, Clip max
    _pad0: u32,
}

const FN_SIGMOID: u32 = 0u;
const FN_SILU: u32 = 1u;
const FN_GELU: u32 = 2u;
const FN_TANH: u32 = 3u;
const FN_HARD_SWISH: u32 = 4u;
const FN_HARD_SIGMOID: u32 = 5u;
const FN_CLIP: u32 = 6u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> output: array<f32>;

// Every entry point must use every binding: the bind group layout is derived per entry point
// from what it uses, and the host binds all four.
fn element_index(gid: vec3<u32>) -> u32 {
    _ = &a;
    _ = &b;
    return gid.x + gid.y * params.row_stride;
}

@compute @workgroup_size(256)
fn add(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = element_index(gid);
    if i < params.count {
        output[i] = a[i] + b[i];
    }
}

@compute @workgroup_size(256)
fn sub(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = element_index(gid);
    if i < params.count {
        output[i] = a[i] - b[i];
    }
}

@compute @workgroup_size(256)
fn affine(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = element_index(gid);
    if i < params.count {
        let c = (i / (params.in_h * params.in_w)) % params.in_c;
        output[i] = fma(a[i], b[c], b[params.in_c + c]);
    }
}

@compute @workgroup_size(256)
fn pointwise(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = element_index(gid);
    if i < params.count {
        output[i] = pointwise_function(a[i]);
    }
}

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

// erfc(x) with relative error < 1.2e-7 everywhere (Numerical Recipes' Chebyshev fit): GELU
// through erfc keeps its relative accuracy for large negative x, where 1 + erf(x) cancels.
fn erfc(x: f32) -> f32 {
    let z = abs(x);
    let t = 1.0 / (1.0 + 0.5 * z);
    var p = 0.17087277;
    p = fma(p, t, -0.82215223);
    p = fma(p, t, 1.48851587);
    p = fma(p, t, -1.13520398);
    p = fma(p, t, 0.27886807);
    p = fma(p, t, -0.18628806);
    p = fma(p, t, 0.09678418);
    p = fma(p, t, 0.37409196);
    p = fma(p, t, 1.00002368);
    p = fma(p, t, -1.26551223);
    let r = t * exp(p - z * z);
    if x >= 0.0 {
        return r;
    }
    return 2.0 - r;
}

fn pointwise_function(x: f32) -> f32 {
    if x != x {
        return x; // NaN propagates, as on the CPU
    }
    switch params.function {
        case FN_SIGMOID: {
            return sigmoid(x);
        }
        case FN_SILU: {
            return x * sigmoid(x);
        }
        case FN_GELU: {
            return 0.5 * x * erfc(-x * 0.70710678118654752);
        }
        case FN_TANH: {
            // tanh(±10) is ±1 in f32; bounding x avoids ∞/∞ in implementations built on exp.
            return tanh(clamp(x, -10.0, 10.0));
        }
        case FN_HARD_SWISH: {
            return x * clamp(x + 3.0, 0.0, 6.0) / 6.0;
        }
        case FN_HARD_SIGMOID: {
            return clamp(fma(params.alpha, x, params.beta), 0.0, 1.0);
        }
        default: {
            return min(max(x, params.alpha), params.beta);
        }
    }
}

@compute @workgroup_size(256)
fn shortcut_a(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = element_index(gid);
    if i >= params.count {
        return;
    }
    let x = i % params.out_w;
    let y = (i / params.out_w) % params.out_h;
    let o = (i / (params.out_w * params.out_h)) % params.out_c;
    let n = i / (params.out_w * params.out_h * params.out_c);
    var v = 0.0;
    if o >= params.channel_offset && o - params.channel_offset < params.in_c {
        let c = o - params.channel_offset;
        v = a[((n * params.in_c + c) * params.in_h + y * params.stride_h) * params.in_w + x * params.stride_w];
    }
    output[i] = v;
}

@compute @workgroup_size(256)
fn avg_pool(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = element_index(gid);
    if i >= params.count {
        return;
    }
    let ox = i % params.out_w;
    let oy = (i / params.out_w) % params.out_h;
    let plane = i / (params.out_w * params.out_h);
    let base = plane * params.in_h * params.in_w;
    let y0 = i32(oy * params.stride_h) - i32(params.pad_top);
    let x0 = i32(ox * params.stride_w) - i32(params.pad_left);
    // The padded input: a ceil-mode window's part past it is not counted (PyTorch).
    let y_end = i32(params.in_h + params.pad_bottom);
    let x_end = i32(params.in_w + params.pad_right);
    var sum = 0.0;
    var inside = 0u;
    var padded = 0u;
    for (var ky = 0u; ky < params.kernel_h; ky++) {
        let iy = y0 + i32(ky * params.dilation_h);
        for (var kx = 0u; kx < params.kernel_w; kx++) {
            let ix = x0 + i32(kx * params.dilation_w);
            if iy < y_end && ix < x_end {
                padded++;
            }
            if iy >= 0 && ix >= 0 && iy < i32(params.in_h) && ix < i32(params.in_w) {
                sum += a[base + u32(iy) * params.in_w + u32(ix)];
                inside++;
            }
        }
    }
    if params.count_include_pad == 1u {
        output[i] = sum / f32(padded);
    } else {
        output[i] = sum / f32(inside);
    }
}

@compute @workgroup_size(256)
fn copy_channels(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = element_index(gid);
    if i >= params.count {
        return;
    }
    let per_image = params.in_c * params.in_h * params.in_w;
    let n = i / per_image;
    let offset = (n * params.out_c + params.channel_offset) * params.in_h * params.in_w;
    output[offset + i % per_image] = a[i];
}
