//! The evaluation report as text: the terminal summary and the sweep table (markdown, CSV).
//! The plots are in [`super::plot`].

use super::ckks_noise::{CLIFF_TOLERANCE, PrecisionCurve};
use super::config::Mode;
use super::report::{ConfigReport, EvalReport, SiteReport};

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
    let w = label_width(r);
    out += &format!(
        "  {:<w$}  top-1     top-5    agree   out-of-range  NaN/inf  ReLU err  depth  mults\n",
        "configuration"
    );
    out += &format!(
        "  {:<w$} {:>6.2}%  {:>6.2}%        -              -        -         -      -      -\n",
        "exact", r.exact.top1, r.exact.top5
    );
    for c in &r.configs {
        out += &format!(
            "  {:<w$} {:>6.2}%  {:>6.2}%  {:>6.2}%  {:>13}  {:>7}  2^{:<6.2}  {:>5}  {:>5}\n",
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
    out += &statistics_table(r);
    out += &twin_table(r);
    if let Some(c) = r.configs.iter().rev().find(|c| c.ckks.is_none()) {
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

/// Per configuration: the top-1 interval, the drop against exact with its paired interval, the
/// flips and their McNemar p-value, and the logit error.
fn statistics_table(r: &EvalReport) -> String {
    let i = &r.exact_top1_interval;
    let w = label_width(r);
    let mut out = format!(
        "  exact top-1 95% interval [{:.2}, {:.2}]%\n  {:<w$}  top-1 95% CI       drop (pts) and 95% CI     broke/fixed  McNemar p  mean|Δlogit|  max|Δlogit|  bits\n",
        i.lo, i.hi, "configuration"
    );
    for c in &r.configs {
        let s = &c.statistics;
        out += &format!(
            "  {:<w$} [{:>6.2}, {:>6.2}]  {:>+6.2} [{:>+6.2}, {:>+6.2}]  {:>6}/{:<5}  {:>9}  {:>12.3e}  {:>11.3e}  {:>4}\n",
            c.label,
            s.top1_interval.lo,
            s.top1_interval.hi,
            s.top1_drop,
            s.top1_drop_interval.lo,
            s.top1_drop_interval.hi,
            s.flips_broken,
            s.flips_fixed,
            p_value(s.mcnemar_p),
            s.mean_abs_dlogit,
            s.max_abs_dlogit,
            s.dlogit_bits.map_or("-".to_string(), |b| format!("{b:.1}"))
        );
    }
    out
}

/// The CKKS twins against the plaintext approximation they shadow, and the precision cliffs.
fn twin_table(r: &EvalReport) -> String {
    let twins: Vec<&ConfigReport> = r.configs.iter().filter(|c| c.ckks.is_some()).collect();
    if twins.is_empty() {
        return String::new();
    }
    let w = label_width(r);
    let mut out = format!(
        "  {:<w$}   agree    drop (pts) and 95% CI     broke/fixed  mean|Δlogit|  max|Δlogit|  boots  seed\n",
        "CKKS twin vs its plaintext approximation"
    );
    for c in twins {
        let t = c.ckks.as_ref().expect("filtered");
        let s = &t.statistics_plaintext;
        out += &format!(
            "  {:<w$} {:>6.2}%  {:>+6.2} [{:>+6.2}, {:>+6.2}]  {:>6}/{:<5}  {:>12.3e}  {:>11.3e}  {:>5}  {:>4}\n",
            c.label,
            t.agreement_plaintext,
            s.top1_drop,
            s.top1_drop_interval.lo,
            s.top1_drop_interval.hi,
            s.flips_broken,
            s.flips_fixed,
            s.mean_abs_dlogit,
            s.max_abs_dlogit,
            t.info.bootstraps,
            t.info.seed
        );
    }
    for curve in &r.ckks_precision {
        out += &format!("  {}\n", cliff_line(curve));
    }
    out
}

/// "α=10 (ReLU): precision cliff 12 bits (top-1 within 0.5 points of plaintext 91.20%)".
fn cliff_line(c: &PrecisionCurve) -> String {
    let cliff = c
        .cliff_bits
        .map_or("none in the range".to_string(), |b| format!("{b:.0} bits"));
    format!(
        "{}: precision cliff {cliff} (fewest bootstrapping bits keeping top-1 within {} points of plaintext {:.2}%)",
        c.label, CLIFF_TOLERANCE, c.plaintext_top1
    )
}

/// The first cell of a sweep row: α, or for a CKKS twin α and what it simulates.
fn row_name(c: &ConfigReport) -> String {
    match &c.ckks {
        Some(t) => format!(
            "{} +{}",
            c.alpha,
            c.label
                .strip_prefix(t.base.as_str())
                .unwrap_or(&c.label)
                .trim_start_matches(" +")
        ),
        None => c.alpha.to_string(),
    }
}

/// The sweep's twins against their plaintext approximations, and the cliffs (markdown).
fn twin_markdown(r: &EvalReport) -> String {
    let twins: Vec<&ConfigReport> = r.configs.iter().filter(|c| c.ckks.is_some()).collect();
    if twins.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "\nCKKS twins against the plaintext approximation they shadow:\n\n| twin | bootstrap bits | bootstraps | seed | poly eval | agreement | Δ top-1 vs plaintext | Δ 95% CI | broke/fixed | mean \\|Δlogit\\| | max \\|Δlogit\\| |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for c in twins {
        let t = c.ckks.as_ref().expect("filtered");
        let s = &t.statistics_plaintext;
        out += &format!(
            "| {} | {} | {} | {} | {} | {:.2}% | {:+.2} | [{:+.2}, {:+.2}] | {}/{} | {:.3e} | {:.3e} |\n",
            c.label,
            t.info
                .bootstrap_precision_bits
                .map_or("-".to_string(), |b| format!("{b:.1}")),
            t.info.bootstraps,
            t.info.seed,
            t.info.poly_eval,
            t.agreement_plaintext,
            -s.top1_drop,
            -s.top1_drop_interval.hi,
            -s.top1_drop_interval.lo,
            s.flips_broken,
            s.flips_fixed,
            s.mean_abs_dlogit,
            s.max_abs_dlogit
        );
    }
    if !r.ckks_precision.is_empty() {
        out += "\n";
        for curve in &r.ckks_precision {
            out += &format!("- {}\n", cliff_line(curve));
        }
    }
    out
}

/// The width of the configuration column: the longest label (CKKS twins have long ones).
fn label_width(r: &EvalReport) -> usize {
    r.configs
        .iter()
        .map(|c| c.label.chars().count())
        .chain([28])
        .max()
        .unwrap_or(28)
}

/// A p-value with three significant digits, small ones in scientific notation.
fn p_value(p: f64) -> String {
    if p < 1e-3 {
        format!("{p:.2e}")
    } else {
        format!("{p:.3}")
    }
}

/// How a kind of activation was evaluated, as the tables name it.
fn mode_name(m: &Mode) -> String {
    match m {
        Mode::Exact => "exact".into(),
        Mode::Approx => "approx".into(),
        Mode::Poly(p) => format!("poly:{}", p.name),
    }
}

/// The bound of one kind of site in a configuration: one value, "a–b" when sites differ (per-site
/// rules), "-" when the network has no such site.
fn bound_of(c: &ConfigReport, kind: &str) -> String {
    let bounds: Vec<f64> = c.sites.iter().filter(|s| s.kind == kind).map(|s| s.bound).collect();
    let (lo, hi) = bounds.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &b| {
        (lo.min(b), hi.max(b))
    });
    match bounds.len() {
        0 => "-".into(),
        _ if lo == hi => format!("{lo}"),
        _ => format!("{lo}–{hi}"),
    }
}

/// The weights file's name (not the machine's path to it).
fn weights_name(r: &EvalReport) -> String {
    std::path::Path::new(&r.weights)
        .file_name()
        .map_or_else(|| r.weights.clone(), |n| n.to_string_lossy().into_owned())
}

fn sha_prefix(r: &EvalReport) -> &str {
    &r.weights_sha256[..r.weights_sha256.len().min(12)]
}

/// What the sweep describes, above its table.
fn sweep_header(r: &EvalReport) -> String {
    let p = &r.preprocessing;
    let geometry = match (p.resize, p.interpolation) {
        (Some(resize), Some(filter)) => format!("resize {resize} ({}), crop {}", filter.name(), p.crop[0]),
        _ => format!("{}x{} as they are", p.crop[0], p.crop[1]),
    };
    let (relu, maxpool) = r.configs.first().map_or(("-".into(), "-".into()), |c| {
        (mode_name(&c.relu), mode_name(&c.maxpool))
    });
    format!(
        "**{}** — weights `{}` (sha256 {}) — data `{}`: {} of {} images — ReLU {relu}, max-pool {maxpool} — \
         preprocessing: {geometry}, mean {:?}, std {:?} — backend {} — polycnn {}\n\n",
        r.model,
        weights_name(r),
        sha_prefix(r),
        r.data,
        r.images,
        r.dataset_images,
        p.mean,
        p.std,
        r.backend,
        r.polycnn_version
    )
}

/// Sweep rows as a markdown table, under a line saying what they describe.
pub fn sweep_markdown(r: &EvalReport) -> String {
    let mut out = sweep_header(r);
    out += "| α | degrees | B_relu | B_max | top-1 | top-1 95% CI | top-5 | Δ top-1 vs exact | Δ 95% CI | broke/fixed | McNemar p | agreement | max \\|Δlogit\\| | out of range | depth | mults |\n";
    out += "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
    let e = &r.exact_top1_interval;
    out += &format!(
        "| exact | - | - | - | {:.2}% | [{:.2}, {:.2}] | {:.2}% | - | - | - | - | - | - | - | - | - |\n",
        r.exact.top1, e.lo, e.hi, r.exact.top5
    );
    for c in &r.configs {
        let s = &c.statistics;
        out += &format!(
            "| {} | {:?} | {} | {} | {:.2}% | [{:.2}, {:.2}] | {:.2}% | {:+.2} | [{:+.2}, {:+.2}] | {}/{} | {} | {:.2}% | {:.3e} | {} | {} | {} |\n",
            row_name(c),
            c.polynomial.degrees,
            bound_of(c, "relu"),
            bound_of(c, "maxpool"),
            c.approx.top1,
            s.top1_interval.lo,
            s.top1_interval.hi,
            c.approx.top5,
            c.approx.top1 - r.exact.top1,
            -s.top1_drop_interval.hi,
            -s.top1_drop_interval.lo,
            s.flips_broken,
            s.flips_fixed,
            p_value(s.mcnemar_p),
            c.agreement,
            s.max_abs_dlogit,
            c.out_of_range,
            c.polynomial.relu_cost.depth,
            c.polynomial.relu_cost.nonscalar_mults
        );
    }
    out + &twin_markdown(r)
}

/// Quotes a CSV field where it needs it.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Sweep rows as CSV; every row carries what it describes (model, weights, data, modes, B).
pub fn sweep_csv(r: &EvalReport) -> String {
    let mut out = String::from(
        "model,weights,weights_sha256,data,images,dataset_images,relu,maxpool,alpha,degrees,b_relu,b_max,\
         top1,top1_ci_lo,top1_ci_hi,top5,exact_top1,exact_top1_ci_lo,exact_top1_ci_hi,exact_top5,\
         drop,drop_ci_lo,drop_ci_hi,broke,fixed,mcnemar_p,agreement,mean_abs_dlogit,max_abs_dlogit,\
         out_of_range,non_finite,depth,nonscalar_mults,\
         ckks_base,ckks_preset,ckks_bootstrap_bits,ckks_bootstraps,ckks_seed,ckks_poly_eval,\
         agree_plaintext,drop_vs_plaintext,drop_vs_plaintext_ci_lo,drop_vs_plaintext_ci_hi,\
         mean_abs_dlogit_plaintext,max_abs_dlogit_plaintext\n",
    );
    let e = &r.exact_top1_interval;
    for c in &r.configs {
        let s = &c.statistics;
        let degrees: Vec<String> = c.polynomial.degrees.iter().map(|d| d.to_string()).collect();
        let described = [
            r.model.clone(),
            weights_name(r),
            sha_prefix(r).to_string(),
            r.data.clone(),
            r.images.to_string(),
            r.dataset_images.to_string(),
            mode_name(&c.relu),
            mode_name(&c.maxpool),
        ];
        let described: Vec<String> = described.iter().map(|f| csv_field(f)).collect();
        out += &format!(
            "{},{},{},{},{},{:.4},{:.4},{:.4},{:.4},{:.4},{:.4},{:.4},{:.4},{:.4},{:.4},{:.4},{},{},{:.6},{:.4},{:.6e},{:.6e},{},{},{},{},{}\n",
            described.join(","),
            c.alpha,
            degrees.join(" "),
            csv_field(&bound_of(c, "relu")),
            csv_field(&bound_of(c, "maxpool")),
            c.approx.top1,
            s.top1_interval.lo,
            s.top1_interval.hi,
            c.approx.top5,
            r.exact.top1,
            e.lo,
            e.hi,
            r.exact.top5,
            s.top1_drop,
            s.top1_drop_interval.lo,
            s.top1_drop_interval.hi,
            s.flips_broken,
            s.flips_fixed,
            s.mcnemar_p,
            c.agreement,
            s.mean_abs_dlogit,
            s.max_abs_dlogit,
            c.out_of_range,
            c.non_finite,
            c.polynomial.relu_cost.depth,
            c.polynomial.relu_cost.nonscalar_mults,
            twin_csv(c)
        );
    }
    out
}

/// A row's CKKS twin columns (empty for a plaintext configuration).
fn twin_csv(c: &ConfigReport) -> String {
    let Some(t) = &c.ckks else {
        return ",,,,,,,,,,,".to_string();
    };
    let s = &t.statistics_plaintext;
    format!(
        "{},{},{},{},{},{},{:.4},{:.4},{:.4},{:.4},{:.6e},{:.6e}",
        csv_field(&t.base),
        csv_field(&t.info.preset),
        t.info
            .bootstrap_precision_bits
            .map_or(String::new(), |b| format!("{b:.4}")),
        t.info.bootstraps,
        t.info.seed,
        t.info.poly_eval,
        t.agreement_plaintext,
        s.top1_drop,
        s.top1_drop_interval.lo,
        s.top1_drop_interval.hi,
        s.mean_abs_dlogit,
        s.max_abs_dlogit
    )
}
