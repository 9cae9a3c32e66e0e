// CKKS noise injection: values[i] += integer_gaussian(prefix of i's image, i's element) * scale.
// The twin of src/he/noise_rng.rs, operation for operation: u32 wrapping arithmetic, then one
// exact f32 product (the scale has 4 significant bits, the integer at most 20), so the result is
// bit-identical to the CPU's whether or not the add is fused.

struct NoiseParams {
    count: u32,
    per_image: u32,
    row_stride: u32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> params: NoiseParams;
// per image of the batch: the hash of (seed, point, dataset index), computed on the host
@group(0) @binding(1) var<storage, read> prefixes: array<u32>;
@group(0) @binding(2) var<storage, read_write> values: array<f32>;

// Wellons' lowbias32
fn mix32(x0: u32) -> u32 {
    var x = x0;
    x ^= x >> 16u;
    x *= 0x7feb352du;
    x ^= x >> 15u;
    x *= 0x846ca68bu;
    x ^= x >> 16u;
    return x;
}

// Irwin-Hall: eight 16-bit uniforms from four hashes, centred as an odd integer, |z| < 2^20
fn integer_gaussian(prefix: u32, element: u32) -> i32 {
    let base = mix32(prefix ^ element);
    var sum = 0i;
    for (var d = 0u; d < 4u; d++) {
        let h = mix32(base + d * 0x9e3779b9u);
        sum += i32(h & 0xffffu) + i32(h >> 16u);
    }
    return 2i * sum - 8i * 65535i;
}

@compute @workgroup_size(256)
fn add_noise(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * params.row_stride;
    if (i >= params.count) {
        return;
    }
    let image = i / params.per_image;
    let element = i - image * params.per_image;
    values[i] = values[i] + f32(integer_gaussian(prefixes[image], element)) * params.scale;
}
