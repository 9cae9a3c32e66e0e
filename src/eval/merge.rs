//! `polycnn merge`: the shard reports of one run (see [`super::shard`]) combined into the report
//! a single run over all images gives.
//!
//! The merge works on the JSON documents, field by field, with one rule per field path:
//! counts are summed, maxima take the maximum, histograms add bin by bin, failures are
//! concatenated in shard order, and percentages (top-1/top-5, agreement, images/s) are recomputed
//! from the summed counts — never averaged. Every other field (model, weights, data, α, degrees,
//! bounds, backend, batch size, …) must be identical in all shards, or the merge is refused naming
//! the field: a field added to the report later is therefore safe by default (it must agree).
//! `seconds` becomes the summed compute time of the shards.

use super::ckks_noise::{TwinPoint, precision_curves};
use super::report::{ConfigStatistics, exact_top1_interval};
use super::shard::{Shard, ShardInfo};
use super::stats::{LogitError, Paired};
use serde_json::Value;

/// How one field of the shard reports combines.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Rule {
    Sum,
    Max,
    Concat,
    /// Derived from other fields after the merge.
    Recomputed,
    /// Must be the same in every shard (objects and arrays: field by field, element by element).
    Same,
}

/// The rule of a field, by its path ("configs[].sites[].count": `[]` stands for any element).
fn rule(path: &str) -> Rule {
    match path {
        "images"
        | "seconds"
        | "exact.top1_correct"
        | "exact.top5_correct"
        | "exact_sites[].count"
        | "exact_sites[].out_of_range"
        | "exact_sites[].non_finite"
        | "exact_sites[].log2_hist[]"
        | "configs[].approx.top1_correct"
        | "configs[].approx.top5_correct"
        | "configs[].agree_count"
        | "configs[].out_of_range"
        | "configs[].non_finite"
        | "configs[].sites[].count"
        | "configs[].sites[].out_of_range"
        | "configs[].sites[].non_finite"
        | "configs[].paired.images"
        | "configs[].paired.both_right"
        | "configs[].paired.exact_only"
        | "configs[].paired.approx_only"
        | "configs[].logit_error.logits"
        | "configs[].logit_error.sum_abs"
        | "configs[].logit_error.non_finite"
        | "configs[].ckks.agree_plaintext_count"
        | "configs[].ckks.paired_plaintext.images"
        | "configs[].ckks.paired_plaintext.both_right"
        | "configs[].ckks.paired_plaintext.exact_only"
        | "configs[].ckks.paired_plaintext.approx_only"
        | "configs[].ckks.logit_error_plaintext.logits"
        | "configs[].ckks.logit_error_plaintext.sum_abs"
        | "configs[].ckks.logit_error_plaintext.non_finite" => Rule::Sum,
        "exact_sites[].max_abs"
        | "configs[].sites[].exact_max_abs"
        | "configs[].sites[].approx_max_abs"
        | "configs[].logit_error.max_abs"
        | "configs[].logit_error.max_relative"
        | "configs[].ckks.logit_error_plaintext.max_abs"
        | "configs[].ckks.logit_error_plaintext.max_relative" => Rule::Max,
        "failures" => Rule::Concat,
        "shard"
        | "images_per_second"
        | "exact.top1"
        | "exact.top5"
        | "configs[].approx.top1"
        | "configs[].approx.top5"
        | "configs[].agreement"
        | "exact_top1_interval"
        | "configs[].statistics"
        | "configs[].ckks.agreement_plaintext"
        | "configs[].ckks.statistics_plaintext"
        | "ckks_precision" => Rule::Recomputed,
        _ => Rule::Same,
    }
}

/// A shard report and where it came from (for error messages).
pub struct ShardReport {
    pub source: String,
    pub report: Value,
}

/// Merges the reports of all shards of one run; refuses anything else.
pub fn merge_reports(mut shards: Vec<ShardReport>) -> Result<Value, String> {
    if shards.is_empty() {
        return Err("merge: no reports given".into());
    }
    let infos = shards.iter().map(shard_info).collect::<Result<Vec<_>, _>>()?;
    check_shard_set(&shards, &infos)?;
    let mut order: Vec<usize> = (0..shards.len()).collect();
    order.sort_by_key(|&i| infos[i].index);
    let mut sorted: Vec<ShardReport> = Vec::with_capacity(shards.len());
    for &i in &order {
        sorted.push(std::mem::replace(
            &mut shards[i],
            ShardReport {
                source: String::new(),
                report: Value::Null,
            },
        ));
    }
    let mut merged = sorted[0].report.clone();
    for shard in &sorted[1..] {
        combine(&mut merged, &shard.report, "", &sorted[0].source, &shard.source)?;
    }
    recompute_percentages(&mut merged)?;
    Ok(merged)
}

fn shard_info(s: &ShardReport) -> Result<ShardInfo, String> {
    let field = s.report.get("shard").filter(|v| !v.is_null()).ok_or_else(|| {
        format!(
            "{}: not a shard report (no `shard` field; run eval/sweep with --shard I/N)",
            s.source
        )
    })?;
    serde_json::from_value(field.clone()).map_err(|e| format!("{}: bad `shard` field: {e}", s.source))
}

/// The reports must be exactly the shards 0..n of one split of the same images.
fn check_shard_set(shards: &[ShardReport], infos: &[ShardInfo]) -> Result<(), String> {
    let first = &infos[0];
    for (s, info) in shards.iter().zip(infos) {
        if info.count != first.count || info.dataset_images != first.dataset_images {
            return Err(format!(
                "{} is shard {}/{} of {} images but {} is shard {}/{} of {} images: not the same split",
                s.source,
                info.index,
                info.count,
                info.dataset_images,
                shards[0].source,
                first.index,
                first.count,
                first.dataset_images
            ));
        }
        let expected = Shard {
            index: info.index,
            count: info.count,
        }
        .info(info.dataset_images);
        if *info != expected {
            return Err(format!(
                "{}: shard {}/{} should cover images [{}, {}) but records [{}, {})",
                s.source, info.index, info.count, expected.first, expected.end, info.first, info.end
            ));
        }
    }
    let mut seen: Vec<Option<&str>> = vec![None; first.count];
    for (s, info) in shards.iter().zip(infos) {
        if let Some(other) = seen[info.index] {
            return Err(format!(
                "shard {}/{} given twice: {other} and {}",
                info.index, info.count, s.source
            ));
        }
        seen[info.index] = Some(&s.source);
    }
    let missing: Vec<String> = (0..first.count)
        .filter(|&i| seen[i].is_none())
        .map(|i| format!("{i}/{}", first.count))
        .collect();
    if !missing.is_empty() {
        return Err(format!("missing shard reports: {}", missing.join(", ")));
    }
    Ok(())
}

/// Folds `other` into `acc` at `path` by the field rules.
fn combine(acc: &mut Value, other: &Value, path: &str, acc_source: &str, other_source: &str) -> Result<(), String> {
    let differ = |a: &Value, b: &Value| {
        format!(
            "{acc_source} and {other_source} differ at `{}`: {} vs {} (only shards of one run can be merged)",
            if path.is_empty() { "<root>" } else { path },
            short(a),
            short(b)
        )
    };
    match rule(path) {
        Rule::Recomputed => Ok(()),
        Rule::Sum => {
            *acc = match (acc.as_u64(), other.as_u64()) {
                (Some(a), Some(b)) => Value::from(a + b),
                _ => match (acc.as_f64(), other.as_f64()) {
                    (Some(a), Some(b)) => Value::from(a + b),
                    _ => return Err(differ(acc, other)),
                },
            };
            Ok(())
        }
        Rule::Max => match (acc.as_f64(), other.as_f64()) {
            (Some(a), Some(b)) => {
                if b > a {
                    *acc = other.clone();
                }
                Ok(())
            }
            _ => Err(differ(acc, other)),
        },
        Rule::Concat => match (acc.as_array_mut(), other.as_array()) {
            (Some(a), Some(b)) => {
                a.extend(b.iter().cloned());
                Ok(())
            }
            _ => Err(differ(acc, other)),
        },
        Rule::Same => match (acc, other) {
            (Value::Object(a), Value::Object(b)) => {
                if a.len() != b.len() || a.keys().any(|k| !b.contains_key(k)) {
                    let keys = |m: &serde_json::Map<String, Value>| m.keys().cloned().collect::<Vec<_>>().join(",");
                    return Err(format!(
                        "{acc_source} and {other_source} have different fields at `{path}`: [{}] vs [{}]",
                        keys(a),
                        keys(b)
                    ));
                }
                for (key, value) in a.iter_mut() {
                    let child = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    combine(value, &b[key], &child, acc_source, other_source)?;
                }
                Ok(())
            }
            (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
                let child = format!("{path}[]");
                for (x, y) in a.iter_mut().zip(b) {
                    combine(x, y, &child, acc_source, other_source)?;
                }
                Ok(())
            }
            (a, b) if a == b => Ok(()),
            (a, b) => Err(differ(a, b)),
        },
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s
    }
}

/// Percentage of `count` among `images`, as the report computes it.
fn percent(count: u64, images: u64) -> f64 {
    100.0 * count as f64 / images.max(1) as f64
}

fn count_at(v: &Value, field: &str) -> Result<u64, String> {
    v.get(field)
        .and_then(Value::as_u64)
        .ok_or_else(|| format!("merged report: `{field}` is not a count"))
}

/// Accuracy percentages, agreement and throughput from the merged counts; no `shard` any more.
/// Statistics from merged counts: `paired` and `logit_error` of `config` (at `path`).
fn recomputed_statistics(config: &Value, path: &str, paired: &str, logit_error: &str) -> Result<Value, String> {
    let read = |field: &str| {
        config
            .get(field)
            .cloned()
            .ok_or_else(|| format!("{path}.{field} missing"))
    };
    let paired: Paired = serde_json::from_value(read(paired)?).map_err(|e| format!("{path}.{paired}: {e}"))?;
    let logits: LogitError =
        serde_json::from_value(read(logit_error)?).map_err(|e| format!("{path}.{logit_error}: {e}"))?;
    serde_json::to_value(ConfigStatistics::of(&paired, &logits)).map_err(|e| e.to_string())
}

/// A twin's counts against its plaintext configuration, recomputed from the merged counts.
fn recompute_twin(twin: &mut Value, images: u64) -> Result<(), String> {
    twin["agreement_plaintext"] = Value::from(percent(count_at(twin, "agree_plaintext_count")?, images));
    twin["statistics_plaintext"] =
        recomputed_statistics(twin, "configs[].ckks", "paired_plaintext", "logit_error_plaintext")?;
    Ok(())
}

/// The precision curves from the merged configurations.
fn recomputed_precision_curves(configs: &[Value]) -> Result<Value, String> {
    let top1 = |c: &Value| c["approx"]["top1"].as_f64().unwrap_or(f64::NAN);
    let points: Vec<TwinPoint> = configs
        .iter()
        .filter_map(|c| {
            let twin = c.get("ckks").filter(|t| !t.is_null())?;
            let base = twin["base"].as_str()?;
            let base_config = configs.iter().find(|b| b["label"].as_str() == Some(base))?;
            Some(TwinPoint {
                base: base.to_string(),
                base_top1: top1(base_config),
                bits: twin["bootstrap_precision_bits"].as_f64(),
                top1: top1(c),
            })
        })
        .collect();
    serde_json::to_value(precision_curves(&points)).map_err(|e| e.to_string())
}

fn recompute_percentages(r: &mut Value) -> Result<(), String> {
    let images = count_at(r, "images")?;
    let seconds = r.get("seconds").and_then(Value::as_f64).unwrap_or(0.0);
    let set_accuracy = |acc: &mut Value| -> Result<(), String> {
        acc["top1"] = Value::from(percent(count_at(acc, "top1_correct")?, images));
        acc["top5"] = Value::from(percent(count_at(acc, "top5_correct")?, images));
        Ok(())
    };
    set_accuracy(&mut r["exact"])?;
    if r.get("exact_top1_interval").is_some() {
        let interval = exact_top1_interval(count_at(&r["exact"], "top1_correct")?, images);
        r["exact_top1_interval"] = serde_json::to_value(interval).map_err(|e| e.to_string())?;
    }
    if let Some(configs) = r.get_mut("configs").and_then(Value::as_array_mut) {
        for c in configs {
            set_accuracy(&mut c["approx"])?;
            c["agreement"] = Value::from(percent(count_at(c, "agree_count")?, images));
            if c.get("statistics").is_some() {
                c["statistics"] = recomputed_statistics(c, "configs[]", "paired", "logit_error")?;
            }
            if let Some(twin) = c.get_mut("ckks").filter(|t| !t.is_null()) {
                recompute_twin(twin, images)?;
            }
        }
    }
    if r.get("ckks_precision").is_some() {
        let configs = r["configs"].as_array().cloned().unwrap_or_default();
        r["ckks_precision"] = recomputed_precision_curves(&configs)?;
    }
    r["images_per_second"] = Value::from(images as f64 / seconds.max(1e-9));
    r["shard"] = Value::Null;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn site(count: u64, max: f64, out: u64, hist: [u64; 3]) -> Value {
        json!({"name": "relu1", "count": count, "max_abs": max, "out_of_range": out, "non_finite": 0, "log2_hist": hist})
    }

    /// A report of `images` images, as one shard `index`/`count` of `total` (None: a single run).
    fn report(
        shard: Option<(usize, usize, usize)>,
        images: u64,
        top1: u64,
        agree: u64,
        max: f64,
        hist: [u64; 3],
    ) -> Value {
        json!({
            "model": "m", "bounds": {"per_site": [{"site": "relu1", "bound": 8.0}]},
            "images": images, "seconds": 1.0, "images_per_second": images as f64,
            "failures": [format!("f{images}")],
            "shard": shard.map(|(index, count, total)| Shard { index, count }.info(total)),
            "exact": {"top1": percent(top1 + 1, images), "top5": 100.0, "top1_correct": top1 + 1, "top5_correct": images},
            "exact_sites": [site(images * 10, max, 0, hist)],
            "configs": [{
                "label": "α=7", "alpha": 7,
                "approx": {"top1": percent(top1, images), "top5": 100.0, "top1_correct": top1, "top5_correct": images},
                "agreement": percent(agree, images), "agree_count": agree, "out_of_range": 2, "non_finite": 0,
                "sites": [{"site": "relu1", "bound": 8.0, "exact_max_abs": max, "approx_max_abs": max * 2.0,
                           "out_of_range": 2, "non_finite": 0, "count": images * 10}]
            }]
        })
    }

    fn shard(source: &str, report: Value) -> ShardReport {
        ShardReport {
            source: source.into(),
            report,
        }
    }

    #[test]
    fn merged_counts_equal_the_single_run() {
        let a = report(Some((0, 2, 7)), 3, 2, 3, 1.5, [1, 2, 3]);
        let b = report(Some((1, 2, 7)), 4, 3, 2, 4.25, [0, 5, 1]);
        // given in the wrong order: the merge sorts by shard index
        let merged = merge_reports(vec![shard("b.json", b), shard("a.json", a)]).unwrap();
        let mut single = report(None, 7, 5, 5, 4.25, [1, 7, 4]);
        single["exact"]["top1_correct"] = json!(7);
        single["exact"]["top1"] = json!(percent(7, 7));
        single["configs"][0]["out_of_range"] = json!(4);
        single["configs"][0]["sites"][0]["out_of_range"] = json!(4);
        single["failures"] = json!(["f3", "f4"]);
        single["seconds"] = json!(2.0);
        single["images_per_second"] = json!(3.5);
        assert_eq!(merged, single);
    }

    #[test]
    fn merge_refuses_reports_of_different_runs() {
        let a = || report(Some((0, 2, 7)), 3, 2, 3, 1.5, [1, 2, 3]);
        let b = || report(Some((1, 2, 7)), 4, 3, 2, 4.25, [0, 5, 1]);
        let refused = |reports: Vec<Value>, needle: &str| {
            let shards = reports
                .into_iter()
                .enumerate()
                .map(|(i, r)| shard(&format!("r{i}.json"), r))
                .collect();
            let err = merge_reports(shards).unwrap_err();
            assert!(err.contains(needle), "expected '{needle}' in: {err}");
        };
        let mut other_bound = b();
        other_bound["bounds"]["per_site"][0]["bound"] = json!(9.0);
        refused(vec![a(), other_bound], "bounds.per_site[].bound");
        let mut other_alpha = b();
        other_alpha["configs"][0]["alpha"] = json!(8);
        refused(vec![a(), other_alpha], "configs[].alpha");
        let mut other_model = b();
        other_model["model"] = json!("n");
        refused(vec![a(), other_model], "`model`");
        refused(vec![a(), a()], "given twice");
        refused(vec![a()], "missing shard reports: 1/2");
        refused(
            vec![a(), report(Some((1, 3, 7)), 2, 1, 1, 1.0, [0, 0, 0])],
            "not the same split",
        );
        refused(vec![a(), report(None, 4, 3, 2, 4.25, [0, 5, 1])], "not a shard report");
        let mut extra_field = b();
        extra_field["new_field"] = json!(1);
        refused(vec![a(), extra_field], "different fields");
        let mut tampered = b();
        tampered["shard"]["first"] = json!(2);
        refused(vec![a(), tampered], "should cover images [3, 7)");
    }
}
