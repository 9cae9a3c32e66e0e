//! polycnn's CKKS noise model against OpenFHE 1.6.1 measurements (tests/fixtures/openfhe_noise.json,
//! written by scripts/openfhe_noise.py): the predicted log2 error standard deviation of every
//! measured operation, and of one composite ReLU on real ResNet-20 activations, is within 1 bit.

use polycnn::he::{NoiseModel, NoiseParams, load_preset};
use polycnn::poly::{optimise_eps, paper_degrees};
use serde_json::Value;
use std::path::Path;

const TOLERANCE_BITS: f64 = 1.0;

fn fixture() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/openfhe_noise.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn num(v: &Value, path: &str) -> f64 {
    path.split('.')
        .fold(v, |v, k| &v[k])
        .as_f64()
        .unwrap_or_else(|| panic!("fixture field {path} is missing"))
}

/// The model of one measured parameter set (from the parameters the script recorded).
fn model_of(set: &Value) -> NoiseModel {
    let p = &set["params"];
    let log_ring = num(p, "ring_dim").log2().round() as u32;
    NoiseModel::new(NoiseParams::openfhe(
        log_ring,
        num(p, "scale_bits") as u32,
        num(p, "first_mod_bits") as u32,
        num(p, "multiplicative_depth") as u32,
        num(p, "dnum") as u32,
        num(p, "sigma"),
    ))
    .unwrap()
}

/// Compares and returns a table row; a failure names the set and operation.
fn check(rows: &mut Vec<String>, failures: &mut Vec<String>, what: String, predicted: f64, measured_log2: f64) {
    let diff = predicted.log2() - measured_log2;
    let row = format!(
        "{what:<48} predicted {:>8.2}  measured {measured_log2:>8.2}  diff {diff:>+6.2}",
        predicted.log2()
    );
    if diff.abs() > TOLERANCE_BITS {
        failures.push(row.clone());
    }
    rows.push(row);
}

fn rms(a: f64, b: f64) -> f64 {
    (a * a + b * b).sqrt()
}

#[test]
fn predicted_errors_are_within_one_bit_of_openfhe() {
    let fx = fixture();
    let sets = fx["sets"].as_array().unwrap();
    assert!(sets.len() >= 2, "the fixture has {} parameter sets", sets.len());
    let (mut rows, mut failures) = (Vec::new(), Vec::new());
    let mut checked_bootstrap = false;
    let mut checked_relu = false;
    for set in sets {
        let name = set["params"]["name"].as_str().unwrap().to_string();
        let m = model_of(set);
        let ops = &set["ops"];
        let fresh = m.fresh_std();
        let at = |op: &str, which: &str| num(ops, &format!("{op}.{which}.log2_std"));
        check(
            &mut rows,
            &mut failures,
            format!("{name} fresh encryption"),
            fresh,
            at("fresh", "total"),
        );
        let msq = num(ops, "pt_mult_rescale.mean_sq_input");
        let added = m.pt_mult_rescale_added_std(msq);
        check(
            &mut rows,
            &mut failures,
            format!("{name} ct x pt + rescale (added)"),
            added,
            at("pt_mult_rescale", "added"),
        );
        let total = rms(fresh * num(ops, "pt_mult_rescale.mean_sq_plain").sqrt(), added);
        check(
            &mut rows,
            &mut failures,
            format!("{name} ct x pt + rescale (total)"),
            total,
            at("pt_mult_rescale", "total"),
        );
        let added = m.ct_mult_rescale_added_std();
        check(
            &mut rows,
            &mut failures,
            format!("{name} ct x ct + relin + rescale (added)"),
            added,
            at("ct_mult_relin_rescale", "added"),
        );
        let inputs = num(ops, "ct_mult_relin_rescale.mean_sq_input") + num(ops, "ct_mult_relin_rescale.mean_sq_input2");
        let total = rms(fresh * inputs.sqrt(), added);
        check(
            &mut rows,
            &mut failures,
            format!("{name} ct x ct + relin + rescale (total)"),
            total,
            at("ct_mult_relin_rescale", "total"),
        );
        let ks = m.key_switch_std();
        check(
            &mut rows,
            &mut failures,
            format!("{name} rotation (added)"),
            ks,
            at("rotate", "added"),
        );
        check(
            &mut rows,
            &mut failures,
            format!("{name} rotation (total)"),
            rms(fresh, ks),
            at("rotate", "total"),
        );
        if ops.get("bootstrap").is_some() {
            // the bootstrapping error comes from the preset's precision, not from a formula
            let preset = load_preset("openfhe-n12-s50").unwrap();
            let boot = NoiseModel::from_preset(&preset).unwrap().bootstrap_std().unwrap();
            check(
                &mut rows,
                &mut failures,
                format!("{name} bootstrap (preset {})", preset.name),
                boot,
                at("bootstrap", "added"),
            );
            checked_bootstrap = true;
        }
        if let Some(relu) = ops.get("composite_relu") {
            let alpha = num(relu, "alpha") as u32;
            let degrees: Vec<usize> = relu["degrees"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(
                paper_degrees(alpha).unwrap(),
                degrees.as_slice(),
                "the fixture's composite is not α={alpha}'s"
            );
            let composite = optimise_eps(&degrees).unwrap().composite;
            let samples = histogram_samples(&relu["input_histogram"]);
            let predicted = m.composite_relu_error_std(&composite, num(relu, "bound"), &samples);
            check(
                &mut rows,
                &mut failures,
                format!("{name} composite ReLU α={alpha}"),
                predicted,
                num(relu, "vs_plaintext_composite.log2_std"),
            );
            checked_relu = true;
        }
    }
    let table = rows.join("\n");
    println!("{table}");
    assert!(
        checked_bootstrap && checked_relu,
        "the fixture lacks a bootstrap or a composite ReLU"
    );
    assert!(
        failures.is_empty(),
        "off by more than {TOLERANCE_BITS} bit:\n{}\n\nall:\n{table}",
        failures.join("\n")
    );
}

/// The inputs t = x/B as (value, weight): each histogram bin's count spread over 16 points.
fn histogram_samples(h: &Value) -> Vec<(f64, f64)> {
    let (lo, hi) = (num(h, "lo"), num(h, "hi"));
    let counts: Vec<f64> = h["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_f64().unwrap())
        .collect();
    let width = (hi - lo) / counts.len() as f64;
    const POINTS: usize = 16;
    let mut out = Vec::new();
    for (i, &c) in counts.iter().enumerate().filter(|(_, c)| **c > 0.0) {
        for j in 0..POINTS {
            let t = lo + width * (i as f64 + (j as f64 + 0.5) / POINTS as f64);
            out.push((t, c / POINTS as f64));
        }
    }
    out
}

#[test]
fn model_of_the_measured_bootstrap_preset_is_finite() {
    let m = NoiseModel::from_preset(&load_preset("openfhe-n12-s50").unwrap()).unwrap();
    assert!(m.bootstrap_std().unwrap() > m.fresh_std());
}
