//! Per-image results (`--predictions FILE.csv`): for every image its file, label, the exact
//! network's top-1 and margin, and each configuration's top-1 and max |Δlogit| against exact.

use super::stats::{LogitError, top1_margin};
use serde::{Deserialize, Serialize};

/// One configuration's view of one image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApproxPrediction {
    /// None when every logit is NaN.
    pub top1: Option<usize>,
    /// max_k |approx_k − exact_k| (NaN when a logit is not finite).
    pub max_abs_delta: f64,
}

/// One image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub image: String,
    pub label: usize,
    pub exact_top1: Option<usize>,
    /// Top-1 logit minus the runner-up's (how close the exact decision was).
    pub exact_margin: f32,
    /// One per configuration, in the report's order.
    pub approx: Vec<ApproxPrediction>,
}

impl Prediction {
    /// The row of one image: `exact` and each of `approx` are its logits; the logit errors of
    /// the configurations are accumulated into `errors` on the way.
    pub fn of_image(
        image: String,
        label: usize,
        exact: &[f32],
        approx: &[&[f32]],
        errors: &mut [LogitError],
    ) -> Prediction {
        let exact_top = top1_margin(exact);
        let approx = approx
            .iter()
            .zip(errors.iter_mut())
            .map(|(logits, error)| ApproxPrediction {
                top1: top1_margin(logits).map(|(c, _)| c),
                max_abs_delta: error.add_image(exact, logits),
            })
            .collect();
        Prediction {
            image,
            label,
            exact_top1: exact_top.map(|(c, _)| c),
            exact_margin: exact_top.map_or(f32::NAN, |(_, m)| m),
            approx,
        }
    }
}

/// A CSV column prefix for a configuration label: "α=14 (ReLU + max-pool)" → "alpha14_relu_max_pool".
pub fn column_key(label: &str) -> String {
    let ascii: String = label
        .replace("α=", "alpha")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    ascii
        .split('_')
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("_")
}

/// RFC 4180 quoting where a field needs it (file names may hold commas or quotes).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn class(c: Option<usize>) -> String {
    c.map_or_else(String::new, |c| c.to_string())
}

/// The predictions file: a header naming each configuration's two columns, then one row per image.
pub fn predictions_csv(config_labels: &[String], rows: &[Prediction]) -> String {
    let mut out = String::from("image,label,exact_top1,exact_margin");
    for label in config_labels {
        let key = column_key(label);
        out += &format!(",{key}_top1,{key}_max_abs_dlogit");
    }
    out.push('\n');
    for row in rows {
        out += &format!(
            "{},{},{},{}",
            csv_field(&row.image),
            row.label,
            class(row.exact_top1),
            row.exact_margin
        );
        for a in &row.approx {
            out += &format!(",{},{}", class(a.top1), a.max_abs_delta);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_keys_are_plain() {
        assert_eq!(column_key("α=14 (ReLU + max-pool)"), "alpha14_relu_max_pool");
        assert_eq!(
            column_key("relu-aq ReLU (max-pool exact)"),
            "relu_aq_relu_max_pool_exact"
        );
    }

    #[test]
    fn rows_by_hand() {
        let mut errors = vec![LogitError::default(); 2];
        let exact = [1.0f32, 3.0, 2.5];
        let near = [1.0f32, 2.75, 2.5]; // same top-1, |Δ| max 0.25
        let flipped = [1.0f32, 2.0, 2.5]; // top-1 becomes class 2, |Δ| max 1
        let row = Prediction::of_image("a,b.png".into(), 1, &exact, &[&near, &flipped], &mut errors);
        assert_eq!((row.exact_top1, row.exact_margin), (Some(1), 0.5));
        assert_eq!(
            row.approx[0],
            ApproxPrediction {
                top1: Some(1),
                max_abs_delta: 0.25
            }
        );
        assert_eq!(
            row.approx[1],
            ApproxPrediction {
                top1: Some(2),
                max_abs_delta: 1.0
            }
        );
        assert_eq!((errors[0].max_abs, errors[1].max_abs), (0.25, 1.0));
        let labels = ["α=8 (ReLU)".to_string(), "α=9 (ReLU)".to_string()];
        let csv = predictions_csv(&labels, &[row]);
        assert_eq!(
            csv,
            "image,label,exact_top1,exact_margin,alpha8_relu_top1,alpha8_relu_max_abs_dlogit,\
             alpha9_relu_top1,alpha9_relu_max_abs_dlogit\n\"a,b.png\",1,1,0.5,1,0.25,2,1\n"
        );
    }
}
