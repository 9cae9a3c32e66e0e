//! Convolution as a GEMM: `out[O, OH·OW] = W[O, I·kh·kw] × cols[I·kh·kw, OH·OW]`, cols the im2col
//! unfolding of the input.
//!
//! Large outputs go one image per GEMM: a 1x1 stride-1 unpadded conv then needs no unfolding
//! (its input already is cols), and the bias (plus a fused residual) is written into `out`
//! before the product is accumulated onto it, so the epilogue costs no extra pass. Small
//! outputs (late layers, CIFAR) would make each GEMM re-read all weights for a few columns, so
//! several images share one GEMM (`cols[I·k·k, images·OH·OW]`) and the result is scattered back
//! to NCHW with the bias and residual.

use super::gemm::{MatRef, Threads, matmul};
use crate::model::{Conv2d, Shape};

/// The shapes of one convolution.
#[derive(Clone, Copy, Debug)]
pub struct ConvGeometry {
    pub input: Shape,
    pub output: Shape,
    /// `[kh, kw]`.
    pub kernel: [usize; 2],
    pub stride: usize,
    /// `[rows, columns]`.
    pub padding: [usize; 2],
}

impl ConvGeometry {
    pub fn of(conv: &Conv2d, input: Shape, output: Shape) -> ConvGeometry {
        ConvGeometry {
            input,
            output,
            kernel: conv.kernel(),
            stride: conv.stride,
            padding: conv.padding,
        }
    }

    fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.stride == 1 && self.padding == [0, 0]
    }

    /// Rows of the unfolded matrix: I·kh·kw.
    fn depth(&self) -> usize {
        self.input.c * self.kernel[0] * self.kernel[1]
    }

    /// How many of `n` images to put in one GEMM so that it has enough columns to reuse each
    /// weight it loads.
    pub fn images_per_gemm(&self, n: usize) -> usize {
        const MIN_GEMM_COLUMNS: usize = 1024;
        (MIN_GEMM_COLUMNS / self.output.plane()).clamp(1, n.max(1))
    }
}

/// `out = conv(images) + bias (+ residual)` for a group of images (NCHW); `scratch` is resized
/// as needed and can be reused across calls.
pub fn conv_group(
    conv: &Conv2d,
    g: &ConvGeometry,
    images: &[f32],
    residual: Option<&[f32]>,
    out: &mut [f32],
    scratch: &mut Vec<f32>,
    threads: Threads,
) {
    let count = images.len() / g.input.numel();
    if count == 1 {
        return conv_image(conv, g, images, residual, out, scratch, threads);
    }
    let (plane, depth) = (g.output.plane(), g.depth());
    let columns = count * plane;
    scratch.resize((depth + g.output.c) * columns, 0.0);
    let (cols, product) = scratch.split_at_mut(depth * columns);
    for (i, image) in images.chunks_exact(g.input.numel()).enumerate() {
        im2col(image, g, cols, columns, i * plane);
    }
    let weights = MatRef::row_major(&conv.weight.data, g.output.c, depth);
    matmul(
        weights,
        MatRef::row_major(cols, depth, columns),
        product,
        false,
        threads,
    );
    for (i, y) in out.chunks_exact_mut(g.output.numel()).enumerate() {
        for (o, row) in y.chunks_exact_mut(plane).enumerate() {
            let src = &product[o * columns + i * plane..o * columns + (i + 1) * plane];
            let r = residual.map(|r| &r[i * g.output.numel() + o * plane..][..plane]);
            add_bias_and_residual(row, src, conv.bias[o], r);
        }
    }
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
    scratch: &mut Vec<f32>,
    threads: Threads,
) {
    let plane = g.output.plane();
    let cols: &[f32] = if g.is_pointwise() {
        image
    } else {
        scratch.resize(g.depth() * plane, 0.0);
        im2col(image, g, scratch, plane, 0);
        scratch
    };
    let weights = MatRef::row_major(&conv.weight.data, g.output.c, g.depth());
    matmul(weights, MatRef::row_major(cols, g.depth(), plane), out, false, threads);
    // The same epilogue as a group of images (the product is already in place).
    for (o, row) in out.chunks_exact_mut(plane).enumerate() {
        let r = residual.map(|r| &r[o * plane..(o + 1) * plane]);
        match r {
            Some(r) => row.iter_mut().zip(r).for_each(|(y, &r)| *y = *y + conv.bias[o] + r),
            None => row.iter_mut().for_each(|y| *y += conv.bias[o]),
        }
    }
}

/// Unfolds `image` so row (c, ky, kx) of `cols` (rows `row_len` long) holds, from column
/// `offset` on, the input each output pixel multiplies (zero where the window overlaps the
/// padding).
fn im2col(image: &[f32], g: &ConvGeometry, cols: &mut [f32], row_len: usize, offset: usize) {
    let ([kh, kw], s) = (g.kernel, g.stride);
    let [ph, pw] = g.padding.map(|p| p as isize);
    let (ih, iw, oh, ow) = (g.input.h as isize, g.input.w, g.output.h, g.output.w);
    let mut rows = cols.chunks_exact_mut(row_len);
    for c in 0..g.input.c {
        let plane = &image[c * g.input.plane()..(c + 1) * g.input.plane()];
        for ky in 0..kh {
            for kx in 0..kw {
                let row = &mut rows.next().expect("cols has I·kh·kw rows")[offset..offset + oh * ow];
                for oy in 0..oh {
                    let iy = (oy * s + ky) as isize - ph;
                    let dst = &mut row[oy * ow..(oy + 1) * ow];
                    if iy < 0 || iy >= ih {
                        dst.fill(0.0);
                        continue;
                    }
                    let src = &plane[iy as usize * iw..(iy as usize + 1) * iw];
                    copy_row(src, dst, kx as isize - pw, s);
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
