//! polycnn next to PyTorch: reads the JSON `scripts/bench_pytorch.py` writes (same models,
//! batch and thread count, same machine) and prints throughput ratios.

use super::BenchReport;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// What `scripts/bench_pytorch.py` measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PytorchReport {
    pub torch_version: String,
    pub threads: usize,
    pub device: String,
    pub networks: Vec<PytorchNetwork>,
    #[serde(default)]
    pub conv: Vec<PytorchConv>,
}

/// PyTorch's exact forward of one model (polycnn's model name).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PytorchNetwork {
    pub model: String,
    pub batch: usize,
    pub exact_s_per_image: f64,
}

/// `torch.nn.functional.conv2d` at one of the benchmark's shapes (same M, N, K).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PytorchConv {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub ms: f64,
}

/// One line of the side-by-side table.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Comparison {
    pub what: String,
    pub polycnn: f64,
    pub pytorch: f64,
    /// polycnn throughput / PyTorch throughput (> 1: polycnn is faster).
    pub ratio: f64,
    pub note: String,
}

pub fn load(path: &Path) -> Result<PytorchReport, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        format!(
            "{}: not a bench_pytorch.py report ({e}); regenerate it with scripts/bench_pytorch.py",
            path.display()
        )
    })
}

/// Pairs polycnn's CPU rows with PyTorch's: networks by model name (exact forward, and
/// polycnn's one-pass exact+approx against PyTorch's exact alone), convolutions by GEMM shape.
pub fn compare(ours: &BenchReport, theirs: &PytorchReport) -> Vec<Comparison> {
    let mut rows = Vec::new();
    for net in ours.networks.iter().filter(|r| r.backend == theirs.device) {
        let Some(t) = theirs.networks.iter().find(|t| t.model == net.model) else {
            continue;
        };
        let note = batch_note(net.batch, t.batch, ours.threads, theirs.threads);
        for (what, ours_s) in [
            ("exact", net.exact_s_per_image),
            ("exact+approx (one pass)", net.both_s_per_image),
        ] {
            rows.push(Comparison {
                what: format!("{} {what} vs PyTorch exact, s/image", net.model),
                polycnn: ours_s,
                pytorch: t.exact_s_per_image,
                ratio: t.exact_s_per_image / ours_s,
                note: note.clone(),
            });
        }
    }
    if theirs.device == "cpu" {
        for conv in &ours.conv {
            let Some(t) = theirs.conv.iter().find(|t| (t.m, t.n, t.k) == (conv.m, conv.n, conv.k)) else {
                continue;
            };
            rows.push(Comparison {
                what: format!("conv {} (CPU), ms", conv.layer),
                polycnn: conv.cpu_ms,
                pytorch: t.ms,
                ratio: t.ms / conv.cpu_ms,
                note: String::new(),
            });
        }
    }
    rows
}

fn batch_note(ours_batch: usize, their_batch: usize, ours_threads: usize, their_threads: usize) -> String {
    let mut notes = Vec::new();
    if ours_batch != their_batch {
        notes.push(format!("batch {ours_batch} vs {their_batch}"));
    }
    if ours_threads != their_threads {
        notes.push(format!("threads {ours_threads} vs {their_threads}"));
    }
    notes.join(", ")
}

pub fn format_comparison(theirs: &PytorchReport, rows: &[Comparison]) -> String {
    let mut out = format!(
        "== polycnn vs PyTorch {} ({}, {} threads): ratio = polycnn throughput / PyTorch's\n",
        theirs.torch_version, theirs.device, theirs.threads
    );
    if rows.is_empty() {
        out.push_str("  no common rows (run bench with the same models / the conv section)\n");
    }
    for row in rows {
        out.push_str(&format!(
            "  {:<58} polycnn {:>9.4}  PyTorch {:>9.4}  ratio {:>5.2}{}\n",
            row.what,
            row.polycnn,
            row.pytorch,
            row.ratio,
            if row.note.is_empty() {
                String::new()
            } else {
                format!("  ({})", row.note)
            }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{ConvRow, NetworkRow};

    fn ours() -> BenchReport {
        BenchReport {
            threads: 2,
            networks: vec![NetworkRow {
                model: "resnet152_imagenet".into(),
                backend: "cpu".into(),
                batch: 8,
                exact_s_per_image: 0.2,
                approx_s_per_image: 0.3,
                both_s_per_image: 0.5,
                peak_mib: None,
            }],
            conv: vec![ConvRow {
                layer: "3x3".into(),
                m: 3136,
                n: 64,
                k: 576,
                gpu_tiled_ms: None,
                gpu_naive_ms: None,
                gpu_tile_configs_ms: Vec::new(),
                cpu_ms: 4.0,
                flops: 1.0,
            }],
            ..BenchReport::default()
        }
    }

    #[test]
    fn pairs_rows_by_model_and_shape_and_notes_mismatches() {
        let theirs: PytorchReport = serde_json::from_str(
            r#"{"torch_version": "2.5", "threads": 2, "device": "cpu",
                "networks": [{"model": "resnet152_imagenet", "batch": 4, "exact_s_per_image": 0.3},
                             {"model": "resnet20", "batch": 8, "exact_s_per_image": 0.01}],
                "conv": [{"m": 3136, "n": 64, "k": 576, "ms": 2.0}, {"m": 1, "n": 1, "k": 1, "ms": 1.0}]}"#,
        )
        .unwrap();
        let rows = compare(&ours(), &theirs);
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert!((rows[0].ratio - 1.5).abs() < 1e-12);
        assert!((rows[1].ratio - 0.6).abs() < 1e-12);
        assert_eq!(rows[0].note, "batch 8 vs 4");
        assert!((rows[2].ratio - 0.5).abs() < 1e-12);
    }

    #[test]
    fn a_foreign_json_file_is_a_clear_error() {
        let path = std::env::temp_dir().join(format!("polycnn-not-pytorch-{}.json", std::process::id()));
        std::fs::write(&path, r#"{"rows": []}"#).unwrap();
        let err = load(&path).unwrap_err();
        std::fs::remove_file(&path).ok();
        assert!(err.contains("not a bench_pytorch.py report"), "{err}");
    }
}
