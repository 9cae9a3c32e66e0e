//! PIL's antialiased bilinear resize (`Image.resize(size, BILINEAR)`), bit-exact on 8-bit images.
//!
//! What PIL does (Pillow `libImaging/Resample.c`, reimplemented from its description, not copied):
//! - separable: a horizontal pass into an 8-bit intermediate image, then a vertical pass;
//! - for each output sample, the source window is centred at `(x + 0.5) * scale` and the triangle
//!   filter's support (1 for bilinear) is stretched by `scale` when downscaling (that is the antialiasing);
//!   window bounds are `trunc(center ± support + 0.5)` clamped to the image;
//! - weights `tri((j - center + 0.5) / filterscale)` are normalised to sum 1 in f64, then rounded to
//!   fixed point with 22 fractional bits (half away from zero);
//! - each output is `sum(w * src) + 2^21`, shifted right by 22 and clipped to 0..255;
//! - the horizontal pass only covers the source rows the vertical pass will read.

/// Fixed-point fraction bits of the weights: 32 - 8 (pixel) - 2 (headroom), as in PIL.
const PRECISION_BITS: u32 = 22;

/// The windows and fixed-point weights for resampling one axis from `in_size` to `out_size`.
struct AxisWeights {
    /// Per output sample: first source index and number of taps.
    bounds: Vec<(usize, usize)>,
    /// Taps per output sample (`ksize`); `weights[o * ksize + t]`.
    ksize: usize,
    weights: Vec<i32>,
}

fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

impl AxisWeights {
    fn bilinear(in_size: usize, out_size: usize) -> AxisWeights {
        let scale = in_size as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = filterscale; // bilinear support 1.0, widened when downscaling
        let ksize = support.ceil() as usize * 2 + 1;
        let mut bounds = Vec::with_capacity(out_size);
        let mut weights = vec![0i32; out_size * ksize];
        let mut taps = vec![0f64; ksize];
        // PIL multiplies by the reciprocal (not divides): keep that, the last bit can differ.
        let inv_filterscale = 1.0 / filterscale;
        for o in 0..out_size {
            let center = (o as f64 + 0.5) * scale;
            // `as i64` truncates toward zero like C's (int) cast; then clamp to the image.
            let lo = ((center - support + 0.5) as i64).max(0) as usize;
            let hi = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let count = hi.saturating_sub(lo);
            let mut total = 0.0;
            for (t, tap) in taps.iter_mut().enumerate().take(count) {
                *tap = triangle(((t + lo) as f64 - center + 0.5) * inv_filterscale);
                total += *tap;
            }
            for (t, &tap) in taps.iter().enumerate().take(count) {
                let w = if total != 0.0 { tap / total } else { tap };
                weights[o * ksize + t] = to_fixed(w);
            }
            bounds.push((lo, count));
        }
        AxisWeights { bounds, ksize, weights }
    }

    fn taps(&self, o: usize) -> (usize, &[i32]) {
        let (lo, count) = self.bounds[o];
        (lo, &self.weights[o * self.ksize..o * self.ksize + count])
    }
}

/// Rounds half away from zero, as PIL's `(int)(±0.5 + w * 2^22)`.
fn to_fixed(w: f64) -> i32 {
    let scaled = w * f64::from(1u32 << PRECISION_BITS);
    if scaled < 0.0 {
        (scaled - 0.5) as i32
    } else {
        (scaled + 0.5) as i32
    }
}

fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes an interleaved image with `channels` samples per pixel to `out_w` x `out_h`.
///
/// An axis whose size does not change is not resampled (PIL skips that pass too, so a pure
/// horizontal or vertical resize is exactly one pass).
pub fn resize_bilinear(
    src: &[u8],
    width: usize,
    height: usize,
    channels: usize,
    out_w: usize,
    out_h: usize,
) -> Vec<u8> {
    assert_eq!(
        src.len(),
        width * height * channels,
        "resize_bilinear: buffer does not match its size"
    );
    assert!(
        out_w > 0 && out_h > 0 && width > 0 && height > 0,
        "resize_bilinear: empty image"
    );
    let vertical = (out_h != height).then(|| AxisWeights::bilinear(height, out_h));
    // Only rows first..last of the source feed the vertical pass: resample just those horizontally.
    let (first, last) = match &vertical {
        Some(v) => (v.bounds[0].0, v.bounds[out_h - 1].0 + v.bounds[out_h - 1].1),
        None => (0, height),
    };
    let rows = &src[first * width * channels..last * width * channels];
    let horizontal = if out_w != width {
        horizontal_pass(rows, width, channels, out_w, &AxisWeights::bilinear(width, out_w))
    } else {
        rows.to_vec()
    };
    match &vertical {
        Some(v) => vertical_pass(&horizontal, out_w * channels, first, v),
        None => horizontal,
    }
}

fn horizontal_pass(rows: &[u8], width: usize, channels: usize, out_w: usize, axis: &AxisWeights) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.len() / width * out_w);
    for row in rows.chunks_exact(width * channels) {
        for o in 0..out_w {
            let (lo, weights) = axis.taps(o);
            for c in 0..channels {
                let mut acc = 1i32 << (PRECISION_BITS - 1);
                for (t, &w) in weights.iter().enumerate() {
                    acc += i32::from(row[(lo + t) * channels + c]) * w;
                }
                out.push(clip8(acc));
            }
        }
    }
    out
}

/// `rows` starts at source row `first`; `stride` is samples per row.
fn vertical_pass(rows: &[u8], stride: usize, first: usize, axis: &AxisWeights) -> Vec<u8> {
    let mut out = Vec::with_capacity(axis.bounds.len() * stride);
    let mut acc = vec![0i32; stride];
    for o in 0..axis.bounds.len() {
        let (lo, weights) = axis.taps(o);
        acc.fill(1 << (PRECISION_BITS - 1));
        // Row-at-a-time accumulation: same sums as PIL's per-pixel loop (integer addition is exact
        // and cannot overflow: weights sum to ~2^22 and pixels are < 2^8), but cache-friendly.
        for (t, &w) in weights.iter().enumerate() {
            let row = &rows[(lo + t - first) * stride..][..stride];
            for (a, &p) in acc.iter_mut().zip(row) {
                *a += i32::from(p) * w;
            }
        }
        out.extend(acc.iter().map(|&a| clip8(a)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_size_is_a_copy() {
        let src: Vec<u8> = (0..48).map(|i| (i * 5) as u8).collect();
        assert_eq!(resize_bilinear(&src, 4, 4, 3, 4, 4), src);
    }

    #[test]
    fn constant_image_stays_constant() {
        let src = vec![200u8; 37 * 23 * 3];
        for (w, h) in [(10, 7), (80, 50), (37, 5), (3, 23)] {
            assert!(
                resize_bilinear(&src, 37, 23, 3, w, h).iter().all(|&v| v == 200),
                "{w}x{h}"
            );
        }
    }

    #[test]
    fn weights_are_normalised() {
        for (i, o) in [(500, 341), (375, 256), (106, 256), (7, 3)] {
            let axis = AxisWeights::bilinear(i, o);
            for k in 0..o {
                let sum: i64 = axis.taps(k).1.iter().map(|&w| i64::from(w)).sum();
                assert!(
                    (sum - (1 << PRECISION_BITS)).abs() <= axis.ksize as i64,
                    "{i}->{o} #{k}: {sum}"
                );
            }
        }
    }
}
