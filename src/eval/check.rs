//! `polycnn check`: a CI regression gate. Compares a report with a baseline report of the same
//! model and configurations; any top-1, top-5 or agreement figure more than `tolerance`
//! percentage points below the baseline is a regression.
//!
//! Exit codes (see [`Verdict::exit_code`]): 0 nothing dropped beyond tolerance, 1 a regression,
//! 2 a report that cannot be read or does not match the baseline (other model, a baseline
//! configuration missing) — so CI can tell "worse" from "broken".

use serde::Deserialize;
use std::path::Path;

#[derive(Deserialize)]
struct AccuracyView {
    top1: f64,
    top5: f64,
}

#[derive(Deserialize)]
struct ConfigView {
    label: String,
    approx: AccuracyView,
    agreement: f64,
}

/// The part of an eval/sweep/merge report the gate reads (other fields are ignored).
#[derive(Deserialize)]
struct ReportView {
    model: String,
    images: u64,
    exact: AccuracyView,
    configs: Vec<ConfigView>,
}

/// One compared figure.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub config: String,
    pub metric: &'static str,
    pub baseline: f64,
    pub now: f64,
}

impl Row {
    pub fn delta(&self) -> f64 {
        self.now - self.baseline
    }
}

/// The outcome of a comparison.
#[derive(Clone, Debug)]
pub struct Comparison {
    pub model: String,
    pub images: (u64, u64),
    pub tolerance: f64,
    pub rows: Vec<Row>,
    /// Configurations of the report the baseline does not have (not gated).
    pub new_configs: Vec<String>,
}

/// Whether the gate passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Regression,
    /// Unreadable or mismatched reports.
    Unusable,
}

impl Verdict {
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Pass => 0,
            Verdict::Regression => 1,
            Verdict::Unusable => 2,
        }
    }
}

impl Comparison {
    /// A drop beyond the tolerance (1e-9 points of slack: 90 − 0.2 is not exactly 89.8).
    pub fn is_regression(&self, r: &Row) -> bool {
        r.delta() < -self.tolerance - 1e-9
    }

    pub fn regressions(&self) -> Vec<&Row> {
        self.rows.iter().filter(|r| self.is_regression(r)).collect()
    }

    pub fn verdict(&self) -> Verdict {
        if self.regressions().is_empty() {
            Verdict::Pass
        } else {
            Verdict::Regression
        }
    }
}

fn read_report(path: &Path) -> Result<ReportView, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: not a polycnn eval/sweep report: {e}", path.display()))
}

/// Reads both reports and compares them figure by figure.
pub fn compare_files(report: &Path, baseline: &Path, tolerance: f64) -> Result<Comparison, String> {
    if !(tolerance.is_finite() && tolerance >= 0.0) {
        return Err(format!(
            "--tolerance {tolerance}: expected a non-negative number of percentage points"
        ));
    }
    let now = read_report(report)?;
    let base = read_report(baseline)?;
    if now.model != base.model {
        return Err(format!(
            "{} is a report of {} but the baseline {} is of {}",
            report.display(),
            now.model,
            baseline.display(),
            base.model
        ));
    }
    let mut rows = vec![
        row("exact", "top-1", base.exact.top1, now.exact.top1),
        row("exact", "top-5", base.exact.top5, now.exact.top5),
    ];
    for b in &base.configs {
        let n = now.configs.iter().find(|c| c.label == b.label).ok_or_else(|| {
            format!(
                "{} has no configuration '{}' of the baseline {}",
                report.display(),
                b.label,
                baseline.display()
            )
        })?;
        rows.push(row(&b.label, "top-1", b.approx.top1, n.approx.top1));
        rows.push(row(&b.label, "top-5", b.approx.top5, n.approx.top5));
        rows.push(row(&b.label, "agreement", b.agreement, n.agreement));
    }
    let new_configs = now
        .configs
        .iter()
        .filter(|c| !base.configs.iter().any(|b| b.label == c.label))
        .map(|c| c.label.clone())
        .collect();
    Ok(Comparison {
        model: now.model,
        images: (base.images, now.images),
        tolerance,
        rows,
        new_configs,
    })
}

fn row(config: &str, metric: &'static str, baseline: f64, now: f64) -> Row {
    Row {
        config: config.to_string(),
        metric,
        baseline,
        now,
    }
}

/// The readable diff: every figure, regressions marked, and the verdict.
pub fn format_comparison(c: &Comparison) -> String {
    let mut out = format!(
        "{}: baseline {} images, now {} images; tolerance {} percentage points\n",
        c.model, c.images.0, c.images.1, c.tolerance
    );
    out += "  configuration                 metric      baseline       now     delta\n";
    for r in &c.rows {
        let flag = if c.is_regression(r) { "  REGRESSION" } else { "" };
        out += &format!(
            "  {:<28}  {:<9}  {:>8.2}%  {:>8.2}%  {:>+8.2}{flag}\n",
            r.config,
            r.metric,
            r.baseline,
            r.now,
            r.delta()
        );
    }
    for label in &c.new_configs {
        out += &format!("  {label:<28}  (not in the baseline, not checked)\n");
    }
    let regressions = c.regressions().len();
    out += &if regressions == 0 {
        "check passed: no figure dropped beyond the tolerance\n".to_string()
    } else {
        format!(
            "check FAILED: {regressions} figure(s) dropped by more than {} points\n",
            c.tolerance
        )
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comparison(deltas: &[f64], tolerance: f64) -> Comparison {
        Comparison {
            model: "m".into(),
            images: (10, 10),
            tolerance,
            rows: deltas.iter().map(|&d| row("α=7", "top-1", 90.0, 90.0 + d)).collect(),
            new_configs: vec![],
        }
    }

    #[test]
    fn only_drops_beyond_the_tolerance_fail() {
        assert_eq!(comparison(&[0.0, -0.2, 5.0], 0.2).verdict(), Verdict::Pass);
        assert_eq!(comparison(&[0.0, -0.21], 0.2).verdict(), Verdict::Regression);
        assert_eq!(comparison(&[-0.01], 0.0).verdict(), Verdict::Regression);
        let text = format_comparison(&comparison(&[-1.0], 0.2));
        assert!(
            text.contains("REGRESSION") && text.contains("-1.00") && text.contains("FAILED"),
            "{text}"
        );
    }
}
