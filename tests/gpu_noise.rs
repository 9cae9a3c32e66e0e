//! The GPU's CKKS noise (shaders/ckks_noise.wgsl) is bit-identical to the CPU's (he::noise_rng)
//! for the same keys, at several scales and batch layouts.

use polycnn::gpu::{Gpu, noise::encode_add_noise};
use polycnn::he::noise_rng::{NoiseKey, add_noise, quantise_scale};

#[test]
fn gpu_noise_equals_cpu_noise_bit_for_bit() {
    let gpu = match Gpu::new() {
        Ok(g) => g,
        Err(e) => {
            println!("skipped: no GPU adapter ({e})");
            return;
        }
    };
    let per_image = 3 * 17 * 19; // not a multiple of the workgroup size
    let images: Vec<u32> = vec![0, 7, 123_456, 9_999, 42];
    let base: Vec<f32> = (0..per_image * images.len()).map(|i| ((i * 37 % 1001) as f32 - 500.0) / 61.0).collect();
    for (seed, point, std) in [(1u64, 0u32, 1e-3), (u64::MAX, 17, 0.37), (99, 3, 2f64.powi(-30))] {
        let scale = quantise_scale(std);
        let mut cpu = base.clone();
        for (k, &image) in images.iter().enumerate() {
            let key = NoiseKey { seed, point, image, element: 0 };
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
    let Ok(gpu) = Gpu::new() else {
        println!("skipped: no GPU adapter");
        return;
    };
    let buffer = gpu.storage_from("values", &[0f32; 10]);
    let mut encoder = gpu.device.create_command_encoder(&Default::default());
    let err = encode_add_noise(&gpu, &mut encoder, &buffer, 6, 1, 0, &[0, 1], 1.0).unwrap_err();
    assert!(err.to_string().contains("does not fit"), "{err}");
}
