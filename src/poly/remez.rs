//! Remez exchange for the odd minimax approximation of sign(x) on [-c,-a] ∪ [a,c], which for an
//! odd polynomial is the same as approximating the constant 1 on [a, c] (0 < a < c).
//!
//! Everything is done in double-double in the odd Chebyshev basis of the stage's own symmetric
//! domain [-b, b] (see `dd.rs` for why f64 is not enough on narrow later-stage domains).

use super::PolyError;
use super::dd::Dd;
use super::odd::OddPoly;

/// Relative spread of the error magnitudes on the reference at which the exchange stops.
const LEVELLED_TOLERANCE: f64 = 1e-13;
const MAX_ITERATIONS: usize = 60;
/// A stage error below this is ~2^-40: 2^20 times finer than the finest α we support.
const NEGLIGIBLE_ERROR: f64 = 1e-12;

/// The odd minimax approximation of 1 on [a, c] found by `minimax_sign`.
#[derive(Clone, Debug)]
pub struct MinimaxStage {
    pub poly: OddPoly,
    /// The interval [a, c] where p ≈ 1.
    pub domain: (Dd, Dd),
    /// max |p − 1| on [a, c], taken at the located extrema.
    pub error: Dd,
    /// min and max of p on [a, c]: the domain of the next stage.
    pub image: (Dd, Dd),
    pub iterations: usize,
}

/// Odd polynomial of odd `degree` minimising max |p(x) − 1| on [a, c], with its Chebyshev series
/// on [-half_width, half_width] (half_width ≥ c: the range the stage's inputs can take).
pub fn minimax_sign(degree: usize, a: Dd, c: Dd, half_width: Dd) -> Result<MinimaxStage, PolyError> {
    if degree.is_multiple_of(2) || degree > 255 {
        return Err(PolyError::BadDegree(degree));
    }
    if !(a.hi > 0.0 && a < c && c <= half_width) {
        return Err(PolyError::BadDomain {
            a: a.to_f64(),
            c: c.to_f64(),
        });
    }
    let n = degree.div_ceil(2);
    let mut reference = initial_reference(n + 1, a, c);
    let mut poly = OddPoly {
        half_width,
        cheb: vec![Dd::ZERO; n],
    };
    let mut best: Option<MinimaxStage> = None;
    for iteration in 1..=MAX_ITERATIONS {
        poly.cheb = solve_levelled(&reference, half_width)?;
        let extrema = error_extrema(&poly, a, c);
        let max_err = extrema.iter().map(|e| e.1.abs()).fold(Dd::ZERO, Dd::max);
        let lo = extrema.iter().map(|e| e.1).fold(max_err, Dd::min);
        let hi = extrema.iter().map(|e| e.1).fold(-max_err, Dd::max);
        let candidate = MinimaxStage {
            poly: poly.clone(),
            domain: (a, c),
            error: max_err,
            image: (Dd::ONE + lo, Dd::ONE + hi),
            iterations: iteration,
        };
        if best.as_ref().is_none_or(|b| max_err < b.error) {
            best = Some(candidate.clone());
        }
        let Some(alternating) = alternating_subset(&extrema, n + 1) else {
            break;
        };
        let min_ref = alternating.iter().map(|e| e.1.abs()).fold(max_err, Dd::min);
        reference = alternating.iter().map(|e| e.0).collect();
        if ((max_err - min_ref) / max_err).to_f64() <= LEVELLED_TOLERANCE {
            return Ok(candidate);
        }
    }
    // Not levelled: acceptable only where the error is far below anything α ≤ 20 can see
    // (narrow late-stage domains, where the system's conditioning — not the algorithm — limits
    // the levelling). The error reported is the measured one either way.
    match best {
        Some(stage) if stage.error.to_f64() < NEGLIGIBLE_ERROR => Ok(stage),
        _ => Err(PolyError::RemezFailed {
            degree,
            a: a.to_f64(),
            c: c.to_f64(),
            why: "no convergence within the iteration limit (domain too narrow for this degree?)",
        }),
    }
}

/// Chebyshev extrema in y = x² on [a², c²]: for sign-like targets the alternation points
/// crowd at both ends in y, which this reproduces, so the exchange starts close to the answer.
fn initial_reference(count: usize, a: Dd, c: Dd) -> Vec<Dd> {
    let (ya, yc) = (a.to_f64().powi(2), c.to_f64().powi(2));
    let mut points: Vec<Dd> = (0..count)
        .map(|i| {
            let s = -(std::f64::consts::PI * i as f64 / (count - 1) as f64).cos();
            let y = 0.5 * (ya + yc) + 0.5 * (yc - ya) * s;
            Dd::new(y.max(ya).sqrt())
        })
        .collect();
    points[0] = a;
    points[count - 1] = c;
    points
}

/// Solve Σ_k c_k T_{2k+1}(x_i/b) + (−1)^i E = 1 for (c, E); returns c.
fn solve_levelled(reference: &[Dd], half_width: Dd) -> Result<Vec<Dd>, PolyError> {
    let m = reference.len();
    let n = m - 1;
    let mut rows: Vec<Vec<Dd>> = reference
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let t = x / half_width;
            let mut row = odd_chebyshev_values(t, n);
            row.push(if i % 2 == 0 { Dd::ONE } else { -Dd::ONE });
            row.push(Dd::ONE); // right-hand side
            row
        })
        .collect();
    gaussian_elimination(&mut rows).ok_or(PolyError::RemezFailed {
        degree: 2 * n - 1,
        a: reference[0].to_f64(),
        c: reference[n].to_f64(),
        why: "singular Remez system",
    })?;
    Ok(rows.iter().take(n).map(|r| r[m]).collect())
}

/// T_1(t), T_3(t), …, T_{2n−1}(t) by the three-term recurrence (stable for |t| ≤ 1).
fn odd_chebyshev_values(t: Dd, n: usize) -> Vec<Dd> {
    let mut values = Vec::with_capacity(n + 2);
    let (mut prev, mut cur) = (Dd::ONE, t); // T_0, T_1
    for m in 1..(2 * n) {
        if m % 2 == 1 {
            values.push(cur);
        }
        let next = (t * cur).scale(2.0) - prev;
        prev = cur;
        cur = next;
    }
    values
}

/// In-place Gauss–Jordan with partial pivoting on an augmented matrix; the solution ends up
/// in the last column. None when singular.
fn gaussian_elimination(rows: &mut [Vec<Dd>]) -> Option<()> {
    let m = rows.len();
    for col in 0..m {
        let pivot = (col..m).max_by(|&i, &j| {
            rows[i][col]
                .abs()
                .partial_cmp(&rows[j][col].abs())
                .unwrap_or(std::cmp::Ordering::Equal)
        })?;
        if rows[pivot][col].hi == 0.0 || !rows[pivot][col].is_finite() {
            return None;
        }
        rows.swap(col, pivot);
        let inv = Dd::ONE / rows[col][col];
        for v in rows[col].iter_mut() {
            *v *= inv;
        }
        let pivot_row = rows[col].clone();
        for (i, row) in rows.iter_mut().enumerate() {
            if i != col && row[col].hi != 0.0 {
                let f = row[col];
                for (v, &p) in row.iter_mut().zip(&pivot_row).skip(col) {
                    *v -= f * p;
                }
            }
        }
    }
    Some(())
}

/// (x, p(x) − 1) at the endpoints and at every interior critical point of p in [a, c].
fn error_extrema(poly: &OddPoly, a: Dd, c: Dd) -> Vec<(Dd, Dd)> {
    let mut xs = vec![a];
    xs.extend(poly.critical_points(a, c).into_iter().filter(|&x| x > a && x < c));
    xs.push(c);
    xs.into_iter().map(|x| (x, poly.eval(x) - Dd::ONE)).collect()
}

/// The standard exchange rule: among the extrema keep, within each run of equal error sign,
/// the largest; then trim the smaller end until `count` alternating points remain.
fn alternating_subset(extrema: &[(Dd, Dd)], count: usize) -> Option<Vec<(Dd, Dd)>> {
    let mut runs: Vec<(Dd, Dd)> = Vec::new();
    for &(x, e) in extrema {
        match runs.last_mut() {
            Some(last) if (last.1.hi < 0.0) == (e.hi < 0.0) => {
                if e.abs() > last.1.abs() {
                    *last = (x, e);
                }
            }
            _ => runs.push((x, e)),
        }
    }
    while runs.len() > count {
        if runs[0].1.abs() < runs[runs.len() - 1].1.abs() {
            runs.remove(0);
        } else {
            runs.pop();
        }
    }
    (runs.len() == count).then_some(runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degree_one_is_the_secant_solution() {
        // p(x) = k x minimising max|kx − 1| on [a, 1]: k = 2/(1+a), error (1−a)/(1+a).
        let a = 0.25;
        let stage = minimax_sign(1, Dd::new(a), Dd::ONE, Dd::ONE).unwrap();
        let expect = (1.0 - a) / (1.0 + a);
        assert!((stage.error.to_f64() - expect).abs() < 1e-14);
        assert!((stage.image.0.to_f64() - (1.0 - expect)).abs() < 1e-14);
        assert!((stage.image.1.to_f64() - (1.0 + expect)).abs() < 1e-14);
    }

    #[test]
    fn error_equioscillates_at_degree_plus_three_over_two_points() {
        let stage = minimax_sign(15, Dd::new(0.01), Dd::ONE, Dd::ONE).unwrap();
        let extrema = error_extrema(&stage.poly, Dd::new(0.01), Dd::ONE);
        let alt = alternating_subset(&extrema, 9).unwrap();
        for (_, e) in &alt {
            let rel = ((e.abs() - stage.error) / stage.error).abs().to_f64();
            assert!(rel < 1e-12, "not levelled: {rel}");
        }
    }

    fn dense_error(stage: &MinimaxStage) -> f64 {
        let (a, c) = (stage.domain.0.to_f64(), stage.domain.1.to_f64());
        (0..=4000)
            .map(|i| a + (c - a) * i as f64 / 4000.0)
            .map(|x| (stage.poly.eval(Dd::new(x)) - Dd::ONE).abs().to_f64())
            .fold(0.0, f64::max)
    }

    #[test]
    fn narrow_domain_converges_in_double_double() {
        // A later stage: approximate 1 on [1 − δ, 1 + δ]; the Chebyshev system is ill-conditioned
        // (~1e14 here), which f64 cannot solve but double-double can.
        let delta = 2f64.powi(-5);
        let stage = minimax_sign(13, Dd::new(1.0 - delta), Dd::new(1.0 + delta), Dd::new(1.0 + delta)).unwrap();
        assert!(stage.error.to_f64() < 1e-8, "error {}", stage.error);
        let dense = dense_error(&stage);
        assert!(dense <= stage.error.to_f64() * (1.0 + 1e-9));
        assert!(dense >= stage.error.to_f64() * 0.99);
    }

    #[test]
    fn extremely_narrow_domain_reports_its_measured_tiny_error() {
        let delta = 2f64.powi(-9);
        let stage = minimax_sign(15, Dd::new(1.0 - delta), Dd::new(1.0 + delta), Dd::new(1.0 + delta)).unwrap();
        assert!(stage.error.to_f64() < NEGLIGIBLE_ERROR);
        assert!(dense_error(&stage) <= stage.error.to_f64() * (1.0 + 1e-6) + 1e-30);
    }

    #[test]
    fn rejects_bad_arguments() {
        assert!(matches!(
            minimax_sign(4, Dd::new(0.1), Dd::ONE, Dd::ONE),
            Err(PolyError::BadDegree(4))
        ));
        assert!(matches!(
            minimax_sign(5, Dd::new(0.0), Dd::ONE, Dd::ONE),
            Err(PolyError::BadDomain { .. })
        ));
    }
}
