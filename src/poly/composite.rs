//! Composite minimax approximation of sign(x): p = p_k ∘ … ∘ p_1, each stage the odd minimax
//! approximation of sign on the image of the previous one, and the choice of ε (the start of
//! stage 1's domain [ε, 1]) that gives the ReLU x(1+p(x))/2 the smallest error on [-1, 1].

use super::PolyError;
use super::dd::Dd;
use super::odd::OddPoly;
use super::remez::{MinimaxStage, minimax_sign};

/// A chain of odd polynomials evaluated first to last (ours or the paper's).
#[derive(Clone, Debug, PartialEq)]
pub struct Composite {
    pub stages: Vec<OddPoly>,
}

impl Composite {
    pub fn degrees(&self) -> Vec<usize> {
        self.stages.iter().map(OddPoly::degree).collect()
    }

    pub fn eval(&self, x: Dd) -> Dd {
        self.stages.iter().fold(x, |v, p| p.eval(v))
    }

    pub fn eval_f64(&self, x: f64) -> f64 {
        self.eval(Dd::new(x)).to_f64()
    }

    /// Value and derivative by the chain rule.
    pub fn eval_with_derivative(&self, x: Dd) -> (Dd, Dd) {
        self.stages.iter().fold((x, Dd::ONE), |(v, d), p| {
            let (pv, pd) = p.eval_with_derivative(v);
            (pv, d * pd)
        })
    }

    /// Plain f64 Clenshaw: the dense check uses it (its rounding, ~1e-15, is far below 2^-20).
    pub fn eval_fast(&self, x: f64) -> f64 {
        let mut v = x;
        for p in &self.stages {
            let t = v / p.half_width.to_f64();
            let two_u = 4.0 * t * t - 2.0;
            let (mut b1, mut b2) = (0.0f64, 0.0f64);
            for c in p.cheb.iter().rev() {
                let b0 = two_u.mul_add(b1, c.to_f64() - b2);
                b2 = b1;
                b1 = b0;
            }
            v = t * (b1 - b2);
        }
        v
    }
}

/// Our composite for a degree list, with where it came from.
#[derive(Clone, Debug)]
pub struct SignComposite {
    pub eps: f64,
    pub stages: Vec<MinimaxStage>,
    pub composite: Composite,
}

/// The paper's degree lists (Lee et al., official approxCNN code) for α = 4..14.
pub fn paper_degrees(alpha: u32) -> Option<&'static [usize]> {
    Some(match alpha {
        4 => &[5],
        5 => &[13],
        6 => &[3, 7],
        7 => &[7, 7],
        8 => &[7, 15],
        9 => &[15, 15],
        10 => &[7, 7, 13],
        11 => &[7, 7, 27],
        12 => &[7, 15, 27],
        13 => &[15, 15, 27],
        14 => &[15, 27, 29],
        _ => return None,
    })
}

/// [`paper_degrees`], or the error saying α has no default list (pass degrees explicitly).
pub fn paper_degrees_or_error(alpha: u32) -> Result<&'static [usize], PolyError> {
    paper_degrees(alpha).ok_or(PolyError::NoDefaultDegrees(alpha))
}

/// Stage 1 on [ε, 1]; stage i+1 on the image [min p_i, max p_i] of stage i's domain, with its
/// Chebyshev domain wide enough for every input it can receive (p_i of [0, b_i]).
pub fn build_sign_composite(degrees: &[usize], eps: f64) -> Result<SignComposite, PolyError> {
    if degrees.is_empty() {
        return Err(PolyError::BadDegreeList("empty degree list".into()));
    }
    if !(eps > 0.0 && eps < 1.0) {
        return Err(PolyError::BadDomain { a: eps, c: 1.0 });
    }
    let (mut a, mut c, mut half_width) = (Dd::new(eps), Dd::ONE, Dd::ONE);
    let mut stages = Vec::with_capacity(degrees.len());
    for (i, &degree) in degrees.iter().enumerate() {
        let stage = minimax_sign(degree, a, c, half_width)?;
        let (lo, hi) = stage.image;
        if lo.hi <= 0.0 {
            return Err(PolyError::StageCollapsed {
                stage: i + 1,
                degree,
                eps,
            });
        }
        half_width = hi.max(max_on(&stage.poly, Dd::ZERO, a));
        (a, c) = (lo, hi);
        stages.push(stage);
    }
    let composite = Composite {
        stages: stages.iter().map(|s| s.poly.clone()).collect(),
    };
    Ok(SignComposite { eps, stages, composite })
}

/// max p on [lo, hi] from its critical points and endpoints.
pub fn max_on(p: &OddPoly, lo: Dd, hi: Dd) -> Dd {
    let mut best = p.eval(lo).max(p.eval(hi));
    for x in p.critical_points(lo, hi) {
        best = best.max(p.eval(x));
    }
    best
}

/// Composite for `degrees` with the ε minimising the ReLU error. The error is the larger of two
/// terms: the last stage's error E_k/2 on [ε, 1], which falls as ε grows, and the error left on
/// the gap [0, ε], which grows with ε. The best ε is where they cross, found by bisection on
/// log2 ε (each step one composite). Too small an ε makes a stage collapse onto 0 (move right);
/// too large an ε leaves the later stages nothing to do and their Remez systems degenerate
/// (move left). The estimate is verified independently by `verify::relu_error`.
pub fn optimise_eps(degrees: &[usize]) -> Result<SignComposite, PolyError> {
    let (mut lo, mut hi) = (-40.0f64, -0.05f64);
    let mut best: Option<(f64, SignComposite)> = None;
    while hi - lo > 1e-3 {
        let mid = 0.5 * (lo + hi);
        let (tail, gap, built) = match build_sign_composite(degrees, 2f64.powf(mid)) {
            Ok(sc) => {
                let (tail, gap) = relu_error_terms(&sc);
                (tail, gap, Some(sc))
            }
            Err(PolyError::StageCollapsed { .. }) => (f64::INFINITY, 0.0, None),
            Err(_) => (0.0, f64::INFINITY, None),
        };
        if let Some(sc) = built {
            let value = tail.max(gap);
            if best.as_ref().is_none_or(|(v, _)| value < *v) {
                best = Some((value, sc));
            }
        }
        if tail > gap { lo = mid } else { hi = mid }
    }
    best.map(|(_, sc)| sc).ok_or_else(|| {
        PolyError::BadDegreeList(format!(
            "no ε in [2^-40, 1) gives a usable composite for degrees {degrees:?}"
        ))
    })
}

/// The two competing terms of the ReLU error: (E_k/2, max over [0, ε] of x(1 − p(x))/2, sampled).
pub fn relu_error_terms(sc: &SignComposite) -> (f64, f64) {
    let last = sc.stages.last().expect("non-empty");
    let tail = last.error.to_f64() / 2.0;
    let gap = (1..=64)
        .map(|i| sc.eps * i as f64 / 64.0)
        .map(|x| x * (1.0 - sc.composite.eval_fast(x)).abs() / 2.0)
        .fold(0.0, f64::max);
    (tail, gap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_chain_onto_images() {
        let sc = build_sign_composite(&[7, 15], 0.01).unwrap();
        let (lo, hi) = sc.stages[0].image;
        assert_eq!(sc.stages[1].domain, (lo, hi));
        assert!(sc.stages[1].error < sc.stages[0].error);
        // the composite maps ε..1 into [1 − E2, 1 + E2]
        for &x in &[0.01, 0.02, 0.3, 0.77, 1.0] {
            let e = (sc.composite.eval_f64(x) - 1.0).abs();
            assert!(e <= sc.stages[1].error.to_f64() * (1.0 + 1e-9), "x={x}: {e}");
            assert!((sc.composite.eval_f64(-x) + sc.composite.eval_f64(x)).abs() < 1e-15);
        }
    }

    #[test]
    fn too_small_eps_is_reported_not_hidden() {
        let err = build_sign_composite(&[3], 1e-9).map(|sc| sc.stages[0].image.0.to_f64());
        // A degree-3 stage cannot lift 1e-9 anywhere near 1: either it collapses or its image
        // starts barely above zero — never a silent success claiming a small error.
        match err {
            Err(PolyError::StageCollapsed { .. }) => {}
            Ok(lo) => assert!(lo < 1e-6),
            Err(e) => panic!("unexpected {e}"),
        }
    }
}
