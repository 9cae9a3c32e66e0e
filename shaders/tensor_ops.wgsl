// Small data-movement ops of the network graph, NCHW, one thread per output element:
//   add:        out = a + b (a residual sum the convolution epilogue could not absorb)
//   shortcut_a: CIFAR ResNet option A, out[n, o, y, x] = a[n, o − offset, y·s, x·s], zero for
//               channels outside the input (akamaster's F.pad(x[:, :, ::2, ::2], …))
//   copy_channels: a[n, c, y, x] → out[n, channel_offset + c, y, x] (one concat input into its
//               channel slice; thread per input element)
//   avg_pool:   window average with zero padding counted (PyTorch's count_include_pad=True);
//               a window covering the whole plane is the global average pool.

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
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

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
        v = a[((n * params.in_c + c) * params.in_h + y * params.stride) * params.in_w + x * params.stride];
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
    var sum = 0.0;
    for (var ky = 0u; ky < params.kernel_h; ky++) {
        for (var kx = 0u; kx < params.kernel_w; kx++) {
            let iy = i32(oy * params.stride + ky) - i32(params.pad);
            let ix = i32(ox * params.stride + kx) - i32(params.pad);
            if iy >= 0 && ix >= 0 && iy < i32(params.in_h) && ix < i32(params.in_w) {
                sum += a[base + u32(iy) * params.in_w + u32(ix)];
            }
        }
    }
    // The divisor counts padding but not a ceil-mode window's part past the padding (PyTorch).
    let y0 = i32(oy * params.stride) - i32(params.pad);
    let x0 = i32(ox * params.stride) - i32(params.pad);
    let rows = min(y0 + i32(params.kernel_h), i32(params.in_h + params.pad)) - y0;
    let cols = min(x0 + i32(params.kernel_w), i32(params.in_w + params.pad)) - x0;
    output[i] = sum / f32(rows * cols);
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
