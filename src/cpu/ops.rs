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
        // x·clamp(x + 3, 0, 6)/6 (PyTorch's order): x + 3 is exact near −3, where x/6 + 1/2 cancels.
        Pointwise::HardSwish => x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// |got − want| in units in the last place of `want` rounded to f32.
    fn ulps(got: f32, want: f64) -> f64 {
        let w = want as f32;
        let ulp = (f32::from_bits(w.abs().to_bits() + 1) - w.abs()).max(f32::MIN_POSITIVE) as f64;
        (got as f64 - want).abs() / ulp
    }

    /// How much rounding x's own f32 operations may be amplified: GELU's negative tail
    /// x·erfc(−x/√2)/2 has condition number ≈ 1 + x² (d ln erfc(z)/dz ≈ −2z), so rounding x/√2
    /// alone costs x² ulps there (x = −10: values ~1e-22, still nothing next to 1).
    fn condition(func: &Pointwise, x: f32) -> f64 {
        match func {
            Pointwise::Gelu if x < 0.0 => 1.0 + (x as f64).powi(2),
            _ => 1.0,
        }
    }

    #[test]
    fn pointwise_functions_are_within_a_few_ulps_of_the_f64_reference() {
        let funcs = [
            (Pointwise::Sigmoid, 3.0),
            (Pointwise::Silu, 3.0),
            (Pointwise::Gelu, 4.0),
            (Pointwise::Tanh, 2.0),
            (Pointwise::HardSwish, 2.0),
            (Pointwise::HardSigmoid { alpha: 0.2, beta: 0.5 }, 1.0),
            (Pointwise::Clip { min: -1.5, max: 6.0 }, 0.0),
        ];
        // Dense over [-30, 30] (both tails of every function, GELU's tiny negative values),
        // plus zero, subnormal-producing and huge inputs.
        let xs: Vec<f32> = (-30_000..=30_000)
            .map(|i| i as f32 / 1000.0)
            .chain([0.0, -0.0, 1e-30, -1e-30, 88.0, -88.0, 1e30, -1e30])
            .collect();
        for (func, max_ulps) in funcs {
            let worst = xs
                .iter()
                .map(|&x| {
                    (
                        ulps(pointwise(&func, x), func.eval_f64(x as f64)) / condition(&func, x),
                        x,
                    )
                })
                .fold((0.0, 0.0), |a, b| if b.0 > a.0 { b } else { a });
            assert!(
                worst.0 <= max_ulps,
                "{func:?}: {} ulps (per unit of condition) at x = {}",
                worst.0,
                worst.1
            );
        }
        assert!(pointwise(&Pointwise::Clip { min: 0.0, max: 6.0 }, f32::NAN).is_nan());
    }

    #[test]
    fn average_pooling_divisors_with_and_without_padding() {
        // 1x3 input [1, 2, 3], window 2, stride 2, pads [0, 1] and ceil mode: windows {pad, 1},
        // {2, 3}; the divisor of the first is 2 with padding counted, 1 without.
        let pool = Window2d {
            kernel: [1, 2],
            stride: [1, 2],
            dilation: [1, 1],
            pads: [0, 1, 0, 0],
            ceil_mode: true,
        };
        let (input, output) = (Shape::new(1, 1, 3), Shape::new(1, 1, 2));
        assert_eq!(pool.out_hw(1, 3), Some((1, 2)));
        let mut out = [0.0; 2];
        avg_pool(&[1.0, 2.0, 3.0], input, output, &pool, true, &mut out);
        assert_eq!(out, [0.5, 2.5]);
        avg_pool(&[1.0, 2.0, 3.0], input, output, &pool, false, &mut out);
        assert_eq!(out, [1.0, 2.5]);
    }
}
