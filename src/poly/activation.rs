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
            .map(|pair| if pair.len() == 2 { approx_max(sign, pair[0], pair[1]) } else { pair[0] })
            .collect();
    }
    ((level[0] - Dd::new(0.5)) / s).to_f64()
}
