//! Plaintext approximation vs simulated CKKS encryption on a CIFAR-10 network, on the CPU:
//! for each α the exact network, the approximate one (every ReLU and max-pool by the composite,
//! bound B at every site) and its "+ CKKS noise" twins, one per bootstrapping precision.
//! Prints one row per twin (top-1, agreement with exact and with the plaintext approximation,
//! RMS logit difference) and each α's precision cliff. The numbers of README / BENCHMARKS.md.
//!
//! cargo run --release --example ckks_accuracy -- MODEL WEIGHTS DATA IMAGES BOUND ALPHAS PRESET \
//!     [PRECISIONS] [SEED]
//! e.g. resnet20 …/resnet20-12fca82f.th …/test_first1000_png 1000 50 10..14 N16QP1546H192H32 8..30
use polycnn::cpu::{self, ActivationPlan, SiteMode};
use polycnn::data::{Normalize, cifar, loader::load_batch};
use polycnn::eval::ckks_noise::{CkksNoiseRequest, PrecisionCurve, build_twins, parse_precisions};
use polycnn::he::{NoiseRun, NoisySite, load_preset};
use polycnn::model::{self, Arch, Batch, Shape};
use polycnn::poly::{optimise_eps, paper_degrees};
use std::path::Path;

fn argmax(row: &[f32]) -> usize {
    (0..row.len()).fold(0, |b, i| if row[i] > row[b] { i } else { b })
}

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
    let (mean, std) = arch.normalisation();
    let normalize = Normalize {
        mean,
        std,
        max_value: 255.0,
    };
    let classes = shapes[graph.output].numel();
    // hits: exact, per α, per twin; agreement of each with exact / with its base
    let (mut exact_hits, mut images) = (0u64, 0u64);
    let mut hits = vec![0u64; plans.len()];
    let mut agree = vec![0u64; plans.len()];
    let mut twin_hits = vec![0u64; twins.len()];
    let mut twin_agree_exact = vec![0u64; twins.len()];
    let mut twin_agree_base = vec![0u64; twins.len()];
    let mut twin_sq = vec![0f64; twins.len()];
    let start = std::time::Instant::now();
    for first in (0..count).step_by(100) {
        let indices: Vec<usize> = (first..(first + 100).min(count)).collect();
        let loaded = load_batch(dataset.as_ref(), &indices, &normalize);
        let s = loaded.shape;
        let labels = loaded.labels.clone();
        let dataset_index: Vec<u32> = loaded.indices.iter().map(|&i| i as u32).collect();
        let batch = Batch::new(labels.len(), Shape::new(s[0], s[1], s[2]), loaded.data)?;
        let exact = cpu::run(&graph, &batch, &ActivationPlan::exact(&graph))?;
        let exact_top: Vec<usize> = exact.logits.chunks(classes).map(argmax).collect();
        exact_hits += exact_top.iter().zip(&labels).filter(|(p, l)| p == l).count() as u64;
        let mut base_logits = Vec::new();
        for (k, plan) in plans.iter().enumerate() {
            let out = cpu::run(&graph, &batch, plan)?;
            let top: Vec<usize> = out.logits.chunks(classes).map(argmax).collect();
            hits[k] += top.iter().zip(&labels).filter(|(p, l)| p == l).count() as u64;
            agree[k] += top.iter().zip(&exact_top).filter(|(p, e)| p == e).count() as u64;
            base_logits.push((out.logits, top));
        }
        for (t, twin) in twins.iter().enumerate() {
            let mut plan = plans[twin.base].clone();
            plan.noise = Some(NoiseRun {
                plan: &twin.plan,
                images: &dataset_index,
            });
            let out = cpu::run(&graph, &batch, &plan)?;
            let top: Vec<usize> = out.logits.chunks(classes).map(argmax).collect();
            let (base, base_top) = &base_logits[twin.base];
            twin_hits[t] += top.iter().zip(&labels).filter(|(p, l)| p == l).count() as u64;
            twin_agree_exact[t] += top.iter().zip(&exact_top).filter(|(p, e)| p == e).count() as u64;
            twin_agree_base[t] += top.iter().zip(base_top).filter(|(p, e)| p == e).count() as u64;
            twin_sq[t] += out
                .logits
                .iter()
                .zip(base)
                .map(|(a, b)| f64::from(a - b).powi(2))
                .sum::<f64>();
        }
        images += labels.len() as u64;
        eprint!("\r{images}/{count} images, {:.0} s", start.elapsed().as_secs_f64());
    }
    eprintln!();
    let pct = |h: u64| 100.0 * h as f64 / images as f64;
    println!(
        "{} on {} images, B = {bound}, preset {}, seed {seed}",
        graph.name, images, req.preset.name
    );
    println!("exact top-1 {:.2}%", pct(exact_hits));
    println!("| configuration | top-1 % | agree exact % | agree plaintext % | logit RMS diff | bootstraps |");
    println!("|---|---|---|---|---|---|");
    for (k, a) in alphas.iter().enumerate() {
        println!("| α={a} plaintext | {:.2} | {:.2} | | | |", pct(hits[k]), pct(agree[k]));
    }
    for (t, twin) in twins.iter().enumerate() {
        let rms = (twin_sq[t] / (images as f64 * classes as f64)).sqrt();
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {rms:.3e} | {} |",
            twin.label,
            pct(twin_hits[t]),
            pct(twin_agree_exact[t]),
            pct(twin_agree_base[t]),
            twin.info.bootstraps
        );
    }
    for (k, label) in labels.iter().enumerate() {
        let points: Vec<(f64, f64)> = twins
            .iter()
            .enumerate()
            .filter(|(_, t)| t.base == k)
            .filter_map(|(i, t)| t.info.bootstrap_precision_bits.map(|b| (b, pct(twin_hits[i]))))
            .collect();
        if points.len() > 1 {
            let curve = PrecisionCurve::new(label.clone(), pct(hits[k]), points);
            let cliff = curve.cliff_bits.map_or("none".into(), |b| format!("{b:.0} bits"));
            println!(
                "{label}: precision cliff {cliff} (top-1 within 0.5 points of plaintext {:.2}%)",
                pct(hits[k])
            );
        }
    }
    println!("{:.0} s", start.elapsed().as_secs_f64());
    Ok(())
}
