//! What one approximate configuration is: how each kind of activation is evaluated
//! ([`Mode`]), its composite, label and polynomial description, and the activation plan it
//! becomes with a set of bounds.

use super::bounds::SiteBound;
use crate::exec::{ActivationPlan, PolySite, ReluPoly, SiteMode};
use crate::model::{Graph, SiteKind};
use crate::poly::Composite;
use crate::poly::cost::HeCost;
use serde::Serialize;

/// How a kind of activation is evaluated.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Exact,
    /// The composite minimax polynomial of the configuration's α.
    Approx,
    /// ReLU only: one power-basis polynomial (`square`, `relu-aq` or a file); max-pooling is
    /// then exact, as in the official code.
    Poly(Box<ReluPoly>),
}

impl Mode {
    /// `--relu`: exact, approx, square (x²), relu-aq (x²/8 + x/2 + 1/4) or poly:FILE (see
    /// [`ReluPoly::parse`] for the file format).
    pub fn parse_relu(s: &str) -> Result<Mode, String> {
        match s {
            "square" => Ok(Mode::Poly(Box::new(ReluPoly::square()))),
            "relu-aq" => Ok(Mode::Poly(Box::new(ReluPoly::relu_aq()))),
            _ => match s.strip_prefix("poly:") {
                Some(file) => Ok(Mode::Poly(Box::new(ReluPoly::load(std::path::Path::new(file))?))),
                None => Self::parse_exact_or_approx(s)
                    .map_err(|_| format!("--relu '{s}': expected exact, approx, square, relu-aq or poly:FILE")),
            },
        }
    }

    /// `--maxpool`: exact or approx.
    pub fn parse_maxpool(s: &str) -> Result<Mode, String> {
        Self::parse_exact_or_approx(s).map_err(|_| format!("--maxpool '{s}': expected exact or approx"))
    }

    fn parse_exact_or_approx(s: &str) -> Result<Mode, ()> {
        match s {
            "exact" => Ok(Mode::Exact),
            "approx" => Ok(Mode::Approx),
            _ => Err(()),
        }
    }

    /// What this mode is called in labels: "ReLU", "square ReLU", …
    fn relu_label(&self) -> Option<String> {
        match self {
            Mode::Exact => None,
            Mode::Approx => Some("ReLU".into()),
            Mode::Poly(p) => Some(format!("{} ReLU", p.name)),
        }
    }
}

/// One approximate configuration evaluated alongside the exact network.
#[derive(Clone, Debug)]
pub struct ApproxConfig<'a> {
    pub label: String,
    pub alpha: u32,
    pub composite: &'a Composite,
    pub relu: Mode,
    pub maxpool: Mode,
    /// Clamp approximate inputs to [-B, B] (otherwise out-of-range values reach the polynomial,
    /// as they would under encryption; they are counted either way).
    pub clamp: bool,
}

/// The polynomial a configuration used.
#[derive(Clone, Debug, Serialize)]
pub struct PolyInfo {
    pub degrees: Vec<usize>,
    /// "ours (ε = …)" or the official coefficient directory.
    pub source: String,
    /// Verified max |x(1+p(x))/2 − ReLU(x)| on [-1, 1], log2.
    pub relu_error_log2: f64,
    pub relu_cost: HeCost,
}

/// The activation plan of one approximate configuration with these per-site bounds.
pub fn approx_plan<'a>(graph: &Graph, config: &'a ApproxConfig<'a>, bounds: &[SiteBound]) -> ActivationPlan<'a> {
    let modes = graph
        .sites
        .iter()
        .zip(bounds)
        .map(|(site, b)| {
            let mode = if site.kind == SiteKind::Relu {
                &config.relu
            } else {
                &config.maxpool
            };
            match mode {
                Mode::Exact => SiteMode::Exact,
                Mode::Approx => SiteMode::approx(config.composite, config.alpha, b.bound).clamped(config.clamp),
                // a ReLU polynomial never reaches a max-pool site: those are exact with it
                Mode::Poly(_) if site.kind == SiteKind::MaxPool => SiteMode::Exact,
                Mode::Poly(poly) => SiteMode::Poly(PolySite {
                    poly,
                    bound: b.bound,
                    clamp: config.clamp,
                }),
            }
        })
        .collect();
    ActivationPlan { modes }
}

/// The configuration's label: "α=14 (ReLU + max-pool)", "square ReLU (max-pool exact)", …
pub fn config_label(alpha: u32, relu: &Mode, maxpool: &Mode, has_maxpool: bool) -> String {
    let maxpool = if has_maxpool { maxpool } else { &Mode::Exact };
    match (relu, maxpool) {
        (Mode::Poly(p), _) if has_maxpool => format!("{} ReLU (max-pool exact)", p.name),
        (Mode::Poly(p), _) => format!("{} ReLU", p.name),
        (relu, maxpool) => {
            let what = match (relu.relu_label(), maxpool) {
                (Some(r), Mode::Approx) => format!("{r} + max-pool"),
                (Some(r), _) => r,
                (None, Mode::Approx) => "max-pool".into(),
                (None, _) => "nothing approximated".into(),
            };
            format!("α={alpha} ({what})")
        }
    }
}
