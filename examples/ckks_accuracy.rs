//! Plaintext approximation vs simulated CKKS encryption on a CIFAR-10 network, on the CPU:
//! for each α the exact network, the approximate one (every ReLU and max-pool by the composite,
//! bound B at every site) and its "+ CKKS noise" twins, one per bootstrapping precision.
//! Prints one row per twin (top-1, agreement with exact and with the plaintext approximation,
//! RMS logit difference) and each α's precision cliff. The numbers of README / BENCHMARKS.md.
//!
//! cargo run --release --example ckks_accuracy -- MODEL WEIGHTS DATA IMAGES BOUND ALPHAS PRESET \
//!     [PRECISIONS] [SEED]
//! e.g. resnet20 …/resnet20-12fca82f.th …/test_first1000_png 1000 50 10..14 N16QP1546H192H32 8..30
use polycnn::cpu;
use polycnn::data::{cifar, loader::load_batch};
use polycnn::eval::ckks_noise::{
    CkksNoiseRequest, PrecisionCurve, TwinBatch, build_twins, evaluate_twins, parse_precisions,
};
use polycnn::exec::{ActivationPlan, SiteMode};
use polycnn::he::{NoisySite, load_preset};
use polycnn::model::{self, Arch, Batch, Shape};
use polycnn::poly::{optimise_eps, paper_degrees};
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 7 {
        return Err("usage: ckks_accuracy MODEL WEIGHTS DATA IMAGES BOUND ALPHAS PRESET [PRECISIONS] [SEED]".into());
    }
    let arch: Arch = args[0].parse()?;
    let graph = model::load(arch, Path::new(&args[1]))?;
    let shapes = graph.shapes()?;
    let dataset = cifar::open(Path::new(&args[2]))?;
    let count = args[3].parse::<usize>()?.min(dataset.len());
    let bound: f64 = args[4].parse()?;
    let (lo, hi) = args[5].split_once("..").unwrap_or((&args[5], &args[5]));
    let alphas: Vec<u32> = (lo.parse()?..=hi.parse()?).collect();
    let precisions = args
        .get(7)
        .map(|p| parse_precisions(p))
        .transpose()?
        .unwrap_or_default();
    let seed = args.get(8).map(|s| s.parse()).transpose()?.unwrap_or(0);
    let req = CkksNoiseRequest {
        preset: load_preset(&args[6])?,
        seed,
        precisions,
    };
    let composites: Vec<_> = alphas
        .iter()
        .map(|&a| Ok(optimise_eps(paper_degrees(a).ok_or(format!("no degree list for α={a}"))?)?.composite))
        .collect::<Result<_, Box<dyn std::error::Error>>>()?;
    let sites: Vec<Vec<Option<NoisySite>>> = composites
        .iter()
        .map(|c| vec![Some(NoisySite { composite: c, bound }); graph.sites.len()])
        .collect();
    let labels: Vec<String> = alphas.iter().map(|a| format!("α={a}")).collect();
    let twins = build_twins(&graph, &shapes, &sites, &labels, &req)?;
    let plans: Vec<ActivationPlan> = alphas
        .iter()
        .zip(&composites)
        .map(|(&a, c)| ActivationPlan::uniform(&graph, SiteMode::approx(c, a, bound)))
        .collect();
    let normalize = arch.descriptor().preprocessing.normalize;
    let start = std::time::Instant::now();
    let batches = (0..count).step_by(100).map(|first| {
        let indices: Vec<usize> = (first..(first + 100).min(count)).collect();
        let loaded = load_batch(dataset.as_ref(), &indices, &normalize);
        let s = loaded.shape;
        eprint!("\r{first}/{count} images, {:.0} s", start.elapsed().as_secs_f64());
        TwinBatch {
            images: Batch::new(loaded.labels.len(), Shape::new(s[0], s[1], s[2]), loaded.data).expect("a batch"),
            labels: loaded.labels,
            indices: loaded.indices.iter().map(|&i| i as u32).collect(),
        }
    });
    let run = |b: &Batch, p: &ActivationPlan| cpu::run(&graph, b, p).map_err(|e| e.to_string());
    let ev = evaluate_twins(&graph, batches, &plans, &twins, &run)?;
    eprintln!();
    let images = ev.images;
    let pct = |h: u64| 100.0 * h as f64 / images as f64;
    println!(
        "{} on {} images, B = {bound}, preset {}, seed {seed}",
        graph.name, images, req.preset.name
    );
    println!("exact top-1 {:.2}%", pct(ev.exact_top1));
    println!("| configuration | top-1 % | agree exact % | agree plaintext % | logit RMS diff | bootstraps |");
    println!("|---|---|---|---|---|---|");
    for (k, a) in alphas.iter().enumerate() {
        println!(
            "| α={a} plaintext | {:.2} | {:.2} | | | |",
            pct(ev.plaintext_top1[k]),
            pct(ev.plaintext_agree[k])
        );
    }
    for (t, twin) in twins.iter().enumerate() {
        let c = &ev.twins[t];
        let rms = c.logit_rms_diff();
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {rms:.3e} | {} |",
            twin.label,
            pct(c.top1),
            pct(c.agree_exact),
            pct(c.agree_plaintext),
            twin.info.bootstraps
        );
    }
    for (k, label) in labels.iter().enumerate() {
        let points: Vec<(f64, f64)> = twins
            .iter()
            .enumerate()
            .filter(|(_, t)| t.base == k)
            .filter_map(|(i, t)| t.info.bootstrap_precision_bits.map(|b| (b, pct(ev.twins[i].top1))))
            .collect();
        if points.len() > 1 {
            let curve = PrecisionCurve::new(label.clone(), pct(ev.plaintext_top1[k]), points);
            let cliff = curve.cliff_bits.map_or("none".into(), |b| format!("{b:.0} bits"));
            println!(
                "{label}: precision cliff {cliff} (top-1 within 0.5 points of plaintext {:.2}%)",
                pct(ev.plaintext_top1[k])
            );
        }
    }
    println!("{:.0} s", start.elapsed().as_secs_f64());
    Ok(())
}
