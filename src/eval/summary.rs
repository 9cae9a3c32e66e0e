//! The evaluation report as text: the terminal summary and the sweep table (markdown, CSV).
//! The plots are in [`super::plot`].

use super::report::{EvalReport, SiteReport};

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
