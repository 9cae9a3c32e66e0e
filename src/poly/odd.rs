//! Odd polynomials as Chebyshev series on a symmetric domain [-b, b]:
//! p(x) = Σ_k c_k T_{2k+1}(x/b).
//!
//! Why this representation: the power-basis coefficients of the composite stages grow to ~1e5
//! and cancel; the Chebyshev coefficients on the stage's own domain stay O(1), so the same series
//! can be evaluated stably (Clenshaw) both here in double-double and on the GPU in float32.

use super::dd::Dd;
use rayon::prelude::*;

/// One odd polynomial p(x) = Σ_k cheb[k]·T_{2k+1}(x / half_width).
#[derive(Clone, Debug, PartialEq)]
pub struct OddPoly {
    /// b: the series is in t = x/b, so inputs are expected in [-b, b].
    pub half_width: Dd,
    /// c_k, the coefficient of T_{2k+1}.
    pub cheb: Vec<Dd>,
}

impl OddPoly {
    pub fn degree(&self) -> usize {
        2 * self.cheb.len() - 1
    }

    /// Odd Clenshaw recurrence. With u = T_2(t) = 2t²-1 the odd Chebyshev polynomials obey
    /// T_{2k+3} = 2u·T_{2k+1} − T_{2k−1}, so b_k = c_k + 2u·b_{k+1} − b_{k+2} and
    /// p = t·(b_0 − b_1). It costs one multiply-add per odd term.
    pub fn eval(&self, x: Dd) -> Dd {
        let t = x / self.half_width;
        let two_u = (t * t).scale(4.0) - Dd::new(2.0);
        let (mut b1, mut b2) = (Dd::ZERO, Dd::ZERO);
        for &c in self.cheb.iter().rev() {
            let b0 = c + two_u * b1 - b2;
            b2 = b1;
            b1 = b0;
        }
        // after the loop b1 = b_0, b2 = b_1
        t * (b1 - b2)
    }

    /// Value and derivative dp/dx, by differentiating the odd Clenshaw recurrence in u.
    pub fn eval_with_derivative(&self, x: Dd) -> (Dd, Dd) {
        let t = x / self.half_width;
        let two_u = (t * t).scale(4.0) - Dd::new(2.0);
        let (mut b1, mut b2) = (Dd::ZERO, Dd::ZERO);
        let (mut d1, mut d2) = (Dd::ZERO, Dd::ZERO); // db_k/du
        for &c in self.cheb.iter().rev() {
            let b0 = c + two_u * b1 - b2;
            let d0 = b1.scale(2.0) + two_u * d1 - d2;
            b2 = b1;
            b1 = b0;
            d2 = d1;
            d1 = d0;
        }
        let value = t * (b1 - b2);
        // dp/dt = (b_0 − b_1) + t·(b_0' − b_1')·du/dt, du/dt = 4t
        let dp_dt = (b1 - b2) + (t * t).scale(4.0) * (d1 - d2);
        (value, dp_dt / self.half_width)
    }

    pub fn eval_f64(&self, x: f64) -> f64 {
        self.eval(Dd::new(x)).to_f64()
    }

    /// Power-basis coefficients a_j of x^j, j = 0..=degree (even ones are exactly zero).
    pub fn to_power_basis(&self) -> Vec<Dd> {
        let d = self.degree();
        let cheb_in_t = chebyshev_power_table(d);
        let mut coeffs_t = vec![Dd::ZERO; d + 1];
        for (k, &c) in self.cheb.iter().enumerate() {
            for (j, &a) in cheb_in_t[2 * k + 1].iter().enumerate() {
                coeffs_t[j] += c * a;
            }
        }
        // x^j / b^j
        let inv_b = Dd::ONE / self.half_width;
        let mut scale = Dd::ONE;
        for a in coeffs_t.iter_mut() {
            *a *= scale;
            scale *= inv_b;
        }
        coeffs_t
    }

    /// Build from power-basis coefficients (lowest degree first). Even coefficients must be
    /// negligible (the official files carry ~1e-40 noise there); they are dropped.
    pub fn from_power_basis(power: &[Dd], half_width: Dd) -> OddPoly {
        assert!(power.len() >= 2, "an odd polynomial needs at least the x^1 coefficient");
        // the largest odd degree the coefficient list reaches
        let degree = if power.len().is_multiple_of(2) {
            power.len() - 1
        } else {
            power.len() - 2
        };
        // x^j = b^j t^j, and t^j = 2^{1-j} Σ_{i ≤ j/2} C(j,i) T_{j-2i} (no T_0 for odd j).
        let mut cheb = vec![Dd::ZERO; degree.div_ceil(2)];
        let mut b_pow = half_width;
        for j in (1..=degree).step_by(2) {
            let a = power.get(j).copied().unwrap_or(Dd::ZERO) * b_pow;
            let mut binom = Dd::ONE;
            let scale = Dd::ONE.scale(0.5f64.powi(j as i32 - 1));
            for i in 0..=(j / 2) {
                let m = j - 2 * i;
                cheb[(m - 1) / 2] += a * binom * scale;
                binom = binom * Dd::new((j - i) as f64) / Dd::new((i + 1) as f64);
            }
            b_pow = b_pow * half_width * half_width;
        }
        OddPoly { half_width, cheb }
    }

    /// Roots of p' in [lo, hi] (critical points of p), located by a sign scan on a grid uniform
    /// in θ = acos(x/b) — where Chebyshev series oscillate uniformly — then bisection in
    /// double-double.
    pub fn critical_points(&self, lo: Dd, hi: Dd) -> Vec<Dd> {
        let derivative = |x: Dd| self.eval_with_derivative(x).1;
        let grid = theta_grid(lo, hi, self.half_width, 16 * self.degree() + 16);
        sign_change_roots(&grid, derivative)
    }
}

/// Points from lo to hi (inclusive) uniform in θ = acos(x/b), where x = b·cos θ.
pub fn theta_grid(lo: Dd, hi: Dd, half_width: Dd, count: usize) -> Vec<Dd> {
    let b = half_width.to_f64();
    let theta_hi = (lo.to_f64() / b).clamp(-1.0, 1.0).acos();
    let theta_lo = (hi.to_f64() / b).clamp(-1.0, 1.0).acos();
    let mut grid = Vec::with_capacity(count + 1);
    grid.push(lo);
    for i in 1..count {
        let theta = theta_hi + (theta_lo - theta_hi) * (i as f64) / (count as f64);
        let x = Dd::new(b * theta.cos());
        if x > lo && x < hi {
            grid.push(x);
        }
    }
    grid.push(hi);
    grid.dedup();
    grid
}

/// Roots of `f` between consecutive grid points where it changes sign (bisection to the
/// resolution of double-double; exact zeros on the grid count as roots). Large grids are
/// scanned in parallel.
pub fn sign_change_roots(grid: &[Dd], f: impl Fn(Dd) -> Dd + Sync) -> Vec<Dd> {
    const PARALLEL_FROM: usize = 4096;
    let values: Vec<Dd> = if grid.len() >= PARALLEL_FROM {
        grid.par_iter().map(|&x| f(x)).collect()
    } else {
        grid.iter().map(|&x| f(x)).collect()
    };
    let root_in = |i: usize| -> Option<Dd> {
        let (fa, fb) = (values[i], values[i + 1]);
        if fa.hi == 0.0 {
            Some(grid[i])
        } else if (fa.hi < 0.0) != (fb.hi < 0.0) && fb.hi != 0.0 {
            Some(bisect(grid[i], grid[i + 1], fa, &f))
        } else {
            None
        }
    };
    if grid.len() >= PARALLEL_FROM {
        (0..grid.len() - 1).into_par_iter().filter_map(root_in).collect()
    } else {
        (0..grid.len() - 1).filter_map(root_in).collect()
    }
}

fn bisect(mut a: Dd, mut b: Dd, mut fa: Dd, f: &impl Fn(Dd) -> Dd) -> Dd {
    for _ in 0..110 {
        let m = (a + b).scale(0.5);
        if m <= a || m >= b {
            break;
        }
        let fm = f(m);
        if fm.hi == 0.0 {
            return m;
        }
        if (fm.hi < 0.0) == (fa.hi < 0.0) {
            a = m;
            fa = fm;
        } else {
            b = m;
        }
    }
    (a + b).scale(0.5)
}

/// Power-basis coefficients of T_0..T_n in t (exact integers, fit in double-double up to 2^106).
fn chebyshev_power_table(n: usize) -> Vec<Vec<Dd>> {
    let mut table = vec![vec![Dd::ONE]];
    if n >= 1 {
        table.push(vec![Dd::ZERO, Dd::ONE]);
    }
    for m in 2..=n {
        // T_m = 2t·T_{m-1} − T_{m-2}
        let mut next = vec![Dd::ZERO; m + 1];
        for (j, &a) in table[m - 1].iter().enumerate() {
            next[j + 1] += a.scale(2.0);
        }
        for (j, &a) in table[m - 2].iter().enumerate() {
            next[j] -= a;
        }
        table.push(next);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poly(b: f64, c: &[f64]) -> OddPoly {
        OddPoly {
            half_width: Dd::new(b),
            cheb: c.iter().map(|&v| Dd::new(v)).collect(),
        }
    }

    #[test]
    fn clenshaw_matches_trigonometric_definition() {
        let p = poly(2.0, &[0.5, -0.25, 0.125, 0.3]);
        for &x in &[-2.0, -1.3, 0.0, 0.4, 1.9, 2.0] {
            let theta = (x / 2.0f64).acos();
            let expect: f64 = (0..4)
                .map(|k| p.cheb[k].to_f64() * (((2 * k + 1) as f64) * theta).cos())
                .sum();
            assert!((p.eval_f64(x) - expect).abs() < 1e-14, "x={x}");
        }
    }

    #[test]
    fn derivative_matches_finite_difference() {
        let p = poly(1.5, &[0.9, 0.2, -0.1, 0.05, 0.01]);
        for &x in &[-1.2, -0.3, 0.01, 0.7, 1.49] {
            let h = 1e-7;
            let fd = (p.eval_f64(x + h) - p.eval_f64(x - h)) / (2.0 * h);
            let (_, d) = p.eval_with_derivative(Dd::new(x));
            assert!((d.to_f64() - fd).abs() < 1e-6, "x={x}: {} vs {fd}", d.to_f64());
        }
    }

    #[test]
    fn power_basis_round_trip() {
        let p = poly(1.25, &[0.7, -0.2, 0.05, 0.01, -0.003]);
        let power = p.to_power_basis();
        assert_eq!(power.len(), 10);
        for j in (0..10).step_by(2) {
            assert_eq!(power[j].to_f64(), 0.0);
        }
        let x = Dd::new(0.83);
        let mut horner = Dd::ZERO;
        for &a in power.iter().rev() {
            horner = horner * x + a;
        }
        assert!((horner - p.eval(x)).abs().to_f64() < 1e-28);
        let back = OddPoly::from_power_basis(&power, p.half_width);
        for (a, b) in back.cheb.iter().zip(&p.cheb) {
            assert!((*a - *b).abs().to_f64() < 1e-28);
        }
    }

    #[test]
    fn critical_points_of_t5() {
        // T_5 has critical points at cos(kπ/5), k = 1..4.
        let p = poly(1.0, &[0.0, 0.0, 1.0]);
        let cps = p.critical_points(Dd::new(-1.0), Dd::new(1.0));
        assert_eq!(cps.len(), 4);
        let mut expect: Vec<f64> = (1..5).map(|k| (k as f64 * std::f64::consts::PI / 5.0).cos()).collect();
        expect.sort_by(|a, b| a.partial_cmp(b).unwrap());
        for (x, e) in cps.iter().zip(expect) {
            assert!((x.to_f64() - e).abs() < 1e-14);
        }
    }
}
