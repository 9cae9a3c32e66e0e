//! The GPU's CKKS noise (shaders/ckks_noise.wgsl) is bit-identical to the CPU's (he::noise_rng)
//! for the same keys, at several scales and batch layouts.

mod common;

use polycnn::gpu::noise::encode_add_noise;
use polycnn::he::noise_rng::{NoiseKey, add_noise, quantise_scale};

#[test]
fn gpu_noise_equals_cpu_noise_bit_for_bit() {
    let Some(gpu) = common::new_gpu() else { return };
    let per_image = 3 * 17 * 19; // not a multiple of the workgroup size
    let images: Vec<u32> = vec![0, 7, 123_456, 9_999, 42];
    let base: Vec<f32> = (0..per_image * images.len())
        .map(|i| ((i * 37 % 1001) as f32 - 500.0) / 61.0)
        .collect();
    for (seed, point, std) in [(1u64, 0u32, 1e-3), (u64::MAX, 17, 0.37), (99, 3, 2f64.powi(-30))] {
        let scale = quantise_scale(std);
        let mut cpu = base.clone();
        for (k, &image) in images.iter().enumerate() {
            let key = NoiseKey {
                seed,
                point,
                image,
                element: 0,
            };
            add_noise(&mut cpu[k * per_image..(k + 1) * per_image], key, scale);
        }
        let buffer = gpu.storage_from("values", &base);
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        encode_add_noise(&gpu, &mut encoder, &buffer, per_image, seed, point, &images, scale).unwrap();
        gpu.submit_and_wait(encoder).unwrap();
        let out: Vec<f32> = gpu.read_back(&buffer, base.len()).unwrap();
        let differ = out.iter().zip(&cpu).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
        assert_eq!(differ, 0, "seed {seed} point {point} std {std}: {differ} values differ");
        assert!(out.iter().zip(&base).filter(|(a, b)| a != b).count() > base.len() / 2 || std < 1e-6);
    }
}

#[test]
fn a_buffer_too_small_is_an_error_not_a_crash() {
    let Some(gpu) = common::new_gpu() else { return };
    let buffer = gpu.storage_from("values", &[0f32; 10]);
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    let err = encode_add_noise(&gpu, &mut encoder, &buffer, 6, 1, 0, &[0, 1], 1.0).unwrap_err();
    assert!(err.to_string().contains("does not fit"), "{err}");
}

#[test]
fn gpu_network_with_noise_matches_the_cpu() {
    use polycnn::cpu;
    use polycnn::exec::ActivationPlan;
    use polycnn::gpu::activation::Scheme;
    use polycnn::gpu::network::GpuNetwork;
    use polycnn::he::inject::{NodeNoise, NoiseBudget};
    use polycnn::he::{NoisePlan, NoiseRun};
    use polycnn::model::{Arch, Batch, Op, random};
    let Some(gpu) = common::new_gpu() else { return };
    let graph = random(Arch::CifarResNet(20), 21).unwrap();
    let noisy = |i: usize| i == 0 || matches!(graph.nodes[i].op, Op::Conv2d(_) | Op::Relu { .. } | Op::Linear(_));
    let nodes = (0..graph.nodes.len())
        .map(|i| {
            let std = if noisy(i) { 0.05 } else { 0.0 };
            NodeNoise {
                std,
                scale: quantise_scale(std),
            }
        })
        .collect();
    let noise = NoisePlan {
        seed: 9,
        nodes,
        budget: NoiseBudget::default(),
    };
    let n = 3;
    let len = graph.input.numel();
    let batch = Batch::new(
        n,
        graph.input,
        (0..n * len)
            .map(|i| ((i * 31 % 997) as f32 / 997.0 - 0.5) * 2.0)
            .collect(),
    )
    .unwrap();
    let images = [3u32, 1_000, 77];
    let clean = ActivationPlan::exact(&graph);
    let mut plan = clean.clone();
    plan.noise = Some(NoiseRun {
        plan: &noise,
        images: &images,
    });
    // the plain network fuses the noisy convs away: a clear error, not silently no noise
    let fused = GpuNetwork::new(&gpu, &graph, Scheme::Clenshaw).unwrap();
    assert!(
        fused
            .run(&batch, &plan)
            .unwrap_err()
            .to_string()
            .contains("fuses it away")
    );
    let net = GpuNetwork::with_unfused(&gpu, &graph, Scheme::Clenshaw, &noise.noisy_nodes()).unwrap();
    let on_gpu = net.run(&batch, &plan).unwrap().logits;
    let on_cpu = cpu::run(&graph, &batch, &plan).unwrap().logits;
    let without = cpu::run(&graph, &batch, &clean).unwrap().logits;
    let max_diff = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    let (between, noise_effect) = (max_diff(&on_gpu, &on_cpu), max_diff(&on_cpu, &without));
    assert!(
        noise_effect > 1e-2,
        "the noise changed the logits by only {noise_effect}"
    );
    assert!(
        between < noise_effect / 100.0,
        "GPU and CPU noisy logits differ by {between} (noise effect {noise_effect})"
    );
}
