//! Double-double arithmetic (~106-bit significand, ~32 decimal digits).
//!
//! Why double-double and not an arbitrary-precision crate: the Remez systems of the later
//! composite stages live on narrow domains such as [1-δ, 1+δ] with δ ≈ 2^-14, where the
//! Chebyshev matrix has a condition number around 1e12–1e16. f64 (1e-16) then loses every digit;
//! 106 bits leave 1e-16 or better, which is far below the 2^-20 precision we ever ask for. A
//! double-double is a pair of f64s, so it is fast (the whole α = 4..14 table is generated in
//! milliseconds), deterministic across machines (only IEEE add/mul/fma) and needs no C library.
//! Algorithms: Dekker/Knuth error-free transformations, as in the QD library (Hida, Li, Bailey).

use std::cmp::Ordering;
use std::fmt;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

/// An unevaluated sum `hi + lo` with |lo| ≤ ulp(hi)/2.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Dd {
    pub hi: f64,
    pub lo: f64,
}

#[inline]
fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let bb = s - a;
    (s, (a - (s - bb)) + (b - bb))
}

#[inline]
fn quick_two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    (s, b - (s - a))
}

#[inline]
fn two_prod(a: f64, b: f64) -> (f64, f64) {
    let p = a * b;
    (p, a.mul_add(b, -p))
}

impl Dd {
    pub const ZERO: Dd = Dd { hi: 0.0, lo: 0.0 };
    pub const ONE: Dd = Dd { hi: 1.0, lo: 0.0 };

    pub const fn new(x: f64) -> Dd {
        Dd { hi: x, lo: 0.0 }
    }

    pub fn to_f64(self) -> f64 {
        self.hi + self.lo
    }

    pub fn abs(self) -> Dd {
        if self.hi < 0.0 { -self } else { self }
    }

    pub fn is_finite(self) -> bool {
        self.hi.is_finite() && self.lo.is_finite()
    }

    pub fn max(self, other: Dd) -> Dd {
        if other > self { other } else { self }
    }

    pub fn min(self, other: Dd) -> Dd {
        if other < self { other } else { self }
    }

    /// Multiply by a power of two (exact).
    pub fn scale(self, f: f64) -> Dd {
        Dd {
            hi: self.hi * f,
            lo: self.lo * f,
        }
    }

    /// Parse a decimal number keeping more than f64 precision (the official coefficient files
    /// print up to ~30 significant digits).
    pub fn parse(s: &str) -> Option<Dd> {
        let s = s.trim();
        let (mantissa, exp) = match s.find(['e', 'E']) {
            Some(i) => (&s[..i], s[i + 1..].parse::<i32>().ok()?),
            None => (s, 0),
        };
        let (neg, digits_part) = match mantissa.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, mantissa.strip_prefix('+').unwrap_or(mantissa)),
        };
        let mut value = Dd::ZERO;
        let mut frac_digits = 0i32;
        let mut seen_dot = false;
        let mut any_digit = false;
        for c in digits_part.chars() {
            match c {
                '0'..='9' => {
                    value = value * Dd::new(10.0) + Dd::new((c as u8 - b'0') as f64);
                    any_digit = true;
                    if seen_dot {
                        frac_digits += 1;
                    }
                }
                '.' if !seen_dot => seen_dot = true,
                _ => return None,
            }
        }
        if !any_digit {
            return None;
        }
        let value = value * Dd::powi10(exp - frac_digits);
        Some(if neg { -value } else { value })
    }

    fn powi10(e: i32) -> Dd {
        let mut result = Dd::ONE;
        let mut base = Dd::new(10.0);
        let mut n = e.unsigned_abs();
        while n > 0 {
            if n & 1 == 1 {
                result *= base;
            }
            base *= base;
            n >>= 1;
        }
        if e < 0 { Dd::ONE / result } else { result }
    }
}

impl From<f64> for Dd {
    fn from(x: f64) -> Dd {
        Dd::new(x)
    }
}

impl Add for Dd {
    type Output = Dd;
    #[inline]
    fn add(self, b: Dd) -> Dd {
        let (s1, s2) = two_sum(self.hi, b.hi);
        let (t1, t2) = two_sum(self.lo, b.lo);
        let (s1, s2) = quick_two_sum(s1, s2 + t1);
        let (hi, lo) = quick_two_sum(s1, s2 + t2);
        Dd { hi, lo }
    }
}

impl Neg for Dd {
    type Output = Dd;
    #[inline]
    fn neg(self) -> Dd {
        Dd {
            hi: -self.hi,
            lo: -self.lo,
        }
    }
}

impl Sub for Dd {
    type Output = Dd;
    #[inline]
    fn sub(self, b: Dd) -> Dd {
        self + (-b)
    }
}

impl Mul for Dd {
    type Output = Dd;
    #[inline]
    fn mul(self, b: Dd) -> Dd {
        let (p1, p2) = two_prod(self.hi, b.hi);
        let p2 = p2 + (self.hi * b.lo + self.lo * b.hi);
        let (hi, lo) = quick_two_sum(p1, p2);
        Dd { hi, lo }
    }
}

impl Div for Dd {
    type Output = Dd;
    /// Long division with three quotient digits (QD's accurate division).
    fn div(self, b: Dd) -> Dd {
        let q1 = self.hi / b.hi;
        let r = self - b * Dd::new(q1);
        let q2 = r.hi / b.hi;
        let r = r - b * Dd::new(q2);
        let q3 = r.hi / b.hi;
        let (q1, q2) = quick_two_sum(q1, q2);
        Dd { hi: q1, lo: q2 } + Dd::new(q3)
    }
}

impl AddAssign for Dd {
    fn add_assign(&mut self, b: Dd) {
        *self = *self + b;
    }
}

impl SubAssign for Dd {
    fn sub_assign(&mut self, b: Dd) {
        *self = *self - b;
    }
}

impl MulAssign for Dd {
    fn mul_assign(&mut self, b: Dd) {
        *self = *self * b;
    }
}

impl PartialOrd for Dd {
    fn partial_cmp(&self, other: &Dd) -> Option<Ordering> {
        match self.hi.partial_cmp(&other.hi) {
            Some(Ordering::Equal) => self.lo.partial_cmp(&other.lo),
            ord => ord,
        }
    }
}

impl fmt::Display for Dd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:e}", self.to_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_third_has_double_double_precision() {
        let third = Dd::ONE / Dd::new(3.0);
        let back = third * Dd::new(3.0) - Dd::ONE;
        assert!(back.to_f64().abs() < 1e-31, "residual {}", back);
        // The low word must carry information f64 alone cannot.
        assert!(third.lo != 0.0);
    }

    #[test]
    fn addition_keeps_tiny_terms() {
        let x = Dd::ONE + Dd::new(1e-25);
        assert_eq!(x.hi, 1.0);
        assert!((x.lo - 1e-25).abs() < 1e-40);
        assert!(((x - Dd::ONE).to_f64() - 1e-25).abs() < 1e-40);
    }

    #[test]
    fn parses_long_decimals() {
        let third = Dd::parse("0.33333333333333333333333333333333333").unwrap();
        assert!((third - Dd::ONE / Dd::new(3.0)).abs().to_f64() < 1e-31);
        let tenth = Dd::parse("1e-1").unwrap();
        assert!((tenth - Dd::ONE / Dd::new(10.0)).abs().to_f64() < 1e-32);
        assert_eq!(Dd::parse("-2.5e3").unwrap().to_f64(), -2500.0);
        assert_eq!(Dd::parse("1e-40").unwrap().to_f64(), 1e-40);
        assert!(Dd::parse("abc").is_none());
        assert!(Dd::parse("").is_none());
        assert!(Dd::parse("1.2.3").is_none());
    }
}
