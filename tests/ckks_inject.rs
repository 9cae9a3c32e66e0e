//! CKKS noise injection on the CPU backend: reproducible per image whatever the batching, the
//! injected std is the planned one, and a silent plan changes nothing.

use polycnn::cpu;
use polycnn::exec::{ActivationPlan, SiteMode};
use polycnn::he::inject::{NodeNoise, NoiseBudget};
use polycnn::he::noise_rng::quantise_scale;
use polycnn::he::{NoisePlan, NoiseRun};
use polycnn::model::{Arch, Batch, Graph, Op, random};
use polycnn::poly::{optimise_eps, paper_degrees};

fn images(graph: &Graph, n: usize) -> Batch {
    let len = graph.input.numel();
    let data = (0..n * len)
        .map(|i| ((i * 7919 % 2003) as f32 / 2003.0 - 0.5) * 3.0)
        .collect();
    Batch::new(n, graph.input, data).unwrap()
}

/// A plan with `std` at the nodes `at` and nothing elsewhere.
fn plan_at(graph: &Graph, at: &[usize], std: f64, seed: u64) -> NoisePlan {
    let nodes = (0..graph.nodes.len())
        .map(|i| {
            let s = if at.contains(&i) { std } else { 0.0 };
            NodeNoise {
                std: s,
                scale: quantise_scale(s),
            }
        })
        .collect();
    NoisePlan {
        seed,
        nodes,
        budget: NoiseBudget::default(),
    }
}

#[test]
fn same_images_same_noise_in_any_batching() {
    let graph = random(Arch::CifarResNet(20), 11).unwrap();
    let composite = optimise_eps(paper_degrees(8).unwrap()).unwrap().composite;
    let mut noisy_nodes: Vec<usize> = (0..graph.nodes.len())
        .filter(|&i| matches!(graph.nodes[i].op, Op::Conv2d(_)))
        .collect();
    noisy_nodes.push(0);
    let noise = plan_at(&graph, &noisy_nodes, 0.05, 7);
    let batch = images(&graph, 6);
    let indices: Vec<u32> = vec![40, 41, 42, 900, 901, 5];
    let mut plan = ActivationPlan::uniform(&graph, SiteMode::approx(&composite, 8, 30.0));
    plan.noise = Some(NoiseRun {
        plan: &noise,
        images: &indices,
    });
    let (whole, kept) = cpu::run_keeping(&graph, &batch, &plan, &[0]).unwrap();
    let again = cpu::run(&graph, &batch, &plan).unwrap();
    assert_eq!(whole.logits, again.logits, "a rerun differs");
    // the same images in batches of 2 and 4: the same noise draws (bit for bit at the input),
    // the same logits up to the GEMM's batch-dependent summation order
    let (classes, per_image) = (whole.classes, graph.input.numel());
    for (start, count) in [(0usize, 2usize), (2, 4)] {
        let part = batch.slice(start, count);
        let mut p = plan.clone();
        p.noise = Some(NoiseRun {
            plan: &noise,
            images: &indices[start..start + count],
        });
        let (out, part_kept) = cpu::run_keeping(&graph, &part, &p, &[0]).unwrap();
        assert_eq!(
            part_kept[0],
            kept[0][start * per_image..(start + count) * per_image],
            "batch {start}+{count}"
        );
        let logits = &whole.logits[start * classes..(start + count) * classes];
        for (a, b) in out.logits.iter().zip(logits) {
            assert!(
                (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                "batch {start}+{count}: {a} vs {b}"
            );
        }
    }
    // other dataset indices, other noise
    let other: Vec<u32> = indices.iter().map(|i| i + 1).collect();
    plan.noise = Some(NoiseRun {
        plan: &noise,
        images: &other,
    });
    assert_ne!(cpu::run(&graph, &batch, &plan).unwrap().logits, whole.logits);
    // a silent plan is the plain run
    let silent = plan_at(&graph, &[], 0.0, 7);
    plan.noise = Some(NoiseRun {
        plan: &silent,
        images: &indices,
    });
    let plain = ActivationPlan::uniform(&graph, SiteMode::approx(&composite, 8, 30.0));
    assert_eq!(
        cpu::run(&graph, &batch, &plan).unwrap().logits,
        cpu::run(&graph, &batch, &plain).unwrap().logits
    );
}

#[test]
fn injected_noise_has_the_planned_std_and_lands_before_the_relu() {
    let graph = random(Arch::CifarResNet(20), 12).unwrap();
    let conv = graph.nodes.iter().position(|n| matches!(n.op, Op::Conv2d(_))).unwrap();
    let std = 0.01;
    let noise = plan_at(&graph, &[conv], std, 3);
    let batch = images(&graph, 4);
    let idx: Vec<u32> = (0..4).collect();
    let exact = ActivationPlan::exact(&graph);
    let mut noisy = exact.clone();
    noisy.noise = Some(NoiseRun {
        plan: &noise,
        images: &idx,
    });
    let (_, clean) = cpu::run_keeping(&graph, &batch, &exact, &[conv]).unwrap();
    let (_, dirty) = cpu::run_keeping(&graph, &batch, &noisy, &[conv]).unwrap();
    let diffs: Vec<f64> = clean[0].iter().zip(&dirty[0]).map(|(a, b)| f64::from(b - a)).collect();
    let rms = (diffs.iter().map(|d| d * d).sum::<f64>() / diffs.len() as f64).sqrt();
    assert!((rms / std - 1.0).abs() < 0.08, "rms {rms} for std {std}");
    // the ReLU after it sees the noisy values: its output differs from the clean one
    let relu = graph
        .nodes
        .iter()
        .position(|n| matches!(n.op, Op::Relu { input, .. } if input == conv))
        .unwrap();
    let (_, clean) = cpu::run_keeping(&graph, &batch, &exact, &[relu]).unwrap();
    let (_, dirty) = cpu::run_keeping(&graph, &batch, &noisy, &[relu]).unwrap();
    assert_ne!(clean[0], dirty[0]);
}

#[test]
fn a_noise_plan_for_another_graph_or_batch_is_an_error() {
    let graph = random(Arch::CifarResNet(20), 13).unwrap();
    let batch = images(&graph, 2);
    let wrong_graph = NoisePlan {
        seed: 0,
        nodes: vec![NodeNoise::default(); 3],
        budget: NoiseBudget::default(),
    };
    let idx = [0u32, 1];
    let mut plan = ActivationPlan::exact(&graph);
    plan.noise = Some(NoiseRun {
        plan: &wrong_graph,
        images: &idx,
    });
    assert!(
        cpu::run(&graph, &batch, &plan)
            .unwrap_err()
            .to_string()
            .contains("noise plan")
    );
    let right = plan_at(&graph, &[0], 0.1, 0);
    plan.noise = Some(NoiseRun {
        plan: &right,
        images: &idx[..1],
    });
    assert!(
        cpu::run(&graph, &batch, &plan)
            .unwrap_err()
            .to_string()
            .contains("images")
    );
}
