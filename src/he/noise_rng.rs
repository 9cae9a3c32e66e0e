//! Counter-based Gaussian noise keyed by (seed, point, image, element): the same draw for the same
//! key on any backend, in any batch or shard, in any order.
//!
//! Only 32-bit integer operations (wrapping multiply, xor, shift) and one float multiply, so the
//! WGSL twin (`shaders/ckks_noise.wgsl`) produces identical bits:
//! - hash: the key words are folded one by one through Wellons' "lowbias32" integer mix
//!   (a bijection on u32 with low avalanche bias), seeded by the seed's two halves;
//! - Gaussian: Irwin–Hall, the sum of eight 16-bit uniforms (four hashes), centred as an odd
//!   integer |z| < 2^20 — exact in f32 — with variance 8·(2^32 − 1)/3. Its tails stop at
//!   √24 ≈ 4.9σ; its kurtosis is 2.85 instead of 3 (good enough for accuracy simulation,
//!   where the variance is what matters);
//! - scaling: the std is rounded to 4 significant bits (`quantise_scale`), so z·scale (≤ 24
//!   significant bits) is exact in f32 and a fused multiply-add on the GPU gives the same sum
//!   as a separate multiply and add on the CPU. The rounding changes the std by at most 1/16
//!   (0.09 bits).

/// Draws per Gaussian: each u32 hash gives two 16-bit uniforms.
const HASHES_PER_DRAW: u32 = 4;
/// Standard deviation of the centred integer sum: 2·Σ u_i − 8·65535 with u_i uniform on
/// [0, 65535]: √(4·8·(65536² − 1)/12).
pub const INTEGER_STD: f64 = 107_015.655_565_829_6;

/// Wellons' lowbias32 (https://nullprogram.com/blog/2018/07/31/).
#[inline]
pub fn mix32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

/// Where a draw belongs: `point` numbers the injection points of one run (a node and what is
/// injected there), `image` is the image's index in the whole dataset (not in the batch), and
/// `element` the value's index within the image's tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoiseKey {
    pub seed: u64,
    pub point: u32,
    pub image: u32,
    pub element: u32,
}

impl NoiseKey {
    /// The hash state before the element: seed, point and image folded in (a kernel computes
    /// it once per image and point).
    #[inline]
    pub fn prefix(seed: u64, point: u32, image: u32) -> u32 {
        let mut h = mix32(seed as u32 ^ 0x9e37_79b9);
        h = mix32(h ^ (seed >> 32) as u32);
        h = mix32(h ^ point);
        mix32(h ^ image)
    }
}

/// The centred Irwin–Hall integer (odd, |z| < 2^20) of one element after `prefix`.
#[inline]
pub fn integer_gaussian(prefix: u32, element: u32) -> i32 {
    let base = mix32(prefix ^ element);
    let mut sum = 0i32;
    for draw in 0..HASHES_PER_DRAW {
        let h = mix32(base.wrapping_add(draw.wrapping_mul(0x9e37_79b9)));
        sum += (h & 0xffff) as i32 + (h >> 16) as i32;
    }
    2 * sum - 8 * 65_535
}

/// A standard deviation in the generator's integer units, rounded to 4 significant bits so
/// that integer × scale is exact in f32. Zero, negative or non-finite → 0 (no noise).
pub fn quantise_scale(std: f64) -> f32 {
    let s = std / INTEGER_STD;
    if !(s.is_finite() && s > 0.0) {
        return 0.0;
    }
    let e = s.log2().floor() as i32 - 3; // keep 4 bits: s = m · 2^e with 8 ≤ m < 16
    let m = (s / 2f64.powi(e)).round();
    (m * 2f64.powi(e)) as f32
}

/// The noise value for one element: integer Gaussian × quantised scale (exact in f32).
#[inline]
pub fn noise(prefix: u32, element: u32, scale: f32) -> f32 {
    integer_gaussian(prefix, element) as f32 * scale
}

/// Adds noise of scale `scale` (from [`quantise_scale`]) to `values`: elements
/// `first_element..` of image `image`'s tensor at injection point `point`.
pub fn add_noise(values: &mut [f32], key: NoiseKey, scale: f32) {
    if scale == 0.0 {
        return;
    }
    let prefix = NoiseKey::prefix(key.seed, key.point, key.image);
    for (i, v) in values.iter_mut().enumerate() {
        *v += noise(prefix, key.element.wrapping_add(i as u32), scale);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_gaussian_moments() {
        let prefix = NoiseKey::prefix(7, 3, 11);
        let n = 200_000u32;
        let (mut s1, mut s2, mut s4) = (0f64, 0f64, 0f64);
        for i in 0..n {
            let z = f64::from(integer_gaussian(prefix, i)) / INTEGER_STD;
            s1 += z;
            s2 += z * z;
            s4 += z * z * z * z;
        }
        let (mean, var) = (s1 / f64::from(n), s2 / f64::from(n));
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.01, "variance {var}");
        let kurtosis = s4 / f64::from(n) / (var * var);
        assert!((kurtosis - 2.85).abs() < 0.05, "kurtosis {kurtosis}");
    }

    #[test]
    fn keys_give_independent_streams() {
        let a = NoiseKey::prefix(1, 0, 0);
        let others = [
            NoiseKey::prefix(2, 0, 0),
            NoiseKey::prefix(1, 1, 0),
            NoiseKey::prefix(1, 0, 1),
        ];
        for b in others {
            let n = 50_000u32;
            let corr: f64 = (0..n)
                .map(|i| f64::from(integer_gaussian(a, i)) * f64::from(integer_gaussian(b, i)))
                .sum::<f64>()
                / f64::from(n)
                / (INTEGER_STD * INTEGER_STD);
            assert!(corr.abs() < 0.02, "correlation {corr}");
        }
        // neighbouring elements too
        let n = 50_000u32;
        let lag: f64 = (0..n)
            .map(|i| f64::from(integer_gaussian(a, i)) * f64::from(integer_gaussian(a, i + 1)))
            .sum::<f64>()
            / f64::from(n)
            / (INTEGER_STD * INTEGER_STD);
        assert!(lag.abs() < 0.02, "lag-1 correlation {lag}");
    }

    #[test]
    fn scale_is_exact_and_close() {
        for std in [1e-12, 3.7e-9, 2f64.powi(-20), 0.123, 5.0] {
            let q = quantise_scale(std);
            let rel = (f64::from(q) * INTEGER_STD / std - 1.0).abs();
            assert!(rel <= 1.0 / 16.0, "{std}: {rel}");
            // 4 significant bits: the mantissa's low 19 bits are zero
            assert_eq!(q.to_bits() & ((1 << 19) - 1), 0, "{std}");
            // the largest integer times the scale is exact
            let z = (1 << 20) - 1;
            assert_eq!(f64::from(z as f32 * q), f64::from(z) * f64::from(q));
        }
        assert_eq!(quantise_scale(0.0), 0.0);
        assert_eq!(quantise_scale(f64::NAN), 0.0);
        assert_eq!(quantise_scale(-1.0), 0.0);
    }

    #[test]
    fn same_key_same_noise_in_any_split() {
        let key = NoiseKey {
            seed: 42,
            point: 5,
            image: 17,
            element: 0,
        };
        let scale = quantise_scale(0.01);
        let mut whole = vec![1.0f32; 1000];
        let mut split = whole.clone();
        add_noise(&mut whole, key, scale);
        let (lo, hi) = split.split_at_mut(300);
        add_noise(hi, NoiseKey { element: 300, ..key }, scale);
        add_noise(lo, key, scale);
        assert_eq!(whole, split);
        assert!(whole.iter().all(|&v| v != 1.0 && (v - 1.0).abs() < 0.06));
        let mut other = vec![1.0f32; 1000];
        add_noise(&mut other, NoiseKey { image: 18, ..key }, scale);
        assert_ne!(whole, other);
    }
}
