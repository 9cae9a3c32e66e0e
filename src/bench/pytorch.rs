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
    /// The official approxCNN evaluation's approximate forward (the peer baseline).
    #[serde(default)]
    pub approxcnn: Vec<PeerNetwork>,
}

impl PytorchReport {
    /// polycnn's backend name for PyTorch's device ("cuda" ↔ "gpu").
    fn backend(&self) -> &str {
        if self.device == "cuda" { "gpu" } else { &self.device }
    }
}

/// PyTorch's exact forward of one model (polycnn's model name).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PytorchNetwork {
    pub model: String,
    pub batch: usize,
    pub exact_s_per_image: f64,
}

/// approxCNN's approximate forward of one model at one α (every ReLU and max-pool approximated).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PeerNetwork {
    pub model: String,
    pub batch: usize,
    pub alpha: u32,
    pub approx_s_per_image: f64,
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

/// Pairs polycnn's rows of PyTorch's device (CPU rows with a CPU report, GPU rows with a CUDA
/// one): networks by model name (exact forward, and polycnn's one-pass exact+approx against
/// PyTorch's exact alone; polycnn's approximate α=14 and one-pass against approxCNN's
/// approximate forward), convolutions by GEMM shape.
pub fn compare(ours: &BenchReport, theirs: &PytorchReport) -> Vec<Comparison> {
    let mut rows = Vec::new();
    for net in ours.networks.iter().filter(|r| r.backend == theirs.backend()) {
        if let Some(t) = theirs.networks.iter().find(|t| t.model == net.model) {
            let note = batch_note(net.batch, t.batch, ours.threads, theirs.threads);
            // a network that cannot run approximated has no one-pass time (None): no row
            for (what, ours_s) in [
                ("exact", Some(net.exact_s_per_image)),
                ("exact+approx (one pass)", net.both_s_per_image),
            ] {
                let Some(ours_s) = ours_s else { continue };
                rows.push(ratio_row(
                    format!("{} {what} vs PyTorch exact, s/image", net.model),
                    ours_s,
                    t.exact_s_per_image,
                    note.clone(),
                ));
            }
        }
        // The bench's approximate plan is α = 14: only a peer row at the same α compares.
        if let Some(p) = theirs.approxcnn.iter().find(|p| p.model == net.model && p.alpha == 14) {
            let note = batch_note(net.batch, p.batch, ours.threads, theirs.threads);
            for (what, ours_s) in [
                ("approx α=14", net.approx_s_per_image),
                ("exact+approx (one pass)", net.both_s_per_image),
            ] {
                let Some(ours_s) = ours_s else { continue };
                rows.push(ratio_row(
                    format!("{} {what} vs approxCNN approx α=14, s/image", net.model),
                    ours_s,
                    p.approx_s_per_image,
                    note.clone(),
                ));
            }
        }
    }
    for conv in &ours.conv {
        let Some(t) = theirs.conv.iter().find(|t| (t.m, t.n, t.k) == (conv.m, conv.n, conv.k)) else {
            continue;
        };
        let (ours_ms, device) = match theirs.backend() {
            "cpu" => (Some(conv.cpu_ms), "CPU"),
            _ => (conv.gpu_tiled_ms, "GPU"),
        };
        if let Some(ms) = ours_ms {
            rows.push(ratio_row(
                format!("conv {} ({device}), ms", conv.layer),
                ms,
                t.ms,
                String::new(),
            ));
        }
    }
    rows
}

/// Times (or seconds per image) side by side; ratio > 1 when polycnn is faster.
fn ratio_row(what: String, polycnn: f64, pytorch: f64, note: String) -> Comparison {
    Comparison {
        what,
        polycnn,
        pytorch,
        ratio: pytorch / polycnn,
        note,
    }
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
        "== polycnn vs PyTorch {} ({}, {} threads): ratio = polycnn throughput / PyTorch's (or approxCNN's)\n",
        theirs.torch_version, theirs.device, theirs.threads
    );
    if rows.is_empty() {
        out.push_str("  no common rows (run bench with the same models / the conv section)\n");
    }
    for row in rows {
        out.push_str(&format!(
            "  {:<66} polycnn {:>9.4}  PyTorch {:>9.4}  ratio {:>5.2}{}\n",
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
                approx_s_per_image: Some(0.3),
                both_s_per_image: Some(0.5),
                approx_refused: None,
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
    fn a_cuda_report_pairs_the_gpu_rows_and_the_peer_rows() {
        let mut ours = ours();
        let mut gpu_row = ours.networks[0].clone();
        gpu_row.backend = "gpu".into();
        gpu_row.both_s_per_image = Some(0.01);
        gpu_row.approx_s_per_image = Some(0.008);
        ours.networks.push(gpu_row);
        ours.conv[0].gpu_tiled_ms = Some(0.5);
        let theirs: PytorchReport = serde_json::from_str(
            r#"{"torch_version": "2.5", "threads": 2, "device": "cuda",
                "networks": [{"model": "resnet152_imagenet", "batch": 8, "exact_s_per_image": 0.004}],
                "conv": [{"m": 3136, "n": 64, "k": 576, "ms": 0.25}],
                "approxcnn": [{"model": "resnet152_imagenet", "batch": 2, "alpha": 14, "approx_s_per_image": 0.8},
                              {"model": "resnet152_imagenet", "batch": 2, "alpha": 10, "approx_s_per_image": 0.5}]}"#,
        )
        .unwrap();
        let rows = compare(&ours, &theirs);
        let whats: Vec<&str> = rows.iter().map(|r| r.what.as_str()).collect();
        assert_eq!(rows.len(), 5, "{whats:?}");
        assert!((rows[1].ratio - 0.4).abs() < 1e-12, "one pass 0.01 vs exact 0.004");
        assert!(rows[2].what.contains("approx α=14 vs approxCNN"), "{whats:?}");
        assert!((rows[2].ratio - 100.0).abs() < 1e-9, "0.8 / 0.008");
        assert!((rows[3].ratio - 80.0).abs() < 1e-9, "0.8 / 0.01");
        assert_eq!(rows[3].note, "batch 8 vs 2");
        assert_eq!(rows[4].what, "conv 3x3 (GPU), ms");
        assert!((rows[4].ratio - 0.5).abs() < 1e-12);
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
