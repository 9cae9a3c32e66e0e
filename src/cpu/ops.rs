//! The non-convolution, non-activation ops, one image at a time (inputs `(c, h, w)` planes).

use crate::model::{Affine, Pointwise, Shape, Window2d};

/// Average pooling (sum accumulated in f64). The divisor is the window's taps inside the padded
/// input with `count_include_pad` (PyTorch: padding counts, a ceil-mode overhang past it does
/// not), else the taps inside the input.
pub fn avg_pool(image: &[f32], input: Shape, output: Shape, pool: &Window2d, count_include_pad: bool, out: &mut [f32]) {
    let [kh, kw] = pool.kernel;
    let divisor = |oy: usize, ox: usize| {
        let ((py, iy), (px, ix)) = (pool.taps_inside(0, oy, input.h), pool.taps_inside(1, ox, input.w));
        if count_include_pad { py * px } else { iy * ix }
    };
    for c in 0..input.c {
        let plane = &image[c * input.plane()..(c + 1) * input.plane()];
        for oy in 0..output.h {
            for ox in 0..output.w {
                let mut sum = 0.0f64;
                for ky in 0..kh {
                    let y = pool.input_coord(0, oy, ky);
                    if y < 0 || y >= input.h as isize {
                        continue;
                    }
                    for kx in 0..kw {
                        let x = pool.input_coord(1, ox, kx);
                        if x >= 0 && x < input.w as isize {
                            sum += plane[y as usize * input.w + x as usize] as f64;
                        }
                    }
                }
                // The graph's padding rule keeps at least one tap of every window inside the input.
                out[c * output.plane() + oy * output.w + ox] = (sum / divisor(oy, ox) as f64) as f32;
            }
        }
    }
}

/// `y = x · scale[c] + shift[c]` over `n` images in place (one fused multiply-add per value,
/// as the GPU kernel does).
pub fn affine_in_place(values: &mut [f32], shape: Shape, affine: &Affine) {
    for (i, plane) in values.chunks_exact_mut(shape.plane()).enumerate() {
        let (scale, shift) = affine.of_channel(i % shape.c);
        plane.iter_mut().for_each(|v| *v = v.mul_add(scale, shift));
    }
}

/// The exact-only function in f32 (the f64 reference is [`Pointwise::eval_f64`]). NaN
/// propagates (a clip of NaN is NaN, unlike `f32::max`).
pub fn pointwise(func: &Pointwise, x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    let sigmoid = |x: f32| 1.0 / (1.0 + (-x).exp());
    match *func {
        Pointwise::Sigmoid => sigmoid(x),
        Pointwise::Silu => x * sigmoid(x),
        // erfc keeps the relative accuracy for large negative x, where 1 + erf cancels.
        Pointwise::Gelu => 0.5 * x * libm::erfcf(-x * std::f32::consts::FRAC_1_SQRT_2),
        Pointwise::Tanh => x.tanh(),
        Pointwise::HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
        Pointwise::HardSigmoid { alpha, beta } => alpha.mul_add(x, beta).clamp(0.0, 1.0),
        Pointwise::Clip { min, max } => x.max(min).min(max),
    }
}

/// Mean of each channel plane (accumulated in f64).
pub fn global_avg_pool(image: &[f32], input: Shape, out: &mut [f32]) {
    for (o, plane) in out.iter_mut().zip(image.chunks_exact(input.plane())) {
        *o = (plane.iter().map(|&v| v as f64).sum::<f64>() / input.plane() as f64) as f32;
    }
}

/// Option-A shortcut: `x[:, ::s, ::s]` placed between `(out.c − in.c)/2` zero planes each side.
pub fn shortcut_a(image: &[f32], input: Shape, output: Shape, stride: usize, out: &mut [f32]) {
    let pad = (output.c - input.c) / 2;
    out.fill(0.0);
    for c in 0..input.c {
        let src = &image[c * input.plane()..(c + 1) * input.plane()];
        let dst = &mut out[(c + pad) * output.plane()..(c + pad + 1) * output.plane()];
        for oy in 0..output.h {
            for ox in 0..output.w {
                dst[oy * output.w + ox] = src[oy * stride * input.w + ox * stride];
            }
        }
    }
}

/// Channel concatenation of `n` images: each part is `(values, per-image length)`; image i of
/// the result is image i of every part, one after the other (NCHW, so channels follow on).
pub fn concat_channels(parts: &[(&[f32], usize)], n: usize) -> Vec<f32> {
    let per_image: usize = parts.iter().map(|p| p.1).sum();
    let mut out = Vec::with_capacity(n * per_image);
    for i in 0..n {
        for &(values, len) in parts {
            out.extend_from_slice(&values[i * len..(i + 1) * len]);
        }
    }
    out
}
