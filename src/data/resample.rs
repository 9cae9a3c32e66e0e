//! PIL's antialiased resize (`Image.resize(size, BILINEAR | BICUBIC)`), bit-exact on 8-bit images.
//!
//! What PIL does (Pillow `libImaging/Resample.c`, reimplemented from its description, not copied):
//! - separable: a horizontal pass into an 8-bit intermediate image, then a vertical pass;
//! - for each output sample, the source window is centred at `(x + 0.5) * scale` and the filter's
//!   support (1 for the bilinear triangle, 2 for the bicubic Keys kernel with a = -0.5) is
//!   stretched by `scale` when downscaling (that is the antialiasing);
//!   window bounds are `trunc(center ± support + 0.5)` clamped to the image;
//! - weights `filter((j - center + 0.5) / filterscale)` are normalised to sum 1 in f64, then rounded to
//!   fixed point with 22 fractional bits (half away from zero);
//! - each output is `sum(w * src) + 2^21`, shifted right by 22 and clipped to 0..255;
//! - the horizontal pass only covers the source rows the vertical pass will read.
//!
//! Each output sample depends only on its own position, so [`resize_bilinear_window`] computes
//! just the part a centre crop keeps: the same bytes as resizing everything and cropping, with
//! memory bounded by the window whatever the aspect ratio (a 65535x1 image resized to short side
//! 256 would otherwise be a 12.9 GB intermediate).

use std::ops::Range;

use serde::{Deserialize, Serialize};

/// Fixed-point fraction bits of the weights: 32 - 8 (pixel) - 2 (headroom), as in PIL.
const PRECISION_BITS: u32 = 22;

/// The resampling filter (torchvision's `interpolation` on PIL images).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    /// PIL `BILINEAR`: torchvision's default.
    #[default]
    Bilinear,
    /// PIL `BICUBIC` (Keys kernel, a = -0.5): e.g. timm's and some torchvision presets.
    Bicubic,
}

impl Interpolation {
    /// `--interpolation bilinear|bicubic`.
    pub fn parse(s: &str) -> Result<Interpolation, String> {
        match s {
            "bilinear" => Ok(Interpolation::Bilinear),
            "bicubic" => Ok(Interpolation::Bicubic),
            _ => Err(format!("interpolation '{s}': expected bilinear or bicubic")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Interpolation::Bilinear => "bilinear",
            Interpolation::Bicubic => "bicubic",
        }
    }

    /// Half-width of the filter at scale 1.
    fn support(self) -> f64 {
        match self {
            Interpolation::Bilinear => 1.0,
            Interpolation::Bicubic => 2.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        match self {
            Interpolation::Bilinear => triangle(x),
            Interpolation::Bicubic => keys_cubic(x),
        }
    }
}

/// The windows and fixed-point weights for resampling one axis from `in_size` to `out_size`, for
/// a range of output samples.
struct AxisWeights {
    /// Per output sample of the range: first source index and number of taps.
    bounds: Vec<(usize, usize)>,
    /// Taps per output sample (`ksize`); `weights[o * ksize + t]`.
    ksize: usize,
    weights: Vec<i32>,
}

fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

/// Keys' cubic convolution kernel with a = -0.5, in PIL's operation order (the last bit of a
/// weight can decide a rounding of the fixed-point tap).
fn keys_cubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

impl AxisWeights {
    /// Output samples `range` (within `0..out_size`).
    fn new(filter: Interpolation, in_size: usize, out_size: usize, range: Range<usize>) -> AxisWeights {
        let scale = in_size as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = filter.support() * filterscale; // widened when downscaling
        let ksize = support.ceil() as usize * 2 + 1;
        let mut bounds = Vec::with_capacity(range.len());
        let mut weights = vec![0i32; range.len() * ksize];
        let mut taps = vec![0f64; ksize];
        // PIL multiplies by the reciprocal (not divides): keep that, the last bit can differ.
        let inv_filterscale = 1.0 / filterscale;
        for (slot, o) in range.enumerate() {
            let center = (o as f64 + 0.5) * scale;
            // `as i64` truncates toward zero like C's (int) cast; then clamp to the image.
            let lo = ((center - support + 0.5) as i64).max(0) as usize;
            let hi = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let count = hi.saturating_sub(lo);
            let mut total = 0.0;
            for (t, tap) in taps.iter_mut().enumerate().take(count) {
                *tap = filter.weight(((t + lo) as f64 - center + 0.5) * inv_filterscale);
                total += *tap;
            }
            for (t, &tap) in taps.iter().enumerate().take(count) {
                let w = if total != 0.0 { tap / total } else { tap };
                weights[slot * ksize + t] = to_fixed(w);
            }
            bounds.push((lo, count));
        }
        AxisWeights { bounds, ksize, weights }
    }

    /// The source window of the range's `slot`-th sample.
    fn taps(&self, slot: usize) -> (usize, &[i32]) {
        let (lo, count) = self.bounds[slot];
        (lo, &self.weights[slot * self.ksize..slot * self.ksize + count])
    }

    fn len(&self) -> usize {
        self.bounds.len()
    }

    /// The source samples `first..end` the range reads (windows only move forward with `o`).
    fn source_span(&self) -> Range<usize> {
        let first = self.bounds.first().map_or(0, |b| b.0);
        let end = self.bounds.iter().map(|&(lo, count)| lo + count).max().unwrap_or(first);
        first..end
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

/// A rectangle of a resized image (what a centre crop keeps).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub left: usize,
    pub top: usize,
    pub width: usize,
    pub height: usize,
}

/// PIL's bilinear resize: [`resize`] with [`Interpolation::Bilinear`].
pub fn resize_bilinear(
    src: &[u8],
    width: usize,
    height: usize,
    channels: usize,
    out_w: usize,
    out_h: usize,
) -> Vec<u8> {
    resize(src, width, height, channels, out_w, out_h, Interpolation::Bilinear)
}

/// Resizes an interleaved image with `channels` samples per pixel to `out_w` x `out_h`.
///
/// An axis whose size does not change is not resampled (PIL skips that pass too, so a pure
/// horizontal or vertical resize is exactly one pass).
pub fn resize(
    src: &[u8],
    width: usize,
    height: usize,
    channels: usize,
    out_w: usize,
    out_h: usize,
    filter: Interpolation,
) -> Vec<u8> {
    let whole = Window {
        left: 0,
        top: 0,
        width: out_w,
        height: out_h,
    };
    resize_window(src, width, height, channels, (out_w, out_h), whole, filter)
}

/// [`resize_window`] with [`Interpolation::Bilinear`].
pub fn resize_bilinear_window(
    src: &[u8],
    width: usize,
    height: usize,
    channels: usize,
    out: (usize, usize),
    window: Window,
) -> Vec<u8> {
    resize_window(src, width, height, channels, out, window, Interpolation::Bilinear)
}

/// The `window` of the resize to `out` = (width, height), interleaved, `window.width` samples
/// per row: equal to [`resize`] followed by cropping, computing only the window.
pub fn resize_window(
    src: &[u8],
    width: usize,
    height: usize,
    channels: usize,
    out: (usize, usize),
    window: Window,
    filter: Interpolation,
) -> Vec<u8> {
    let (out_w, out_h) = out;
    assert_eq!(
        src.len(),
        width * height * channels,
        "resize_bilinear: buffer does not match its size"
    );
    assert!(
        out_w > 0 && out_h > 0 && width > 0 && height > 0 && window.width > 0 && window.height > 0,
        "resize_bilinear: empty image"
    );
    let columns = window.left..window.left + window.width;
    let out_rows = window.top..window.top + window.height;
    assert!(
        columns.end <= out_w && out_rows.end <= out_h,
        "resize_bilinear: window outside the output"
    );
    let vertical = (out_h != height).then(|| AxisWeights::new(filter, height, out_h, out_rows.clone()));
    // Only these source rows feed the vertical pass: resample just those horizontally.
    let source_rows = vertical.as_ref().map_or(out_rows, AxisWeights::source_span);
    let rows = &src[source_rows.start * width * channels..source_rows.end * width * channels];
    let horizontal = if out_w != width {
        horizontal_pass(rows, width, channels, &AxisWeights::new(filter, width, out_w, columns))
    } else {
        crop_columns(rows, width * channels, columns.start * channels..columns.end * channels)
    };
    match &vertical {
        Some(v) => vertical_pass(&horizontal, window.width * channels, source_rows.start, v),
        None => horizontal,
    }
}

/// Samples `keep` of every row of `stride` samples.
fn crop_columns(rows: &[u8], stride: usize, keep: Range<usize>) -> Vec<u8> {
    rows.chunks_exact(stride)
        .flat_map(|row| &row[keep.clone()])
        .copied()
        .collect()
}

fn horizontal_pass(rows: &[u8], width: usize, channels: usize, axis: &AxisWeights) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.len() / width * axis.len());
    for row in rows.chunks_exact(width * channels) {
        for o in 0..axis.len() {
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
    let mut out = Vec::with_capacity(axis.len() * stride);
    let mut acc = vec![0i32; stride];
    for o in 0..axis.len() {
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

    /// Pseudo-random samples (xorshift), so every window position sees different values.
    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut state = seed | 1;
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn a_window_equals_the_same_part_of_the_whole_resize() {
        // down, up, mixed and unchanged axes; windows at the corners and inside
        for (w, h, ow, oh) in [
            (37, 23, 10, 7),
            (13, 9, 40, 31),
            (50, 6, 20, 17),
            (12, 30, 12, 8),
            (9, 9, 9, 9),
        ] {
            let src = noise(w * h * 3, (w * 131 + h) as u64);
            let whole = resize_bilinear(&src, w, h, 3, ow, oh);
            for (left, top, ww, wh) in [
                (0, 0, ow, oh),
                (0, 0, 1, 1),
                (ow - 3, oh - 2, 3, 2),
                (ow / 3, oh / 4, ow / 2, oh / 2),
            ] {
                let window = Window {
                    left,
                    top,
                    width: ww.max(1),
                    height: wh.max(1),
                };
                let part = resize_bilinear_window(&src, w, h, 3, (ow, oh), window);
                let want: Vec<u8> = (top..top + window.height)
                    .flat_map(|y| whole[(y * ow + left) * 3..(y * ow + left + window.width) * 3].to_vec())
                    .collect();
                assert_eq!(part, want, "{w}x{h} -> {ow}x{oh}, {window:?}");
            }
        }
    }

    #[test]
    fn weights_are_normalised() {
        for (i, o) in [(500, 341), (375, 256), (106, 256), (7, 3)] {
            let axis = AxisWeights::new(Interpolation::Bilinear, i, o, 0..o);
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
