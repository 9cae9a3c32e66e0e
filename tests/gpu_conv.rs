//! The GPU convolution (implicit GEMM + fused epilogue) against a direct f64 convolution.

use polycnn::gpu::activation::{PolyBuffer, Scheme};
use polycnn::gpu::conv::{ConvShape, Epilogue, TileConfig, conv2d_host, conv2d_host_tiled};
use polycnn::model::Window2d;
use polycnn::poly::activation::approx_relu;
use polycnn::poly::{optimise_eps, paper_degrees};

mod common;
use common::gpu;

fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}

/// Direct convolution in f64 from the definition (groups, dilation, top/left padding):
/// (value, Σ|terms|) per output, NCHW.
fn reference(
    shape: ConvShape,
    input: &[f32],
    weight: &[f32],
    bias: &[f32],
    residual: Option<&[f32]>,
) -> Vec<(f64, f64)> {
    let (oh, ow) = shape.out_hw();
    let w = shape.window;
    let [kh, kw] = w.kernel;
    let (cin, cout) = (shape.in_c / shape.groups, shape.out_c / shape.groups);
    let mut out = Vec::with_capacity(shape.output_len());
    for n in 0..shape.batch {
        for o in 0..shape.out_c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let (mut acc, mut mag) = (bias[o] as f64, (bias[o] as f64).abs());
                    for j in 0..cin {
                        let c = o / cout * cin + j;
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * w.stride[0] + ky * w.dilation[0]) as i64 - w.pads[0] as i64;
                                let ix = (ox * w.stride[1] + kx * w.dilation[1]) as i64 - w.pads[1] as i64;
                                if iy < 0 || ix < 0 || iy >= shape.in_h as i64 || ix >= shape.in_w as i64 {
                                    continue;
                                }
                                let x =
                                    input[((n * shape.in_c + c) * shape.in_h + iy as usize) * shape.in_w + ix as usize];
                                let w = weight[((o * cin + j) * kh + ky) * kw + kx];
                                acc += x as f64 * w as f64;
                                mag += (x as f64 * w as f64).abs();
                            }
                        }
                    }
                    let index = out.len();
                    if let Some(r) = residual {
                        acc += r[index] as f64;
                        mag += (r[index] as f64).abs();
                    }
                    out.push((acc, mag));
                }
            }
        }
    }
    out
}

fn shape(
    batch: usize,
    in_c: usize,
    hw: (usize, usize),
    out_c: usize,
    k: usize,
    stride: usize,
    pad: usize,
) -> ConvShape {
    ConvShape::dense(batch, in_c, hw, out_c, [k, k], stride, [pad, pad])
}

/// A kh×kw kernel with padding `[rows, columns]` (Inception-v3's 1x7 / 7x1 convolutions).
fn rect(
    in_c: usize,
    hw: (usize, usize),
    out_c: usize,
    kernel: [usize; 2],
    stride: usize,
    padding: [usize; 2],
) -> ConvShape {
    ConvShape::dense(1, in_c, hw, out_c, kernel, stride, padding)
}

/// A grouped, dilated, anisotropic convolution.
fn grouped(
    batch: usize,
    (in_c, hw, out_c, groups): (usize, (usize, usize), usize, usize),
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    pads: [usize; 4],
) -> ConvShape {
    ConvShape {
        groups,
        window: Window2d {
            kernel,
            stride,
            dilation,
            pads,
            ceil_mode: false,
        },
        ..ConvShape::dense(batch, in_c, hw, out_c, kernel, 1, [0, 0])
    }
}

/// Compares every tile configuration (and the epilogue with a residual and exact ReLU) against
/// the direct reference.
fn check_against_reference(shapes: &[ConvShape], seed: u64, with_residual: bool) {
    let Some(gpu) = gpu() else { return };
    let poly = PolyBuffer::empty(gpu);
    for (i, &s) in shapes.iter().enumerate() {
        let seed = seed + 10 * i as u64;
        let input = values(s.input_len(), seed);
        let weight = values(s.weight_len(), seed + 1);
        let bias = values(s.out_c, seed + 2);
        let residual = with_residual.then(|| values(s.output_len(), seed + 3));
        let want = reference(s, &input, &weight, &bias, residual.as_deref());
        let epilogue = if with_residual { Epilogue::Relu } else { Epilogue::None };
        for tiles in TileConfig::ALL {
            let (got, _) = conv2d_host_tiled(
                gpu,
                tiles,
                s,
                &input,
                &weight,
                &bias,
                residual.as_deref(),
                epilogue,
                &poly,
            )
            .unwrap();
            assert_eq!(got.len(), want.len());
            for (g, (w, mag)) in got.iter().zip(&want) {
                let w = if with_residual { w.max(0.0) } else { *w };
                assert!(
                    (*g as f64 - w).abs() <= 1e-6 * mag + 1e-7,
                    "shape {s:?}, tiles {tiles:?}: {g} vs {w}"
                );
            }
        }
    }
}

#[test]
fn grouped_depthwise_dilated_and_asymmetric_convolutions_match_direct_convolution() {
    let shapes = [
        // depthwise 3x3 (MobileNet), batch 2
        grouped(2, (6, (9, 8), 6, 6), [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
        // depthwise, stride 2, TF "SAME" padding [0, 0, 1, 1]
        grouped(1, (5, (10, 9), 5, 5), [3, 3], [2, 2], [1, 1], [0, 0, 1, 1]),
        // depthwise multiplier 2 over more channels than a tile
        grouped(1, (70, (5, 5), 140, 70), [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
        // 4 groups of 16 → 24 channels (ResNeXt-like), several K slices per group
        grouped(1, (64, (7, 6), 96, 4), [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
        // dilation 2 (DeepLab), dense
        grouped(1, (3, (13, 12), 4, 1), [3, 3], [1, 1], [2, 2], [2, 2, 2, 2]),
        // everything at once: groups 3, anisotropic stride and dilation, asymmetric pads
        grouped(2, (6, (15, 11), 9, 3), [3, 2], [2, 1], [3, 2], [1, 0, 2, 1]),
    ];
    check_against_reference(&shapes, 700, false);
    check_against_reference(&shapes[..4], 800, true);
}

#[test]
fn implicit_gemm_matches_direct_convolution_on_many_shapes() {
    let Some(gpu) = gpu() else { return };
    let shapes = [
        shape(2, 3, (9, 11), 5, 3, 1, 1),        // small, odd sizes, batch 2
        shape(1, 70, (6, 6), 130, 1, 1, 0),      // 1x1, K and O not multiples of the tiles
        shape(2, 3, (23, 19), 16, 7, 2, 3),      // ImageNet stem geometry
        shape(1, 32, (16, 16), 64, 3, 2, 1),     // stride-2 3x3
        shape(3, 16, (8, 8), 16, 3, 1, 1),       // CIFAR ResNet block
        shape(1, 8, (5, 5), 4, 5, 1, 0),         // kernel = input
        rect(12, (9, 8), 20, [1, 7], 1, [0, 3]), // Inception-v3 1x7
        rect(12, (9, 8), 20, [7, 1], 1, [3, 0]), // … and 7x1
        rect(5, (10, 9), 7, [3, 1], 2, [1, 0]),  // rectangular, strided, one axis padded
    ];
    let poly = PolyBuffer::empty(gpu);
    for (i, s) in shapes.into_iter().enumerate() {
        let input = values(s.input_len(), 1 + i as u64);
        let weight = values(s.weight_len(), 100 + i as u64);
        let bias = values(s.out_c, 200 + i as u64);
        let want = reference(s, &input, &weight, &bias, None);
        for tiles in TileConfig::ALL {
            let (got, _) =
                conv2d_host_tiled(gpu, tiles, s, &input, &weight, &bias, None, Epilogue::None, &poly).unwrap();
            for (g, (w, mag)) in got.iter().zip(&want) {
                assert!(
                    (*g as f64 - w).abs() <= 1e-6 * mag + 1e-7,
                    "shape {s:?}, tiles {tiles:?}: {g} vs {w}"
                );
            }
        }
    }
}

/// Several K slices, M and O tiles with ragged edges, batch > 1 and padding: what the tap
/// tables and per-thread pixel decoding of each tile configuration must get right.
#[test]
fn every_tile_configuration_matches_on_multi_slice_shapes() {
    let Some(gpu) = gpu() else { return };
    let shapes = [
        shape(2, 37, (13, 11), 70, 3, 1, 1),      // K = 333: 21 slices, last one partial
        shape(1, 129, (9, 9), 65, 1, 1, 0),       // 1x1, one channel past a slice, one past a tile
        shape(3, 20, (10, 12), 33, 3, 2, 1),      // stride 2 over a batch of 3
        rect(9, (12, 7), 130, [1, 7], 1, [0, 3]), // rectangular over several O tiles
    ];
    let poly = PolyBuffer::empty(gpu);
    for (i, s) in shapes.into_iter().enumerate() {
        let input = values(s.input_len(), 300 + i as u64);
        let weight = values(s.weight_len(), 400 + i as u64);
        let bias = values(s.out_c, 500 + i as u64);
        let residual = values(s.output_len(), 600 + i as u64);
        let want = reference(s, &input, &weight, &bias, Some(&residual));
        for tiles in TileConfig::ALL {
            let (got, stats) = conv2d_host_tiled(
                gpu,
                tiles,
                s,
                &input,
                &weight,
                &bias,
                Some(&residual),
                Epilogue::Relu,
                &poly,
            )
            .unwrap();
            assert_eq!(stats.log2_hist.iter().sum::<u64>(), s.output_len() as u64, "{tiles:?}");
            for (g, (w, mag)) in got.iter().zip(&want) {
                assert!(
                    (*g as f64 - w.max(0.0)).abs() <= 1e-6 * mag + 1e-7,
                    "shape {s:?}, tiles {tiles:?}: {g} vs {w}"
                );
            }
        }
    }
}

#[test]
fn fused_epilogue_adds_residual_and_applies_exact_or_polynomial_relu() {
    let Some(gpu) = gpu() else { return };
    let s = shape(2, 16, (8, 8), 24, 3, 1, 1);
    let input = values(s.input_len(), 7);
    let weight = values(s.weight_len(), 8);
    let bias = values(s.out_c, 9);
    let residual = values(s.output_len(), 10);
    let want = reference(s, &input, &weight, &bias, Some(&residual));
    let max_abs = want.iter().map(|w| w.0.abs()).fold(0.0, f64::max);

    let exact = PolyBuffer::empty(gpu);
    let (got, stats) = conv2d_host(gpu, s, &input, &weight, &bias, Some(&residual), Epilogue::Relu, &exact).unwrap();
    assert_eq!(stats.out_of_range, 0); // an exact ReLU has no bound
    assert_eq!(stats.log2_hist.iter().sum::<u64>(), s.output_len() as u64);
    assert!((stats.max_abs as f64 - max_abs).abs() < 1e-4 * max_abs);
    for (g, (w, mag)) in got.iter().zip(&want) {
        assert!((*g as f64 - w.max(0.0)).abs() <= 1e-6 * mag + 1e-7);
    }

    // A bound below max |x|: the polynomial ReLU counts every input beyond it.
    let composite = optimise_eps(paper_degrees(12).unwrap()).unwrap().composite;
    let poly = PolyBuffer::new(gpu, &composite, Scheme::Clenshaw);
    let small = 4.0f32;
    let (_, stats) = conv2d_host(
        gpu,
        s,
        &input,
        &weight,
        &bias,
        Some(&residual),
        Epilogue::PolyRelu {
            bound: small,
            clamp: false,
        },
        &poly,
    )
    .unwrap();
    let expected_out = want.iter().filter(|w| w.0.abs() > small as f64).count() as u64;
    assert!(expected_out > 0);
    assert_eq!(stats.out_of_range, expected_out);

    let bound = 2.0 * max_abs as f32;
    let (got, stats) = conv2d_host(
        gpu,
        s,
        &input,
        &weight,
        &bias,
        Some(&residual),
        Epilogue::PolyRelu { bound, clamp: false },
        &poly,
    )
    .unwrap();
    assert_eq!(stats.out_of_range, 0);
    for (g, (w, mag)) in got.iter().zip(&want) {
        let reference = approx_relu(&composite, *w, bound as f64);
        assert!(
            (*g as f64 - reference).abs() <= 4e-6 * mag + 1e-5 * bound as f64,
            "{g} vs {reference}"
        );
        assert!((*g as f64 - w.max(0.0)).abs() <= bound as f64 * 2f64.powi(-12) + 1e-5 * mag);
    }
}

#[test]
fn bad_shapes_and_lengths_are_errors() {
    let Some(gpu) = gpu() else { return };
    let poly = PolyBuffer::empty(gpu);
    let s = shape(1, 2, (4, 4), 3, 3, 1, 1);
    let input = vec![0.0; s.input_len()];
    let weight = vec![0.0; s.weight_len()];
    assert!(conv2d_host(gpu, s, &input[1..], &weight, &[0.0; 3], None, Epilogue::None, &poly).is_err());
    assert!(conv2d_host(gpu, s, &input, &weight, &[0.0; 2], None, Epilogue::None, &poly).is_err());
    let too_big_kernel = shape(1, 2, (2, 2), 3, 5, 1, 0);
    let w = vec![0.0; too_big_kernel.weight_len()];
    assert!(
        conv2d_host(
            gpu,
            too_big_kernel,
            &[0.0; 8],
            &w,
            &[0.0; 3],
            None,
            Epilogue::None,
            &poly
        )
        .is_err()
    );
    let nan_bound = Epilogue::PolyRelu {
        bound: f32::NAN,
        clamp: false,
    };
    assert!(conv2d_host(gpu, s, &input, &weight, &[0.0; 3], None, nan_bound, &poly).is_err());
}

#[test]
fn tile_choice_follows_the_layer_shape() {
    let at = |c: usize, hw: usize, o: usize, k: usize| TileConfig::for_shape(&shape(1, c, (hw, hw), o, k, 1, k / 2));
    assert_eq!(at(64, 56, 64, 3), TileConfig::TALL); // many pixels, 64 channels
    assert_eq!(at(128, 28, 128, 3), TileConfig::BROAD); // both fit 128-wide tiles as well as 64
    assert_eq!(at(512, 7, 512, 3), TileConfig::BROAD); // 49 pixels: 128 would be 60% padding
    assert_eq!(at(16, 32, 16, 3), TileConfig::TALL); // CIFAR: 1024 pixels, 16 channels
    assert_eq!(at(64, 8, 64, 3), TileConfig::WIDE); // 64 pixels, 64 channels
}
