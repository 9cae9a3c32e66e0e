//! `--ckks PRESET` on `eval`/`sweep`: each approximate configuration gets "+ CKKS noise" twins,
//! the same forward pass with the errors a CKKS evaluation adds (`he::inject`), one twin per
//! bootstrapping precision (`--ckks-precision 8..30`; default the preset's own). The twins are
//! extra configurations of the same evaluation pass (`eval::pass::TwinOf`), so they share its
//! batches and exact logits, and are counted like any configuration plus against the plaintext
//! approximation they shadow. `precision_cliff` finds the fewest bits that keep top-1 within
//! 0.5 points of the plaintext approximation.

use crate::exec::{ActivationPlan, SiteMode};
use crate::he::inject::{NoiseBudget, NoisePlan, NoisySite, placed_bootstraps};
use crate::he::{CkksPreset, NoiseModel};
use crate::model::cost::SitePrecision;
use crate::model::{Graph, Shape};
use serde::Serialize;

/// How a twin evaluates the composite polynomials (`--ckks-poly-eval`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PolyEval {
    /// As its plaintext configuration does.
    #[default]
    Plain,
    /// In the Chebyshev basis and baby-step giant-step order an HE evaluator uses, in f64
    /// (`crate::poly::he_eval`; CPU backend only).
    He,
}

impl PolyEval {
    pub fn parse(s: &str) -> Result<PolyEval, String> {
        match s {
            "plain" => Ok(PolyEval::Plain),
            "he" => Ok(PolyEval::He),
            other => Err(format!("--ckks-poly-eval '{other}': expected plain or he")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PolyEval::Plain => "plain",
            PolyEval::He => "he",
        }
    }
}

/// What `--ckks` asks for.
#[derive(Clone, Debug)]
pub struct CkksNoiseRequest {
    pub preset: CkksPreset,
    /// `--ckks-seed`: keys every draw with the node and the image's dataset index.
    pub seed: u64,
    /// `--ckks-precision`: bootstrapping precisions (bits, −log2 of the error std) to simulate;
    /// empty: the preset's published precision.
    pub precisions: Vec<u32>,
    pub poly_eval: PolyEval,
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
    /// Bootstrap points of the optimal placement (`he::placement::optimal`), per image.
    pub bootstraps: usize,
    pub seed: u64,
    /// "plain" or "he" (`--ckks-poly-eval`).
    pub poly_eval: &'static str,
    /// Variance injected per kind of operation, summed over the nodes.
    pub budget: NoiseBudget,
}

/// The approximated sites of `plan` as the noise model needs them (None: an exact site); None
/// when a site is a ReLU polynomial baseline, which the level model does not cover.
pub fn noisy_sites<'a>(plan: &ActivationPlan<'a>) -> Option<Vec<Option<NoisySite<'a>>>> {
    plan.modes
        .iter()
        .map(|m| match m {
            SiteMode::Exact => Some(None),
            SiteMode::Approx(a) => Some(Some(NoisySite {
                composite: a.composite,
                bound: a.bound,
            })),
            SiteMode::Poly(_) => None,
        })
        .collect()
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
            twins.push(NoiseTwin {
                base,
                label: twin_label(label, &req.preset.name, bits, req.poly_eval),
                info: TwinInfo {
                    preset: req.preset.name.clone(),
                    bootstrap_precision_bits: precision,
                    bootstraps: bootstraps.len(),
                    seed: req.seed,
                    poly_eval: req.poly_eval.name(),
                    budget: plan.budget,
                },
                plan,
            });
        }
    }
    Ok(twins)
}

/// "α=14 (ReLU) + CKKS P", "… + CKKS P @ 20 bits", "… + CKKS P (HE order)".
fn twin_label(base: &str, preset: &str, bits: Option<u32>, poly_eval: PolyEval) -> String {
    let bits = bits.map(|b| format!(" @ {b} bits")).unwrap_or_default();
    let order = match poly_eval {
        PolyEval::Plain => "",
        PolyEval::He => " (HE order)",
    };
    format!("{base} + CKKS {preset}{bits}{order}")
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

/// Top-1 of one approximate configuration against the simulated bootstrapping precision.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PrecisionCurve {
    /// The plaintext configuration's label.
    pub label: String,
    pub plaintext_top1: f64,
    /// (bits, top-1 %), ascending bits.
    pub points: Vec<(f64, f64)>,
    /// [`precision_cliff`] with a 0.5-point tolerance.
    pub cliff_bits: Option<f64>,
}

impl PrecisionCurve {
    pub fn new(label: String, plaintext_top1: f64, mut points: Vec<(f64, f64)>) -> PrecisionCurve {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let cliff_bits = precision_cliff(plaintext_top1, &points, CLIFF_TOLERANCE);
        PrecisionCurve {
            label,
            plaintext_top1,
            points,
            cliff_bits,
        }
    }
}

/// Points of top-1 the precision cliff allows below the plaintext approximation.
pub const CLIFF_TOLERANCE: f64 = 0.5;

/// One twin as the precision curves read it.
#[derive(Clone, Debug)]
pub struct TwinPoint {
    /// Its base configuration's label and top-1 %.
    pub base: String,
    pub base_top1: f64,
    pub bits: Option<f64>,
    pub top1: f64,
}

/// One curve per base configuration with twins at two precisions or more (a `--ckks-precision`
/// range), in the order the bases first appear.
pub fn precision_curves(points: &[TwinPoint]) -> Vec<PrecisionCurve> {
    let mut bases: Vec<(&str, f64)> = Vec::new();
    for p in points {
        if !bases.iter().any(|(b, _)| *b == p.base) {
            bases.push((&p.base, p.base_top1));
        }
    }
    bases
        .into_iter()
        .filter_map(|(base, base_top1)| {
            let curve: Vec<(f64, f64)> = points
                .iter()
                .filter(|p| p.base == base)
                .filter_map(|p| p.bits.map(|b| (b, p.top1)))
                .collect();
            (curve.len() > 1).then(|| PrecisionCurve::new(base.to_string(), base_top1, curve))
        })
        .collect()
}

/// Parses `--ckks-precision`: "20" or "8..30" (inclusive), bits in 1..=60.
pub fn parse_precisions(s: &str) -> Result<Vec<u32>, String> {
    let bad = || format!("--ckks-precision '{s}': expected bits like 20 or a range like 8..30 (1..=60)");
    let (lo, hi) = match s.split_once("..") {
        Some((a, b)) => (
            a.trim().parse::<u32>().map_err(|_| bad())?,
            b.trim().parse::<u32>().map_err(|_| bad())?,
        ),
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
    fn curves_only_for_precision_ranges() {
        let point = |base: &str, bits, top1| TwinPoint {
            base: base.into(),
            base_top1: 91.0,
            bits,
            top1,
        };
        let points = [
            point("a", Some(8.0), 10.0),
            point("b", Some(20.0), 90.0),
            point("a", Some(12.0), 90.8),
        ];
        let curves = precision_curves(&points);
        assert_eq!(curves.len(), 1, "{curves:?}");
        assert_eq!(curves[0].label, "a");
        assert_eq!(curves[0].cliff_bits, Some(12.0));
        assert!(precision_curves(&[point("a", None, 1.0), point("a", None, 2.0)]).is_empty());
    }

    #[test]
    fn one_twin_per_configuration_and_precision() {
        let graph = random(Arch::CifarResNet(20), 3).unwrap();
        let shapes = graph.shapes().unwrap();
        let composite = optimise_eps(paper_degrees(10).unwrap()).unwrap().composite;
        let sites = vec![
            Some(NoisySite {
                composite: &composite,
                bound: 20.0
            });
            graph.sites.len()
        ];
        let req = CkksNoiseRequest {
            preset: load_preset("N16QP1546H192H32").unwrap(),
            seed: 1,
            precisions: vec![10, 20],
            poly_eval: PolyEval::Plain,
        };
        let twins = build_twins(
            &graph,
            &shapes,
            &[sites.clone(), sites],
            &["a".into(), "b".into()],
            &req,
        )
        .unwrap();
        assert_eq!(twins.len(), 4);
        assert_eq!(twins[3].base, 1);
        assert!(twins[0].label.ends_with("@ 10 bits"), "{}", twins[0].label);
        assert!(twins[0].info.budget.bootstrapping > twins[1].info.budget.bootstrapping * 1e5);
        assert!(twins[0].info.bootstraps > 0);
    }
}
