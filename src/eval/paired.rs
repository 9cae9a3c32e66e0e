//! Confidence bounds on a top-1 drop from paired outcomes.
//!
//! Exact and approximate networks see the same images, so their errors are paired: the drop
//! depends only on the discordant images, `lost` (exact right, approximation wrong) and `gained`
//! (exact wrong, approximation right): drop = (lost − gained) / n = p_lost − p_gained. Each rate
//! gets an exact (Clopper–Pearson) bound over the n images and the two are combined by
//! Bonferroni: upper = upper(p_lost) − lower(p_gained), each at half the error. This is valid
//! without assuming the number of discordant images known (a bound conditional on it, as in
//! McNemar's test, claims a drop of at most 0.4 points from 0 flips in 250 images, and plans
//! accepted that way lost 1.2 points on held-out images), and it is still far tighter than
//! comparing two accuracies as if independent.

use super::stats::Paired;
use serde::{Deserialize, Serialize};

/// Discordant images of an approximation against the exact network on `images` images.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flips {
    pub images: u64,
    /// Exact top-1 right, approximation wrong.
    pub lost: u64,
    /// Exact top-1 wrong, approximation right.
    pub gained: u64,
}

/// A drop in top-1 percentage points with a confidence interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DropInterval {
    pub drop: f64,
    pub lower: f64,
    pub upper: f64,
    /// Two-sided confidence of [lower, upper] (e.g. 0.95).
    pub confidence: f64,
}

impl From<Paired> for Flips {
    fn from(p: Paired) -> Flips {
        Flips {
            images: p.images,
            lost: p.exact_only,
            gained: p.approx_only,
        }
    }
}

impl Flips {
    pub fn add(&mut self, other: Flips) {
        self.images += other.images;
        self.lost += other.lost;
        self.gained += other.gained;
    }

    /// Points of top-1 lost: 100 (lost − gained) / n.
    pub fn drop_points(&self) -> f64 {
        100.0 * (self.lost as f64 - self.gained as f64) / self.images.max(1) as f64
    }

    /// (lower, upper) of the drop in points, `tail` the error of each of the two rate bounds.
    fn bounds(&self, tail: f64) -> (f64, f64) {
        let n = self.images;
        let upper = binomial_upper(self.lost, n, tail) - binomial_lower(self.gained, n, tail);
        let lower = binomial_lower(self.lost, n, tail) - binomial_upper(self.gained, n, tail);
        (100.0 * lower, 100.0 * upper)
    }

    /// One-sided upper confidence bound (e.g. `confidence` 0.95) on the drop, in points.
    pub fn drop_upper_bound(&self, confidence: f64) -> f64 {
        self.bounds((1.0 - confidence) / 2.0).1
    }

    /// Two-sided interval at `confidence`.
    pub fn drop_interval(&self, confidence: f64) -> DropInterval {
        let (lower, upper) = self.bounds((1.0 - confidence) / 4.0);
        DropInterval {
            drop: self.drop_points(),
            lower,
            upper,
            confidence,
        }
    }
}

/// ln(k!) for k = 0..=m.
fn ln_factorials(m: u64) -> Vec<f64> {
    let mut out = Vec::with_capacity(m as usize + 1);
    let mut acc = 0.0;
    out.push(0.0);
    for k in 1..=m {
        acc += (k as f64).ln();
        out.push(acc);
    }
    out
}

/// P(X ≤ k) for X ~ Binomial(m, p).
fn binomial_cdf(k: u64, m: u64, p: f64, ln_fact: &[f64]) -> f64 {
    if p <= 0.0 {
        return 1.0;
    }
    if p >= 1.0 {
        return if k >= m { 1.0 } else { 0.0 };
    }
    let (lp, lq) = (p.ln(), (-p).ln_1p());
    (0..=k.min(m))
        .map(|i| {
            let ln_pmf = ln_fact[m as usize] - ln_fact[i as usize] - ln_fact[(m - i) as usize]
                + i as f64 * lp
                + (m - i) as f64 * lq;
            ln_pmf.exp()
        })
        .sum::<f64>()
        .min(1.0)
}

/// Clopper–Pearson one-sided upper bound: the p with P(X ≤ k) = tail (1 when k = m).
pub fn binomial_upper(k: u64, m: u64, tail: f64) -> f64 {
    if k >= m {
        return 1.0;
    }
    let ln_fact = ln_factorials(m);
    // P(X ≤ k) falls as p grows: bisect.
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if binomial_cdf(k, m, mid, &ln_fact) > tail {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

/// Clopper–Pearson one-sided lower bound: the p with P(X ≥ k) = tail (0 when k = 0).
pub fn binomial_lower(k: u64, m: u64, tail: f64) -> f64 {
    if k == 0 {
        return 0.0;
    }
    let ln_fact = ln_factorials(m);
    // P(X ≥ k) = 1 − P(X ≤ k − 1) grows with p: bisect (cheap for the small k of flips).
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if 1.0 - binomial_cdf(k - 1, m, mid, &ln_fact) < tail {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clopper_pearson_matches_closed_forms_and_tables() {
        // k = 0: (1 − p)^m = tail.
        for m in [1u64, 10, 200] {
            let expected = 1.0 - 0.05f64.powf(1.0 / m as f64);
            assert!((binomial_upper(0, m, 0.05) - expected).abs() < 1e-12, "m={m}");
        }
        // 5 of 10, two-sided 95 %: [0.1871, 0.8129] (standard tables).
        assert!((binomial_lower(5, 10, 0.025) - 0.187_086).abs() < 1e-5);
        assert!((binomial_upper(5, 10, 0.025) - 0.812_914).abs() < 1e-5);
        assert_eq!(binomial_upper(7, 7, 0.05), 1.0);
        assert_eq!(binomial_lower(0, 7, 0.05), 0.0);
        // lower(k) = 1 − upper(m − k).
        for (k, m) in [(1u64, 9u64), (3, 40), (12, 300)] {
            assert!((binomial_lower(k, m, 0.05) - (1.0 - binomial_upper(m - k, m, 0.05))).abs() < 1e-9);
        }
    }

    #[test]
    fn drop_bounds_from_flips() {
        // No flip in 250 images still allows a drop: p_lost ≤ 1 − 0.025^(1/250) = 1.46 %.
        let none = Flips {
            images: 250,
            lost: 0,
            gained: 0,
        };
        let expected = 100.0 * (1.0 - 0.025f64.powf(1.0 / 250.0));
        assert!((none.drop_upper_bound(0.95) - expected).abs() < 1e-9);
        // 10 lost, 4 gained of 2000: drop 0.3 points; the bound lies between it and 10 lost
        // with nothing gained back.
        let f = Flips {
            images: 2000,
            lost: 10,
            gained: 4,
        };
        assert!((f.drop_points() - 0.3).abs() < 1e-12);
        let ucb = f.drop_upper_bound(0.95);
        let all_lost = 100.0 * binomial_upper(10, 2000, 0.025);
        assert!(ucb > 0.3 && ucb < all_lost, "{ucb} {all_lost}");
        let i = f.drop_interval(0.95);
        assert!(i.lower < 0.3 && i.upper > ucb, "{i:?}");
        // More images at the same rates: a tighter bound.
        let big = Flips {
            images: 20000,
            lost: 100,
            gained: 40,
        };
        assert!(big.drop_upper_bound(0.95) < ucb);
        assert!(big.drop_upper_bound(0.95) > 0.3);
    }
}
