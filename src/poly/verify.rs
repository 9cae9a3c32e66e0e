//! Verification of the ReLU error max_{x∈[-1,1]} |x(1+p(x))/2 − ReLU(x)|.
//!
//! The error is even in x (p is odd), so it is g(x) = x(p(x) − 1)/2 on [0, 1]. Its extrema are
//! located as roots of g'(x) = (p − 1 + x·p')/2 in double-double (a composite of degrees
//! (15,27,29) has over a thousand of them), and an independent dense f64 scan checks that none
//! was missed.

use super::composite::Composite;
use super::dd::Dd;
use super::odd::sign_change_roots;
use rayon::prelude::*;
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct ReluError {
    /// The verified maximum: the larger of the located and the dense maximum.
    pub max_abs: f64,
    pub log2: f64,
    /// Where it is attained (x ≥ 0; the error at −x is the same).
    pub argmax: f64,
    /// Local extrema of the error located by derivative roots.
    pub extrema_located: usize,
    /// Maximum of the independent dense scan and its size.
    pub dense_max: f64,
    pub dense_points: usize,
}

/// Error of x(1+p(x))/2 against ReLU on [0, 1] (and so on [-1, 1]).
pub fn relu_error(c: &Composite) -> ReluError {
    let g = |x: Dd| (x * (c.eval(x) - Dd::ONE)).scale(0.5);
    let g_prime = |x: Dd| {
        let (p, dp) = c.eval_with_derivative(x);
        (p - Dd::ONE + x * dp).scale(0.5)
    };
    let mut candidates = sign_change_roots(&locating_grid(), g_prime);
    let extrema_located = candidates.len();
    candidates.push(Dd::ONE);
    let (argmax, located_max) = candidates
        .par_iter()
        .map(|&x| (x.to_f64(), g(x).abs().to_f64()))
        .reduce(|| (0.0, 0.0), |a, b| if b.1 > a.1 { b } else { a });
    let (dense_points, dense_max) = dense_scan(c);
    let max_abs = located_max.max(dense_max);
    ReluError {
        max_abs,
        log2: max_abs.log2(),
        argmax,
        extrema_located,
        dense_max,
        dense_points,
    }
}

/// Geometric near 0 (the steep part around ε), uniform in x, and uniform in θ = acos x (where
/// stage 1 crowds its oscillations near 1).
fn locating_grid() -> Vec<Dd> {
    const GEOMETRIC: usize = 8192;
    const UNIFORM: usize = 32768;
    let mut xs: Vec<f64> = Vec::with_capacity(GEOMETRIC + 2 * UNIFORM + 2);
    xs.push(0.0);
    xs.extend((0..=GEOMETRIC).map(|i| 2f64.powf(-40.0 * (1.0 - i as f64 / GEOMETRIC as f64))));
    xs.extend((1..UNIFORM).map(|i| i as f64 / UNIFORM as f64));
    xs.extend((1..UNIFORM).map(|i| (std::f64::consts::FRAC_PI_2 * i as f64 / UNIFORM as f64).cos()));
    xs.push(1.0);
    xs.sort_by(|a, b| a.partial_cmp(b).expect("finite grid"));
    xs.dedup();
    xs.into_iter().map(Dd::new).collect()
}

/// max |g| over 2^20 uniform and 2^16 geometric points, in f64.
fn dense_scan(c: &Composite) -> (usize, f64) {
    const UNIFORM: usize = 1 << 20;
    const GEOMETRIC: usize = 1 << 16;
    let g = |x: f64| (x * (c.eval_fast(x) - 1.0) / 2.0).abs();
    let uniform = (0..=UNIFORM)
        .into_par_iter()
        .map(|i| g(i as f64 / UNIFORM as f64))
        .reduce(|| 0.0, f64::max);
    let geometric = (0..=GEOMETRIC)
        .into_par_iter()
        .map(|i| g(2f64.powf(-40.0 * (1.0 - i as f64 / GEOMETRIC as f64))))
        .reduce(|| 0.0, f64::max);
    (UNIFORM + GEOMETRIC + 2, uniform.max(geometric))
}
