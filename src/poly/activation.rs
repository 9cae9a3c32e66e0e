//! CPU reference (double-double) of the approximate activations the GPU kernels evaluate:
//! ReLU(x) ≈ x(1 + p(x/B))/2 and the paper's max-pooling tree of approximate max(a, b).

use super::PolyError;
use super::composite::Composite;
use super::dd::Dd;

/// ReLU(x) ≈ B·r(x/B) = x(1 + p(x/B))/2, for |x| ≤ B.
pub fn approx_relu(sign: &Composite, x: f64, bound: f64) -> f64 {
    let xd = Dd::new(x);
    let p = sign.eval(xd / Dd::new(bound));
    (xd * (Dd::ONE + p)).scale(0.5).to_f64()
}

/// max(a, b) ≈ ((a + b) + (a − b)·p(a − b))/2, for |a − b| ≤ 1.
pub fn approx_max(sign: &Composite, a: Dd, b: Dd) -> Dd {
    let d = a - b;
    ((a + b) + d * sign.eval(d)).scale(0.5)
}

/// The paper's rescaling x ↦ x·s + 1/2 with s = (1 − c·2^-α)/(2B): inputs in [-B, B] land in
/// [c·2^-α/2, 1 − c·2^-α/2], so the tree's accumulated errors cannot push a difference of two
/// intermediate maxima outside [-1, 1]. c = 4 for 2x2 windows, 6 for 3x3 (as in the paper).
pub fn max_pool_scale(window_len: usize, alpha: u32, bound: f64) -> Result<f64, PolyError> {
    let c = match window_len {
        4 => 4.0,
        9 => 6.0,
        _ => {
            return Err(PolyError::BadDegreeList(format!(
                "approximate max-pooling is defined for 2x2 and 3x3 windows (4 or 9 inputs), not {window_len}"
            )));
        }
    };
    Ok((1.0 - c * 2f64.powi(-(alpha as i32))) / (2.0 * bound))
}

/// Approximate max of a pooling window in the paper's tree order: neighbours are paired level by
/// level and an odd one out is carried up, which gives ((x0,x1),(x2,x3)) for 4 inputs and
/// ((((x0,x1),(x2,x3)),((x4,x5),(x6,x7))),x8) for 9.
pub fn approx_max_window(sign: &Composite, values: &[f64], scale: f64) -> f64 {
    let s = Dd::new(scale);
    let mut level: Vec<Dd> = values.iter().map(|&v| Dd::new(v) * s + Dd::new(0.5)).collect();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| {
                if pair.len() == 2 {
                    approx_max(sign, pair[0], pair[1])
                } else {
                    pair[0]
                }
            })
            .collect();
    }
    ((level[0] - Dd::new(0.5)) / s).to_f64()
}

/// Measured worst error of the approximate max-pooling tree against the exact max, in units of
/// the bound B (the error scales linearly with B), over `trials` windows of `window_len`
/// values: half uniform in [-B, B], half clustered near-ties whose differences fall where the
/// sign approximation is least accurate (around `critical_gap`, in rescaled units).
pub fn measure_max_pool_error(
    sign: &Composite,
    alpha: u32,
    window_len: usize,
    critical_gap: f64,
    trials: usize,
) -> Result<f64, PolyError> {
    let scale = max_pool_scale(window_len, alpha, 1.0)?;
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ (alpha as u64) << 8 ^ window_len as u64;
    let mut uniform = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut worst = 0.0f64;
    for trial in 0..trials {
        let window: Vec<f64> = if trial % 2 == 0 {
            (0..window_len).map(|_| uniform() * 2.0 - 1.0).collect()
        } else {
            let base = uniform() * 1.6 - 0.8;
            (0..window_len)
                .map(|_| base + uniform() * 2.0 * critical_gap / scale)
                .map(|v| v.clamp(-1.0, 1.0))
                .collect()
        };
        let exact = window.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        worst = worst.max((approx_max_window(sign, &window, scale) - exact).abs());
    }
    Ok(worst)
}
