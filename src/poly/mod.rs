//! Polynomial approximation: composite minimax approximations of sign(x), the ReLU and max
//! built on them, their verification and their homomorphic-encryption cost.
//!
//! Flow: `remez` finds one odd minimax stage → `composite` chains stages and picks ε →
//! `verify` measures the ReLU error in double-double → `activation` is the CPU reference of the
//! approximate ReLU / max-pool the GPU kernels must match; `official` reads the paper's files.

pub mod activation;
pub mod composite;
pub mod cost;
pub mod dd;
pub mod degrees;
pub mod odd;
pub mod official;
pub mod remez;
pub mod verify;

pub use composite::{
    Composite, SignComposite, build_sign_composite, optimise_eps, paper_degrees, paper_degrees_or_error,
};
pub use dd::Dd;
pub use odd::OddPoly;

use std::fmt;

#[derive(Debug)]
pub enum PolyError {
    BadDegree(usize),
    BadDegreeList(String),
    BadDomain {
        a: f64,
        c: f64,
    },
    RemezFailed {
        degree: usize,
        a: f64,
        c: f64,
        why: &'static str,
    },
    StageCollapsed {
        stage: usize,
        degree: usize,
        eps: f64,
    },
    NoDefaultDegrees(u32),
    CoeffFile {
        path: String,
        why: String,
    },
}

impl fmt::Display for PolyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolyError::BadDegree(d) => write!(f, "degree {d} is not an odd number in 1..=255"),
            PolyError::BadDegreeList(why) => write!(f, "bad degree list: {why}"),
            PolyError::BadDomain { a, c } => write!(f, "bad approximation interval [{a}, {c}] (need 0 < a < c)"),
            PolyError::RemezFailed { degree, a, c, why } => {
                write!(f, "Remez failed for degree {degree} on [{a}, {c}]: {why}")
            }
            PolyError::StageCollapsed { stage, degree, eps } => write!(
                f,
                "stage {stage} (degree {degree}) maps its domain onto an interval touching 0 for ε = {eps:e}: \
                 the earlier stages are too weak for this ε"
            ),
            PolyError::NoDefaultDegrees(alpha) => write!(
                f,
                "no default degree list for α = {alpha} (the paper's lists cover 4..14); give one with --degrees"
            ),
            PolyError::CoeffFile { path, why } => write!(f, "{path}: {why}"),
        }
    }
}

impl std::error::Error for PolyError {}

/// Parse "15,27,29" into odd degrees in 1..=63 (the supported user range).
pub fn parse_degree_list(s: &str) -> Result<Vec<usize>, PolyError> {
    let degrees: Vec<usize> = s
        .split(',')
        .map(|t| {
            t.trim()
                .parse::<usize>()
                .map_err(|_| PolyError::BadDegreeList(format!("'{t}' is not a number in '{s}'")))
        })
        .collect::<Result<_, _>>()?;
    if degrees.is_empty() || degrees.len() > 8 {
        return Err(PolyError::BadDegreeList(format!("'{s}': give 1 to 8 stages")));
    }
    if let Some(&d) = degrees.iter().find(|&&d| d.is_multiple_of(2) || !(1..=63).contains(&d)) {
        return Err(PolyError::BadDegreeList(format!(
            "'{s}': degree {d} is not odd in 1..=63"
        )));
    }
    Ok(degrees)
}
