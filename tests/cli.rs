//! The command line as a user meets it: output, JSON report, and errors for bad input.

use std::process::Command;

mod common;

fn polycnn(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_polycnn"))
        .args(args)
        .output()
        .expect("run polycnn");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn poly_json_report_has_the_documented_fields() {
    let Some(coeffs) = common::data("approxcnn_coeffs") else {
        return;
    };
    let path = std::env::temp_dir().join(format!("polycnn-poly-{}.json", std::process::id()));
    let (ok, stdout, stderr) = polycnn(&[
        "poly",
        "--alpha",
        "7..8",
        "--no-gpu",
        "--json",
        path.to_str().unwrap(),
        "--coeffs-dir",
        coeffs.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("[7, 7]") && stdout.contains("official"), "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4); // ours + official for α 7 and 8
    let ours = &rows[0];
    assert_eq!(ours["alpha"], 7);
    assert_eq!(ours["source"]["kind"], "ours");
    assert!(ours["relu_error"]["log2"].as_f64().unwrap() <= -7.0);
    assert_eq!(ours["meets_alpha"], true);
    assert!(ours["cost"]["depth"].as_u64().unwrap() > 0);
    let stage = &ours["stages"][0];
    assert_eq!(stage["degree"], 7);
    assert_eq!(stage["chebyshev"].as_array().unwrap().len(), 4);
    assert_eq!(stage["power"].as_array().unwrap().len(), 8);
    assert!(stage["interval"][0].as_f64().unwrap() > 0.0);
    assert_eq!(rows[1]["source"]["kind"], "official");
    std::fs::remove_file(&path).ok();
}

#[test]
fn bad_arguments_are_explained() {
    let cases: &[(&[&str], &str)] = &[
        (&["poly", "--alpha", "9..4"], "--alpha"),
        (&["poly", "--alpha", "x"], "--alpha"),
        (&["poly", "--alpha", "16", "--no-gpu"], "--degrees"),
        (&["poly", "--alpha", "7", "--degrees", "7,8", "--no-gpu"], "degree 8"),
        (
            &["poly", "--alpha", "7", "--coeffs-dir", "/nonexistent/dir", "--no-gpu"],
            "/nonexistent/dir",
        ),
    ];
    for (args, expect) in cases {
        let (ok, _, stderr) = polycnn(args);
        assert!(!ok, "{args:?} should fail");
        assert!(
            stderr.contains(expect),
            "{args:?}: stderr does not mention '{expect}': {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    }
}
