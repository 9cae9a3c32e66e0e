//! Host side of shaders/ckks_noise.wgsl: adds the CKKS noise of `he::noise_rng` to a batch's
//! tensor in place, bit-identical to the CPU's `noise_rng::add_noise`.

use super::{Gpu, GpuError};
use crate::he::noise_rng::NoiseKey;

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    count: u32,
    per_image: u32,
    row_stride: u32,
    scale: f32,
}

const GROUP: u32 = 256;

/// Adds noise of `scale` (from `noise_rng::quantise_scale`) to `values`: `images.len()` images of
/// `per_image` elements, image k keyed by (seed, point, images[k]).
#[allow(clippy::too_many_arguments)]
pub fn encode_add_noise(
    gpu: &Gpu,
    encoder: &mut wgpu::CommandEncoder,
    values: &wgpu::Buffer,
    per_image: usize,
    seed: u64,
    point: u32,
    images: &[u32],
    scale: f32,
) -> Result<(), GpuError> {
    let count = per_image * images.len();
    if scale == 0.0 || count == 0 {
        return Ok(());
    }
    if count > u32::MAX as usize || (count * 4) as u64 > values.size() {
        return Err(GpuError::BadInput(format!(
            "noise over {} images of {per_image} values does not fit a buffer of {} bytes",
            images.len(),
            values.size()
        )));
    }
    let prefixes: Vec<u32> = images.iter().map(|&i| NoiseKey::prefix(seed, point, i)).collect();
    let prefixes = gpu.storage_from("noise prefixes", &prefixes);
    let grid = Gpu::grid_for(count as u64, GROUP);
    let params = Params {
        count: count as u32,
        per_image: per_image as u32,
        row_stride: grid.0 * GROUP,
        scale,
    };
    let pipeline = gpu.pipeline("ckks_noise", "add_noise", || {
        include_str!("../../shaders/ckks_noise.wgsl").to_string()
    })?;
    let uniform = gpu.uniform_from("noise params", &params);
    gpu.encode_dispatch(
        encoder,
        &pipeline,
        &[
            uniform.as_entire_binding(),
            prefixes.as_entire_binding(),
            values.as_entire_binding(),
        ],
        grid,
    );
    Ok(())
}
