//! "+ CKKS noise" twins end to end on the shipped digits CNN: a precise bootstrap leaves the
//! plaintext approximation's predictions alone, a coarse one changes them, and the counts are
//! the same whatever the batching.

use polycnn::cpu;
use polycnn::data::digits::DigitsDataset;
use polycnn::data::loader::load_batch;
use polycnn::eval::ckks_noise::{CkksNoiseRequest, TwinBatch, build_twins, evaluate_twins};
use polycnn::exec::{ActivationPlan, SiteMode};
use polycnn::he::{NoisySite, load_preset};
use polycnn::model::{self, Arch, Batch, Shape};
use polycnn::poly::{optimise_eps, paper_degrees};
use std::path::Path;

fn digits_file(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/digits").join(name)
}

#[test]
fn precise_bootstrapping_keeps_predictions_and_coarse_changes_them() {
    let graph = model::load(Arch::DigitsCnn, &digits_file("digits_cnn.safetensors")).unwrap();
    let shapes = graph.shapes().unwrap();
    let dataset = DigitsDataset::open(&digits_file("digits_test.bin")).unwrap();
    let composite = optimise_eps(paper_degrees(8).unwrap()).unwrap().composite;
    let bound = 8.0;
    let sites = vec![vec![
        Some(NoisySite {
            composite: &composite,
            bound
        });
        graph.sites.len()
    ]];
    let req = CkksNoiseRequest {
        preset: load_preset("openfhe-n12-s50").unwrap(),
        seed: 5,
        precisions: vec![3, 40],
    };
    let twins = build_twins(&graph, &shapes, &sites, &["α=8".into()], &req).unwrap();
    let plans = vec![ActivationPlan::uniform(&graph, SiteMode::approx(&composite, 8, bound))];
    let run = |b: &Batch, p: &ActivationPlan| cpu::run(&graph, b, p).map_err(|e| e.to_string());
    let dataset = &dataset;
    let batches = |size: usize| {
        let count = 300.min(polycnn::data::Dataset::len(dataset));
        (0..count).step_by(size).map(move |start| {
            let indices: Vec<usize> = (start..(start + size).min(count)).collect();
            let loaded = load_batch(dataset, &indices, &Arch::DigitsCnn.descriptor().preprocessing.normalize);
            let s = loaded.shape;
            TwinBatch {
                images: Batch::new(loaded.labels.len(), Shape::new(s[0], s[1], s[2]), loaded.data).unwrap(),
                labels: loaded.labels,
                indices: loaded.indices.iter().map(|&i| i as u32).collect(),
            }
        })
    };
    let ev = evaluate_twins(&graph, batches(64), &plans, &twins, &run).unwrap();
    assert_eq!(ev.images, 300);
    let (coarse, precise) = (&ev.twins[0], &ev.twins[1]);
    assert_eq!(precise.agree_plaintext, 300, "40-bit bootstrapping changed predictions");
    assert!(precise.logit_rms_diff() < 1e-4, "{}", precise.logit_rms_diff());
    assert!(
        coarse.agree_plaintext < 285,
        "3-bit bootstrapping agreed on {} of 300",
        coarse.agree_plaintext
    );
    assert_eq!(precise.non_finite_logits, 0);
    assert!(
        coarse.logit_rms_diff() > 100.0 * precise.logit_rms_diff(),
        "{coarse:?} {precise:?}"
    );
    // the same counts in batches of 37
    let again = evaluate_twins(&graph, batches(37), &plans, &twins, &run).unwrap();
    assert_eq!(again.twins[0].agree_plaintext, coarse.agree_plaintext);
    assert_eq!(again.twins[0].top1, coarse.top1);
}
