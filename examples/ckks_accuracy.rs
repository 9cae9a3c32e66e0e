//! Plaintext approximation vs simulated CKKS encryption on a CIFAR-10 network, on the CPU: a
//! thin user of `polycnn eval --ckks` (`eval::command::run_eval`) with one fixed bound B at
//! every site. For each α: the exact network, the approximate one and its "+ CKKS noise"
//! twins, one per bootstrapping precision; prints the sweep table (twins next to their base
//! rows, then each twin against its plaintext approximation and each α's precision cliff).
//!
//! cargo run --release --example ckks_accuracy -- MODEL WEIGHTS DATA IMAGES BOUND ALPHAS PRESET \
//!     [PRECISIONS] [SEED]
//! e.g. resnet20 …/resnet20-12fca82f.th …/test_first1000_png 1000 50 10..14 N16QP1546H192H32 8..30
//! (the same as `polycnn sweep --model resnet20 … --limit 1000 --bound 50 --bound-max 50
//! --alpha 10..14 --ckks N16QP1546H192H32 --ckks-precision 8..30 --backend cpu`).
use polycnn::eval::bounds::{BoundRule, RequestedBound};
use polycnn::eval::ckks_noise::parse_precisions;
use polycnn::eval::command::run_eval;
use polycnn::eval::request::EvalRequest;
use polycnn::eval::summary::sweep_markdown;
use polycnn::exec::NoProgress;
use polycnn::he::load_preset;
use polycnn::model::Arch;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 7 {
        return Err("usage: ckks_accuracy MODEL WEIGHTS DATA IMAGES BOUND ALPHAS PRESET [PRECISIONS] [SEED]".into());
    }
    let arch: Arch = args[0].parse()?;
    let bound: RequestedBound = BoundRule::Fixed {
        bound: args[4].parse()?,
    }
    .into();
    let (lo, hi) = args[5].split_once("..").unwrap_or((&args[5], &args[5]));
    let req = EvalRequest {
        alphas: (lo.parse()?..=hi.parse()?).collect(),
        limit: Some(args[3].parse()?),
        bound: bound.clone(),
        bound_max: bound,
        batch: 100,
        ckks: Some(load_preset(&args[6])?),
        ckks_precisions: args
            .get(7)
            .map(|p| parse_precisions(p))
            .transpose()?
            .unwrap_or_default(),
        ckks_seed: args.get(8).map(|s| s.parse()).transpose()?.unwrap_or(0),
        ..EvalRequest::new(arch, args[1].clone().into(), args[2].clone().into())
    };
    let start = std::time::Instant::now();
    let report = run_eval(&req, None, &NoProgress)?;
    print!("{}", sweep_markdown(&report));
    println!("{:.0} s", start.elapsed().as_secs_f64());
    Ok(())
}
