//! What an activation site saw during a run, in a layout every backend fills the same way.

use crate::model::SiteKind;
use serde::Serialize;

/// Histogram bins of ⌊log2 |x|⌋: bin i holds 2^(i+LOG2_MIN) ≤ |x| < 2^(i+1+LOG2_MIN); the first
/// bin also takes zero and anything smaller, the last anything larger (and infinities).
pub const HIST_BINS: usize = 48;
pub const LOG2_MIN: i32 = -24;

/// A site's statistics as a backend accumulates them in 32-bit words (the GPU's layout): [0]
/// inputs with |x| > B, [1] the bits of the largest finite |x|, [2] non-finite inputs, then the
/// [`HIST_BINS`] histogram counts.
pub const STATS_HEADER_WORDS: usize = 3;
pub const STATS_WORDS: usize = STATS_HEADER_WORDS + HIST_BINS;

/// What one site saw during a run (its inputs: pre-activation values, or max-pool inputs).
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct SiteStats {
    pub name: String,
    /// Not written: whoever reads statistics back (a resume state) sets it from the graph.
    #[serde(skip, default = "unwritten_kind")]
    pub kind: SiteKind,
    /// Values seen.
    pub count: u64,
    /// Largest finite |x| seen.
    pub max_abs: f32,
    /// Values with |x| > B (0 for an exact site, which has no B).
    pub out_of_range: u64,
    /// NaN or infinite inputs (an approximation that blew up upstream).
    pub non_finite: u64,
    /// Counts per ⌊log2 |x|⌋ (see [`HIST_BINS`], [`LOG2_MIN`]): enough to choose B after an
    /// exact run, or read |x|/B for any B.
    pub log2_hist: Vec<u64>,
}

fn unwritten_kind() -> SiteKind {
    SiteKind::Relu
}

impl SiteStats {
    pub fn new(name: &str, kind: SiteKind) -> SiteStats {
        SiteStats {
            name: name.to_string(),
            kind,
            count: 0,
            max_abs: 0.0,
            out_of_range: 0,
            non_finite: 0,
            log2_hist: vec![0; HIST_BINS],
        }
    }

    pub fn merge(&mut self, other: &SiteStats) {
        self.count += other.count;
        self.max_abs = self.max_abs.max(other.max_abs);
        self.out_of_range += other.out_of_range;
        self.non_finite += other.non_finite;
        for (a, b) in self.log2_hist.iter_mut().zip(&other.log2_hist) {
            *a += b;
        }
    }

    /// Accumulates `values`; `bound` is B of an approximate site.
    pub fn observe(&mut self, values: &[f32], bound: Option<f64>) {
        let bound = bound.map_or(f32::INFINITY, |b| b as f32);
        // u32 counts: blocks short enough that none can overflow.
        for block in values.chunks(u32::MAX as usize) {
            self.observe_block(block, bound);
        }
        self.count += values.len() as u64;
    }

    /// Two passes over values still in cache: the largest finite |x| and the count over B (lane
    /// by lane, so the compiler vectorises it), then counts per raw exponent field (255: NaN
    /// and infinities) folded into the histogram at the end — no branch or clamp per value.
    fn observe_block(&mut self, values: &[f32], bound: f32) {
        const INFINITY_BITS: u32 = 0x7f80_0000;
        const LANES: usize = 8;
        let (mut max_bits, mut over) = ([0u32; LANES], [0u32; LANES]);
        let mut observe_range = |lane: usize, v: f32| {
            let abs_bits = v.to_bits() & 0x7fff_ffff;
            let finite = abs_bits < INFINITY_BITS;
            // Non-negative finite floats order as their bits do.
            max_bits[lane] = max_bits[lane].max(if finite { abs_bits } else { 0 });
            over[lane] += (finite & (f32::from_bits(abs_bits) > bound)) as u32;
        };
        let mut groups = values.chunks_exact(LANES);
        for group in &mut groups {
            group.iter().enumerate().for_each(|(lane, &v)| observe_range(lane, v));
        }
        groups.remainder().iter().for_each(|&v| observe_range(0, v));
        let max_abs = max_bits.into_iter().max().map_or(0.0, f32::from_bits);
        self.max_abs = self.max_abs.max(max_abs);
        self.out_of_range += over.iter().map(|&c| c as u64).sum::<u64>();

        // Four interleaved tables: neighbouring values often share a bin, and a single table
        // would make each increment wait for the previous one.
        const WAYS: usize = 4;
        const NON_FINITE: usize = 0xff;
        let mut by_exponent = [[0u32; 256]; WAYS];
        let mut groups = values.chunks_exact(WAYS);
        for group in &mut groups {
            for (table, &v) in by_exponent.iter_mut().zip(group) {
                table[exponent_field(v)] += 1;
            }
        }
        for &v in groups.remainder() {
            by_exponent[0][exponent_field(v)] += 1;
        }
        for exponent in 0..256 {
            let total: u64 = by_exponent.iter().map(|t| t[exponent] as u64).sum();
            match exponent {
                NON_FINITE => self.non_finite += total,
                _ => self.log2_hist[exponent_bin(exponent)] += total,
            }
        }
    }
}

/// The histogram bin of a finite |x|, from the float's exponent bits (no log call).
pub fn log2_bin(a: f32) -> usize {
    exponent_bin(exponent_field(a))
}

/// A float's biased exponent field, 0 … 255 (the sign dropped).
fn exponent_field(v: f32) -> usize {
    (v.to_bits() >> 23) as usize & 0xff
}

/// The histogram bin of a biased exponent field (zero and subnormals: the first).
fn exponent_bin(field: usize) -> usize {
    (field as i32 - 127 - LOG2_MIN).clamp(0, HIST_BINS as i32 - 1) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The interleaved accumulation equals one value at a time, whatever the length.
    #[test]
    fn statistics_equal_a_value_by_value_count() {
        for n in [0, 1, 3, 4, 5, 1001] {
            let values: Vec<f32> = (0..n)
                .map(|i| match i % 97 {
                    13 => f32::NAN,
                    50 => f32::NEG_INFINITY,
                    k => (k as f32 - 48.0) * 1.37f32.powi(i % 23 - 11),
                })
                .collect();
            let mut got = SiteStats::new("x", SiteKind::Relu);
            got.observe(&values, Some(3.0));
            let mut want = SiteStats::new("x", SiteKind::Relu);
            for &v in &values {
                if v.is_finite() {
                    want.max_abs = want.max_abs.max(v.abs());
                    want.out_of_range += (v.abs() > 3.0) as u64;
                    want.log2_hist[log2_bin(v.abs())] += 1;
                } else {
                    want.non_finite += 1;
                }
            }
            want.count = n as u64;
            assert_eq!(got, want, "n = {n}");
        }
    }

    #[test]
    fn statistics_count_out_of_range_and_non_finite_values_and_bin_by_exponent() {
        let mut s = SiteStats::new("x", SiteKind::Relu);
        s.observe(&[0.0, 0.75, -3.0, 5.0, f32::NAN, f32::INFINITY], Some(4.0));
        assert_eq!((s.count, s.out_of_range, s.non_finite, s.max_abs), (6, 1, 2, 5.0));
        assert_eq!(s.log2_hist[(-1 - LOG2_MIN) as usize], 1); // 0.75 in [2^-1, 1)
        assert_eq!(s.log2_hist[(1 - LOG2_MIN) as usize], 1); // 3 in [2, 4)
        assert_eq!(s.log2_hist[(2 - LOG2_MIN) as usize], 1); // 5 in [4, 8)
        assert_eq!(s.log2_hist[0], 1); // zero
    }
}
