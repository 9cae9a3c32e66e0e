//! The statistics of an exact-vs-approximate comparison on the same images: Wilson intervals
//! for an accuracy, the paired (Newcombe) interval for the accuracy drop, the exact McNemar test
//! on the discordant images, and the logit error of the approximate network.
//!
//! Everything is computed from counts (and, for the logit error, sums and maxima), so shard
//! reports merge by adding counts and the figures are recomputed, never averaged.

use serde::{Deserialize, Serialize};

/// The standard normal quantile for a two-sided 95% interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// A closed interval of proportions (0..1), or of differences (-1..1).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub lo: f64,
    pub hi: f64,
}

impl Interval {
    /// The same interval in percent (reports show accuracies in percent).
    pub fn percent(self) -> Interval {
        Interval {
            lo: 100.0 * self.lo,
            hi: 100.0 * self.hi,
        }
    }
}

/// Wilson's score interval for `successes` out of `n` (no continuity correction). An empty
/// sample says nothing: [0, 1].
pub fn wilson(successes: u64, n: u64, z: f64) -> Interval {
    if n == 0 {
        return Interval { lo: 0.0, hi: 1.0 };
    }
    let n_f = n as f64;
    let p = successes as f64 / n_f;
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * n_f)) / (1.0 + z2 / n_f);
    let half = z / (1.0 + z2 / n_f) * (p * (1.0 - p) / n_f + z2 / (4.0 * n_f * n_f)).sqrt();
    // The formula is exact at the ends (p = 0 gives lo = 0), but rounding can leave -1e-17.
    Interval {
        lo: (centre - half).clamp(0.0, 1.0),
        hi: (centre + half).clamp(0.0, 1.0),
    }
}

/// How the exact and the approximate network's top-1 compare image by image: the paired 2x2
/// table, from which every paired statistic follows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paired {
    pub images: u64,
    /// Images both networks classify correctly.
    pub both_right: u64,
    /// Exact right, approximate wrong: what the approximation broke.
    pub exact_only: u64,
    /// Exact wrong, approximate right.
    pub approx_only: u64,
}

impl Paired {
    /// Counts one image.
    pub fn add(&mut self, exact_right: bool, approx_right: bool) {
        self.images += 1;
        match (exact_right, approx_right) {
            (true, true) => self.both_right += 1,
            (true, false) => self.exact_only += 1,
            (false, true) => self.approx_only += 1,
            (false, false) => {}
        }
    }

    pub fn merge(&mut self, other: &Paired) {
        self.images += other.images;
        self.both_right += other.both_right;
        self.exact_only += other.exact_only;
        self.approx_only += other.approx_only;
    }

    pub fn both_wrong(&self) -> u64 {
        self.images - self.both_right - self.exact_only - self.approx_only
    }

    pub fn exact_right(&self) -> u64 {
        self.both_right + self.exact_only
    }

    pub fn approx_right(&self) -> u64 {
        self.both_right + self.approx_only
    }

    /// Exact McNemar test: the two-sided binomial p-value of the discordant images splitting as
    /// they did if either network were equally likely to be the one that is right.
    pub fn mcnemar_p(&self) -> f64 {
        binomial_two_sided_half(
            self.exact_only.min(self.approx_only),
            self.exact_only + self.approx_only,
        )
    }

    /// Newcombe's interval (1998, method 10: Wilson score intervals of both accuracies combined
    /// with the observed correlation) for the drop exact − approximate top-1, as a proportion.
    pub fn drop_interval(&self, z: f64) -> Interval {
        let n = self.images;
        if n == 0 {
            return Interval { lo: -1.0, hi: 1.0 };
        }
        let n_f = n as f64;
        let (p1, p2) = (self.exact_right() as f64 / n_f, self.approx_right() as f64 / n_f);
        let (w1, w2) = (wilson(self.exact_right(), n, z), wilson(self.approx_right(), n, z));
        let phi = self.correlation();
        let drop = p1 - p2;
        let below = (p1 - w1.lo).powi(2) - 2.0 * phi * (p1 - w1.lo) * (w2.hi - p2) + (w2.hi - p2).powi(2);
        let above = (w1.hi - p1).powi(2) - 2.0 * phi * (w1.hi - p1) * (p2 - w2.lo) + (p2 - w2.lo).powi(2);
        Interval {
            lo: (drop - below.max(0.0).sqrt()).max(-1.0),
            hi: (drop + above.max(0.0).sqrt()).min(1.0),
        }
    }

    /// The phi coefficient of the 2x2 table (0 when a margin is empty).
    fn correlation(&self) -> f64 {
        let (a, b, c, d) = (
            self.both_right as f64,
            self.exact_only as f64,
            self.approx_only as f64,
            self.both_wrong() as f64,
        );
        let margins = (a + b) * (c + d) * (a + c) * (b + d);
        if margins == 0.0 {
            0.0
        } else {
            (a * d - b * c) / margins.sqrt()
        }
    }
}

/// P(|X - n/2| ≥ |k - n/2|) for X ~ Binomial(n, 1/2), with `k ≤ n/2`: twice the lower tail,
/// capped at 1. Summed in log space, so n in the hundreds of thousands does not underflow.
fn binomial_two_sided_half(k: u64, n: u64) -> f64 {
    if n == 0 || 2 * k >= n {
        return 1.0;
    }
    // ln C(n, i) by the ratio C(n, i+1) = C(n, i)(n - i)/(i + 1), then log-sum-exp.
    let mut log_terms = Vec::with_capacity(k as usize + 1);
    let mut log_c = 0.0f64;
    for i in 0..=k {
        if i > 0 {
            log_c += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        log_terms.push(log_c);
    }
    let top = log_terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = log_terms.iter().map(|t| (t - top).exp()).sum();
    let log_tail = top + sum.ln() - n as f64 * std::f64::consts::LN_2;
    (2.0 * log_tail.exp()).min(1.0)
}

/// How far the approximate network's logits are from the exact ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LogitError {
    /// Finite logit pairs compared.
    pub logits: u64,
    /// Σ |Δlogit| over them (f64: exact enough for any dataset size).
    pub sum_abs: f64,
    pub max_abs: f64,
    /// The largest per-image max |Δlogit| / max |exact logit| (the worst relative error).
    pub max_relative: f64,
    /// Logit pairs where either side is NaN or infinite (left out of the figures above).
    pub non_finite: u64,
}

impl LogitError {
    /// Adds one image's logits; returns its max |Δlogit| (NaN when it has a non-finite logit).
    pub fn add_image(&mut self, exact: &[f32], approx: &[f32]) -> f64 {
        let (mut image_max, mut exact_max, mut broken) = (0.0f64, 0.0f64, false);
        for (&e, &a) in exact.iter().zip(approx) {
            if !(e.is_finite() && a.is_finite()) {
                self.non_finite += 1;
                broken = true;
                continue;
            }
            let delta = (f64::from(a) - f64::from(e)).abs();
            self.logits += 1;
            self.sum_abs += delta;
            image_max = image_max.max(delta);
            exact_max = exact_max.max(f64::from(e).abs());
        }
        self.max_abs = self.max_abs.max(image_max);
        if exact_max > 0.0 {
            self.max_relative = self.max_relative.max(image_max / exact_max);
        }
        if broken { f64::NAN } else { image_max }
    }

    pub fn merge(&mut self, other: &LogitError) {
        self.logits += other.logits;
        self.sum_abs += other.sum_abs;
        self.max_abs = self.max_abs.max(other.max_abs);
        self.max_relative = self.max_relative.max(other.max_relative);
        self.non_finite += other.non_finite;
    }

    pub fn mean_abs(&self) -> f64 {
        if self.logits == 0 {
            0.0
        } else {
            self.sum_abs / self.logits as f64
        }
    }

    /// −log2 of the worst relative error: the bits of the exact logits the approximation keeps
    /// (infinite when the logits are identical).
    pub fn relative_bits(&self) -> f64 {
        -self.max_relative.log2()
    }
}

/// The top-1 class of one row of logits and its margin over the runner-up (NaN never ranks;
/// ties go to the lower class index, as in [`super::top5`]). None for a row of NaNs.
pub fn top1_margin(row: &[f32]) -> Option<(usize, f32)> {
    let mut best: Option<(usize, f32)> = None;
    let mut second = f32::NEG_INFINITY;
    for (i, &v) in row.iter().enumerate() {
        if v.is_nan() {
            continue;
        }
        match best {
            Some((_, b)) if v <= b => second = second.max(v),
            Some((_, b)) => {
                second = b;
                best = Some((i, v));
            }
            None => best = Some((i, v)),
        }
    }
    best.map(|(i, b)| {
        (
            i,
            if second == f32::NEG_INFINITY {
                f32::INFINITY
            } else {
                b - second
            },
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn wilson_matches_scipy() {
        // scipy 1.x: binomtest(k, n).proportion_ci(0.95, method="wilson")
        //   k=81,  n=263   -> (0.2552885199, 0.3662095770)
        //   k=912, n=1000  -> (0.8928277490, 0.9280190021)
        //   k=0,   n=10    -> (0.0,          0.2775327999)   (hand: z²/(n+z²))
        //   k=10,  n=10    -> (0.7224672001, 1.0)
        let cases = [
            (81, 263, 0.2552885199, 0.3662095770),
            (912, 1000, 0.8928277490, 0.9280190021),
            (0, 10, 0.0, 0.2775327999),
            (10, 10, 0.7224672001, 1.0),
        ];
        for (k, n, lo, hi) in cases {
            let w = wilson(k, n, Z95);
            assert!(close(w.lo, lo, 1e-9) && close(w.hi, hi, 1e-9), "{k}/{n}: {w:?}");
        }
        assert_eq!(wilson(0, 0, Z95), Interval { lo: 0.0, hi: 1.0 });
    }

    #[test]
    fn mcnemar_exact_matches_scipy() {
        // scipy: binomtest(min(b, c), b + c, 0.5).pvalue
        //   b=7,  c=1   -> 0.0703125           (hand: 2 * (1 + 8) / 256)
        //   b=10, c=2   -> 0.0385742188        (hand: 2 * (1 + 12 + 66) / 4096)
        //   b=30, c=12  -> 0.0079158973
        //   b=5,  c=5   -> 1.0
        //   b=0,  c=0   -> 1.0
        //   b=600, c=500 -> 0.0028195450       (large n: log-space sum)
        //   b=100001, c=99999 -> 0.9982158781
        let cases = [
            (7, 1, 0.0703125),
            (10, 2, 0.0385742188),
            (30, 12, 0.0079158973),
            (5, 5, 1.0),
            (0, 0, 1.0),
            (600, 500, 0.0028195450),
        ];
        for (b, c, p) in cases {
            let t = Paired {
                images: 2000,
                both_right: 900,
                exact_only: b,
                approx_only: c,
            };
            assert!(close(t.mcnemar_p(), p, 1e-9), "b={b} c={c}: {}", t.mcnemar_p());
            let swapped = Paired {
                exact_only: c,
                approx_only: b,
                ..t
            };
            assert_eq!(t.mcnemar_p(), swapped.mcnemar_p(), "symmetric");
        }
        // 200,000 discordant images split evenly but one: no underflow to 0 or NaN
        let huge = Paired {
            images: 400_000,
            both_right: 0,
            exact_only: 100_001,
            approx_only: 99_999,
        };
        assert!(close(huge.mcnemar_p(), 0.9982158781, 1e-8), "{}", huge.mcnemar_p());
    }

    #[test]
    fn drop_interval_matches_newcombe() {
        // Reference: scipy's Wilson intervals (binomtest(...).proportion_ci(method="wilson"))
        // combined in Python by Newcombe's method 10 (δ = D − √((p1−l1)² − 2φ(p1−l1)(u2−p2) +
        // (u2−p2)²), ε likewise). Table a=12, b=9, c=2, d=4 (n=27): D = 0.2592593,
        // interval (0.0315204, 0.4521036).
        let t = Paired {
            images: 27,
            both_right: 12,
            exact_only: 9,
            approx_only: 2,
        };
        let d = t.drop_interval(Z95);
        assert!(close(d.lo, 0.0315204, 1e-6) && close(d.hi, 0.4521036, 1e-6), "{d:?}");
        // ResNet-20-like: 1000 images, exact 912 right, approx 905, 12 broken and 5 fixed;
        // reference (the same computation): (-0.0014332, 0.0158405).
        let r = Paired {
            images: 1000,
            both_right: 900,
            exact_only: 12,
            approx_only: 5,
        };
        let d = r.drop_interval(Z95);
        assert!(close(d.lo, -0.0014332, 1e-6) && close(d.hi, 0.0158405, 1e-6), "{d:?}");
        // identical networks (φ = 1): ±0.0031532 around 0 (the same computation)
        let same = Paired {
            images: 1000,
            both_right: 912,
            exact_only: 0,
            approx_only: 0,
        };
        let d = same.drop_interval(Z95);
        assert!(close(d.lo, -0.0031532, 1e-6) && close(d.hi, 0.0031532, 1e-6), "{d:?}");
    }

    #[test]
    fn paired_counts_add_and_merge() {
        let mut t = Paired::default();
        for (e, a) in [(true, true), (true, false), (false, true), (false, false), (true, true)] {
            t.add(e, a);
        }
        assert_eq!(
            (t.both_right, t.exact_only, t.approx_only, t.both_wrong()),
            (2, 1, 1, 1)
        );
        let mut m = t;
        m.merge(&t);
        assert_eq!((m.images, m.exact_right(), m.approx_right()), (10, 6, 6));
    }

    #[test]
    fn logit_error_by_hand() {
        let mut e = LogitError::default();
        // image 1: |Δ| = 0.5, 0.25, 0 → max 0.5, exact max 4 → relative 1/8
        assert_eq!(e.add_image(&[4.0, -2.0, 1.0], &[3.5, -2.25, 1.0]), 0.5);
        // image 2: one NaN logit: left out, counted
        assert!(e.add_image(&[1.0, 2.0, 0.5], &[f32::NAN, 2.0, 0.25]).is_nan());
        assert_eq!((e.logits, e.non_finite), (5, 1));
        assert!(close(e.mean_abs(), 1.0 / 5.0, 1e-12)); // (0.5 + 0.25 + 0 + 0 + 0.25) / 5
        assert_eq!(e.max_abs, 0.5);
        assert_eq!(e.max_relative, 0.125);
        assert_eq!(e.relative_bits(), 3.0);
        let mut m = LogitError::default();
        m.merge(&e);
        m.merge(&e);
        assert_eq!((m.logits, m.max_abs, m.non_finite), (10, 0.5, 2));
    }

    #[test]
    fn top1_and_margin() {
        assert_eq!(top1_margin(&[0.1, 2.0, 1.5, -3.0]), Some((1, 0.5)));
        assert_eq!(top1_margin(&[1.0, 1.0]), Some((0, 0.0)));
        assert_eq!(top1_margin(&[f32::NAN, 3.0, 1.0]), Some((1, 2.0)));
        assert_eq!(top1_margin(&[2.0]), Some((0, f32::INFINITY)));
        assert_eq!(top1_margin(&[f32::NAN]), None);
    }
}
