//! `--ckks PRESET`: each approximate configuration gets "+ CKKS noise" twins, the same forward
//! pass with the errors a CKKS evaluation adds (`he::inject`), one twin per bootstrapping
//! precision (`--ckks-precision 8..30`; default the preset's own). The twins are counted like
//! any configuration, plus their agreement with the plaintext approximation they shadow and the
//! RMS difference of their logits from it; `precision_cliff` finds the fewest bits that keep
//! top-1 within 0.5 points of the plaintext approximation.

use crate::he::inject::{NoisePlan, NoisySite, placed_bootstraps};
use crate::he::{CkksPreset, NoiseModel};
use crate::model::cost::SitePrecision;
use crate::model::{Graph, Shape};
use serde::Serialize;

/// What `--ckks` asks for.
#[derive(Clone, Debug)]
pub struct CkksNoiseRequest {
    pub preset: CkksPreset,
    /// `--ckks-seed`: keys every draw with the node and the image's dataset index.
    pub seed: u64,
    /// `--ckks-precision`: bootstrapping precisions (bits, −log2 of the error std) to simulate;
    /// empty: the preset's published precision.
    pub precisions: Vec<u32>,
}

/// One twin: the configuration it shadows (index), its label, its noise plan.
#[derive(Clone, Debug)]
pub struct NoiseTwin {
    pub base: usize,
    pub label: String,
    pub plan: NoisePlan,
    pub info: TwinInfo,
}

/// What a report says about a twin.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TwinInfo {
    pub preset: String,
    /// −log2 of the bootstrapping error std simulated (None: the preset has none, no bootstrap
    /// error is injected).
    pub bootstrap_precision_bits: Option<f64>,
    pub bootstraps: usize,
    pub seed: u64,
    /// Variance injected per kind of operation, summed over the nodes.
    pub budget: crate::he::inject::NoiseBudget,
}

/// The twins of the configurations whose per-site approximations are `sites[c]` (None: exact
/// site) and labels `labels[c]`, in configuration order, precision after precision.
pub fn build_twins(
    graph: &Graph,
    shapes: &[Shape],
    sites: &[Vec<Option<NoisySite>>],
    labels: &[String],
    req: &CkksNoiseRequest,
) -> Result<Vec<NoiseTwin>, String> {
    let base_model = NoiseModel::from_preset(&req.preset).map_err(|e| format!("--ckks {}: {e}", req.preset.name))?;
    let precisions: Vec<Option<u32>> = if req.precisions.is_empty() {
        vec![None]
    } else {
        req.precisions.iter().map(|&p| Some(p)).collect()
    };
    let mut twins = Vec::new();
    for (base, (config_sites, label)) in sites.iter().zip(labels).enumerate() {
        let site_precisions: Vec<SitePrecision> = config_sites
            .iter()
            .map(|s| match s {
                Some(s) => SitePrecision::Approx {
                    alpha: None,
                    degrees: s.composite.degrees(),
                },
                None => SitePrecision::Exact,
            })
            .collect();
        let bootstraps = placed_bootstraps(graph, &site_precisions, &req.preset)?;
        for &bits in &precisions {
            let mut model = base_model.clone();
            if let Some(b) = bits {
                model.params.bootstrap_std = Some((-f64::from(b)).exp2());
            }
            let plan = NoisePlan::build(graph, shapes, &model, config_sites, &bootstraps, req.seed);
            let precision = model.bootstrap_std().map(|s| -s.log2());
            let suffix = match bits {
                Some(b) => format!(" + CKKS {} @ {b} bits", req.preset.name),
                None => format!(" + CKKS {}", req.preset.name),
            };
            twins.push(NoiseTwin {
                base,
                label: format!("{label}{suffix}"),
                info: TwinInfo {
                    preset: req.preset.name.clone(),
                    bootstrap_precision_bits: precision,
                    bootstraps: bootstraps.len(),
                    seed: req.seed,
                    budget: plan.budget,
                },
                plan,
            });
        }
    }
    Ok(twins)
}

/// The fewest bootstrapping bits whose top-1 stays within `tolerance` points of the plaintext
/// approximation's, and every larger precision tried too (a noisy curve can dip back); None
/// when no precision qualifies. `points`: (bits, top-1 %).
pub fn precision_cliff(plaintext_top1: f64, points: &[(f64, f64)], tolerance: f64) -> Option<f64> {
    let mut sorted = points.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let ok = |top1: f64| top1 >= plaintext_top1 - tolerance;
    (0..sorted.len())
        .find(|&i| sorted[i..].iter().all(|&(_, t)| ok(t)))
        .map(|i| sorted[i].0)
}

/// Parses `--ckks-precision`: "20" or "8..30" (inclusive), bits in 1..=60.
pub fn parse_precisions(s: &str) -> Result<Vec<u32>, String> {
    let bad = || format!("--ckks-precision '{s}': expected bits like 20 or a range like 8..30 (1..=60)");
    let (lo, hi) = match s.split_once("..") {
        Some((a, b)) => (a.trim().parse::<u32>().map_err(|_| bad())?, b.trim().parse::<u32>().map_err(|_| bad())?),
        None => {
            let v = s.trim().parse::<u32>().map_err(|_| bad())?;
            (v, v)
        }
    };
    if lo == 0 || hi > 60 || lo > hi {
        return Err(bad());
    }
    Ok((lo..=hi).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::he::load_preset;
    use crate::model::{Arch, random};
    use crate::poly::{optimise_eps, paper_degrees};

    #[test]
    fn cliff_is_the_fewest_bits_from_which_top1_stays_close() {
        let pts = [(8.0, 10.0), (10.0, 80.0), (12.0, 90.6), (14.0, 91.0), (16.0, 90.9)];
        assert_eq!(precision_cliff(91.0, &pts, 0.5), Some(12.0));
        // a dip above the first good precision moves the cliff past it
        let dip = [(10.0, 90.8), (12.0, 89.0), (14.0, 91.0)];
        assert_eq!(precision_cliff(91.0, &dip, 0.5), Some(14.0));
        assert_eq!(precision_cliff(91.0, &[(8.0, 10.0)], 0.5), None);
    }

    #[test]
    fn precision_lists() {
        assert_eq!(parse_precisions("8..10").unwrap(), vec![8, 9, 10]);
        assert_eq!(parse_precisions("20").unwrap(), vec![20]);
        for bad in ["", "0", "9..8", "x", "1..61"] {
            assert!(parse_precisions(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn one_twin_per_configuration_and_precision() {
        let graph = random(Arch::CifarResNet(20), 3).unwrap();
        let shapes = graph.shapes().unwrap();
        let composite = optimise_eps(paper_degrees(10).unwrap()).unwrap().composite;
        let sites = vec![Some(NoisySite { composite: &composite, bound: 20.0 }); graph.sites.len()];
        let req = CkksNoiseRequest {
            preset: load_preset("N16QP1546H192H32").unwrap(),
            seed: 1,
            precisions: vec![10, 20],
        };
        let twins = build_twins(&graph, &shapes, &[sites.clone(), sites], &["a".into(), "b".into()], &req).unwrap();
        assert_eq!(twins.len(), 4);
        assert_eq!(twins[3].base, 1);
        assert!(twins[0].label.ends_with("@ 10 bits"), "{}", twins[0].label);
        assert!(twins[0].info.budget.bootstrapping > twins[1].info.budget.bootstrapping * 1e5);
        assert!(twins[0].info.bootstraps > 0);
    }
}
