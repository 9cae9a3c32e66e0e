// Baseline for benchmarks and tests only (whole tensors: out_c_offset = 0): one thread per output element, no tiling, no reuse. The tiled
// implicit GEMM (conv2d.wgsl) is measured against it. Same bindings as conv2d.wgsl (the bias
// epilogue only).

struct Params {
    batch: u32,
    in_c: u32,
    in_h: u32,
    in_w: u32,
    out_c: u32, // per group
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
    out_c_offset: u32, // this dispatch computes output channels [offset, offset + out_c) …
    out_c_total: u32,  // … of a tensor with out_c_total channels (weights bound from row offset)
    clamp: u32,
    stride_w: u32,
    dilation_h: u32,
    dilation_w: u32,
    group_in_c: u32,
    first_group: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> output: array<f32>;

@compute @workgroup_size(256)
fn conv2d_naive(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * 256u;
    let plane = params.out_h * params.out_w;
    if i >= params.batch * params.out_c_total * plane {
        return;
    }
    let ox = i % params.out_w;
    let oy = (i / params.out_w) % params.out_h;
    let o = (i / plane) % params.out_c_total;
    let n = i / (plane * params.out_c_total);
    let first_channel = o / params.out_c * params.group_in_c;
    var acc = bias[o];
    for (var c = 0u; c < params.group_in_c; c++) {
        for (var ky = 0u; ky < params.kernel_h; ky++) {
            for (var kx = 0u; kx < params.kernel_w; kx++) {
                let iy = i32(oy * params.stride_h + ky * params.dilation_h) - i32(params.pad_h);
                let ix = i32(ox * params.stride_w + kx * params.dilation_w) - i32(params.pad_w);
                if iy >= 0 && ix >= 0 && iy < i32(params.in_h) && ix < i32(params.in_w) {
                    let x = input[((n * params.in_c + first_channel + c) * params.in_h + u32(iy)) * params.in_w + u32(ix)];
                    let w = weight[((o * params.group_in_c + c) * params.kernel_h + ky) * params.kernel_w + kx];
                    acc = fma(x, w, acc);
                }
            }
        }
    }
    output[i] = acc;
}
