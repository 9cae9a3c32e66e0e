//! Activation sites on the CPU: exact or polynomial ReLU / max-pool, and the per-site statistics
//! gathered in the same pass.
//!
//! Sites evaluate the polynomial in f32 SIMD by default ([`SignF32`], the GPU's `clenshaw`
//! arithmetic, [`Precision::F32`]) or in f64 ([`Precision::F64`], the reference scheme) by
//! [`SignEvaluator`]: exactly [`Composite::eval_fast`]'s operations (Clenshaw per stage, fused
//! multiply-adds), run on 8 inputs at a time with hardware FMA, bit-identical to it. Max-pool
//! trees follow the site's precision too. The formulas are those of `crate::poly::activation`,
//! whose double-double versions are the reference the tests use.

use super::sign_f32::SignF32;
use crate::exec::{Approx, Precision, SiteMode, SiteStats};
use crate::he::poly_eval::HeOrderSign;
use crate::model::{Shape, Window2d};
use crate::poly::Composite;
use crate::poly::activation::max_pool_scale;

/// A site's polynomial prepared in its precision.
#[derive(Clone, Debug)]
pub enum SitePoly {
    F32(SignF32),
    F64(SignEvaluator),
}

impl SitePoly {
    pub fn new(a: &Approx) -> SitePoly {
        match a.precision {
            Precision::F32 => SitePoly::F32(SignF32::new(a.composite)),
            Precision::F64 => SitePoly::F64(SignEvaluator::new(a.composite)),
            Precision::HeOrder => SitePoly::F64(SignEvaluator::he_order(a.composite)),
        }
    }
}

/// Applies a ReLU site in place, recording its inputs. `sign` is `mode`'s composite, prepared.
pub fn relu_in_place(values: &mut [f32], mode: &SiteMode, sign: Option<&SitePoly>, stats: &mut SiteStats) {
    stats.observe(values, mode.bound());
    if let SiteMode::Poly(p) = mode {
        for v in values.iter_mut() {
            *v = p.poly.eval(mode.polynomial_input(*v as f64), p.bound) as f32;
        }
        return;
    }
    match (mode, sign) {
        (SiteMode::Approx(a), Some(SitePoly::F32(sign))) => sign.relu_in_place(values, a.bound as f32, a.clamp),
        (SiteMode::Approx(a), Some(SitePoly::F64(sign))) => relu_f64(values, mode, a.bound, sign),
        _ => values.iter_mut().for_each(|v| *v = v.max(0.0)),
    }
}

/// x(1 + p(x/B))/2 in f64, `LANES` values at a time.
fn relu_f64(values: &mut [f32], mode: &SiteMode, bound: f64, sign: &SignEvaluator) {
    let mut scaled = [0.0f64; LANES];
    for block in values.chunks_mut(LANES) {
        for (t, &v) in scaled.iter_mut().zip(block.iter()) {
            *t = mode.polynomial_input(v as f64) / bound;
        }
        sign.eval_lanes(&mut scaled);
        for (v, p) in block.iter_mut().zip(scaled) {
            *v = (0.5 * mode.polynomial_input(*v as f64) * (1.0 + p)) as f32;
        }
    }
}

/// How many inputs [`SignEvaluator`] advances together: enough independent FMA chains to hide
/// the FMA latency, and one AVX-512 register of f64.
pub const LANES: usize = 8;

/// A composite's stages with coefficients pre-converted to f64, evaluated 8 inputs at a time.
#[derive(Clone, Debug)]
pub struct SignEvaluator {
    /// Per stage: the half-width b (inputs scaled t = x/b) and the Chebyshev coefficients.
    stages: Vec<(f64, Vec<f64>)>,
    fma: bool,
    /// Set: evaluate in an HE evaluator's order instead of by Clenshaw (`--ckks-poly-eval he`).
    he_order: Option<HeOrderSign>,
}

impl SignEvaluator {
    pub fn new(sign: &Composite) -> SignEvaluator {
        let stages = sign
            .stages
            .iter()
            .map(|p| (p.half_width.to_f64(), p.cheb.iter().map(|c| c.to_f64()).collect()))
            .collect();
        SignEvaluator {
            stages,
            fma: has_fma(),
            he_order: None,
        }
    }

    /// The composite in the basis and order an HE evaluator uses ([`HeOrderSign`]).
    pub fn he_order(sign: &Composite) -> SignEvaluator {
        SignEvaluator {
            he_order: Some(HeOrderSign::new(sign)),
            ..SignEvaluator::new(sign)
        }
    }

    /// p(x) for every lane, in place.
    pub fn eval_lanes(&self, x: &mut [f64; LANES]) {
        if let Some(he) = &self.he_order {
            he.eval_lanes(x);
        } else if self.fma {
            // SAFETY: the CPU supports FMA (checked at construction).
            unsafe { self.eval_lanes_fma(x) }
        } else {
            self.eval_lanes_portable(x)
        }
    }

    /// p(x) of one input.
    pub fn eval(&self, x: f64) -> f64 {
        let mut lanes = [x; LANES];
        self.eval_lanes(&mut lanes);
        lanes[0]
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "fma")]
    unsafe fn eval_lanes_fma(&self, x: &mut [f64; LANES]) {
        self.eval_lanes_portable(x)
    }

    #[cfg(not(target_arch = "x86_64"))]
    unsafe fn eval_lanes_fma(&self, x: &mut [f64; LANES]) {
        self.eval_lanes_portable(x)
    }

    /// `Composite::eval_fast`'s recurrence, lane-wise (`mul_add` becomes one instruction where
    /// the caller enables FMA, a correctly rounded libm call otherwise: same result either way).
    #[inline(always)]
    fn eval_lanes_portable(&self, x: &mut [f64; LANES]) {
        for (half_width, cheb) in &self.stages {
            let t: [f64; LANES] = std::array::from_fn(|i| x[i] / half_width);
            let two_u: [f64; LANES] = std::array::from_fn(|i| 4.0 * t[i] * t[i] - 2.0);
            let (mut b1, mut b2) = ([0.0f64; LANES], [0.0f64; LANES]);
            for &c in cheb.iter().rev() {
                for i in 0..LANES {
                    let b0 = two_u[i].mul_add(b1[i], c - b2[i]);
                    b2[i] = b1[i];
                    b1[i] = b0;
                }
            }
            for i in 0..LANES {
                x[i] = t[i] * (b1[i] - b2[i]);
            }
        }
    }
}

fn has_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Max-pooling of one image's `(c, h, w)` planes into `out`, recording the inputs.
pub struct MaxPoolSite<'a> {
    pub pool: Window2d,
    pub input: Shape,
    pub output: Shape,
    pub mode: &'a SiteMode<'a>,
    /// The paper's input rescaling s (approximate mode only).
    pub scale: f64,
    sign: Option<SitePoly>,
}

impl<'a> MaxPoolSite<'a> {
    /// Fails (with a message for the caller to attach the site name to) when the approximate
    /// pool is not a 2x2 or 3x3 window.
    pub fn new(pool: Window2d, input: Shape, output: Shape, mode: &'a SiteMode<'a>) -> Result<Self, String> {
        let (scale, sign) = match mode {
            SiteMode::Exact => (1.0, None),
            SiteMode::Poly(p) => {
                return Err(format!(
                    "the ReLU polynomial '{}' has no max-pool form (use exact max-pooling with it)",
                    p.poly.name
                ));
            }
            SiteMode::Approx(a) => {
                let scale = max_pool_scale(pool.taps(), a.alpha, a.bound).map_err(|e| e.to_string())?;
                (scale, Some(SitePoly::new(a)))
            }
        };
        Ok(MaxPoolSite {
            pool,
            input,
            output,
            mode,
            scale,
            sign,
        })
    }

    pub fn run(&self, image: &[f32], out: &mut [f32], stats: &mut SiteStats) {
        stats.observe(image, self.mode.bound());
        let (plane_in, plane_out) = (self.input.plane(), self.output.plane());
        let len = self.pool.taps();
        for (x, y) in image.chunks_exact(plane_in).zip(out.chunks_exact_mut(plane_out)) {
            match &self.sign {
                None => {
                    for (i, y) in y.iter_mut().enumerate() {
                        *y = self.exact_max(x, i);
                    }
                }
                // LANES windows at a time, one per lane of the polynomial evaluator.
                Some(SitePoly::F64(sign)) => {
                    for (block, ys) in y.chunks_mut(LANES).enumerate() {
                        let windows: [[f64; MAX_WINDOW]; LANES] = std::array::from_fn(|lane| {
                            let i = (block * LANES + lane).min(plane_out - 1);
                            self.zero_padded_window(x, i)
                                .map(|v| self.mode.polynomial_input(v as f64))
                        });
                        let maxima = approx_max_windows(sign, &windows, len, self.scale);
                        ys.iter_mut().zip(maxima).for_each(|(y, m)| *y = m as f32);
                    }
                }
                // The plane's windows at once: each tree level is one pass of the SIMD evaluator.
                Some(SitePoly::F32(sign)) => {
                    let mut windows: Vec<[f32; MAX_WINDOW]> = (0..plane_out)
                        .map(|i| {
                            self.zero_padded_window(x, i)
                                .map(|v| self.mode.polynomial_input(v as f64) as f32)
                        })
                        .collect();
                    approx_max_windows_f32(sign, &mut windows, len, self.scale as f32, y);
                }
            }
        }
    }

    /// `f(j, value)` for each tap j (row-major in the window) of output pixel `i` that lies
    /// inside plane `x`, in order. Row by row: a division per tap cost more than the max itself.
    #[inline(always)]
    fn for_each_tap(&self, x: &[f32], i: usize, mut f: impl FnMut(usize, f32)) {
        let (oy, ox) = (i / self.output.w, i % self.output.w);
        let [kh, kw] = self.pool.kernel;
        for ky in 0..kh {
            let Some(y) = self.input_line(0, oy, ky) else {
                continue;
            };
            let row = &x[y * self.input.w..][..self.input.w];
            for kx in 0..kw {
                if let Some(column) = self.input_line(1, ox, kx) {
                    f(ky * kw + kx, row[column]);
                }
            }
        }
    }

    /// PyTorch's max: padding acts as −∞ (never wins); any window size.
    fn exact_max(&self, x: &[f32], i: usize) -> f32 {
        let mut max = f32::NEG_INFINITY;
        self.for_each_tap(x, i, |_, v| max = max.max(v));
        max
    }

    /// The inputs of output pixel `i` of plane `x`, row-major, zero where the window leaves the
    /// input (the paper's padding); the approximate window has at most `MAX_WINDOW` taps.
    fn zero_padded_window(&self, x: &[f32], i: usize) -> [f32; MAX_WINDOW] {
        let mut window = [0.0; MAX_WINDOW];
        self.for_each_tap(x, i, |j, v| window[j] = v);
        window
    }

    /// The input row (axis 0) or column (axis 1) of tap k of output o, None in the padding.
    fn input_line(&self, axis: usize, o: usize, k: usize) -> Option<usize> {
        let len = [self.input.h, self.input.w][axis];
        usize::try_from(self.pool.input_coord(axis, o, k))
            .ok()
            .filter(|&at| at < len)
    }
}

/// Largest pooling window handled (the approximation is defined for 2x2 and 3x3).
pub const MAX_WINDOW: usize = 16;

/// The f64 twin of `crate::poly::activation::approx_max_window` for `LANES` windows at once
/// (lane = window), each of its first `len` values: same tree (neighbours paired level by
/// level, an odd one out carried up), same rescaling x·s + 1/2.
pub fn approx_max_windows(
    sign: &SignEvaluator,
    windows: &[[f64; MAX_WINDOW]; LANES],
    len: usize,
    scale: f64,
) -> [f64; LANES] {
    assert!((1..=MAX_WINDOW).contains(&len), "windows of 1 to {MAX_WINDOW} values");
    let mut level = windows.map(|w| w.map(|v| v * scale + 0.5));
    let mut len = len;
    while len > 1 {
        let pairs = len / 2;
        for j in 0..pairs {
            let mut p: [f64; LANES] = std::array::from_fn(|w| level[w][2 * j] - level[w][2 * j + 1]);
            sign.eval_lanes(&mut p);
            // In place: pair j is read (at 2j, 2j+1) before slot j ≤ 2j is written.
            for (l, p) in level.iter_mut().zip(p) {
                let (a, b) = (l[2 * j], l[2 * j + 1]);
                l[j] = 0.5 * ((a + b) + (a - b) * p);
            }
        }
        if len % 2 == 1 {
            level.iter_mut().for_each(|l| l[pairs] = l[len - 1]);
        }
        len = pairs + len % 2;
    }
    level.map(|l| (l[0] - 0.5) / scale)
}

/// [`approx_max_windows`] in f32 over any number of windows (each of its first `len` values),
/// the sign by the SIMD evaluator: the same tree and rescaling; maxima into `out`.
pub fn approx_max_windows_f32(
    sign: &SignF32,
    windows: &mut [[f32; MAX_WINDOW]],
    len: usize,
    scale: f32,
    out: &mut [f32],
) {
    assert!((1..=MAX_WINDOW).contains(&len), "windows of 1 to {MAX_WINDOW} values");
    assert_eq!(windows.len(), out.len(), "one maximum per window");
    windows
        .iter_mut()
        .for_each(|w| w.iter_mut().for_each(|v| *v = *v * scale + 0.5));
    let mut diffs = vec![0.0f32; windows.len()];
    let mut len = len;
    while len > 1 {
        let pairs = len / 2;
        for j in 0..pairs {
            diffs
                .iter_mut()
                .zip(windows.iter())
                .for_each(|(d, w)| *d = w[2 * j] - w[2 * j + 1]);
            sign.sign_in_place(&mut diffs);
            // In place: pair j is read (at 2j, 2j+1) before slot j ≤ 2j is written.
            for (w, p) in windows.iter_mut().zip(&diffs) {
                let (a, b) = (w[2 * j], w[2 * j + 1]);
                w[j] = 0.5 * ((a + b) + (a - b) * p);
            }
        }
        if len % 2 == 1 {
            windows.iter_mut().for_each(|w| w[pairs] = w[len - 1]);
        }
        len = pairs + len % 2;
    }
    out.iter_mut()
        .zip(windows.iter())
        .for_each(|(y, w)| *y = (w[0] - 0.5) / scale);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SiteKind;
    use crate::poly::activation::{approx_max_window, approx_relu};
    use crate::poly::{optimise_eps, paper_degrees};

    #[test]
    fn lane_evaluator_is_bit_identical_to_eval_fast() {
        for alpha in [6, 10, 14] {
            let sign = optimise_eps(paper_degrees(alpha).unwrap()).unwrap().composite;
            let fast = SignEvaluator::new(&sign);
            let xs: Vec<f64> = (0..=2000).map(|i| i as f64 / 1000.0 - 1.0).collect();
            for block in xs.chunks(LANES) {
                let mut lanes = [0.0; LANES];
                lanes[..block.len()].copy_from_slice(block);
                fast.eval_lanes(&mut lanes);
                for (x, got) in block.iter().zip(lanes) {
                    assert_eq!(got.to_bits(), sign.eval_fast(*x).to_bits(), "α={alpha}, x={x}");
                }
            }
            let portable = SignEvaluator {
                fma: false,
                ..fast.clone()
            };
            assert_eq!(portable.eval(0.37).to_bits(), fast.eval(0.37).to_bits());
        }
    }

    #[test]
    fn approximate_relu_and_max_pool_match_the_double_double_reference() {
        let alpha = 12;
        let sign = optimise_eps(paper_degrees(alpha).unwrap()).unwrap().composite;
        let bound = 8.0;
        let mode = SiteMode::approx(&sign, alpha, bound);
        let xs: Vec<f32> = (0..400).map(|i| (i as f32 - 200.0) / 25.0).collect();
        let mut ys = xs.clone();
        let mut stats = SiteStats::new("r", SiteKind::Relu);
        let f64_sign = SitePoly::F64(SignEvaluator::new(&sign));
        relu_in_place(&mut ys, &mode.in_precision(Precision::F64), Some(&f64_sign), &mut stats);
        for (x, y) in xs.iter().zip(&ys) {
            let want = approx_relu(&sign, *x as f64, bound) as f32;
            assert!((y - want).abs() <= 1e-6 * bound as f32, "x={x}: {y} vs {want}");
        }
        assert_eq!(stats.count, 400);
        assert_eq!(stats.out_of_range, 0);
        assert_eq!(stats.max_abs, 8.0);

        let fast = SignEvaluator::new(&sign);
        for len in [4, 9] {
            let scale = max_pool_scale(len, alpha, bound).unwrap();
            let windows: [[f64; MAX_WINDOW]; LANES] = std::array::from_fn(|w| {
                std::array::from_fn(|i| ((i * 7 + w * 3) % len) as f64 * 1.9 - 7.5 + w as f64 * 0.01)
            });
            let got = approx_max_windows(&fast, &windows, len, scale);
            for (w, window) in windows.iter().enumerate() {
                let want = approx_max_window(&sign, &window[..len], scale);
                assert!((got[w] - want).abs() < 1e-9, "window {len}: {} vs {want}", got[w]);
                let exact = window[..len].iter().copied().fold(f64::MIN, f64::max);
                assert!((got[w] - exact).abs() < 2.0 * bound * 2f64.powi(-(alpha as i32)) * len as f64);
            }
        }
    }

    /// The f32 tree keeps each level within 5% of its 2B·2^-α bound of the double-double one.
    #[test]
    fn f32_max_pool_tree_matches_the_double_double_reference() {
        let (alpha, bound) = (12, 8.0);
        let sign = optimise_eps(paper_degrees(alpha).unwrap()).unwrap().composite;
        let fast = SignF32::new(&sign);
        for len in [4, 9] {
            let scale = max_pool_scale(len, alpha, bound).unwrap();
            let values = |w: usize| -> [f32; MAX_WINDOW] {
                std::array::from_fn(|i| ((i * 7 + w * 3) % len) as f32 * 1.9 - 7.5 + w as f32 * 0.01)
            };
            let mut windows: Vec<[f32; MAX_WINDOW]> = (0..37).map(values).collect();
            let mut got = vec![0.0f32; windows.len()];
            approx_max_windows_f32(&fast, &mut windows, len, scale as f32, &mut got);
            let levels = if len == 4 { 2.0 } else { 4.0 };
            for (w, got) in got.iter().enumerate() {
                let window = values(w).map(f64::from);
                let want = approx_max_window(&sign, &window[..len], scale);
                let budget = levels * 0.05 * 2.0 * bound * 2f64.powi(-(alpha as i32));
                assert!(
                    (*got as f64 - want).abs() <= budget,
                    "window {len}/{w}: {got} vs {want}"
                );
            }
        }
    }
}
