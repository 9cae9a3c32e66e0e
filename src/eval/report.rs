//! The evaluation report (the JSON document), built once from a complete description of the
//! run ([`RunDescription`]). Its text forms are in [`super::summary`], its plots in
//! [`super::plot`].

use super::bounds::{Bounds, SiteBound};
use super::ckks_noise::{PrecisionCurve, TwinInfo, TwinPoint, precision_curves};
use super::config::{Mode, PolyInfo};
use super::pass::{ApproxTally, Hits, Tally, TwinTally};
use super::plan_file::PrecisionPlan;
use super::predictions::Prediction;
use super::preprocess::PreprocessingInfo;
use super::shard::ShardInfo;
use super::stats::{Interval, LogitError, Paired, Z95, wilson};
use crate::exec::SiteStats;
use crate::he::HeCost;
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

/// What the paired counts and the logit error of a configuration imply: computed from them by
/// [`ConfigStatistics::of`] (here and when `merge` combines shards), never stored independently.
#[derive(Clone, Debug, Serialize)]
pub struct ConfigStatistics {
    /// Wilson 95% interval of the approximate top-1, percent.
    pub top1_interval: Interval,
    /// Exact − approximate top-1, percentage points.
    pub top1_drop: f64,
    /// Newcombe's paired 95% interval of the drop, percentage points.
    pub top1_drop_interval: Interval,
    /// Exact right → approximate wrong.
    pub flips_broken: u64,
    /// Exact wrong → approximate right.
    pub flips_fixed: u64,
    /// Exact McNemar test of the flips (two-sided): how likely a split at least this uneven is
    /// if the approximation changed nothing but noise.
    pub mcnemar_p: f64,
    pub mean_abs_dlogit: f64,
    pub max_abs_dlogit: f64,
    /// −log2 of the worst per-image max |Δlogit| / max |exact logit| (None: logits identical).
    pub dlogit_bits: Option<f64>,
}

impl ConfigStatistics {
    pub fn of(paired: &Paired, logits: &LogitError) -> ConfigStatistics {
        ConfigStatistics {
            top1_interval: wilson(paired.approx_right(), paired.images, Z95).percent(),
            top1_drop: 100.0 * (paired.exact_right() as f64 - paired.approx_right() as f64)
                / paired.images.max(1) as f64,
            top1_drop_interval: paired.drop_interval(Z95).percent(),
            flips_broken: paired.exact_only,
            flips_fixed: paired.approx_only,
            mcnemar_p: paired.mcnemar_p(),
            mean_abs_dlogit: logits.mean_abs(),
            max_abs_dlogit: logits.max_abs,
            dlogit_bits: (logits.max_relative > 0.0).then(|| logits.relative_bits()),
        }
    }
}

/// Wilson 95% interval of the exact top-1, percent.
pub fn exact_top1_interval(exact_top1_correct: u64, images: u64) -> Interval {
    wilson(exact_top1_correct, images, Z95).percent()
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
    /// Image-by-image top-1 correctness against exact (counts).
    pub paired: Paired,
    /// Logit error against exact (sums and maxima).
    pub logit_error: LogitError,
    pub statistics: ConfigStatistics,
    pub out_of_range: u64,
    pub non_finite: u64,
    pub sites: Vec<SiteReport>,
    /// Set on a "+ CKKS noise" twin: what was simulated, and the twin against the plaintext
    /// approximation it shadows (its fields above compare it with exact, as for any configuration).
    pub ckks: Option<TwinReport>,
}

/// A "+ CKKS noise" twin: its simulation and its counts against its base configuration.
#[derive(Clone, Debug, Serialize)]
pub struct TwinReport {
    /// The label of the plaintext configuration it shadows.
    pub base: String,
    #[serde(flatten)]
    pub info: TwinInfo,
    /// Percentage of images whose twin top-1 equals the plaintext approximation's.
    pub agreement_plaintext: f64,
    pub agree_plaintext_count: u64,
    /// Image-by-image top-1 correctness against the plaintext approximation ("exact" there is
    /// the plaintext approximation).
    pub paired_plaintext: Paired,
    /// Logit error against the plaintext approximation.
    pub logit_error_plaintext: LogitError,
    /// Drop, flips, intervals and logit error against the plaintext approximation.
    pub statistics_plaintext: ConfigStatistics,
}

/// The whole evaluation, as written by `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    pub polycnn_version: &'static str,
    pub model: String,
    pub weights: String,
    /// SHA-256 of the weights file (hex).
    pub weights_sha256: String,
    pub data: String,
    /// Images selected from the data (after --limit, before --shard; `images` is how many were
    /// evaluated).
    pub dataset_images: usize,
    pub preprocessing: PreprocessingInfo,
    /// Things the user should know about this run (e.g. a checkpoint evaluated with another
    /// preprocessing than it was published with); the binary prints them.
    pub warnings: Vec<String>,
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
    /// Wilson 95% interval of the exact top-1, percent.
    pub exact_top1_interval: Interval,
    pub exact_sites: Vec<SiteStats>,
    pub bounds: Bounds,
    pub configs: Vec<ConfigReport>,
    /// Which slice of the images this report covers (`--shard`); None for a whole run.
    pub shard: Option<ShardInfo>,
    /// The per-site precision plan evaluated (`eval --plan`), if any.
    pub plan: Option<PrecisionPlan>,
    /// HE cost of the activations per image, one per configuration (same order as `configs`;
    /// none for a ReLU polynomial baseline or a CKKS twin, whose cost is its base's).
    pub he_cost: Vec<HeCost>,
    /// `--ckks-precision` with several precisions: top-1 against bootstrapping precision per
    /// base configuration, and its precision cliff.
    pub ckks_precision: Vec<PrecisionCurve>,
    /// One row per image when asked for (`--predictions`: written as CSV, not in the JSON).
    #[serde(skip)]
    pub predictions: Vec<Prediction>,
}

/// Who ran what, for the report header.
#[derive(Default)]
pub struct RunInfo {
    pub model: String,
    pub weights: String,
    pub weights_sha256: String,
    pub data: String,
    pub dataset_images: usize,
    pub preprocessing: PreprocessingInfo,
    pub warnings: Vec<String>,
    pub selection: String,
    pub backend: String,
    pub device: Option<String>,
    pub scheme: Option<String>,
    pub out_of_range_policy: &'static str,
    pub batch_size: usize,
}

/// One approximate configuration as it ran: its modes, polynomial, the per-site bounds it ran
/// with and its HE cost (None where the cost model does not apply).
pub struct ConfigRun {
    pub relu: Mode,
    pub maxpool: Mode,
    pub polynomial: PolyInfo,
    pub site_bounds: Vec<SiteBound>,
    pub he_cost: Option<HeCost>,
    /// What a "+ CKKS noise" twin simulates (None: a plaintext configuration).
    pub twin: Option<TwinInfo>,
}

/// A complete description of a run: everything the report says.
pub struct RunDescription {
    pub info: RunInfo,
    pub tally: Tally,
    /// The rules, the first configuration's per-site bounds, and every search.
    pub bounds: Bounds,
    /// In the tally's configuration order.
    pub configs: Vec<ConfigRun>,
    pub shard: Option<ShardInfo>,
    pub plan: Option<PrecisionPlan>,
}

/// The report of a run.
pub fn build_report(run: RunDescription) -> EvalReport {
    let RunDescription {
        info,
        tally,
        bounds,
        configs,
        shard,
        plan,
    } = run;
    let he_cost = configs.iter().filter_map(|c| c.he_cost.clone()).collect();
    let labels: Vec<String> = tally.approx.iter().map(|a| a.label.clone()).collect();
    let configs: Vec<ConfigReport> = tally
        .approx
        .iter()
        .zip(configs)
        .map(|(a, c)| config_report(a, c, &tally.exact_sites, tally.images, &labels))
        .collect();
    let ckks_precision = precision_curves(&twin_points(&configs));
    EvalReport {
        polycnn_version: env!("CARGO_PKG_VERSION"),
        model: info.model,
        weights: info.weights,
        weights_sha256: info.weights_sha256,
        data: info.data,
        dataset_images: info.dataset_images,
        preprocessing: info.preprocessing,
        warnings: info.warnings,
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
        exact_top1_interval: exact_top1_interval(tally.exact.top1, tally.images),
        exact_sites: tally.exact_sites,
        bounds,
        configs,
        shard,
        plan,
        he_cost,
        ckks_precision,
        predictions: tally.predictions,
    }
}

fn config_report(
    a: &ApproxTally,
    c: ConfigRun,
    exact_sites: &[SiteStats],
    images: u64,
    labels: &[String],
) -> ConfigReport {
    let sites: Vec<SiteReport> = a
        .sites
        .iter()
        .zip(exact_sites)
        .zip(&c.site_bounds)
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
        relu: c.relu,
        maxpool: c.maxpool,
        polynomial: c.polynomial,
        approx: Accuracy::of(a.hits, images),
        agreement: 100.0 * a.agree as f64 / images.max(1) as f64,
        agree_count: a.agree,
        paired: a.paired,
        logit_error: a.logit_error,
        statistics: ConfigStatistics::of(&a.paired, &a.logit_error),
        out_of_range: sites.iter().map(|s| s.out_of_range).sum(),
        non_finite: sites.iter().map(|s| s.non_finite).sum(),
        sites,
        ckks: a
            .twin
            .as_ref()
            .zip(c.twin)
            .map(|(t, info)| twin_report(t, info, images, labels)),
    }
}

/// Each twin's base, precision and top-1, for the precision curves.
fn twin_points(configs: &[ConfigReport]) -> Vec<TwinPoint> {
    configs
        .iter()
        .filter_map(|c| {
            let t = c.ckks.as_ref()?;
            let base = configs.iter().find(|b| b.label == t.base)?;
            Some(TwinPoint {
                base: t.base.clone(),
                base_top1: base.approx.top1,
                bits: t.info.bootstrap_precision_bits,
                top1: c.approx.top1,
            })
        })
        .collect()
}

fn twin_report(t: &TwinTally, info: TwinInfo, images: u64, labels: &[String]) -> TwinReport {
    TwinReport {
        base: labels.get(t.base).cloned().unwrap_or_default(),
        info,
        agreement_plaintext: 100.0 * t.agree_base as f64 / images.max(1) as f64,
        agree_plaintext_count: t.agree_base,
        paired_plaintext: t.paired_base,
        logit_error_plaintext: t.logit_error_base,
        statistics_plaintext: ConfigStatistics::of(&t.paired_base, &t.logit_error_base),
    }
}
