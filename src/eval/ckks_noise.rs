//! `--ckks PRESET`: each approximate configuration gets "+ CKKS noise" twins, the same forward
//! pass with the errors a CKKS evaluation adds (`he::inject`), one twin per bootstrapping
//! precision (`--ckks-precision 8..30`; default the preset's own). The twins are counted like
//! any configuration, plus their agreement with the plaintext approximation they shadow and the
//! RMS difference of their logits from it; `precision_cliff` finds the fewest bits that keep
//! top-1 within 0.5 points of the plaintext approximation.

use crate::eval::plot::{Anchor, Color, Plot, Stroke, percent_grid_and_axes};
use crate::exec::{ActivationPlan, RunOutput};
use crate::he::NoiseRun;
use crate::he::inject::{NoisePlan, NoisySite, placed_bootstraps};
use crate::he::{CkksPreset, NoiseModel};
use crate::model::cost::SitePrecision;
use crate::model::{Batch, Graph, Shape};
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

/// Counts of one twin over the images seen.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TwinCounts {
    pub top1: u64,
    /// Images whose top-1 equals the exact network's.
    pub agree_exact: u64,
    /// Images whose top-1 equals the plaintext approximation's.
    pub agree_plaintext: u64,
    /// Σ (twin logit − plaintext logit)² over `logits` logits (both finite).
    pub logit_sq_sum: f64,
    pub logits: u64,
    /// Logits that are NaN or infinite (a polynomial fed far beyond its bound diverges).
    pub non_finite_logits: u64,
}

impl TwinCounts {
    pub fn logit_rms_diff(&self) -> f64 {
        (self.logit_sq_sum / self.logits.max(1) as f64).sqrt()
    }
}

/// What [`evaluate_twins`] counted.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TwinEvaluation {
    pub images: u64,
    pub exact_top1: u64,
    /// Per plaintext configuration: top-1 hits and agreement with exact.
    pub plaintext_top1: Vec<u64>,
    pub plaintext_agree: Vec<u64>,
    /// Per twin, in `twins` order.
    pub twins: Vec<TwinCounts>,
}

/// One batch: the images, their labels and their dataset indices (which key the noise).
pub struct TwinBatch {
    pub images: Batch,
    pub labels: Vec<usize>,
    pub indices: Vec<u32>,
}

fn top1(logits: &[f32], classes: usize) -> Vec<usize> {
    logits
        .chunks(classes)
        .map(|row| (0..row.len()).fold(0, |b, i| if row[i] > row[b] || row[b].is_nan() { i } else { b }))
        .collect()
}

fn same(a: &[usize], b: &[usize]) -> u64 {
    a.iter().zip(b).filter(|(x, y)| x == y).count() as u64
}

/// Every batch through the exact network, each plaintext plan and each twin (its base plan with
/// its noise), counted; `run` is the backend.
pub fn evaluate_twins(
    graph: &Graph,
    batches: impl IntoIterator<Item = TwinBatch>,
    plans: &[ActivationPlan],
    twins: &[NoiseTwin],
    run: &dyn Fn(&Batch, &ActivationPlan) -> Result<RunOutput, String>,
) -> Result<TwinEvaluation, String> {
    if let Some(t) = twins.iter().find(|t| t.base >= plans.len()) {
        return Err(format!(
            "CKKS twin `{}` shadows configuration {} of {}",
            t.label,
            t.base,
            plans.len()
        ));
    }
    let mut ev = TwinEvaluation {
        plaintext_top1: vec![0; plans.len()],
        plaintext_agree: vec![0; plans.len()],
        twins: vec![TwinCounts::default(); twins.len()],
        ..TwinEvaluation::default()
    };
    let exact_plan = ActivationPlan::exact(graph);
    for b in batches {
        let exact = run(&b.images, &exact_plan)?;
        let classes = exact.classes;
        let exact_top = top1(&exact.logits, classes);
        ev.exact_top1 += same(&exact_top, &b.labels);
        let mut plaintext = Vec::with_capacity(plans.len());
        for (k, plan) in plans.iter().enumerate() {
            let out = run(&b.images, plan)?;
            let top = top1(&out.logits, classes);
            ev.plaintext_top1[k] += same(&top, &b.labels);
            ev.plaintext_agree[k] += same(&top, &exact_top);
            plaintext.push((out.logits, top));
        }
        for (counts, twin) in ev.twins.iter_mut().zip(twins) {
            let mut plan = plans[twin.base].clone();
            plan.noise = Some(NoiseRun {
                plan: &twin.plan,
                images: &b.indices,
            });
            let out = run(&b.images, &plan)?;
            let top = top1(&out.logits, classes);
            let (base_logits, base_top) = &plaintext[twin.base];
            counts.top1 += same(&top, &b.labels);
            counts.agree_exact += same(&top, &exact_top);
            counts.agree_plaintext += same(&top, base_top);
            for (a, b) in out.logits.iter().zip(base_logits) {
                let d = f64::from(a - b);
                if d.is_finite() {
                    counts.logit_sq_sum += d * d;
                    counts.logits += 1;
                } else {
                    counts.non_finite_logits += 1;
                }
            }
        }
        ev.images += b.labels.len() as u64;
    }
    Ok(ev)
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

/// Top-1 against bootstrapping precision, one curve per configuration, each with its plaintext
/// top-1 (dashed) and its cliff (a vertical mark).
pub fn precision_plot(title: &str, curves: &[PrecisionCurve]) -> Plot {
    let (w, h, left, right, top, bottom) = (640.0, 400.0, 60.0, 20.0, 40.0, 50.0);
    let mut plot = Plot::new(w, h);
    let bits = curves.iter().flat_map(|c| c.points.iter().map(|p| p.0));
    let (b_min, b_max) = bits.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), b| (lo.min(b), hi.max(b)));
    let (b_min, b_max) = if b_min.is_finite() && b_max > b_min {
        (b_min, b_max)
    } else {
        (0.0, 32.0)
    };
    let values = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p.1).chain([c.plaintext_top1]));
    let y_min = (values.fold(100.0f64, f64::min) / 10.0).floor() * 10.0;
    let x = |b: f64| left + (b - b_min) / (b_max - b_min) * (w - left - right);
    let y = |v: f64| top + (100.0 - v) / (100.0 - y_min).max(1.0) * (h - top - bottom);
    let (x_end, y_axis) = (w - right, h - bottom);
    plot.text((w / 2.0, 20.0), title, 14.0, Anchor::Middle, Color::BLACK);
    percent_grid_and_axes(&mut plot, y_min, &y, (left, top), (x_end, y_axis));
    let step = ((b_max - b_min) / 10.0).ceil().max(1.0);
    let mut b = b_min;
    while b <= b_max + 1e-9 {
        plot.line((x(b), y_axis), (x(b), y_axis + 4.0), Stroke::solid(Color::BLACK, 1.0));
        plot.text(
            (x(b), y_axis + 18.0),
            format!("{b:.0}"),
            12.0,
            Anchor::Middle,
            Color::BLACK,
        );
        b += step;
    }
    plot.text(
        (w / 2.0, h - 12.0),
        "bootstrapping precision (bits: error std 2^-bits)",
        12.0,
        Anchor::Middle,
        Color::BLACK,
    );
    let palette = [Color::BLUE, Color::ORANGE, Color::GRAY, Color::BLACK];
    for (i, c) in curves.iter().enumerate() {
        let color = palette[i % palette.len()];
        let pts: Vec<(f64, f64)> = c.points.iter().map(|&(b, t)| (x(b), y(t))).collect();
        plot.polyline(pts.clone(), Stroke::solid(color, 2.0));
        pts.iter().for_each(|&p| plot.circle(p, 3.0, color));
        plot.line(
            (left, y(c.plaintext_top1)),
            (x_end, y(c.plaintext_top1)),
            Stroke::dashed(color, 1.0, 6.0, 4.0),
        );
        if let Some(cliff) = c.cliff_bits {
            plot.line(
                (x(cliff), top),
                (x(cliff), y_axis),
                Stroke::dashed(color, 1.0, 2.0, 3.0),
            );
        }
        let cliff = c.cliff_bits.map_or("none".to_string(), |b| format!("{b:.0} bits"));
        let ly = top + 14.0 + 16.0 * i as f64;
        plot.text(
            (x_end - 4.0, ly),
            format!(
                "{}: cliff {cliff} (dashed: plaintext {:.2}%)",
                c.label, c.plaintext_top1
            ),
            11.0,
            Anchor::End,
            color,
        );
    }
    plot
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
    fn precision_plot_draws_each_curve_and_its_cliff() {
        let curve = PrecisionCurve::new("α=10".into(), 91.0, vec![(12.0, 90.8), (8.0, 10.0), (10.0, 80.0)]);
        assert_eq!(curve.points[0].0, 8.0);
        assert_eq!(curve.cliff_bits, Some(12.0));
        let svg = precision_plot("resnet20", &[curve]).to_svg();
        assert!(svg.contains("cliff 12 bits"), "{svg}");
        assert!(svg.starts_with("<svg"));
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
