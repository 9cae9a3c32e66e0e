//! Homomorphic-encryption (CKKS) cost model for the composite sign approximations.
//!
//! The costs reported here are **measured**, not taken from a closed formula: every polynomial is
//! really evaluated by the odd baby-step giant-step (BSGS) algorithm of Lee et al. over a small
//! [`Tracked`] value type (an `f64` plus the multiplicative depth it has consumed), and an
//! [`OpCounter`] records each homomorphic operation the algorithm performs.
//!
//! # Cost conventions
//!
//! * **Non-scalar multiplication**: ciphertext × ciphertext (including squaring). Consumes one
//!   level: the result's depth is `max(depth(a), depth(b)) + 1`.
//! * **Scalar multiplication**: ciphertext × plaintext real constant. In this model it does **not**
//!   consume depth. In a real RNS-CKKS library a multiplication by a non-integer constant is
//!   followed by a rescale and so does consume a level; Lee et al. nevertheless count the depth of
//!   an odd polynomial of degree `d` as `ceil(log2(d+1))`, i.e. the constant multiplications are
//!   folded into the ciphertext multiplications (a coefficient is multiplied into the operand that
//!   has a spare level, or merged into the encoding scale) and are not counted toward depth. We use
//!   that convention. Its only visible consequence is `d = 1`: `c·x` has depth 0 here, whereas
//!   `ceil(log2(1+1)) = 1`; for every odd `d >= 3` the two agree (`ceil(log2 d) = ceil(log2(d+1))`
//!   when `d` is odd and `d >= 3`).
//! * **Addition**: ciphertext ± ciphertext, and ciphertext ± plaintext constant. The factor 2 in
//!   the Chebyshev product rule `T_{a+b} = 2·T_a·T_b − T_{|a−b|}` is applied as a self-addition
//!   `y + y` (no rescale needed) and is therefore counted as an addition, not a scalar mult.
//! * Operations on plaintext coefficients (the polynomial long division below) are free.
//! * Every coefficient slot of the input polynomial is treated as non-zero (dense, generic
//!   polynomial): the evaluator never skips a coefficient because its value happens to be zero,
//!   so the measured counts depend only on the degree, not on the coefficient values.

/// Homomorphic cost of a circuit: multiplicative depth and operation counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HeCost {
    /// Multiplicative depth (levels consumed; scalar mults are free, see module docs).
    pub depth: u32,
    /// Ciphertext × ciphertext multiplications.
    pub nonscalar_mults: u32,
    /// Ciphertext × plaintext-constant multiplications.
    pub scalar_mults: u32,
    /// Additions / subtractions (ciphertext–ciphertext or ciphertext–constant).
    pub additions: u32,
}

impl HeCost {
    /// Sequential composition: `self` is evaluated first, its output feeds `next`. Depths add
    /// (the second circuit starts at the level the first ended at) and counts add.
    pub fn then(self, next: HeCost) -> HeCost {
        HeCost {
            depth: self.depth + next.depth,
            nonscalar_mults: self.nonscalar_mults + next.nonscalar_mults,
            scalar_mults: self.scalar_mults + next.scalar_mults,
            additions: self.additions + next.additions,
        }
    }
}

/// A plaintext stand-in for a CKKS ciphertext: its value and the multiplicative depth consumed to
/// produce it (0 for a fresh input).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tracked {
    pub value: f64,
    pub depth: u32,
}

impl Tracked {
    /// A fresh input ciphertext (depth 0).
    pub fn input(value: f64) -> Tracked {
        Tracked { value, depth: 0 }
    }
}

/// Counts the homomorphic operations performed on [`Tracked`] values. All arithmetic on tracked
/// values goes through these methods, so the counts are exactly what the algorithm did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpCounter {
    pub nonscalar_mults: u32,
    pub scalar_mults: u32,
    pub additions: u32,
}

/// The homomorphic operations the odd baby-step giant-step evaluation ([`eval_odd_bsgs`])
/// performs, on whatever stands for a ciphertext: [`OpCounter`] counts them on [`Tracked`]
/// values for the level model, `he::poly_eval` records them as a program it runs in f64. One
/// algorithm for both, so the counted evaluation is the evaluated one.
pub trait HeOps {
    type Value: Copy;
    /// Ciphertext × ciphertext: one level.
    fn mul(&mut self, a: Self::Value, b: Self::Value) -> Self::Value;
    /// Ciphertext × plaintext constant: no level (folded, see module docs).
    fn mul_const(&mut self, a: Self::Value, c: f64) -> Self::Value;
    /// Ciphertext + ciphertext.
    fn add(&mut self, a: Self::Value, b: Self::Value) -> Self::Value;
    /// Ciphertext − ciphertext.
    fn sub(&mut self, a: Self::Value, b: Self::Value) -> Self::Value;
    /// Ciphertext + plaintext constant.
    fn add_const(&mut self, a: Self::Value, c: f64) -> Self::Value;
    /// `2·a`, computed as `a + a`.
    fn double(&mut self, a: Self::Value) -> Self::Value {
        self.add(a, a)
    }
}

impl HeOps for OpCounter {
    type Value = Tracked;

    fn mul(&mut self, a: Tracked, b: Tracked) -> Tracked {
        self.nonscalar_mults += 1;
        Tracked {
            value: a.value * b.value,
            depth: a.depth.max(b.depth) + 1,
        }
    }

    fn mul_const(&mut self, a: Tracked, c: f64) -> Tracked {
        self.scalar_mults += 1;
        Tracked {
            value: a.value * c,
            depth: a.depth,
        }
    }

    fn add(&mut self, a: Tracked, b: Tracked) -> Tracked {
        self.additions += 1;
        Tracked {
            value: a.value + b.value,
            depth: a.depth.max(b.depth),
        }
    }

    fn sub(&mut self, a: Tracked, b: Tracked) -> Tracked {
        self.additions += 1;
        Tracked {
            value: a.value - b.value,
            depth: a.depth.max(b.depth),
        }
    }

    fn add_const(&mut self, a: Tracked, c: f64) -> Tracked {
        self.additions += 1;
        Tracked {
            value: a.value + c,
            depth: a.depth,
        }
    }
}

impl OpCounter {
    /// The cost recorded so far, given the depth of the circuit's output.
    pub fn cost(&self, depth: u32) -> HeCost {
        HeCost {
            depth,
            nonscalar_mults: self.nonscalar_mults,
            scalar_mults: self.scalar_mults,
            additions: self.additions,
        }
    }
}

/// `floor(log2 n)` for `n >= 1`.
fn floor_log2(n: usize) -> u32 {
    debug_assert!(n >= 1);
    usize::BITS - 1 - n.leading_zeros()
}

/// `ceil(log2 n)` for `n >= 1` (0 for `n = 1`).
fn ceil_log2(n: usize) -> u32 {
    debug_assert!(n >= 1);
    if n <= 1 { 0 } else { floor_log2(n - 1) + 1 }
}

/// Lazily computed, memoised Chebyshev polynomials `T_j(x)` of one tracked input `x`.
///
/// Each `T_j` is produced with depth exactly `ceil(log2 j)` (the minimum for degree `j`):
/// * even `j`: `T_j = 2·T_{j/2}² − 1` (one square). Only powers of two are requested by the
///   odd BSGS (the giant steps and the helpers of the baby steps).
/// * odd `j >= 3` with `2^t < j < 2^{t+1}`: `T_j = 2·T_{2^s}·T_b − T_{|2^s − b|}` with
///   `b = j − 2^s` and the smallest `s >= 1` such that `b <= 2^t`, i.e.
///   `s = max(1, ceil(log2(j − 2^t)))`. Then `depth(T_{2^s}) = s <= t` and
///   `depth(T_b) <= t`, so `depth(T_j) = t + 1 = ceil(log2 j)`. Choosing the smallest such `s`
///   avoids computing `T_{2^t}` when it is not otherwise needed (e.g. `T_5 = 2·T_2·T_3 − T_1`,
///   so an odd degree-5 polynomial needs only `T_2, T_3, T_5`).
///
/// Every new `T_j` (j >= 2) costs one non-scalar multiplication and two additions (doubling and
/// subtraction).
struct ChebBasis<V> {
    t: Vec<Option<V>>,
}

impl<V: Copy> ChebBasis<V> {
    fn new(x: V) -> ChebBasis<V> {
        ChebBasis { t: vec![None, Some(x)] }
    }

    fn get<O: HeOps<Value = V>>(&mut self, j: usize, ops: &mut O) -> V {
        assert!(j >= 1, "T_0 is the constant 1, not a ciphertext");
        if j >= self.t.len() {
            self.t.resize(j + 1, None);
        }
        if let Some(v) = self.t[j] {
            return v;
        }
        let v = if j.is_multiple_of(2) {
            let h = self.get(j / 2, ops);
            let sq = ops.mul(h, h);
            let two_sq = ops.double(sq);
            ops.add_const(two_sq, -1.0)
        } else {
            let t = floor_log2(j);
            let s = ceil_log2(j - (1usize << t)).max(1);
            let a = 1usize << s;
            let b = j - a;
            let c = a.abs_diff(b);
            let ta = self.get(a, ops);
            let tb = self.get(b, ops);
            let tc = self.get(c, ops);
            let prod = ops.mul(ta, tb);
            let two_prod = ops.double(prod);
            ops.sub(two_prod, tc)
        };
        self.t[j] = Some(v);
        v
    }
}

/// Evaluates the odd polynomial `p(x) = Σ_m coeffs[m] · T_{2m+1}(x)` (degree `2·len − 1`) at the
/// tracked input `x` by the odd baby-step giant-step algorithm with baby-step bound `2^log_baby`
/// (`log_baby >= 1`), counting every homomorphic operation in `ops`.
///
/// # Algorithm (odd BSGS, Lee et al.)
///
/// * **Baby steps**: the odd Chebyshev polynomials `T_1, T_3, …, T_{2^l − 1}` (`l = log_baby`),
///   computed on demand (by the private `ChebBasis` helper: each has the optimal depth `ceil(log2 j)`).
/// * **Giant steps**: `T_{2^l}, T_{2^{l+1}}, …` by repeated squaring (`T_{2^i}` has depth `i`).
/// * **Recursion** on the (structural) degree `D` of `p`: if `D < 2^l`, `p` is a linear
///   combination of baby steps (scalar mults and additions only). Otherwise let
///   `g = 2^i <= D < 2^{i+1}` (`i >= l`) and divide by `T_g`: for every odd `k > g`,
///   `T_k = 2·T_g·T_{k−g} − T_{g−(k−g)}`, so `p = q·T_g + r` with
///   `q = Σ_{k>g} 2c_k T_{k−g}` and `r = Σ_{k<g} c_k T_k − Σ_{k>g} c_k T_{2g−k}`. Since `T_g` is
///   even and `p` odd, both `q` and `r` are **odd** of degree `< g`, so the odd structure is kept
///   and only odd baby steps are ever needed. Evaluate `q` and `r` recursively, then one
///   non-scalar multiplication `q·T_g` and one addition.
///
/// # Why the depth is optimal
///
/// By induction, an odd polynomial of degree `D` gets depth `ceil(log2 D)`, the minimum for any
/// circuit computing a degree-`D` polynomial. Base case: `T_j` (`j <= D`) has depth
/// `ceil(log2 j) <= ceil(log2 D)` and scalar mults/additions add none. Split case with
/// `2^i < D < 2^{i+1}` (odd `D` is never a power of two): `deg q, deg r < 2^i` give depth `<= i`,
/// `T_{2^i}` has depth `i`, so `q·T_{2^i} + r` has depth `i + 1 = ceil(log2 D)`. This holds for
/// every `l`, so all baby-step sizes reach the optimal depth; for odd `D >= 3` it equals Lee et
/// al.'s `ceil(log2(D+1))`.
pub fn eval_odd_bsgs<O: HeOps>(coeffs: &[f64], x: O::Value, log_baby: u32, ops: &mut O) -> O::Value {
    assert!(!coeffs.is_empty(), "empty polynomial");
    assert!(log_baby >= 1, "baby-step bound must be at least 2");
    let mut basis = ChebBasis::new(x);
    eval_rec(coeffs, &mut basis, 1usize << log_baby, ops)
}

fn eval_rec<O: HeOps>(coeffs: &[f64], basis: &mut ChebBasis<O::Value>, baby: usize, ops: &mut O) -> O::Value {
    let degree = 2 * coeffs.len() - 1;
    if degree < baby {
        // Baby step: Σ c_m T_{2m+1}, one scalar mult per coefficient, len−1 additions.
        let mut acc: Option<O::Value> = None;
        for (m, &c) in coeffs.iter().enumerate() {
            let tj = basis.get(2 * m + 1, ops);
            let term = ops.mul_const(tj, c);
            acc = Some(match acc {
                None => term,
                Some(a) => ops.add(a, term),
            });
        }
        return acc.expect("non-empty");
    }
    // Giant step: p = q·T_g + r with g the largest power of two <= degree (g >= baby).
    let g = 1usize << floor_log2(degree);
    let mut q = vec![0.0; (degree - g).div_ceil(2)];
    let mut r = vec![0.0; g / 2];
    for (m, &c) in coeffs.iter().enumerate() {
        let k = 2 * m + 1;
        if k < g {
            r[m] += c;
        } else {
            let j = k - g; // odd, 1 <= j < g
            q[(j - 1) / 2] += 2.0 * c;
            r[(g - j - 1) / 2] -= c;
        }
    }
    let qv = eval_rec(&q, basis, baby, ops);
    let tg = basis.get(g, ops);
    let prod = ops.mul(qv, tg);
    let rv = eval_rec(&r, basis, baby, ops);
    ops.add(prod, rv)
}

/// Smallest `L` with `2^L > degree`: baby-step bound at which no giant step is used.
fn max_log_baby(degree: usize) -> u32 {
    floor_log2(degree) + 1
}

fn check_degree(degree: usize) {
    assert!(
        (1..=255).contains(&degree) && degree % 2 == 1,
        "odd polynomial degree must be odd and in 1..=255, got {degree}"
    );
}

/// Measured cost of evaluating a dense odd polynomial of odd degree `degree` by odd BSGS with
/// baby-step bound `2^log_baby`. The coefficient values are irrelevant to the counts (all ones
/// are used); the input is a fresh ciphertext at depth 0.
pub fn odd_poly_cost_with(degree: usize, log_baby: u32) -> HeCost {
    check_degree(degree);
    let coeffs = vec![1.0; degree.div_ceil(2)];
    let mut ops = OpCounter::default();
    let out = eval_odd_bsgs(&coeffs, Tracked::input(0.5), log_baby, &mut ops);
    ops.cost(out.depth)
}

/// The baby-step exponent `l` (baby steps `T_1 … T_{2^l − 1}`) used for `degree`: among
/// `l = 1 ..= floor(log2 d) + 1` (the last one uses no giant step), the one with minimal measured
/// depth, then fewest non-scalar mults, then fewest scalar mults, then fewest additions, then the
/// smallest `l`. (All `l` reach the optimal depth, see [`eval_odd_bsgs`]; depth is still compared
/// first so the choice is "cheapest among depth-optimal" by construction, not by assumption.)
pub fn best_log_baby(degree: usize) -> u32 {
    check_degree(degree);
    (1..=max_log_baby(degree))
        .min_by_key(|&l| {
            let c = odd_poly_cost_with(degree, l);
            (c.depth, c.nonscalar_mults, c.scalar_mults, c.additions, l)
        })
        .expect("at least one baby-step size")
}

/// Cost of evaluating one odd polynomial of odd degree `d` (1..=255) by odd BSGS, with the
/// baby-step size chosen to minimise non-scalar multiplications among the choices that reach
/// the optimal depth ceil(log2(d+1)) (`ceil(log2 d)`, i.e. 0, for `d = 1`: scalar mults are free,
/// see the module docs).
///
/// # Panics
/// If `degree` is even or outside `1..=255`.
pub fn odd_poly_cost(degree: usize) -> HeCost {
    odd_poly_cost_with(degree, best_log_baby(degree))
}

/// Evaluates the composite `p_k ∘ … ∘ p_1` at `x`, stage `i` being the odd polynomial with
/// Chebyshev coefficients `stages[i]` (of `T_1, T_3, …`), each by odd BSGS with its own
/// [`best_log_baby`]. The output depth is the input depth plus the stage depths.
pub fn eval_composite(stages: &[Vec<f64>], x: Tracked, ops: &mut OpCounter) -> Tracked {
    stages.iter().fold(x, |y, c| {
        let degree = 2 * c.len() - 1;
        eval_odd_bsgs(c, y, best_log_baby(degree), ops)
    })
}

/// Approximate ReLU `x·(1 + p(x))/2` with `p` the composite: one constant addition, one
/// non-scalar multiplication (depth + 1) and one scalar multiplication by 1/2.
pub fn eval_relu(stages: &[Vec<f64>], x: Tracked, ops: &mut OpCounter) -> Tracked {
    let p = eval_composite(stages, x, ops);
    let one_plus_p = ops.add_const(p, 1.0);
    let prod = ops.mul(x, one_plus_p);
    ops.mul_const(prod, 0.5)
}

/// Approximate `max(a, b) = ((a + b) + (a − b)·p(a − b))/2` with `p` the composite: three
/// additions, one non-scalar multiplication (depth + 1) and one scalar multiplication by 1/2.
pub fn eval_max(stages: &[Vec<f64>], a: Tracked, b: Tracked, ops: &mut OpCounter) -> Tracked {
    let sum = ops.add(a, b);
    let diff = ops.sub(a, b);
    let p = eval_composite(stages, diff, ops);
    let prod = ops.mul(diff, p);
    let total = ops.add(sum, prod);
    ops.mul_const(total, 0.5)
}

fn unit_stages(degrees: &[usize]) -> Vec<Vec<f64>> {
    degrees
        .iter()
        .map(|&d| {
            check_degree(d);
            vec![1.0; d.div_ceil(2)]
        })
        .collect()
}

/// Composite p_k∘…∘p_1: stages in sequence (measured by running the evaluator on the whole
/// composite; equals the [`HeCost::then`]-fold of the per-stage [`odd_poly_cost`]).
pub fn composite_cost(degrees: &[usize]) -> HeCost {
    let stages = unit_stages(degrees);
    let mut ops = OpCounter::default();
    let out = eval_composite(&stages, Tracked::input(0.5), &mut ops);
    ops.cost(out.depth)
}

/// Approximate ReLU x(1+p(x))/2: composite plus the final product (measured).
pub fn relu_cost(degrees: &[usize]) -> HeCost {
    let stages = unit_stages(degrees);
    let mut ops = OpCounter::default();
    let out = eval_relu(&stages, Tracked::input(0.5), &mut ops);
    ops.cost(out.depth)
}

/// Approximate max ((a+b)+(a−b)p(a−b))/2: composite plus the final product (measured).
pub fn max_cost(degrees: &[usize]) -> HeCost {
    let stages = unit_stages(degrees);
    let mut ops = OpCounter::default();
    let out = eval_max(&stages, Tracked::input(0.5), Tracked::input(0.25), &mut ops);
    ops.cost(out.depth)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small deterministic PRNG (xorshift64*), uniform in [-1, 1).
    struct Rng(u64);
    impl Rng {
        fn next_f64(&mut self) -> f64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let u = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
            (u as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        }
    }

    /// Direct evaluation of Σ c_m T_{2m+1}(x) by the three-term recurrence.
    fn direct(coeffs: &[f64], x: f64) -> f64 {
        let (mut t_prev, mut t) = (1.0, x); // T_0, T_1
        let mut sum = 0.0;
        for n in 1..=2 * coeffs.len() - 1 {
            if n % 2 == 1 {
                sum += coeffs[(n - 1) / 2] * t;
            }
            let t_next = 2.0 * x * t - t_prev;
            t_prev = t;
            t = t_next;
        }
        sum
    }

    const POINTS: [f64; 9] = [-1.0, -0.93, -0.5, -0.123, 0.0, 0.31, 0.707, 0.99, 1.0];

    #[test]
    fn evaluator_matches_direct_chebyshev() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for degree in (1..=63usize).step_by(2) {
            for _ in 0..3 {
                let coeffs: Vec<f64> = (0..degree.div_ceil(2)).map(|_| rng.next_f64()).collect();
                let scale: f64 = coeffs.iter().map(|c| c.abs()).sum::<f64>().max(1.0);
                for l in 1..=max_log_baby(degree) {
                    for &x in &POINTS {
                        let mut ops = OpCounter::default();
                        let got = eval_odd_bsgs(&coeffs, Tracked::input(x), l, &mut ops).value;
                        let want = direct(&coeffs, x);
                        assert!(
                            (got - want).abs() <= 1e-9 * scale,
                            "d={degree} l={l} x={x}: bsgs {got} vs direct {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn composite_relu_max_values() {
        let mut rng = Rng(12345);
        let stages: Vec<Vec<f64>> = [7usize, 15, 5]
            .iter()
            .map(|&d| (0..d.div_ceil(2)).map(|_| rng.next_f64() / d as f64).collect())
            .collect();
        for &x in &POINTS {
            let mut p = x;
            for s in &stages {
                p = direct(s, p);
            }
            let mut ops = OpCounter::default();
            let got = eval_composite(&stages, Tracked::input(x), &mut ops).value;
            assert!((got - p).abs() <= 1e-9, "composite at {x}: {got} vs {p}");
            let relu = eval_relu(&stages, Tracked::input(x), &mut ops).value;
            assert!((relu - x * (1.0 + p) / 2.0).abs() <= 1e-9);
        }
        // max with p = identity-ish sign stand-in: p(t) = T_1(t) = t gives ((a+b) + (a-b)^2)/2.
        let id = vec![vec![1.0]];
        let (a, b) = (0.3, -0.4);
        let mut ops = OpCounter::default();
        let got = eval_max(&id, Tracked::input(a), Tracked::input(b), &mut ops).value;
        assert!((got - ((a + b) + (a - b) * (a - b)) / 2.0).abs() <= 1e-12);
    }

    #[test]
    fn depth_is_optimal_for_every_baby_step_size() {
        for degree in (1..=63usize).step_by(2) {
            // Scalar mults are free, so d = 1 (c·x) has depth 0; for odd d >= 3,
            // ceil(log2 d) == ceil(log2(d+1)), Lee et al.'s figure.
            let want = if degree == 1 { 0 } else { ceil_log2(degree + 1) };
            assert_eq!(odd_poly_cost(degree).depth, want, "d={degree}");
            for l in 1..=max_log_baby(degree) {
                assert_eq!(odd_poly_cost_with(degree, l).depth, want, "d={degree} l={l}");
            }
        }
        for degree in (65..=255usize).step_by(2) {
            assert_eq!(odd_poly_cost(degree).depth, ceil_log2(degree + 1), "d={degree}");
        }
    }

    fn cost(depth: u32, nonscalar_mults: u32, scalar_mults: u32, additions: u32) -> HeCost {
        HeCost {
            depth,
            nonscalar_mults,
            scalar_mults,
            additions,
        }
    }

    /// Hand-computed counts. Conventions: new T_j = 1 non-scalar + 2 additions (double, then
    /// subtract T_c or the constant 1); a baby-step combination of n terms = n scalar + (n−1)
    /// additions; each split p = q·T_g + r = 1 non-scalar + 1 addition.
    #[test]
    fn hand_computed_small_degrees() {
        // d = 1: p = c0·T_1 = c0·x. One scalar mult, nothing else; depth 0 (scalar is free).
        assert_eq!(odd_poly_cost(1), cost(0, 0, 1, 0));

        // d = 3, p = c0 T1 + c1 T3.
        //  l=1 (baby {T1}): T2 = 2T1²−1 [1 ns, 2 add]; split at T2: q = 2c1·T1 [1 sc],
        //      r = (c0−c1)·T1 [1 sc]; q·T2 + r [1 ns, 1 add]  => depth 2, (2 ns, 2 sc, 3 add).
        //  l=2 (baby {T1,T3}): T2 [1 ns, 2 add], T3 = 2T2T1−T1 [1 ns, 2 add],
        //      c0T1 + c1T3 [2 sc, 1 add]                       => depth 2, (2 ns, 2 sc, 5 add).
        //  Tie on non-scalar and scalar; l=1 has fewer additions.
        assert_eq!(odd_poly_cost_with(3, 1), cost(2, 2, 2, 3));
        assert_eq!(odd_poly_cost_with(3, 2), cost(2, 2, 2, 5));
        assert_eq!(best_log_baby(3), 1);
        assert_eq!(odd_poly_cost(3), cost(2, 2, 2, 3));

        // d = 5, p = c0 T1 + c1 T3 + c2 T5.
        //  l=1: T2, T4 [2 ns, 4 add]; split at T4: q = 2c2 T1 [1 sc], r = c0 T1 + (c1−c2) T3 of
        //      degree 3 >= 2, split at T2: [2 sc, 1 ns, 1 add]; q·T4 + r [1 ns, 1 add]
        //      => (4 ns, 3 sc, 6 add).
        //  l=2: T2, T3, T4 [3 ns, 6 add]; q = 2c2 T1 [1 sc]; r = c0 T1 + (c1−c2) T3 [2 sc, 1 add];
        //      q·T4 + r [1 ns, 1 add] => (4 ns, 3 sc, 8 add).
        //  l=3 (no giant step): T2, T3 = 2T2T1−T1, T5 = 2T2T3−T1 [3 ns, 6 add];
        //      c0T1 + c1T3 + c2T5 [3 sc, 2 add] => (3 ns, 3 sc, 8 add). Depth of T5 is
        //      max(1, 2) + 1 = 3. Best: l=3.
        assert_eq!(odd_poly_cost_with(5, 1), cost(3, 4, 3, 6));
        assert_eq!(odd_poly_cost_with(5, 2), cost(3, 4, 3, 8));
        assert_eq!(odd_poly_cost_with(5, 3), cost(3, 3, 3, 8));
        assert_eq!(odd_poly_cost(5), cost(3, 3, 3, 8));

        // d = 7, p = c0 T1 + c1 T3 + c2 T5 + c3 T7.
        //  l=1: T2, T4 [2 ns, 4 add]; split at T4: q = 2c2 T1 + 2c3 T3, r = (c0−c3) T1 +
        //      (c1−c2) T3, each split at T2 [2 sc, 1 ns, 1 add each]; top [1 ns, 1 add]
        //      => (5 ns, 4 sc, 7 add).
        //  l=2: T2, T3, T4 [3 ns, 6 add]; q, r are baby combinations [2 sc, 1 add each];
        //      top [1 ns, 1 add] => (4 ns, 4 sc, 9 add).
        //  l=3: T2, T3, T5 = 2T2T3−T1, T4, T7 = 2T4T3−T1 [5 ns, 10 add]; combination
        //      [4 sc, 3 add] => (5 ns, 4 sc, 13 add). Best: l=2.
        assert_eq!(odd_poly_cost_with(7, 1), cost(3, 5, 4, 7));
        assert_eq!(odd_poly_cost_with(7, 2), cost(3, 4, 4, 9));
        assert_eq!(odd_poly_cost_with(7, 3), cost(3, 5, 4, 13));
        assert_eq!(odd_poly_cost(7), cost(3, 4, 4, 9));
    }

    /// For full degree d = 2^m − 1 and baby bound 2^l (1 <= l <= m) the algorithm does
    /// (l−1) squarings T2..T_{2^{l−1}}, 2^{l−1}−1 odd baby steps T3..T_{2^l−1}, m−l giant-step
    /// squarings T_{2^l}..T_{2^{m−1}} and 2^{m−l}−1 splits (a full binary tree), i.e.
    /// 2^{l−1} + 2^{m−l} + m − 3 non-scalar mults. Checks the measured counts against that.
    #[test]
    fn full_degree_matches_structure() {
        for m in 2..=8u32 {
            let degree = (1usize << m) - 1;
            for l in 1..=m {
                let ns = (1u32 << (l - 1)) + (1u32 << (m - l)) + m - 3;
                let c = odd_poly_cost_with(degree, l);
                assert_eq!(c.nonscalar_mults, ns, "d={degree} l={l}");
                // One scalar mult per coefficient slot of every leaf: 2^{m-l} leaves of 2^{l-1}.
                assert_eq!(c.scalar_mults, 1u32 << (m - 1), "d={degree} l={l}");
            }
        }
    }

    #[test]
    fn nonscalar_monotone_in_degree() {
        let mut prev = 0;
        for degree in (1..=255usize).step_by(2) {
            let ns = odd_poly_cost(degree).nonscalar_mults;
            assert!(ns >= prev, "d={degree}: {ns} < {prev}");
            prev = ns;
        }
    }

    #[test]
    fn composition() {
        let a = cost(2, 3, 4, 5);
        let b = cost(1, 10, 20, 30);
        assert_eq!(a.then(b), cost(3, 13, 24, 35));
        assert_eq!(HeCost::default().then(a), a);

        // d=3 then d=7: depths 2 + 3, counts add.
        assert_eq!(composite_cost(&[3, 7]), cost(5, 6, 6, 12));
        assert_eq!(composite_cost(&[]), HeCost::default());
        // ReLU: composite + (1 add for 1+p, 1 ns for x·(1+p), 1 sc for ·1/2), depth + 1.
        assert_eq!(relu_cost(&[3, 7]), cost(6, 7, 7, 13));
        // max: composite + (a+b, a−b, final sum: 3 add; 1 ns; 1 sc), depth + 1.
        assert_eq!(max_cost(&[3, 7]), cost(6, 7, 7, 15));

        let lists: [&[usize]; 11] = [
            &[5],
            &[13],
            &[3, 7],
            &[7, 7],
            &[7, 15],
            &[15, 15],
            &[7, 7, 13],
            &[7, 7, 27],
            &[7, 15, 27],
            &[15, 15, 27],
            &[15, 27, 29],
        ];
        for degs in lists {
            let folded = degs
                .iter()
                .fold(HeCost::default(), |acc, &d| acc.then(odd_poly_cost(d)));
            assert_eq!(composite_cost(degs), folded, "{degs:?}");
            assert_eq!(relu_cost(degs), folded.then(cost(1, 1, 1, 1)), "{degs:?}");
            assert_eq!(max_cost(degs), folded.then(cost(1, 1, 1, 3)), "{degs:?}");
        }
    }

    /// Prints the cost tables (run with `--ignored --nocapture`).
    #[test]
    #[ignore]
    fn print_tables() {
        println!("degree depth nonscalar scalar adds l");
        for d in (3..=31usize).step_by(2).chain([63, 127, 255]) {
            let c = odd_poly_cost(d);
            println!(
                "{d:>6} {:>5} {:>9} {:>6} {:>4} {}",
                c.depth,
                c.nonscalar_mults,
                c.scalar_mults,
                c.additions,
                best_log_baby(d)
            );
        }
        let lists: [(u32, &[usize]); 11] = [
            (4, &[5]),
            (5, &[13]),
            (6, &[3, 7]),
            (7, &[7, 7]),
            (8, &[7, 15]),
            (9, &[15, 15]),
            (10, &[7, 7, 13]),
            (11, &[7, 7, 27]),
            (12, &[7, 15, 27]),
            (13, &[15, 15, 27]),
            (14, &[15, 27, 29]),
        ];
        println!("alpha degrees composite relu max");
        for (alpha, degs) in lists {
            println!(
                "{alpha} {degs:?} {:?} {:?} {:?}",
                composite_cost(degs),
                relu_cost(degs),
                max_cost(degs)
            );
        }
    }
}
