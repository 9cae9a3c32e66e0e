//! Convolution as a GEMM: `out[O, OH·OW] = W[O, I·kh·kw] × cols[I·kh·kw, OH·OW]`, cols the
//! unfolding of the input, never stored whole: each 16-column panel of it is unfolded straight
//! into the GEMM's packed layout ([`unfold_panel`] through [`matmul_filled`]).
//!
//! Large outputs go one image per GEMM: a 1x1 stride-1 unpadded conv then needs no unfolding
//! (its input already is cols), and the product lands in `out`, then gets the bias (plus a
//! fused residual). Small outputs (late layers, CIFAR) would make each GEMM re-read all weights
//! for a few columns, so several images share one GEMM (`cols[I·k·k, images·OH·OW]`) and the
//! result is scattered back to NCHW with the bias and residual, `p + bias (+ r)` either way.

use super::gemm::{MatRef, NR, Threads, matmul, matmul_filled, take_buffer};
use crate::model::{Conv2d, Shape, Window2d};
use std::cell::Cell;
use std::ops::Range;

/// The shapes of one convolution: its tensors' shapes around the graph's window geometry.
#[derive(Clone, Copy, Debug)]
pub struct ConvGeometry {
    pub input: Shape,
    pub output: Shape,
    pub window: Window2d,
    pub groups: usize,
}

impl ConvGeometry {
    pub fn of(conv: &Conv2d, input: Shape, output: Shape) -> ConvGeometry {
        ConvGeometry {
            input,
            output,
            window: conv.window,
            groups: conv.groups,
        }
    }

    /// One input channel per group (depthwise, possibly with a channel multiplier): each GEMM
    /// would be a single row of kh·kw, so these run as direct loops ([`depthwise`]).
    fn is_depthwise(&self) -> bool {
        self.groups > 1 && self.groups == self.input.c
    }

    fn is_pointwise(&self) -> bool {
        let w = &self.window;
        w.kernel == [1, 1] && w.stride == [1, 1] && w.pads == [0; 4]
    }

    /// Rows of the unfolded matrix: I·kh·kw (all groups).
    fn depth(&self) -> usize {
        self.input.c * self.window.taps()
    }

    /// Rows of the unfolded matrix one group's weights multiply: (I/groups)·kh·kw.
    fn group_depth(&self) -> usize {
        self.depth() / self.groups
    }

    /// Output channels per group.
    fn group_out(&self) -> usize {
        self.output.c / self.groups
    }

    /// How many of `n` images to put in one GEMM so that it has enough columns to reuse each
    /// weight it loads.
    pub fn images_per_gemm(&self, n: usize) -> usize {
        const MIN_GEMM_COLUMNS: usize = 1024;
        (MIN_GEMM_COLUMNS / self.output.plane()).clamp(1, n.max(1))
    }
}

/// `product = W × unfold(images)` (`columns` = images · output plane), one GEMM per group:
/// group g's weight rows, its input channels' unfolded rows and its output rows. The unfolded
/// matrix is never stored: each panel of it is unfolded straight into the GEMM's packed
/// layout, and a 1x1 stride-1 conv of one image uses the image itself.
fn grouped_matmul(
    conv: &Conv2d,
    g: &ConvGeometry,
    images: &[f32],
    columns: usize,
    product: &mut [f32],
    threads: Threads,
) {
    let (depth, rows, channels) = (g.group_depth(), g.group_out(), g.input.c / g.groups);
    let weights = conv.weight.data.chunks_exact(rows * depth);
    for (group, (w, out)) in weights.zip(product.chunks_exact_mut(rows * columns)).enumerate() {
        let w = MatRef::row_major(w, rows, depth);
        let first = group * channels;
        if g.is_pointwise() && columns == g.input.plane() {
            let x = &images[first * columns..(first + channels) * columns];
            matmul(w, MatRef::row_major(x, depth, columns), out, false, threads);
        } else {
            let fill = |column: usize, width: usize, panel: &mut [f32]| {
                unfold_panel(images, g, first..first + channels, column, width, panel)
            };
            matmul_filled(w, (depth, columns), fill, out, threads);
        }
    }
}

/// `out = conv(images) + bias (+ residual)` for a group of images (NCHW).
pub fn conv_group(
    conv: &Conv2d,
    g: &ConvGeometry,
    images: &[f32],
    residual: Option<&[f32]>,
    out: &mut [f32],
    threads: Threads,
) {
    if g.is_depthwise() {
        return depthwise(conv, g, images, residual, out, threads);
    }
    let count = images.len() / g.input.numel();
    if count == 1 {
        return conv_image(conv, g, images, residual, out, threads);
    }
    let plane = g.output.plane();
    let columns = count * plane;
    let mut product = take_buffer(&PRODUCT, g.output.c * columns);
    grouped_matmul(conv, g, images, columns, &mut product, threads);
    for (i, y) in out.chunks_exact_mut(g.output.numel()).enumerate() {
        for (o, row) in y.chunks_exact_mut(plane).enumerate() {
            let src = &product[o * columns + i * plane..o * columns + (i + 1) * plane];
            let r = residual.map(|r| &r[i * g.output.numel() + o * plane..][..plane]);
            add_bias_and_residual(row, src, conv.bias[o], r);
        }
    }
    PRODUCT.set(product);
}

thread_local! {
    /// A group's product, reused from call to call (see [`take_buffer`]).
    static PRODUCT: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// `y = p + bias (+ r)`, in this order whatever the grouping of images, so a result does not
/// depend on the batch size or thread count that decided the grouping.
fn add_bias_and_residual(y: &mut [f32], product: &[f32], bias: f32, residual: Option<&[f32]>) {
    match residual {
        Some(r) => y
            .iter_mut()
            .zip(product)
            .zip(r)
            .for_each(|((y, &p), &r)| *y = p + bias + r),
        None => y.iter_mut().zip(product).for_each(|(y, &p)| *y = p + bias),
    }
}

/// One image: `out = conv(image) + bias (+ residual)`.
fn conv_image(
    conv: &Conv2d,
    g: &ConvGeometry,
    image: &[f32],
    residual: Option<&[f32]>,
    out: &mut [f32],
    threads: Threads,
) {
    let plane = g.output.plane();
    grouped_matmul(conv, g, image, plane, out, threads);
    // The same epilogue as a group of images (the product is already in place).
    for (o, row) in out.chunks_exact_mut(plane).enumerate() {
        let r = residual.map(|r| &r[o * plane..(o + 1) * plane]);
        match r {
            Some(r) => row.iter_mut().zip(r).for_each(|(y, &r)| *y = *y + conv.bias[o] + r),
            None => row.iter_mut().for_each(|y| *y += conv.bias[o]),
        }
    }
}

/// Depthwise convolution by direct loops, output plane by output plane (in parallel when the
/// caller is not): bias (+ residual) first, then each tap's weight times the shifted input
/// rows, so the inner loop is a contiguous multiply-add at stride 1.
fn depthwise(
    conv: &Conv2d,
    g: &ConvGeometry,
    images: &[f32],
    residual: Option<&[f32]>,
    out: &mut [f32],
    threads: Threads,
) {
    let (plane_in, plane_out) = (g.input.plane(), g.output.plane());
    let (channels, multiplier) = (g.output.c, g.group_out());
    let plane = |(i, y): (usize, &mut [f32])| {
        let (image, o) = (i / channels, i % channels);
        let c = image * g.input.c + o / multiplier;
        let x = &images[c * plane_in..(c + 1) * plane_in];
        match residual {
            Some(r) => y
                .iter_mut()
                .zip(&r[i * plane_out..(i + 1) * plane_out])
                .for_each(|(y, &r)| *y = r + conv.bias[o]),
            None => y.fill(conv.bias[o]),
        }
        let taps = &conv.weight.data[o * g.window.taps()..(o + 1) * g.window.taps()];
        depthwise_plane(x, g, taps, y);
    };
    match threads {
        Threads::One => out.chunks_exact_mut(plane_out).enumerate().for_each(plane),
        Threads::All => {
            use rayon::prelude::*;
            out.par_chunks_exact_mut(plane_out).enumerate().for_each(plane)
        }
    }
}

/// `y += Σ_taps w · x` for one channel: `x` the input plane, `taps` its kh·kw weights.
fn depthwise_plane(x: &[f32], g: &ConvGeometry, taps: &[f32], y: &mut [f32]) {
    let win = &g.window;
    let (ih, iw, ow) = (g.input.h as isize, g.input.w as isize, g.output.w);
    let sw = win.stride[1];
    for (t, &w) in taps.iter().enumerate() {
        let (ky, kx) = (t / win.kernel[1], t % win.kernel[1]);
        // Outputs whose tap kx lands inside the row: ix = ox·sw + offset ∈ [0, iw).
        let offset = win.input_coord(1, 0, kx);
        let first = ((-offset).max(0) as usize).div_ceil(sw).min(ow);
        let last = if iw - 1 - offset < 0 {
            0
        } else {
            (((iw - 1 - offset) as usize) / sw + 1).min(ow)
        };
        if first >= last {
            continue;
        }
        for (oy, row) in y.chunks_exact_mut(ow).enumerate() {
            let iy = win.input_coord(0, oy, ky);
            if iy < 0 || iy >= ih {
                continue;
            }
            let src = &x[iy as usize * iw as usize..][..iw as usize];
            let start = (first as isize * sw as isize + offset) as usize;
            if sw == 1 {
                let src = &src[start..start + (last - first)];
                row[first..last].iter_mut().zip(src).for_each(|(y, &v)| *y += w * v);
            } else {
                for (j, y) in row[first..last].iter_mut().enumerate() {
                    *y += w * src[start + j * sw];
                }
            }
        }
    }
}

/// Columns `first … first + width − 1` of the unfolded `images` into `panel` ([`NR`] values
/// a row), rows (c, ky, kx) for the input channels `channels`: column q is output pixel
/// q mod plane of image q / plane, and holds the input its window's tap multiplies (zero where
/// the window overlaps the padding).
fn unfold_panel(
    images: &[f32],
    g: &ConvGeometry,
    channels: Range<usize>,
    first: usize,
    width: usize,
    panel: &mut [f32],
) {
    let win = &g.window;
    let [kh, kw] = win.kernel;
    let (ih, iw, ow, plane) = (g.input.h as isize, g.input.w, g.output.w, g.output.plane());
    let mut rows = panel.chunks_exact_mut(NR);
    for c in channels {
        for ky in 0..kh {
            for kx in 0..kw {
                let row = &mut rows.next().expect("the panel has a row per (c, ky, kx)")[..width];
                // Column of output 0's tap kx; each output moves it by the stride.
                let first_column = win.input_coord(1, 0, kx);
                // One run of columns per output row (runs never cross an image either).
                let mut done = 0;
                while done < width {
                    let q = first + done;
                    let (image, pixel) = (q / plane, q % plane);
                    let (oy, ox) = (pixel / ow, pixel % ow);
                    let run = (ow - ox).min(width - done);
                    let dst = &mut row[done..done + run];
                    let iy = win.input_coord(0, oy, ky);
                    if iy < 0 || iy >= ih {
                        dst.fill(0.0);
                    } else {
                        let start = (image * g.input.c + c) * g.input.plane() + iy as usize * iw;
                        let offset = first_column + (ox * win.stride[1]) as isize;
                        copy_row(&images[start..start + iw], dst, offset, win.stride[1]);
                    }
                    done += run;
                }
            }
        }
    }
}

/// dst[ox] = src[ox·stride + offset], zero outside src.
fn copy_row(src: &[f32], dst: &mut [f32], offset: isize, stride: usize) {
    let n = src.len() as isize;
    if stride == 1 {
        // Valid ox: 0 ≤ ox + offset < n; copy that run, zero the ends.
        let start = (-offset).clamp(0, dst.len() as isize) as usize;
        let end = (n - offset).clamp(start as isize, dst.len() as isize) as usize;
        dst[..start].fill(0.0);
        if end > start {
            let from = (start as isize + offset) as usize;
            dst[start..end].copy_from_slice(&src[from..from + end - start]);
        }
        dst[end..].fill(0.0);
        return;
    }
    for (ox, d) in dst.iter_mut().enumerate() {
        let ix = (ox * stride) as isize + offset;
        *d = if ix >= 0 && ix < n { src[ix as usize] } else { 0.0 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_row_shifts_and_pads_with_zeros() {
        let src = [1.0, 2.0, 3.0, 4.0];
        let mut dst = [9.0; 4];
        copy_row(&src, &mut dst, -1, 1);
        assert_eq!(dst, [0.0, 1.0, 2.0, 3.0]);
        copy_row(&src, &mut dst, 1, 1);
        assert_eq!(dst, [2.0, 3.0, 4.0, 0.0]);
        let mut dst2 = [9.0; 2];
        copy_row(&src, &mut dst2, -1, 2);
        assert_eq!(dst2, [0.0, 2.0]);
        copy_row(&src, &mut dst, 7, 1);
        assert_eq!(dst, [0.0; 4]);
    }
}
