//! The non-convolution, non-activation ops, one image at a time (inputs `(c, h, w)` planes).

use crate::model::{Pool2d, Shape};

/// Average pooling with PyTorch's `count_include_pad = true`: the divisor counts padding but not
/// the part of a ceil-mode window hanging past the padded input.
pub fn avg_pool(image: &[f32], input: Shape, output: Shape, pool: &Pool2d, out: &mut [f32]) {
    let window = |o: usize, len: usize| {
        let start = (o * pool.stride) as isize - pool.padding as isize;
        let end = (start + pool.kernel as isize).min((len + pool.padding) as isize);
        let divisor = (end - start) as usize;
        (start.max(0) as usize, end.min(len as isize) as usize, divisor)
    };
    for c in 0..input.c {
        let plane = &image[c * input.plane()..(c + 1) * input.plane()];
        for oy in 0..output.h {
            let (y0, y1, dy) = window(oy, input.h);
            for ox in 0..output.w {
                let (x0, x1, dx) = window(ox, input.w);
                let sum: f64 = (y0..y1)
                    .flat_map(|y| &plane[y * input.w + x0..y * input.w + x1])
                    .map(|&v| v as f64)
                    .sum();
                out[c * output.plane() + oy * output.w + ox] = (sum / (dy * dx) as f64) as f32;
            }
        }
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
