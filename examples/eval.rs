//! polycnn as a library: evaluate a network exactly and with its ReLU and max-pool replaced by
//! the composite minimax polynomials of several α, in one pass, and read the report.
//!
//!     cargo run --release --example eval                          # the shipped digits CNN
//!     cargo run --release --example eval -- resnet20 resnet20-12fca82f.th test_first1000_png
//!
//! (`cargo test` builds this example, so it keeps up with the API.)

use polycnn::eval::command::run_eval;
use polycnn::eval::request::EvalRequest;
use polycnn::eval::summary::format_summary;
use polycnn::exec::NoProgress;
use polycnn::model::Arch;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let digits = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("datasets/digits");
    let (model, weights, data) = match args.as_slice() {
        [] => (
            Arch::DigitsCnn,
            digits.join("digits_cnn.safetensors"),
            digits.join("digits_test.bin"),
        ),
        [model, weights, data] => (model.parse::<Arch>()?, weights.into(), data.into()),
        _ => return Err("usage: eval [MODEL WEIGHTS DATA]".into()),
    };
    // Everything not set here is the command line's default (α = 14, the official B search,
    // CPU backend, batches of 32).
    let request = EvalRequest {
        alphas: (8..=12).collect(),
        ..EvalRequest::new(model, weights, data)
    };
    let report = run_eval(&request, None, &NoProgress)?;
    print!("{}", format_summary(&report, 5));
    // The report is plain data: e.g. the cheapest α whose top-1 drop is not significant.
    let cheapest = report
        .configs
        .iter()
        .find(|c| c.statistics.top1_drop_interval.lo <= 0.0)
        .map_or("none".to_string(), |c| c.label.clone());
    println!("lowest α whose 95% interval of the top-1 drop includes 0: {cheapest}");
    Ok(())
}
