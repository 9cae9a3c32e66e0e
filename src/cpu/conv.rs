//! Convolution as a GEMM: `out[O, OH·OW] = W[O, I·kh·kw] × cols[I·kh·kw, OH·OW]`, W packed
//! once per run ([`ConvWeights`]), cols the unfolding of the input, never stored whole.
//!
//! Two ways to read cols: a convolution copies its images once into a zero-padded buffer
//! whose rows share their padding, where every tap (c, ky, kx) is the same buffer shifted by
//! a constant (a strided one split into stride² phases, so it reads like a stride-1 one), and
//! the GEMM reads cols in place ([`matmul_shifted`]; its output grid carries the padding
//! columns, which the GEMM drops); where the padding would be too large a share of that grid
//! (small planes), each 16-column panel is unfolded straight into the GEMM's layout
//! ([`unfold_panel`] through [`matmul_filled`]). Either way the GEMM writes
//! `p + bias (+ residual)` straight into NCHW `out`.
//!
//! Small outputs (late layers, CIFAR) would make each GEMM re-read all weights for a few
//! columns, so several images share one GEMM (`cols[I·k·k, images·OH·OW]`).

use super::gemm::{Layout, MatRef, NR, Output, PackedA, Threads, matmul_filled, matmul_shifted};
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

    /// The padded grid the convolution reads in place, if it has one whose padding is at most
    /// `max_padding` of its columns (those are computed and dropped).
    fn padded_grid(&self, max_padding: f64) -> Option<PaddedGrid> {
        let w = &self.window;
        // Per axis: the phase rows of the input (every stride-th one), and the gap of zeros
        // between images (and rows) that the reads of both neighbours share: the most a tap
        // reaches before the first or past the last.
        let axis = |a: usize, len: usize, out: usize| {
            let (stride, k) = (w.stride[a], w.kernel[a]);
            let data = len.div_ceil(stride);
            let (first, last) = (tap_shift(w, a, 0).0, tap_shift(w, a, k - 1).0);
            let gap = (-first).max(out as isize - 1 + last - (data as isize - 1)).max(0) as usize;
            (data, gap)
        };
        let (data_rows, gap_y) = axis(0, self.input.h, self.output.h);
        let (data_cols, gap_x) = axis(1, self.input.w, self.output.w);
        let grid = PaddedGrid {
            rows: data_rows + gap_y,
            cols: data_cols + gap_x,
            gap_y,
            gap_x,
            stride: w.stride,
        };
        let fits = self.output.h <= grid.rows && self.output.w <= grid.cols;
        let padding = 1.0 - self.output.plane() as f64 / grid.columns(1, self.output) as f64;
        (fits && padding <= max_padding).then_some(grid)
    }
}

/// Tap k's input coordinate at output 0 along `axis`, as (q, r) with coordinate = stride·q + r,
/// 0 ≤ r < stride: the tap reads phase r of the input, q phase rows (or columns) on.
fn tap_shift(w: &Window2d, axis: usize, k: usize) -> (isize, usize) {
    let (at, stride) = (w.input_coord(axis, 0, k), w.stride[axis] as isize);
    (at.div_euclid(stride), at.rem_euclid(stride) as usize)
}

/// A convolution's images in one zero-padded buffer that its GEMM reads in place: per input
/// channel c and phase (ry, rx) (the input's pixels `(stride·u + ry, stride·v + rx)`; one
/// phase at stride 1), a region `[images·rows + gap_y][cols] + gap_x` where image i's phase
/// pixel (u, v) sits at row `i·rows + gap_y + u`, column `gap_x + v`. The gaps are the padding,
/// shared by the neighbours on both sides. Output (y, x) of image i is grid column
/// `(i·rows + y)·cols + x`, and tap (ky, kx) of channel c reads the buffer at that column plus
/// a constant ([`PaddedGrid::offsets`]): a strided convolution becomes a stride-1 one over the
/// phases.
#[derive(Clone, Copy, Debug)]
struct PaddedGrid {
    rows: usize,
    cols: usize,
    gap_y: usize,
    gap_x: usize,
    stride: [usize; 2],
}

impl PaddedGrid {
    /// The GEMM's columns for `count` images: up to the last output (the last image's
    /// trailing padding is not computed).
    fn columns(&self, count: usize, output: Shape) -> usize {
        ((count - 1) * self.rows + output.h - 1) * self.cols + output.w
    }

    /// Values per region (channel and phase): the images' blocks and the gap closing the last.
    fn region_len(&self, images: usize) -> usize {
        (images * self.rows + self.gap_y) * self.cols + self.gap_x
    }

    fn phases(&self) -> usize {
        self.stride[0] * self.stride[1]
    }

    /// Region of channel c, phase (ry, rx).
    fn region(&self, c: usize, [ry, rx]: [usize; 2], images: usize) -> usize {
        ((c * self.stride[0] + ry) * self.stride[1] + rx) * self.region_len(images)
    }

    /// Per row of cols (c, ky, kx) for the channels `channels`, where the buffer holds it.
    fn offsets(&self, g: &ConvGeometry, channels: Range<usize>, images: usize) -> Vec<usize> {
        let w = &g.window;
        let mut offsets = Vec::with_capacity(channels.len() * w.taps());
        for c in channels {
            for ky in 0..w.kernel[0] {
                for kx in 0..w.kernel[1] {
                    let ((qy, ry), (qx, rx)) = (tap_shift(w, 0, ky), tap_shift(w, 1, kx));
                    let row = (self.gap_y as isize + qy) as usize;
                    let column = (self.gap_x as isize + qx) as usize;
                    offsets.push(self.region(c, [ry, rx], images) + row * self.cols + column);
                }
            }
        }
        offsets
    }

    /// The images (NCHW) and the zeros around them written over every region of `buffer` (as
    /// long as [`PaddedGrid::len`] says; what lies past the last region is only read for
    /// dropped columns), region by region in parallel when the caller is not.
    fn fill(&self, g: &ConvGeometry, images: &[f32], buffer: &mut [f32], threads: Threads) {
        let count = images.len() / g.input.numel();
        let region_len = self.region_len(count);
        // Phases no tap reads (a 1x1/2 convolution reads one of four) are left as they are.
        let w = &g.window;
        let read = |axis: usize, r: usize| (0..w.kernel[axis]).any(|k| tap_shift(w, axis, k).1 == r);
        let fill_region = |(index, region): (usize, &mut [f32])| {
            let (c, phase) = (index / self.phases(), index % self.phases());
            let [ry, rx] = [phase / self.stride[1], phase % self.stride[1]];
            if !read(0, ry) || !read(1, rx) {
                return;
            }
            let mut rows = region.chunks_mut(self.cols);
            for (r, row) in (&mut rows).enumerate() {
                // Row r: image r / rows, phase row r % rows − gap_y, input row stride·u + ry.
                let (image, u) = (r / self.rows, (r % self.rows).checked_sub(self.gap_y));
                let y = u.map(|u| u * self.stride[0] + ry);
                match y.filter(|&y| image < count && y < g.input.h && row.len() == self.cols) {
                    Some(y) => {
                        let at = ((image * g.input.c + c) * g.input.h + y) * g.input.w;
                        // Column gap_x + v holds input column stride·v + rx; the rest zeros.
                        let offset = rx as isize - (self.gap_x * self.stride[1]) as isize;
                        copy_row(&images[at..at + g.input.w], row, offset, self.stride[1]);
                    }
                    None => row.fill(0.0),
                }
            }
        };
        let regions = &mut buffer[..g.input.c * self.phases() * region_len];
        match threads {
            Threads::One => regions.chunks_exact_mut(region_len).enumerate().for_each(fill_region),
            Threads::All => {
                use rayon::prelude::*;
                regions
                    .par_chunks_exact_mut(region_len)
                    .enumerate()
                    .for_each(fill_region)
            }
        }
    }

    /// The buffer's length for `count` images: every region, and room past the last for the
    /// last tap's panels (a tap reaches at most a window's extent past its column).
    fn len(&self, g: &ConvGeometry, count: usize) -> usize {
        let [kh, kw] = g.window.kernel;
        let [dy, dx] = g.window.dilation;
        let reach = (self.gap_y + kh * dy) * self.cols + self.gap_x + kw * dx + NR;
        g.input.c * self.phases() * self.region_len(count) + reach
    }
}

/// A convolution's weights packed once per run for the GEMM, one matrix per group.
#[derive(Clone)]
pub struct ConvWeights {
    groups: Vec<PackedA>,
}

impl ConvWeights {
    /// None for a depthwise convolution (no GEMM).
    pub fn new(conv: &Conv2d, g: &ConvGeometry) -> Option<ConvWeights> {
        if g.is_depthwise() {
            return None;
        }
        let (rows, depth) = (g.group_out(), g.group_depth());
        let groups = conv
            .weight
            .data
            .chunks_exact(rows * depth)
            .map(|w| PackedA::new(MatRef::row_major(w, rows, depth)))
            .collect();
        Some(ConvWeights { groups })
    }
}

thread_local! {
    /// A group of images zero-padded for the shifted GEMM, reused from call to call.
    static PADDED: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// `out = conv(images) + bias (+ residual)` for a group of images (NCHW), with the weights
/// packed by [`ConvWeights::new`] (None only for depthwise).
pub fn conv_group(
    conv: &Conv2d,
    weights: Option<&ConvWeights>,
    g: &ConvGeometry,
    images: &[f32],
    residual: Option<&[f32]>,
    out: &mut [f32],
    threads: Threads,
) {
    let Some(weights) = weights else {
        return depthwise(conv, g, images, residual, out, threads);
    };
    // Measured on the ResNet shapes (polycnn bench --threads 1): reading 3x3 7x7 in place
    // (11% of its columns padding) beats unfolding it.
    const MAX_PADDING: f64 = 0.2;
    gemm_conv(
        conv,
        weights,
        g,
        g.padded_grid(MAX_PADDING),
        images,
        residual,
        out,
        threads,
    )
}

/// [`conv_group`] through the GEMM: reading a padded grid in place, or unfolding panels.
#[allow(clippy::too_many_arguments)]
fn gemm_conv(
    conv: &Conv2d,
    weights: &ConvWeights,
    g: &ConvGeometry,
    grid: Option<PaddedGrid>,
    images: &[f32],
    residual: Option<&[f32]>,
    out: &mut [f32],
    threads: Threads,
) {
    let count = images.len() / g.input.numel();
    if count == 0 {
        return;
    }
    let channels = g.input.c / g.groups;
    match grid {
        Some(grid) => {
            // One image under a 1x1 unpadded window already is its grid (its taps read no
            // further than its own channels).
            let in_place =
                count == 1 && g.window.kernel == [1, 1] && grid.gap_x + grid.gap_y == 0 && grid.phases() == 1;
            let copy = !in_place;
            // Every value read for an output is written by `fill`: no zeroing first.
            let mut buffer = PADDED.take();
            if copy {
                buffer.resize(grid.len(g, count).max(buffer.len()), 0.0);
                grid.fill(g, images, &mut buffer, threads);
            }
            let source = if copy { &buffer[..] } else { images };
            let n = grid.columns(count, g.output);
            for (group, w) in weights.groups.iter().enumerate() {
                let offsets = grid.offsets(g, group * channels..(group + 1) * channels, count);
                let out = conv_output(conv, g, group, [grid.rows, grid.cols], out, residual);
                matmul_shifted(w, n, source, &offsets, out, threads);
            }
            PADDED.set(buffer);
        }
        None => {
            let n = count * g.output.plane();
            for (group, w) in weights.groups.iter().enumerate() {
                let first = group * channels;
                let fill = |column: usize, width: usize, panel: &mut [f32]| {
                    unfold_panel(images, g, first..first + channels, column, width, panel)
                };
                let out = conv_output(conv, g, group, [g.output.h, g.output.w], out, residual);
                matmul_filled(w, n, fill, out, threads);
            }
        }
    }
}

/// Where group `group`'s GEMM writes: NCHW `out` (`bias + residual` added), its columns a grid
/// of `[rows, cols]` per image whose top-left `OH × OW` are the outputs.
fn conv_output<'a>(
    conv: &'a Conv2d,
    g: &ConvGeometry,
    group: usize,
    [grid_rows, grid_cols]: [usize; 2],
    out: &'a mut [f32],
    residual: Option<&'a [f32]>,
) -> Output<'a> {
    let rows = g.group_out();
    Output {
        layout: Layout {
            grid_cols,
            grid_rows,
            width: g.output.w,
            height: g.output.h,
            image_stride: g.output.numel(),
            first_row: group * rows,
        },
        data: out,
        bias: Some(&conv.bias[group * rows..(group + 1) * rows]),
        residual,
        accumulate: false,
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

/// dst[ox] = src[ox·stride + offset], zero outside src. A stride-1 row is one block copy (an
/// element-wise one cost ~10% of a 3x3 56x56 convolution's padded-grid fill).
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

    /// Direct convolution in f64: `out[i][o][y][x] = bias[o] + residual + Σ w·x` over the
    /// group's channels and taps inside the image.
    fn direct(conv: &Conv2d, g: &ConvGeometry, images: &[f32], residual: &[f32]) -> Vec<f64> {
        let (win, count) = (&g.window, images.len() / g.input.numel());
        let (per_group, rows) = (g.input.c / g.groups, g.group_out());
        let mut out = vec![0.0; count * g.output.numel()];
        for (at, v) in out.iter_mut().enumerate() {
            let (i, o) = (at / g.output.numel(), at % g.output.numel() / g.output.plane());
            let (y, x) = (at % g.output.plane() / g.output.w, at % g.output.w);
            *v = conv.bias[o] as f64 + residual[at] as f64;
            for c in 0..per_group {
                let channel = o / rows * per_group + c;
                for (ky, kx) in (0..win.kernel[0]).flat_map(|ky| (0..win.kernel[1]).map(move |kx| (ky, kx))) {
                    let (iy, ix) = (win.input_coord(0, y, ky), win.input_coord(1, x, kx));
                    if iy < 0 || ix < 0 || iy >= g.input.h as isize || ix >= g.input.w as isize {
                        continue;
                    }
                    let input =
                        images[(i * g.input.c + channel) * g.input.plane() + iy as usize * g.input.w + ix as usize];
                    let weight = conv.weight.data[((o * per_group + c) * win.kernel[0] + ky) * win.kernel[1] + kx];
                    *v += input as f64 * weight as f64;
                }
            }
        }
        out
    }

    /// Both GEMM paths, forced whatever their padding share, with strides, asymmetric pads,
    /// dilation, groups, rectangular kernels and several images per GEMM.
    #[test]
    fn padded_grid_and_unfolded_panels_match_direct_convolution() {
        use crate::weights::Tensor;
        let win = |kernel: [usize; 2], stride: [usize; 2], dilation: [usize; 2], pads: [usize; 4]| Window2d {
            kernel,
            stride,
            dilation,
            pads,
            ceil_mode: false,
        };
        let cases = [
            (Shape::new(3, 5, 6), 4, win([3, 3], [1, 1], [1, 1], [1, 1, 1, 1]), 1),
            (Shape::new(4, 6, 5), 6, win([3, 3], [1, 1], [1, 1], [0, 1, 2, 0]), 2),
            (Shape::new(2, 7, 7), 3, win([3, 2], [1, 1], [2, 3], [2, 3, 2, 0]), 1),
            (Shape::new(4, 4, 9), 2, win([1, 7], [1, 1], [1, 1], [0, 3, 0, 3]), 2),
            (Shape::new(5, 3, 4), 7, win([1, 1], [1, 1], [1, 1], [0, 0, 0, 0]), 1),
            (Shape::new(3, 6, 6), 5, win([2, 2], [1, 1], [1, 1], [0, 0, 0, 0]), 1),
            // strided: the stem's 7x7/2, 3x3/2 on odd sizes, 1x1/2, anisotropic, stride 3
            (Shape::new(3, 11, 10), 4, win([7, 7], [2, 2], [1, 1], [3, 3, 3, 3]), 1),
            (Shape::new(4, 9, 7), 3, win([3, 3], [2, 2], [1, 1], [1, 1, 1, 1]), 1),
            (Shape::new(6, 8, 7), 4, win([1, 1], [2, 2], [1, 1], [0, 0, 0, 0]), 2),
            (Shape::new(2, 9, 8), 3, win([3, 2], [2, 1], [2, 1], [1, 0, 2, 1]), 1),
            (Shape::new(3, 10, 11), 2, win([4, 3], [3, 3], [1, 1], [0, 2, 1, 0]), 1),
        ];
        let values = |n: usize, seed: usize| -> Vec<f32> {
            (0..n)
                .map(|i| ((i * 7919 + seed * 104729) % 1013) as f32 / 506.0 - 1.0)
                .collect()
        };
        for (input, o, window, groups) in cases {
            let conv = Conv2d {
                input: 0,
                weight: Tensor {
                    shape: vec![o, input.c / groups, window.kernel[0], window.kernel[1]],
                    data: values(o * input.c / groups * window.taps(), 1),
                },
                bias: values(o, 2),
                window,
                groups,
            };
            let output = Shape::new(
                o,
                window.out_len(0, input.h).unwrap(),
                window.out_len(1, input.w).unwrap(),
            );
            let g = ConvGeometry::of(&conv, input, output);
            let weights = ConvWeights::new(&conv, &g).unwrap();
            for count in [1, 3] {
                let images = values(count * input.numel(), 3);
                let residual = values(count * output.numel(), 4);
                let want = direct(&conv, &g, &images, &residual);
                let grid = g.padded_grid(1.0).expect("every case has a padded grid");
                for (path, grid) in [("padded grid", Some(grid)), ("unfolded", None)] {
                    for threads in [Threads::One, Threads::All] {
                        let mut out = vec![f32::NAN; want.len()];
                        gemm_conv(&conv, &weights, &g, grid, &images, Some(&residual), &mut out, threads);
                        let worst = out
                            .iter()
                            .zip(&want)
                            .map(|(&a, b)| (a as f64 - b).abs())
                            .fold(0.0, f64::max);
                        assert!(worst < 1e-5, "{path} {window:?} groups {groups} × {count}: {worst}");
                    }
                }
            }
        }
    }

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
