//! Confidence bounds on a top-1 drop from paired outcomes.
//!
//! Exact and approximate networks see the same images, so their errors are paired: what the
//! drop depends on are the discordant images, `lost` (exact right, approximation wrong) and
//! `gained` (exact wrong, approximation right); drop = (lost − gained) / n. Conditional on the
//! m = lost + gained discordant images, lost ~ Binomial(m, p) and the drop is m(2p − 1)/n, so an
//! exact (Clopper–Pearson) bound on p gives a bound on the drop (the McNemar setting). This is
//! much tighter than comparing two accuracies as if independent, and it never claims a drop
//! below what the flips allow.

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

impl Flips {
    pub fn add(&mut self, other: Flips) {
        self.images += other.images;
        self.lost += other.lost;
        self.gained += other.gained;
    }

    fn discordant(&self) -> u64 {
        self.lost + self.gained
    }

    /// Points of top-1 lost: 100 (lost − gained) / n.
    pub fn drop_points(&self) -> f64 {
        100.0 * (self.lost as f64 - self.gained as f64) / self.images.max(1) as f64
    }

    fn points_at(&self, p: f64) -> f64 {
        100.0 * self.discordant() as f64 * (2.0 * p - 1.0) / self.images.max(1) as f64
    }

    /// One-sided upper confidence bound (e.g. `confidence` 0.95) on the drop, in points.
    pub fn drop_upper_bound(&self, confidence: f64) -> f64 {
        let p = binomial_upper(self.lost, self.discordant(), 1.0 - confidence);
        self.points_at(p)
    }

    /// Two-sided interval at `confidence` (each tail (1 − confidence)/2).
    pub fn drop_interval(&self, confidence: f64) -> DropInterval {
        let tail = (1.0 - confidence) / 2.0;
        let m = self.discordant();
        DropInterval {
            drop: self.drop_points(),
            lower: self.points_at(binomial_lower(self.lost, m, tail)),
            upper: self.points_at(binomial_upper(self.lost, m, tail)),
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
    1.0 - binomial_upper(m - k, m, tail)
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
    }

    #[test]
    fn drop_bounds_from_flips() {
        // No discordant image: the drop is exactly 0 under the paired model.
        let none = Flips { images: 2000, lost: 0, gained: 0 };
        assert_eq!(none.drop_upper_bound(0.95), 0.0);
        // 10 lost, 4 gained of 2000: drop 0.3 points; the bound is above it and below the
        // all-lost worst case (14 / 2000 = 0.7).
        let f = Flips { images: 2000, lost: 10, gained: 4 };
        assert!((f.drop_points() - 0.3).abs() < 1e-12);
        let ucb = f.drop_upper_bound(0.95);
        assert!(ucb > 0.3 && ucb < 0.7, "{ucb}");
        let i = f.drop_interval(0.95);
        assert!(i.lower < 0.3 && i.upper > ucb && i.upper < 0.7, "{i:?}");
        // More images with the same rates: a tighter bound.
        let big = Flips { images: 20000, lost: 100, gained: 40 };
        assert!(big.drop_upper_bound(0.95) < ucb);
    }
}
