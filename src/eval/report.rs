//! Evaluation reports: the JSON document, the terminal summary, and the sweep table (markdown,
//! CSV) and plot (SVG).

use super::plan::PrecisionPlan;
use super::shard::ShardInfo;
use super::{Bounds, Hits, Mode, Tally};
use crate::cpu::SiteStats;
use crate::model::cost::NetworkCost;
use crate::poly::cost::HeCost;
use serde::Serialize;

/// Accuracy as counts and percentages of the images evaluated.
#[derive(Clone, Debug, Serialize)]
pub struct Accuracy {
    pub top1: f64,
    pub top5: f64,
    pub top1_correct: u64,
    pub top5_correct: u64,
}

impl Accuracy {
    fn of(h: Hits, images: u64) -> Accuracy {
        let pct = |c: u64| 100.0 * c as f64 / images.max(1) as f64;
        Accuracy {
            top1: pct(h.top1),
            top5: pct(h.top5),
            top1_correct: h.top1,
            top5_correct: h.top5,
        }
    }
}

/// The polynomial a configuration used.
#[derive(Clone, Debug, Serialize)]
pub struct PolyInfo {
    pub degrees: Vec<usize>,
    /// "ours (ε = …)" or the official coefficient directory.
    pub source: String,
    /// Verified max |x(1+p(x))/2 − ReLU(x)| on [-1, 1], log2.
    pub relu_error_log2: f64,
    pub relu_cost: HeCost,
}

/// One site of one approximate configuration.
#[derive(Clone, Debug, Serialize)]
pub struct SiteReport {
    pub site: String,
    pub kind: &'static str,
    pub bound: f64,
    pub exact_max_abs: f32,
    pub approx_max_abs: f32,
    pub out_of_range: u64,
    pub non_finite: u64,
    /// Elements seen (the denominator of out_of_range).
    pub count: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ConfigReport {
    pub label: String,
    pub alpha: u32,
    pub relu: Mode,
    pub maxpool: Mode,
    pub polynomial: PolyInfo,
    pub approx: Accuracy,
    /// Percentage of images whose approximate top-1 equals the exact top-1.
    pub agreement: f64,
    pub agree_count: u64,
    pub out_of_range: u64,
    pub non_finite: u64,
    pub sites: Vec<SiteReport>,
}

/// The whole evaluation, as written by `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    pub polycnn_version: &'static str,
    pub model: String,
    pub weights: String,
    pub data: String,
    /// Which of the data's images were evaluated and how they were chosen (`--limit`).
    pub selection: String,
    pub backend: String,
    pub device: Option<String>,
    pub scheme: Option<String>,
    /// "report": out-of-range inputs reach the polynomial as they are (and are counted);
    /// "clamp": they are clamped to [-B, B] first (and counted).
    pub out_of_range_policy: &'static str,
    pub batch_size: usize,
    pub images: u64,
    pub failures: Vec<(String, String)>,
    pub seconds: f64,
    pub images_per_second: f64,
    pub exact: Accuracy,
    pub exact_sites: Vec<SiteStats>,
    pub bounds: Bounds,
    pub configs: Vec<ConfigReport>,
    /// Which slice of the images this report covers (`--shard`); None for a whole run.
    pub shard: Option<ShardInfo>,
    /// The per-site precision plan evaluated (`eval --plan`), if any.
    pub plan: Option<PrecisionPlan>,
    /// HE cost of the activations per image, one per configuration (same order as `configs`).
    pub he_cost: Vec<NetworkCost>,
}

/// Who ran what, for the report header.
pub struct RunInfo {
    pub model: String,
    pub weights: String,
    pub data: String,
    pub selection: String,
    pub backend: String,
    pub device: Option<String>,
    pub scheme: Option<String>,
    pub out_of_range_policy: &'static str,
    pub batch_size: usize,
}

pub fn build_report(
    info: RunInfo,
    tally: &Tally,
    bounds: Bounds,
    modes: &[(Mode, Mode)],
    polys: Vec<PolyInfo>,
) -> EvalReport {
    let configs = tally
        .approx
        .iter()
        .zip(modes)
        .zip(polys)
        .map(|((a, (relu, maxpool)), polynomial)| {
            let sites: Vec<SiteReport> = a
                .sites
                .iter()
                .zip(&tally.exact_sites)
                .zip(&bounds.per_site)
                .map(|((s, e), b)| SiteReport {
                    site: s.name.clone(),
                    kind: b.kind,
                    bound: b.bound,
                    exact_max_abs: e.max_abs,
                    approx_max_abs: s.max_abs,
                    out_of_range: s.out_of_range,
                    non_finite: s.non_finite,
                    count: s.count,
                })
                .collect();
            ConfigReport {
                label: a.label.clone(),
                alpha: a.alpha,
                relu: relu.clone(),
                maxpool: maxpool.clone(),
                polynomial,
                approx: Accuracy::of(a.hits, tally.images),
                agreement: 100.0 * a.agree as f64 / tally.images.max(1) as f64,
                agree_count: a.agree,
                out_of_range: sites.iter().map(|s| s.out_of_range).sum(),
                non_finite: sites.iter().map(|s| s.non_finite).sum(),
                sites,
            }
        })
        .collect();
    EvalReport {
        polycnn_version: env!("CARGO_PKG_VERSION"),
        model: info.model,
        weights: info.weights,
        data: info.data,
        selection: info.selection,
        backend: info.backend,
        device: info.device,
        scheme: info.scheme,
        out_of_range_policy: info.out_of_range_policy,
        batch_size: info.batch_size,
        images: tally.images,
        failures: tally.failures.clone(),
        seconds: tally.seconds,
        images_per_second: tally.images_per_second(),
        exact: Accuracy::of(tally.exact, tally.images),
        exact_sites: tally.exact_sites.clone(),
        bounds,
        configs,
        shard: None,
        plan: None,
        he_cost: Vec::new(),
    }
}

/// The terminal summary: accuracy side by side, then the sites closest to their bound.
pub fn format_summary(r: &EvalReport, sites_shown: usize) -> String {
    let mut out = format!(
        "{} on {} — {} images ({} failed), backend {}{}, {:.1} images/s\n",
        r.model,
        r.data,
        r.images,
        r.failures.len(),
        r.backend,
        r.device.as_ref().map(|d| format!(" [{d}]")).unwrap_or_default(),
        r.images_per_second
    );
    out += "  configuration                 top-1     top-5    agree   out-of-range  NaN/inf  ReLU err  depth  mults\n";
    out += &format!(
        "  {:<28} {:>6.2}%  {:>6.2}%        -              -        -         -      -      -\n",
        "exact", r.exact.top1, r.exact.top5
    );
    for c in &r.configs {
        out += &format!(
            "  {:<28} {:>6.2}%  {:>6.2}%  {:>6.2}%  {:>13}  {:>7}  2^{:<6.2}  {:>5}  {:>5}\n",
            c.label,
            c.approx.top1,
            c.approx.top5,
            c.agreement,
            c.out_of_range,
            c.non_finite,
            c.polynomial.relu_error_log2,
            c.polynomial.relu_cost.depth,
            c.polynomial.relu_cost.nonscalar_mults
        );
    }
    if let Some(c) = r.configs.last() {
        let mut sites: Vec<&SiteReport> = c.sites.iter().collect();
        sites.sort_by(|a, b| (b.approx_max_abs as f64 / b.bound).total_cmp(&(a.approx_max_abs as f64 / a.bound)));
        out += &format!(
            "  sites nearest their bound ({}; all {} in the JSON report):\n    site                      kind        B   exact max|x|  approx max|x|  out of range\n",
            c.label,
            c.sites.len()
        );
        for s in sites.iter().take(sites_shown) {
            out += &format!(
                "    {:<24} {:<8} {:>7.2}  {:>12.4}  {:>13.4}  {:>12}\n",
                s.site, s.kind, s.bound, s.exact_max_abs, s.approx_max_abs, s.out_of_range
            );
        }
    }
    if !r.failures.is_empty() {
        out += &format!(
            "  {} images could not be read, e.g. {}: {}\n",
            r.failures.len(),
            r.failures[0].0,
            r.failures[0].1
        );
    }
    out
}

/// Sweep rows as a markdown table.
pub fn sweep_markdown(r: &EvalReport) -> String {
    let mut out = String::from(
        "| α | degrees | top-1 | top-5 | Δ top-1 vs exact | agreement | out of range | depth | mults |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    out += &format!(
        "| exact | - | {:.2}% | {:.2}% | - | - | - | - | - |\n",
        r.exact.top1, r.exact.top5
    );
    for c in &r.configs {
        out += &format!(
            "| {} | {:?} | {:.2}% | {:.2}% | {:+.2} | {:.2}% | {} | {} | {} |\n",
            c.alpha,
            c.polynomial.degrees,
            c.approx.top1,
            c.approx.top5,
            c.approx.top1 - r.exact.top1,
            c.agreement,
            c.out_of_range,
            c.polynomial.relu_cost.depth,
            c.polynomial.relu_cost.nonscalar_mults
        );
    }
    out
}

/// Sweep rows as CSV.
pub fn sweep_csv(r: &EvalReport) -> String {
    let mut out = String::from(
        "alpha,degrees,top1,top5,exact_top1,exact_top5,agreement,out_of_range,non_finite,depth,nonscalar_mults,images\n",
    );
    for c in &r.configs {
        let degrees: Vec<String> = c.polynomial.degrees.iter().map(|d| d.to_string()).collect();
        out += &format!(
            "{},{},{:.4},{:.4},{:.4},{:.4},{:.4},{},{},{},{},{}\n",
            c.alpha,
            degrees.join(" "),
            c.approx.top1,
            c.approx.top5,
            r.exact.top1,
            r.exact.top5,
            c.agreement,
            c.out_of_range,
            c.non_finite,
            c.polynomial.relu_cost.depth,
            c.polynomial.relu_cost.nonscalar_mults,
            r.images
        );
    }
    out
}

/// Top-1 accuracy and agreement against α, with the exact accuracy as a dashed line.
pub fn sweep_svg(r: &EvalReport) -> String {
    super::plot::sweep_svg(r)
}
