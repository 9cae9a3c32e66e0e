//! CKKS noise model: the standard deviation of the error each homomorphic operation adds to a
//! slot, derived from the parameter set (no fitted constants).
//!
//! Units: every figure is the error of one slot's real part in the units of the encoded value
//! (a message encoded at scale Δ). Convention (canonical embedding): a polynomial whose N
//! coefficients have second moment V decodes, divided by Δ, to slots whose real parts have
//! second moment N·V / (2Δ²) — the N roots of unity are orthogonal, so Σ_j |σ_j(e)|² = N·Σ e_i²
//! over all N embeddings, half of it in the real parts. This is the average-case ("CLT")
//! heuristic of Costache, Curtis, Hales, Murphy, Ogilvie and Player, "On the precision loss in
//! approximate homomorphic encryption" (SAC 2023, eprint 2022/162), which they show tracks
//! HEAAN/SEAL measurements, and of Cheon–Kim–Kim–Song (ASIACRYPT 2017) §3.4 in variance form.
//!
//! Per coefficient (σ: error std, h: secret Hamming weight, N: ring degree):
//! - encoding: rounding Δ·m to integers, V = 1/12;
//! - public-key encryption: v·e + e0 + e1·s with v uniform ternary (variance 2/3), so
//!   V = σ²(1 + 2N/3 + h) + 1/12 (OpenFHE's and SEAL's encryption);
//! - rescale by a prime q: the rounding of c0 and c1, r0 + r1·s, V = (1 + h)/12;
//! - hybrid key switching (rotation, relinearisation; Han–Ki, CT-RSA 2020): the digits times
//!   the key errors divided by P, N·σ²·Σ_j (Q_j/P)²/12, plus ModDown's rounding. ModDown
//!   converts [x]_P to Q with the fast (approximate) basis conversion, which returns x + u·P
//!   with u in [0, k) for k special primes (Cheon–Han–Kim–Kim–Song, SAC 2018; Halevi–Polyakov–
//!   Shoup, CT-RSA 2019), about (k−1)/2 on average; the rounding then has second moment
//!   1/12 + ((k−1)/2)² per component: V = (1 + h)·(1/12 + (k−1)²/4) (OpenFHE: measured 1.03
//!   and 3.1 bits above a rescale for k = 2 and 6, predicted 1.0 and 3.1). Lattigo corrects
//!   the overflow in floating point (ModUpExact): no overflow term there.
//! - relinearisation happens at scale Δ² and is divided by q at the following rescale: its
//!   share is ~2^-50 of the rescale's and is neglected;
//! - bootstrapping: its error is not derived here but taken from the parameter set's
//!   published (or measured) precision, converted to a standard deviation (`bootstrap_std`).
//!
//! `tests/ckks_noise.rs` checks every formula against OpenFHE 1.6.1 measurements
//! (`scripts/openfhe_noise.py`, `tests/fixtures/openfhe_noise.json`).

use super::preset::{CkksPreset, SecretDist};
use crate::poly::Composite;
use crate::poly::cost::relu_cost;
use crate::poly::dd::Dd;
use std::fmt;

/// Bits of OpenFHE's special (auxiliary) primes (AUXMODSIZE on 64-bit builds).
const OPENFHE_SPECIAL_PRIME_BITS: u32 = 60;

/// For the largest of 2^11..2^16 Gaussian samples, E[max |e|] ≈ 4σ (√(2 ln 2n) ≈ 3.9..4.7): the
/// factor between a published max-error precision and a standard deviation.
const MAX_OVER_STD: f64 = 4.0;

/// What the model needs of a parameter set.
#[derive(Clone, Debug, PartialEq)]
pub struct NoiseParams {
    /// Ring degree N.
    pub ring_degree: f64,
    /// log2 of the scale Δ.
    pub scale_bits: f64,
    /// Standard deviation σ of the discrete Gaussian errors.
    pub sigma: f64,
    /// Expected number of non-zero secret coefficients.
    pub hamming_weight: f64,
    /// Mean overflow u of ModDown's basis conversion from P: (k−1)/2 for the fast conversion
    /// over k special primes (OpenFHE), 0 for an exact one (Lattigo).
    pub mod_down_overflow: f64,
    /// Σ_j (Q_j / P)² over the key-switching digits at the top level.
    pub digit_ratio_sq: f64,
    /// Standard deviation of the bootstrapping error for messages in [-1, 1], where known.
    pub bootstrap_std: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NoiseError(pub String);

impl fmt::Display for NoiseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CKKS noise model: {}", self.0)
    }
}

impl std::error::Error for NoiseError {}

impl NoiseParams {
    /// The hybrid key-switching layout OpenFHE builds: `primes` Q primes (the first
    /// `first_bits`, the rest `scale_bits`) cut into `dnum` digits of ⌈primes/dnum⌉ primes, and P
    /// made of ⌈(largest digit bits)/60⌉ primes of 60 bits (CryptoParametersRNS::EstimateLogP).
    /// Returns (k, Σ_j (Q_j/P)²).
    pub fn openfhe_key_switching(primes: u32, first_bits: u32, scale_bits: u32, dnum: u32) -> (u32, f64) {
        let primes = primes.max(1);
        let dnum = dnum.clamp(1, primes.max(1));
        let per_digit = primes.div_ceil(dnum);
        let digit_bits: Vec<u32> = (0..primes)
            .collect::<Vec<_>>()
            .chunks(per_digit as usize)
            .map(|chunk| {
                chunk
                    .iter()
                    .map(|&i| if i == 0 { first_bits } else { scale_bits })
                    .sum()
            })
            .collect();
        let largest = digit_bits.iter().copied().max().unwrap_or(first_bits);
        let k = largest.div_ceil(OPENFHE_SPECIAL_PRIME_BITS);
        let p_bits = f64::from(k * OPENFHE_SPECIAL_PRIME_BITS);
        let ratio_sq = digit_bits.iter().map(|&b| (2.0 * (f64::from(b) - p_bits)).exp2()).sum();
        (k, ratio_sq)
    }

    /// The model's inputs from a preset. Key switching: the preset's P where published
    /// (Lattigo's sets, exact ModDown), otherwise OpenFHE's layout for the whole chain (levels
    /// after bootstrapping + bootstrapping levels + q0) with its fast ModDown.
    pub fn from_preset(p: &CkksPreset) -> Result<NoiseParams, NoiseError> {
        let ring_degree = f64::from(1u32 << p.log_ring_degree);
        let hamming_weight = match p.secret {
            SecretDist::Sparse { hamming_weight } => f64::from(hamming_weight),
            SecretDist::UniformTernary => 2.0 * ring_degree / 3.0,
        };
        let primes = 1 + p.levels_after_bootstrap + p.bootstrap_levels;
        let dnum = p.dnum.unwrap_or(3);
        let (mod_down_overflow, digit_ratio_sq) = match p.special_modulus_bits {
            Some(p_bits) => {
                let q_bits = f64::from(p.first_modulus_bits + (primes - 1) * p.scale_bits);
                let digit_bits = q_bits / f64::from(dnum.max(1));
                (0.0, f64::from(dnum) * (2.0 * (digit_bits - f64::from(p_bits))).exp2())
            }
            None => {
                let (k, ratio) = Self::openfhe_key_switching(primes, p.first_modulus_bits, p.scale_bits, dnum);
                (Self::fast_conversion_overflow(k), ratio)
            }
        };
        let bootstrap_std = match p.bootstrap_precision_bits {
            Some(bits) => Some(precision_to_std(bits, p.precision_kind.as_deref().unwrap_or(""))?),
            None => None,
        };
        let params = NoiseParams {
            ring_degree,
            scale_bits: f64::from(p.scale_bits),
            sigma: p.error_std,
            hamming_weight,
            mod_down_overflow,
            digit_ratio_sq,
            bootstrap_std,
        };
        params.check()?;
        Ok(params)
    }

    /// An OpenFHE CKKS context without bootstrapping: ring 2^`log_ring`, UNIFORM_TERNARY secret,
    /// HYBRID key switching with `dnum` digits over `depth` + 1 primes.
    pub fn openfhe(log_ring: u32, scale_bits: u32, first_bits: u32, depth: u32, dnum: u32, sigma: f64) -> NoiseParams {
        let ring_degree = f64::from(1u32 << log_ring.min(30));
        let (k, digit_ratio_sq) = Self::openfhe_key_switching(depth + 1, first_bits, scale_bits, dnum);
        NoiseParams {
            ring_degree,
            scale_bits: f64::from(scale_bits),
            sigma,
            hamming_weight: 2.0 * ring_degree / 3.0,
            mod_down_overflow: Self::fast_conversion_overflow(k),
            digit_ratio_sq,
            bootstrap_std: None,
        }
    }

    /// Mean overflow of the fast basis conversion over `k` primes: (k − 1)/2.
    pub fn fast_conversion_overflow(k: u32) -> f64 {
        f64::from(k.saturating_sub(1)) / 2.0
    }

    fn check(&self) -> Result<(), NoiseError> {
        let positive = [
            ("ring degree", self.ring_degree),
            ("scale bits", self.scale_bits),
            ("sigma", self.sigma),
            ("Hamming weight", self.hamming_weight),
        ];
        if let Some((name, v)) = positive.iter().find(|(_, v)| !(v.is_finite() && *v > 0.0)) {
            return Err(NoiseError(format!("{name} {v} is not a positive number")));
        }
        for (name, v) in [
            ("digit ratio", self.digit_ratio_sq),
            ("ModDown overflow", self.mod_down_overflow),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(NoiseError(format!("{name} {v} is not a finite non-negative number")));
            }
        }
        if let Some(b) = self.bootstrap_std
            && !(b.is_finite() && b > 0.0)
        {
            return Err(NoiseError(format!(
                "bootstrapping error std {b} is not a positive number"
            )));
        }
        Ok(())
    }
}

/// A published precision (−log2 of an error figure) as a standard deviation. `kind` says which
/// figure: "std" (the standard deviation), "mean" (mean |e|: σ·√(2/π) for a Gaussian), "max"
/// (the largest error: about 4σ, see [`MAX_OVER_STD`]).
pub fn precision_to_std(bits: f64, kind: &str) -> Result<f64, NoiseError> {
    if !(bits.is_finite() && bits > 0.0 && bits < 64.0) {
        return Err(NoiseError(format!(
            "bootstrapping precision {bits} bits is not in (0, 64)"
        )));
    }
    let figure = (-bits).exp2();
    let kind = kind.to_ascii_lowercase();
    if kind.contains("std") {
        Ok(figure)
    } else if kind.contains("mean") {
        Ok(figure * (std::f64::consts::PI / 2.0).sqrt())
    } else if kind.contains("max") {
        Ok(figure / MAX_OVER_STD)
    } else {
        Err(NoiseError(format!(
            "cannot tell which error figure the precision `{kind}` measures (std, mean or max)"
        )))
    }
}

/// Per-operation error standard deviations of one parameter set.
#[derive(Clone, Debug, PartialEq)]
pub struct NoiseModel {
    pub params: NoiseParams,
}

impl NoiseModel {
    pub fn new(params: NoiseParams) -> Result<NoiseModel, NoiseError> {
        params.check()?;
        Ok(NoiseModel { params })
    }

    pub fn from_preset(p: &CkksPreset) -> Result<NoiseModel, NoiseError> {
        Self::new(NoiseParams::from_preset(p)?)
    }

    /// Slot real-part std of a polynomial error with per-coefficient second moment `v`.
    fn slot_std(&self, v: f64) -> f64 {
        (self.params.ring_degree * v / 2.0).sqrt() / self.params.scale_bits.exp2()
    }

    /// Encoding a plaintext (rounding to integers): the error a plaintext operand carries.
    pub fn encoding_std(&self) -> f64 {
        self.slot_std(1.0 / 12.0)
    }

    /// Encoding + public-key encryption of a fresh ciphertext.
    pub fn fresh_std(&self) -> f64 {
        let p = &self.params;
        self.slot_std(p.sigma * p.sigma * (1.0 + 2.0 * p.ring_degree / 3.0 + p.hamming_weight) + 1.0 / 12.0)
    }

    /// One rescale (the rounding of both components).
    pub fn rescale_std(&self) -> f64 {
        self.slot_std((1.0 + self.params.hamming_weight) / 12.0)
    }

    /// One hybrid key switch (a rotation, or a relinearisation not followed by a rescale).
    pub fn key_switch_std(&self) -> f64 {
        let p = &self.params;
        let mod_down = (1.0 + p.hamming_weight) * (1.0 / 12.0 + p.mod_down_overflow * p.mod_down_overflow);
        let digits = p.ring_degree * p.sigma * p.sigma * p.digit_ratio_sq / 12.0;
        self.slot_std(mod_down + digits)
    }

    /// Bootstrapping, for messages in [-1, 1] (scale by the bound the values were divided by).
    pub fn bootstrap_std(&self) -> Option<f64> {
        self.params.bootstrap_std
    }

    /// Ciphertext × plaintext then rescale: what the product adds beyond the ciphertext's own
    /// error times the plaintext (the plaintext's encoding error times the message, the rescale).
    pub fn pt_mult_rescale_added_std(&self, mean_sq_message: f64) -> f64 {
        (mean_sq_message * self.encoding_std().powi(2) + self.rescale_std().powi(2)).sqrt()
    }

    /// Ciphertext × ciphertext, relinearise, rescale: what it adds beyond the propagated input
    /// errors (z1·e2 + z2·e1): the rescale (the relinearisation is divided away by it).
    pub fn ct_mult_rescale_added_std(&self) -> f64 {
        self.rescale_std()
    }

    /// Evaluation error of a composite sign polynomial of multiplicative depth `depth` on
    /// values of order one: each level's rescale rounding, taken at the output with unit gain
    /// (the stage outputs are bounded by about 1; OpenFHE measurements show this term far below
    /// the propagated input error, see tests/ckks_noise.rs).
    pub fn composite_eval_std(&self, depth: u32) -> f64 {
        self.rescale_std() * f64::from(depth).sqrt()
    }

    /// Std of the noise the composite ReLU's own evaluation adds to its output (bound `bound`,
    /// inputs |t| ≤ 1): the sign's evaluation error times B·t/2 (taken at |t| = 1) and the final
    /// product's rescale times B/2.
    pub fn relu_eval_std(&self, composite: &Composite, bound: f64) -> f64 {
        let depth = relu_cost(&composite.degrees()).depth;
        bound / 2.0 * (self.composite_eval_std(depth).powi(2) + self.rescale_std().powi(2)).sqrt()
    }

    /// Predicted RMS error, against its plaintext value, of the composite ReLU
    /// B·t(1 + p(t))/2 evaluated under CKKS on freshly encrypted inputs t (weighted samples
    /// `(t, weight)`): the encryption error propagated to first order through the derivative
    /// (B/2)(1 + p(t) + t·p'(t)), plus the evaluation's own rescales.
    pub fn composite_relu_error_std(&self, composite: &Composite, bound: f64, samples: &[(f64, f64)]) -> f64 {
        let depth = relu_cost(&composite.degrees()).depth;
        let (fresh, eval, rescale) = (self.fresh_std(), self.composite_eval_std(depth), self.rescale_std());
        let (mut sum, mut weight) = (0.0, 0.0);
        for &(t, w) in samples {
            let (p, dp) = composite.eval_with_derivative(Dd::new(t));
            let slope = bound / 2.0 * (1.0 + p.to_f64() + t * dp.to_f64());
            let own = (bound * t / 2.0 * eval).powi(2) + (bound / 2.0 * rescale).powi(2);
            sum += w * (slope * slope * fresh * fresh + own);
            weight += w;
        }
        if weight > 0.0 { (sum / weight).sqrt() } else { 0.0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::he::preset::shipped_presets;

    #[test]
    fn every_shipped_preset_has_a_finite_model() {
        for preset in shipped_presets() {
            let m = NoiseModel::from_preset(&preset).unwrap();
            for (what, v) in [
                ("fresh", m.fresh_std()),
                ("rescale", m.rescale_std()),
                ("key switch", m.key_switch_std()),
            ] {
                assert!(v.is_finite() && v > 0.0 && v < 1.0, "{}: {what} {v}", preset.name);
            }
            assert!(m.key_switch_std() >= m.rescale_std(), "{}", preset.name);
        }
    }

    #[test]
    fn openfhe_key_switching_layout() {
        // 6 primes in 3 digits of 2: 110, 100, 100 bits; P = 2 x 60 bits
        let (k, r) = NoiseParams::openfhe_key_switching(6, 60, 50, 3);
        assert_eq!(k, 2);
        assert!((r - ((-20.0f64).exp2() + 2.0 * (-40.0f64).exp2())).abs() < 1e-15);
        // 17 primes in 3 digits of 6: 310 bits → P = 6 x 60
        assert_eq!(NoiseParams::openfhe_key_switching(17, 60, 50, 3).0, 6);
    }

    #[test]
    fn precision_kinds() {
        assert_eq!(precision_to_std(10.0, "std").unwrap(), 2f64.powi(-10));
        assert!((precision_to_std(10.0, "log2 of the mean error").unwrap() / 2f64.powi(-10) - 1.2533).abs() < 1e-3);
        assert_eq!(
            precision_to_std(10.0, "-log2 of the max error").unwrap(),
            2f64.powi(-12)
        );
        assert!(precision_to_std(10.0, "bits").is_err());
        assert!(precision_to_std(f64::NAN, "std").is_err());
    }
}
