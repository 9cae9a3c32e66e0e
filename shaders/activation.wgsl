// ReLU and max-pooling over a whole NCHW buffer, exact or approximate (prepend sign_poly.wgsl
// and range_stats.wgsl):
//   relu:     exact max(x, 0), or y = x(1 + p(x/B))/2, or (approximate == 2) a power-basis
//             polynomial Σ c_k x^k standing in for ReLU (poly_coeffs = [n, c_0, …]; on x/B times
//             B when params.scaled == 1)
//   max_pool: any window (per-axis kernel, stride, dilation, top/left padding; the output size
//             comes from the host); exact (PyTorch: padding and ceil-mode overhang never win), or the paper's k×k tree
//             of max(a,b) ≈ ((a+b) + (a−b)p(a−b))/2 on inputs rescaled by x·s + 1/2, where
//             padding and ceil-mode overhang read zeros as in the official code.
// Both record their inputs' range statistics (|x| > B counted, never clipped silently).

struct Params {
    count: u32,      // relu: elements; max-pool: output elements
    scheme: u32,
    approximate: u32, // 0: exact, 1: composite sign polynomial, 2: power-basis ReLU polynomial
    row_stride: u32, // threads per row of the 2-D dispatch grid
    kernel_h: u32,   // max-pool window (approximate: kernel_h·kernel_w ≤ 9)
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    stride_h: u32,
    pad_h: u32,      // top padding
    bound: f32,
    pool_scale: f32, // s = (1 − c·2^-α)/(2B)
    clamp: u32,      // 1: the polynomial sees inputs clamped to [-B, B]
    scaled: u32,     // power-basis ReLU polynomial: 1 if it is in x/B (value times B)
    kernel_w: u32,
    stride_w: u32,
    pad_w: u32,      // left padding
    dilation_h: u32,
    dilation_w: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> poly_coeffs: array<f32>;
@group(0) @binding(2) var<storage, read> input: array<f32>;
@group(0) @binding(3) var<storage, read_write> output: array<f32>;
// [0]: inputs with |x| > B, [1]: bits of max |x| (non-negative floats order like u32).
@group(0) @binding(4) var<storage, read_write> range_stats: array<atomic<u32>, STATS_WORDS>;

@compute @workgroup_size(256)
fn relu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = gid.x + gid.y * params.row_stride;
    if i < params.count {
        let x = input[i];
        record_range(x, params.bound);
        if params.approximate == 1u {
            let xc = polynomial_input(x);
            output[i] = approx_relu(xc, params.bound, params.scheme);
        } else if params.approximate == 2u {
            output[i] = power_poly_relu(polynomial_input(x));
        } else {
            output[i] = max(x, 0.0);
        }
    }
    flush_range(lid);
}

fn polynomial_input(x: f32) -> f32 {
    if params.clamp == 1u {
        return clamp(x, -params.bound, params.bound);
    }
    return x;
}

// Σ c_k t^k by Horner (fma), t = x or x/B.
fn power_poly_relu(x: f32) -> f32 {
    let n = u32(poly_coeffs[0]);
    var t = x;
    if params.scaled == 1u {
        t = x / params.bound;
    }
    var acc = 0.0;
    for (var k = n; k > 0u; k--) {
        acc = fma(acc, t, poly_coeffs[k]);
    }
    if params.scaled == 1u {
        return acc * params.bound;
    }
    return acc;
}

fn approx_max(a: f32, b: f32) -> f32 {
    let d = a - b;
    return 0.5 * ((a + b) + d * sign_poly(d, params.scheme));
}

@compute @workgroup_size(256)
fn max_pool(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = gid.x + gid.y * params.row_stride;
    if i < params.count {
        if params.approximate == 1u {
            output[i] = approx_pool_window(i);
        } else {
            output[i] = exact_pool_window(i);
        }
    }
    flush_range(lid);
}

fn exact_pool_window(i: u32) -> f32 {
    let ox = i % params.out_w;
    let oy = (i / params.out_w) % params.out_h;
    let plane = i / (params.out_w * params.out_h);
    let base = plane * params.in_h * params.in_w;
    var best = bitcast<f32>(0xff800000u); // −∞
    for (var ky = 0u; ky < params.kernel_h; ky++) {
        for (var kx = 0u; kx < params.kernel_w; kx++) {
            let iy = i32(oy * params.stride_h + ky * params.dilation_h) - i32(params.pad_h);
            let ix = i32(ox * params.stride_w + kx * params.dilation_w) - i32(params.pad_w);
            if iy >= 0 && ix >= 0 && iy < i32(params.in_h) && ix < i32(params.in_w) {
                let v = input[base + u32(iy) * params.in_w + u32(ix)];
                record_range(v, params.bound);
                // NaN propagates as in PyTorch
                if v > best || v != v {
                    best = v;
                }
            }
        }
    }
    return best;
}

fn approx_pool_window(i: u32) -> f32 {
    let ox = i % params.out_w;
    let oy = (i / params.out_w) % params.out_h;
    let plane = i / (params.out_w * params.out_h);
    let base = plane * params.in_h * params.in_w;
    var vals: array<f32, 9>;
    var n = 0u;
    for (var ky = 0u; ky < params.kernel_h; ky++) {
        for (var kx = 0u; kx < params.kernel_w; kx++) {
            let iy = i32(oy * params.stride_h + ky * params.dilation_h) - i32(params.pad_h);
            let ix = i32(ox * params.stride_w + kx * params.dilation_w) - i32(params.pad_w);
            var v = 0.0;
            if iy >= 0 && ix >= 0 && iy < i32(params.in_h) && ix < i32(params.in_w) {
                v = input[base + u32(iy) * params.in_w + u32(ix)];
                record_range(v, params.bound);
            }
            vals[n] = fma(polynomial_input(v), params.pool_scale, 0.5);
            n++;
        }
    }
    // Pair neighbours level by level, carrying an odd one out: ((x0,x1),(x2,x3)) for 2x2 and
    // ((((x0,x1),(x2,x3)),((x4,x5),(x6,x7))),x8) for 3x3, the paper's trees.
    var len = n;
    while len > 1u {
        let half = len / 2u;
        for (var j = 0u; j < half; j++) {
            vals[j] = approx_max(vals[2u * j], vals[2u * j + 1u]);
        }
        if (len & 1u) == 1u {
            vals[half] = vals[len - 1u];
        }
        len = half + (len & 1u);
    }
    return (vals[0] - 0.5) / params.pool_scale;
}
