//! The composite sign polynomial in f32 SIMD: the CPU's default approximate evaluation.
//!
//! The same arithmetic as the GPU's `clenshaw` scheme (`shaders/sign_poly.wgsl`): per stage
//! t = x·(1/b), 2u = fma(4t, t, −2), b_k = fma(2u, b_(k+1), c_k − b_(k+2)), p = t·(b_0 − b_1), with
//! the stage's Chebyshev coefficients rounded to f32. Its float32 error is bounded by the same
//! test as the GPU's (≤ 5% of 2^-α against the double-double reference, α = 4..14);
//! [`super::activation::SignEvaluator`] (f64) stays the reference scheme.
//!
//! One kernel, written once over a [`Lanes`] vector type, is compiled three times: AVX-512F,
//! AVX2 + FMA (both chosen at run time with `is_x86_feature_detected!`) and a portable 8-lane
//! version. Four or five vectors (per instruction set) advance together so that the
//! Clenshaw recurrence's dependent FMAs overlap (FMA latency 4–5 cycles, two issued per cycle).

use crate::poly::Composite;

/// Which instruction set the kernel runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Avx512,
    Avx2,
    Portable,
}

impl Isa {
    /// The widest one this CPU supports.
    pub fn detect() -> Isa {
        Isa::available()[0]
    }

    /// Every one this CPU supports, widest first (the portable one always).
    pub fn available() -> Vec<Isa> {
        let mut out = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                out.push(Isa::Avx512);
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                out.push(Isa::Avx2);
            }
        }
        out.push(Isa::Portable);
        out
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Portable => "portable",
        }
    }
}

/// One stage: 1/b and its Chebyshev coefficients c_0 … c_(n−1), in f32.
#[derive(Clone, Debug)]
struct Stage {
    scale: f32,
    cheb: Vec<f32>,
}

/// A composite ready for f32 evaluation on one [`Isa`].
#[derive(Clone, Debug)]
pub struct SignF32 {
    stages: Vec<Stage>,
    isa: Isa,
}

/// What the kernel computes from each value x.
#[derive(Clone, Copy, Debug)]
struct Op {
    /// 1/B: the polynomial sees x/B.
    inv_bound: f32,
    /// Clamp x to [-B, B] first.
    clamp: Option<f32>,
    /// x·(1 + p(x/B))/2 rather than p(x/B).
    relu: bool,
}

impl SignF32 {
    /// On the widest instruction set this CPU has.
    pub fn new(sign: &Composite) -> SignF32 {
        SignF32::with_isa(sign, Isa::detect())
    }

    /// On `isa`, which must be one of [`Isa::available`] (the portable one otherwise).
    pub fn with_isa(sign: &Composite, isa: Isa) -> SignF32 {
        let isa = if Isa::available().contains(&isa) {
            isa
        } else {
            Isa::Portable
        };
        let stages = sign
            .stages
            .iter()
            .map(|p| Stage {
                scale: (1.0 / p.half_width.to_f64()) as f32,
                cheb: p.cheb.iter().map(|c| c.to_f64() as f32).collect(),
            })
            .collect();
        SignF32 { stages, isa }
    }

    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// x ← x(1 + p(x/B))/2 for every value, x first clamped to [-B, B] when `clamp`.
    pub fn relu_in_place(&self, values: &mut [f32], bound: f32, clamp: bool) {
        let op = Op {
            inv_bound: 1.0 / bound,
            clamp: clamp.then_some(bound),
            relu: true,
        };
        self.run(values, op);
    }

    /// t ← p(t) for every value.
    pub fn sign_in_place(&self, values: &mut [f32]) {
        let op = Op {
            inv_bound: 1.0,
            clamp: None,
            relu: false,
        };
        self.run(values, op);
    }

    fn run(&self, values: &mut [f32], op: Op) {
        match self.isa {
            // SAFETY: `with_isa` keeps an ISA only when the CPU reports it.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => unsafe { x86::run_avx512(&self.stages, values, op) },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { x86::run_avx2(&self.stages, values, op) },
            _ => run_blocks::<Portable, CHAINS>(&self.stages, values, op),
        }
    }
}

/// A SIMD vector of f32 lanes: the few operations the kernels need (this one and the GEMM's).
pub(super) trait Lanes: Copy {
    const N: usize;
    fn splat(v: f32) -> Self;
    /// The first N values of `src`.
    fn load(src: &[f32]) -> Self;
    /// Into the first N values of `dst`.
    fn store(self, dst: &mut [f32]);
    fn add(self, b: Self) -> Self;
    fn sub(self, b: Self) -> Self;
    fn mul(self, b: Self) -> Self;
    /// self·b + c, one rounding.
    fn fma(self, b: Self, c: Self) -> Self;
    /// Into [lo, hi]; NaN stays NaN (as f32::clamp), so a blown-up input stays visible.
    fn clamp(self, lo: Self, hi: Self) -> Self;
}

/// Vectors advanced together (independent Clenshaw chains of three registers each): enough to
/// hide the FMA latency without spilling. AVX-512 (32 registers) and the portable kernel.
const CHAINS: usize = 4;
/// AVX2 (16 registers), measured on Zen 2 at α = 14: 3 chains 0.35, 4 0.43, 5 0.50, 6 0.22
/// Gelem/s (spilled). AVX-512 keeps [`CHAINS`]: not measured on a machine with it since.
const CHAINS_AVX2: usize = 5;

/// Largest N·UNROLL (AVX-512: 16 lanes × 4).
const MAX_BLOCK: usize = 64;

/// The kernel over a slice: whole blocks of N·UNROLL values, then the rest through a padded copy.
#[inline(always)]
fn run_blocks<V: Lanes, const UNROLL: usize>(stages: &[Stage], values: &mut [f32], op: Op) {
    let block = V::N * UNROLL;
    let mut chunks = values.chunks_exact_mut(block);
    for chunk in &mut chunks {
        block_in_place::<V, UNROLL>(stages, chunk, op);
    }
    let rest = chunks.into_remainder();
    if !rest.is_empty() {
        let mut padded = [0.0f32; MAX_BLOCK];
        padded[..rest.len()].copy_from_slice(rest);
        block_in_place::<V, UNROLL>(stages, &mut padded[..block], op);
        rest.copy_from_slice(&padded[..rest.len()]);
    }
}

#[inline(always)]
fn block_in_place<V: Lanes, const UNROLL: usize>(stages: &[Stage], block: &mut [f32], op: Op) {
    let x: [V; UNROLL] = std::array::from_fn(|i| V::load(&block[i * V::N..]));
    let y = evaluate::<V, UNROLL>(stages, x, op);
    for (i, y) in y.into_iter().enumerate() {
        y.store(&mut block[i * V::N..]);
    }
}

#[inline(always)]
fn evaluate<V: Lanes, const UNROLL: usize>(stages: &[Stage], x: [V; UNROLL], op: Op) -> [V; UNROLL] {
    let x = match op.clamp {
        Some(b) => x.map(|x| x.clamp(V::splat(-b), V::splat(b))),
        None => x,
    };
    let mut p = x.map(|x| x.mul(V::splat(op.inv_bound)));
    let (four, minus_two) = (V::splat(4.0), V::splat(-2.0));
    for stage in stages {
        let t = p.map(|p| p.mul(V::splat(stage.scale)));
        let two_u = t.map(|t| t.mul(four).fma(t, minus_two));
        let mut b1 = [V::splat(0.0); UNROLL];
        let mut b2 = [V::splat(0.0); UNROLL];
        for &c in stage.cheb.iter().rev() {
            let c = V::splat(c);
            for i in 0..UNROLL {
                let b0 = two_u[i].fma(b1[i], c.sub(b2[i]));
                b2[i] = b1[i];
                b1[i] = b0;
            }
        }
        p = std::array::from_fn(|i| t[i].mul(b1[i].sub(b2[i])));
    }
    if !op.relu {
        return p;
    }
    let (half, one) = (V::splat(0.5), V::splat(1.0));
    std::array::from_fn(|i| half.mul(x[i]).mul(one.add(p[i])))
}

/// Eight scalar lanes. `fma` is one instruction where the target has FMA; on an x86-64 without
/// it (this path's only x86 users) a software fused multiply-add would cost ~100x, so it rounds
/// twice there: a different last bit, same error bound.
#[derive(Clone, Copy)]
pub(super) struct Portable([f32; 8]);

impl Lanes for Portable {
    const N: usize = 8;
    fn splat(v: f32) -> Self {
        Portable([v; 8])
    }
    fn load(src: &[f32]) -> Self {
        Portable(std::array::from_fn(|i| src[i]))
    }
    fn store(self, dst: &mut [f32]) {
        dst[..8].copy_from_slice(&self.0);
    }
    fn add(self, b: Self) -> Self {
        Portable(std::array::from_fn(|i| self.0[i] + b.0[i]))
    }
    fn sub(self, b: Self) -> Self {
        Portable(std::array::from_fn(|i| self.0[i] - b.0[i]))
    }
    fn mul(self, b: Self) -> Self {
        Portable(std::array::from_fn(|i| self.0[i] * b.0[i]))
    }
    fn fma(self, b: Self, c: Self) -> Self {
        #[cfg(any(not(target_arch = "x86_64"), target_feature = "fma"))]
        return Portable(std::array::from_fn(|i| self.0[i].mul_add(b.0[i], c.0[i])));
        #[cfg(all(target_arch = "x86_64", not(target_feature = "fma")))]
        Portable(std::array::from_fn(|i| self.0[i] * b.0[i] + c.0[i]))
    }
    fn clamp(self, lo: Self, hi: Self) -> Self {
        Portable(std::array::from_fn(|i| self.0[i].clamp(lo.0[i], hi.0[i])))
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    use super::{CHAINS, CHAINS_AVX2, Lanes, Op, Stage, run_blocks};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn run_avx512(stages: &[Stage], values: &mut [f32], op: Op) {
        run_blocks::<Avx512, CHAINS>(stages, values, op)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn run_avx2(stages: &[Stage], values: &mut [f32], op: Op) {
        run_blocks::<Avx2, CHAINS_AVX2>(stages, values, op)
    }

    // The methods are only reached from the functions above, inlined into code compiled with
    // the feature enabled, which the CPU was checked to have. Loads and stores check the slice
    // length first. max/min return their second operand when either is NaN: x goes second.

    #[derive(Clone, Copy)]
    pub(in crate::cpu) struct Avx512(__m512);

    impl Lanes for Avx512 {
        const N: usize = 16;
        #[inline(always)]
        fn splat(v: f32) -> Self {
            Avx512(unsafe { _mm512_set1_ps(v) })
        }
        #[inline(always)]
        fn load(src: &[f32]) -> Self {
            assert!(src.len() >= Self::N);
            Avx512(unsafe { _mm512_loadu_ps(src.as_ptr()) })
        }
        #[inline(always)]
        fn store(self, dst: &mut [f32]) {
            assert!(dst.len() >= Self::N);
            unsafe { _mm512_storeu_ps(dst.as_mut_ptr(), self.0) }
        }
        #[inline(always)]
        fn add(self, b: Self) -> Self {
            Avx512(unsafe { _mm512_add_ps(self.0, b.0) })
        }
        #[inline(always)]
        fn sub(self, b: Self) -> Self {
            Avx512(unsafe { _mm512_sub_ps(self.0, b.0) })
        }
        #[inline(always)]
        fn mul(self, b: Self) -> Self {
            Avx512(unsafe { _mm512_mul_ps(self.0, b.0) })
        }
        #[inline(always)]
        fn fma(self, b: Self, c: Self) -> Self {
            Avx512(unsafe { _mm512_fmadd_ps(self.0, b.0, c.0) })
        }
        #[inline(always)]
        fn clamp(self, lo: Self, hi: Self) -> Self {
            Avx512(unsafe { _mm512_min_ps(hi.0, _mm512_max_ps(lo.0, self.0)) })
        }
    }

    #[derive(Clone, Copy)]
    pub(in crate::cpu) struct Avx2(__m256);

    impl Lanes for Avx2 {
        const N: usize = 8;
        #[inline(always)]
        fn splat(v: f32) -> Self {
            Avx2(unsafe { _mm256_set1_ps(v) })
        }
        #[inline(always)]
        fn load(src: &[f32]) -> Self {
            assert!(src.len() >= Self::N);
            Avx2(unsafe { _mm256_loadu_ps(src.as_ptr()) })
        }
        #[inline(always)]
        fn store(self, dst: &mut [f32]) {
            assert!(dst.len() >= Self::N);
            unsafe { _mm256_storeu_ps(dst.as_mut_ptr(), self.0) }
        }
        #[inline(always)]
        fn add(self, b: Self) -> Self {
            Avx2(unsafe { _mm256_add_ps(self.0, b.0) })
        }
        #[inline(always)]
        fn sub(self, b: Self) -> Self {
            Avx2(unsafe { _mm256_sub_ps(self.0, b.0) })
        }
        #[inline(always)]
        fn mul(self, b: Self) -> Self {
            Avx2(unsafe { _mm256_mul_ps(self.0, b.0) })
        }
        #[inline(always)]
        fn fma(self, b: Self, c: Self) -> Self {
            Avx2(unsafe { _mm256_fmadd_ps(self.0, b.0, c.0) })
        }
        #[inline(always)]
        fn clamp(self, lo: Self, hi: Self) -> Self {
            Avx2(unsafe { _mm256_min_ps(hi.0, _mm256_max_ps(lo.0, self.0)) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::poly::activation::approx_relu;
    use crate::poly::{optimise_eps, paper_degrees};
    use crate::tables::poly_table::cpu_f32_error;

    /// The SIMD instruction sets give the same values (same operations, same roundings), tails
    /// included, the portable one the same within float32 noise (it may round FMAs twice), and
    /// ReLU mode is x(1 + p(x/B))/2 of sign mode's p.
    #[test]
    fn every_instruction_set_agrees_bit_for_bit_and_relu_matches_sign() {
        let sign = optimise_eps(paper_degrees(12).unwrap()).unwrap().composite;
        let xs: Vec<f32> = (0..203).map(|i| (i as f32 - 101.0) / 37.0).collect();
        let bound = 3.0f32;
        let results: Vec<(Isa, Vec<f32>, Vec<f32>)> = Isa::available()
            .into_iter()
            .map(|isa| {
                let f = SignF32::with_isa(&sign, isa);
                assert_eq!(f.isa(), isa);
                let mut relu = xs.clone();
                f.relu_in_place(&mut relu, bound, false);
                let mut p: Vec<f32> = xs.iter().map(|x| x * (1.0 / bound)).collect();
                f.sign_in_place(&mut p);
                (isa, relu, p)
            })
            .collect();
        let (_, relu0, p0) = &results[0];
        for (isa, relu, p) in &results[1..] {
            let same = |a: &[f32], b: &[f32]| match isa {
                Isa::Portable => a.iter().zip(b).all(|(a, b)| (a - b).abs() <= 1e-6),
                _ => a.iter().zip(b).all(|(a, b)| a.to_bits() == b.to_bits()),
            };
            assert!(
                same(relu, relu0) && same(p, p0),
                "{isa:?} differs from {:?}",
                results[0].0
            );
        }
        for ((x, y), p) in xs.iter().zip(relu0).zip(p0) {
            assert_eq!(*y, 0.5 * x * (1.0 + p), "x={x}");
        }
    }

    /// The GPU path's bound (tests/gpu_activation.rs): float32 adds at most 5% of 2^-α to the
    /// double-double reference, and the ReLU error still meets 2^-α from α = 6, on every ISA.
    #[test]
    fn keeps_the_gpu_float32_bound_for_every_paper_alpha_on_every_instruction_set() {
        for alpha in 4..=14 {
            let composite = optimise_eps(paper_degrees(alpha).unwrap()).unwrap().composite;
            for isa in Isa::available() {
                let e = cpu_f32_error(&SignF32::with_isa(&composite, isa), &composite, alpha);
                assert!(
                    e.within_budget,
                    "α={alpha} {isa:?}: float32 adds 2^{:.2} > 5% of 2^-{alpha}",
                    e.eval_error_log2
                );
                if alpha >= 6 {
                    assert!(
                        e.relu_error_log2 <= -(alpha as f64),
                        "α={alpha} {isa:?}: 2^{:.3}",
                        e.relu_error_log2
                    );
                }
            }
        }
    }

    #[test]
    fn clamping_feeds_the_polynomial_values_inside_the_bound() {
        let sign = optimise_eps(paper_degrees(10).unwrap()).unwrap().composite;
        let f = SignF32::new(&sign);
        let mut ys = vec![-9.0f32, 9.0, 2.0];
        f.relu_in_place(&mut ys, 2.0, true);
        let want = |x: f64| approx_relu(&sign, x, 2.0) as f32;
        for (y, w) in ys.iter().zip([want(-2.0), want(2.0), want(2.0)]) {
            assert!((y - w).abs() < 1e-5, "{y} vs {w}");
        }
    }
}
