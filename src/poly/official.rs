//! The paper's published composite polynomials (snu-ccl/approxCNN `coeffResult/`,
//! `degreeResult/`): `deg_A.txt` lists the stage degrees for precision α = A, one per line;
//! `coeff_A.txt` lists every stage's power-basis coefficients, lowest degree first, stage after
//! stage (d+1 numbers for a stage of degree d). Loading them lets users reproduce the paper's
//! polynomials exactly and compare them with ours.
//!
//! The directory given is either a checkout of approxCNN (the files in its `degreeResult/` and
//! `coeffResult/` folders) or one folder holding both kinds of file.

use super::PolyError;
use super::composite::{Composite, max_on};
use super::dd::Dd;
use super::odd::OddPoly;
use std::path::{Path, PathBuf};

/// Even power coefficients above this are not the file format's numerical noise (~1e-40).
const EVEN_NOISE_LIMIT: f64 = 1e-20;

/// The approxCNN repository's folders of degree and coefficient files.
const CHECKOUT_DIRS: (&str, &str) = ("degreeResult", "coeffResult");

/// Where `deg_A.txt` and `coeff_A.txt` are: in an approxCNN checkout's two folders when `dir`
/// has them, else in `dir` itself.
pub fn official_paths(dir: &Path, alpha: u32) -> (PathBuf, PathBuf) {
    let (deg_dir, coeff_dir) = (dir.join(CHECKOUT_DIRS.0), dir.join(CHECKOUT_DIRS.1));
    let (deg_dir, coeff_dir) = if deg_dir.is_dir() && coeff_dir.is_dir() {
        (deg_dir, coeff_dir)
    } else {
        (dir.to_path_buf(), dir.to_path_buf())
    };
    (
        deg_dir.join(format!("deg_{alpha}.txt")),
        coeff_dir.join(format!("coeff_{alpha}.txt")),
    )
}

pub fn load_official(dir: &Path, alpha: u32) -> Result<Composite, PolyError> {
    let (deg_path, coeff_path) = official_paths(dir, alpha);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// p(x) = 1.5x − 0.5x³ (one stage of degree 3) in the published file format.
    const DEGREES: &str = "3\n";
    const COEFFS: &str = "0.0\n1.5\n0.0\n-0.5\n";

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn reads_an_approxcnn_checkout_and_a_flat_folder_alike() {
        let root = std::env::temp_dir().join(format!("polycnn-official-{}", std::process::id()));
        let (checkout, flat) = (root.join("approxCNN"), root.join("flat"));
        write(&checkout.join("degreeResult"), "deg_3.txt", DEGREES);
        write(&checkout.join("coeffResult"), "coeff_3.txt", COEFFS);
        write(&flat, "deg_3.txt", DEGREES);
        write(&flat, "coeff_3.txt", COEFFS);
        assert_eq!(
            official_paths(&checkout, 3),
            (
                checkout.join("degreeResult/deg_3.txt"),
                checkout.join("coeffResult/coeff_3.txt")
            )
        );
        let from_checkout = load_official(&checkout, 3).unwrap();
        let from_flat = load_official(&flat, 3).unwrap();
        assert_eq!(from_checkout.degrees(), vec![3]);
        for x in [-1.0, -0.3, 0.2, 0.9] {
            let (a, b) = (from_checkout.eval_f64(x), from_flat.eval_f64(x));
            assert_eq!(a, b);
            assert!((a - (1.5 * x - 0.5 * x * x * x)).abs() < 1e-12, "p({x}) = {a}");
        }
        // a checkout without this α names the file it looked for
        let err = load_official(&checkout, 4).unwrap_err().to_string();
        assert!(err.contains("degreeResult") && err.contains("deg_4.txt"), "{err}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
