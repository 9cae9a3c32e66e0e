//! The paper's published composite polynomials (snu-ccl/approxCNN `coeffResult/`,
//! `degreeResult/`): `deg_A.txt` lists the stage degrees for precision α = A, one per line;
//! `coeff_A.txt` lists every stage's power-basis coefficients, lowest degree first, stage after
//! stage (d+1 numbers for a stage of degree d). Loading them lets users reproduce the paper's
//! polynomials exactly and compare them with ours.

use super::PolyError;
use super::composite::{Composite, max_on};
use super::dd::Dd;
use super::odd::OddPoly;
use std::path::Path;

/// Even power coefficients above this are not the file format's numerical noise (~1e-40).
const EVEN_NOISE_LIMIT: f64 = 1e-20;

pub fn load_official(dir: &Path, alpha: u32) -> Result<Composite, PolyError> {
    let deg_path = dir.join(format!("deg_{alpha}.txt"));
    let coeff_path = dir.join(format!("coeff_{alpha}.txt"));
    let degrees: Vec<usize> = read_numbers(&deg_path, |t| t.parse::<usize>().ok())?;
    let coeffs: Vec<Dd> = read_numbers(&coeff_path, Dd::parse)?;
    let bad = |why: String| PolyError::CoeffFile {
        path: coeff_path.display().to_string(),
        why,
    };
    if degrees.is_empty() {
        return Err(PolyError::CoeffFile {
            path: deg_path.display().to_string(),
            why: "no degrees".into(),
        });
    }
    if let Some(&d) = degrees.iter().find(|&&d| d.is_multiple_of(2) || d > 255) {
        return Err(PolyError::CoeffFile {
            path: deg_path.display().to_string(),
            why: format!("degree {d} is not odd"),
        });
    }
    let expected: usize = degrees.iter().map(|d| d + 1).sum();
    if coeffs.len() != expected {
        return Err(bad(format!(
            "{} coefficients, but degrees {degrees:?} in {} need {expected}",
            coeffs.len(),
            deg_path.display()
        )));
    }
    let mut stages = Vec::with_capacity(degrees.len());
    let mut offset = 0;
    let mut half_width = Dd::ONE;
    for (i, &d) in degrees.iter().enumerate() {
        let power = &coeffs[offset..offset + d + 1];
        offset += d + 1;
        if let Some(j) = (0..=d).step_by(2).find(|&j| power[j].abs().to_f64() > EVEN_NOISE_LIMIT) {
            return Err(bad(format!(
                "stage {} is not odd: coefficient of x^{j} is {}",
                i + 1,
                power[j]
            )));
        }
        if let Some(c) = power.iter().find(|c| !c.is_finite()) {
            return Err(bad(format!("stage {} has a non-finite coefficient {c}", i + 1)));
        }
        let poly = OddPoly::from_power_basis(power, half_width);
        // The next stage receives p_i([-b_i, b_i]); its Chebyshev domain must cover that.
        half_width = max_on(&poly, Dd::ZERO, half_width).max(Dd::ONE);
        stages.push(poly);
    }
    Ok(Composite { stages })
}

fn read_numbers<T>(path: &Path, parse: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, PolyError> {
    let text = std::fs::read_to_string(path).map_err(|e| PolyError::CoeffFile {
        path: path.display().to_string(),
        why: format!("cannot read: {e}"),
    })?;
    text.split_whitespace()
        .enumerate()
        .map(|(i, tok)| {
            parse(tok).ok_or_else(|| PolyError::CoeffFile {
                path: path.display().to_string(),
                why: format!("entry {} ('{tok}') is not a valid number", i + 1),
            })
        })
        .collect()
}
