//! How an activation site is evaluated: exactly, by the composite sign polynomial, or by one
//! power-basis polynomial standing in for ReLU.

use crate::poly::Composite;
use serde::Serialize;

/// How one activation site is evaluated.
#[derive(Clone, Copy, Debug)]
pub enum SiteMode<'a> {
    /// `max(x, 0)` / the true window maximum (PyTorch semantics).
    Exact,
    /// The composite polynomial sign approximation `p` with bound `B`:
    /// ReLU(x) ≈ x(1 + p(x/B))/2; max-pool by the paper's tree on inputs rescaled by
    /// `crate::poly::activation::max_pool_scale``(window, alpha, B)`. Inputs beyond ±B are counted, and clamped to
    /// [-B, B] only when [`Approx::clamp`] says so (otherwise the polynomial sees them as they are).
    Approx(Approx<'a>),
    /// A ReLU replaced by one power-basis polynomial ([`ReluPoly`]: the official code's `square`
    /// and `relu-aq` baselines, or a user's). ReLU sites only: max-pooling stays exact with these.
    Poly(PolySite<'a>),
}

/// A ReLU site evaluated by a [`ReluPoly`]; B is the range inputs are counted against (and the
/// scale t = x/B of a polynomial given on x/B).
#[derive(Clone, Copy, Debug)]
pub struct PolySite<'a> {
    pub poly: &'a ReluPoly,
    pub bound: f64,
    /// Clamp inputs to [-B, B] before the polynomial (they are counted out of range either way).
    pub clamp: bool,
}

/// One polynomial standing in for ReLU: y = Σ c_k x^k on raw x, or y = B·Σ c_k (x/B)^k when
/// `scaled` (a polynomial fitted to ReLU on [-1, 1], used on [-B, B]).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ReluPoly {
    /// "square", "relu-aq" or the file it came from.
    pub name: String,
    /// c_0, c_1, …: power basis, lowest degree first.
    pub coeffs: Vec<f64>,
    pub scaled: bool,
}

impl ReluPoly {
    /// x², the official code's `square` (applied to raw x, no bound).
    pub fn square() -> ReluPoly {
        ReluPoly {
            name: "square".into(),
            coeffs: vec![0.0, 0.0, 1.0],
            scaled: false,
        }
    }

    /// x²/8 + x/2 + 1/4, the official code's `relu_aq` (applied to raw x, no bound).
    pub fn relu_aq() -> ReluPoly {
        ReluPoly {
            name: "relu-aq".into(),
            coeffs: vec![0.25, 0.5, 0.125],
            scaled: false,
        }
    }

    /// Reads a polynomial file: one coefficient per line, lowest degree first (c_0 first);
    /// blank lines and `#` comments are ignored; a line `scaled` (anywhere) says the polynomial
    /// is in t = x/B and its value is multiplied by B (otherwise it is applied to raw x).
    pub fn parse(text: &str, name: &str) -> Result<ReluPoly, String> {
        let mut coeffs = Vec::new();
        let mut scaled = false;
        for (number, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            if line.eq_ignore_ascii_case("scaled") {
                scaled = true;
                continue;
            }
            let c = line
                .parse::<f64>()
                .ok()
                .filter(|c| c.is_finite())
                .ok_or_else(|| format!("{name}:{}: '{line}' is not a finite number", number + 1))?;
            coeffs.push(c);
        }
        if coeffs.is_empty() {
            return Err(format!("{name}: no coefficients (one per line, lowest degree first)"));
        }
        Ok(ReluPoly {
            name: name.to_string(),
            coeffs,
            scaled,
        })
    }

    pub fn load(path: &std::path::Path) -> Result<ReluPoly, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        ReluPoly::parse(&text, &path.display().to_string())
    }

    /// The polynomial's value at x (bound B used only when `scaled`), Horner in f64.
    pub fn eval(&self, x: f64, bound: f64) -> f64 {
        let t = if self.scaled { x / bound } else { x };
        let y = self.coeffs.iter().rev().fold(0.0f64, |acc, &c| acc.mul_add(t, c));
        if self.scaled { y * bound } else { y }
    }

    /// Whether its output depends on B (only then can raising B change anything).
    pub fn uses_bound(&self) -> bool {
        self.scaled
    }
}

/// The polynomial, its precision α (sets the max-pool rescaling) and the input bound B.
#[derive(Clone, Copy, Debug)]
pub struct Approx<'a> {
    pub composite: &'a Composite,
    pub alpha: u32,
    pub bound: f64,
    /// Clamp inputs to [-B, B] before the polynomial (they are counted out of range either way).
    pub clamp: bool,
    /// The CPU backend's arithmetic for the polynomial (the GPU's is its `Scheme`).
    pub precision: Precision,
}

/// How the CPU backend evaluates a site's composite polynomial.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// f32 SIMD Clenshaw, the GPU's `clenshaw` arithmetic (within 5% of 2^-α of the reference).
    #[default]
    F32,
    /// f64 Clenshaw: the reference scheme.
    F64,
    /// f64 in the basis and order an HE evaluator uses (`he::poly_eval`; `--ckks-poly-eval he`).
    HeOrder,
}

impl Precision {
    /// The CPU's counterpart of a GPU `--scheme`: `clenshaw` → f32, `clenshaw-df` → f64. The
    /// power basis (`horner`) exists only on the GPU, where its float32 breakdown is the point.
    pub fn for_scheme(scheme: &str) -> Result<Precision, String> {
        match scheme {
            "clenshaw" => Ok(Precision::F32),
            "clenshaw-df" => Ok(Precision::F64),
            other => Err(format!(
                "--scheme {other}: the CPU backend evaluates clenshaw (f32) or clenshaw-df (f64)"
            )),
        }
    }
}

impl<'a> SiteMode<'a> {
    pub fn approx(composite: &'a Composite, alpha: u32, bound: f64) -> SiteMode<'a> {
        SiteMode::Approx(Approx {
            composite,
            alpha,
            bound,
            clamp: false,
            precision: Precision::F32,
        })
    }

    /// This mode with its polynomial evaluated in `precision` on the CPU.
    pub fn in_precision(self, precision: Precision) -> SiteMode<'a> {
        match self {
            SiteMode::Approx(a) => SiteMode::Approx(Approx { precision, ..a }),
            other => other,
        }
    }

    /// This mode, clamping approximate inputs to [-B, B] (`clamp` true) or not.
    pub fn clamped(self, clamp: bool) -> SiteMode<'a> {
        match self {
            SiteMode::Approx(a) => SiteMode::Approx(Approx { clamp, ..a }),
            exact => exact,
        }
    }

    /// The input as the polynomial sees it: clamped to [-B, B] where the mode says so.
    pub fn polynomial_input(&self, x: f64) -> f64 {
        match self {
            SiteMode::Approx(a) if a.clamp => x.clamp(-a.bound, a.bound),
            SiteMode::Poly(p) if p.clamp => x.clamp(-p.bound, p.bound),
            _ => x,
        }
    }

    /// B of a site with a bound (inputs beyond it are counted out of range).
    pub fn bound(&self) -> Option<f64> {
        match self {
            SiteMode::Exact => None,
            SiteMode::Approx(a) => Some(a.bound),
            SiteMode::Poly(p) => Some(p.bound),
        }
    }

    /// Whether the site's output depends on its bound B.
    pub fn uses_bound(&self) -> bool {
        match self {
            SiteMode::Exact => false,
            SiteMode::Approx(_) => true,
            SiteMode::Poly(p) => p.poly.uses_bound(),
        }
    }
}

/// A bound B every backend accepts: positive and finite.
pub fn check_bound(bound: f64) -> Result<(), String> {
    if bound.is_finite() && bound > 0.0 {
        Ok(())
    } else {
        Err(format!("the bound B must be a positive finite number, got {bound}"))
    }
}
