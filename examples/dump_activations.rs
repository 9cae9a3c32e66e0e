//! Writes the input of one activation site (the pre-ReLU tensor) of a network run exactly on
//! the first images of a dataset, as little-endian f32: the real activations that
//! `scripts/openfhe_noise.py` feeds to OpenFHE's composite-ReLU evaluation.
//!
//! cargo run --release --example dump_activations -- MODEL WEIGHTS DATA SITE IMAGES OUT.f32
use polycnn::cpu;
use polycnn::data::{cifar, loader::load_batch};
use polycnn::exec::ActivationPlan;
use polycnn::model::{self, Arch, Batch, Op, Shape};
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [arch, weights, data, site, images, out] = args.as_slice() else {
        return Err("usage: dump_activations MODEL WEIGHTS DATA SITE IMAGES OUT.f32".into());
    };
    let arch: Arch = arch.parse()?;
    let graph = model::load(arch, Path::new(weights))?;
    let site_id = graph
        .site_named(site)
        .ok_or_else(|| format!("{} has no activation site {site}", graph.name))?;
    let node = graph.sites[site_id].node;
    let Op::Relu { input, .. } = graph.nodes[node].op else {
        return Err(format!("site {site} is not a ReLU").into());
    };
    let dataset = cifar::open(Path::new(data))?;
    let normalize = arch.descriptor().preprocessing.normalize;
    let indices: Vec<usize> = (0..images.parse::<usize>()?.min(dataset.len())).collect();
    let loaded = load_batch(dataset.as_ref(), &indices, &normalize);
    let shape = loaded.shape;
    let batch = Batch::new(indices.len(), Shape::new(shape[0], shape[1], shape[2]), loaded.data)?;
    let (_, kept) = cpu::run_keeping(&graph, &batch, &ActivationPlan::exact(&graph), &[input])?;
    let bytes: Vec<u8> = kept[0].iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(out, bytes)?;
    let max = kept[0].iter().fold(0f32, |m, v| m.max(v.abs()));
    println!(
        "{} values of {site}'s input (node {}), max |x| = {max}",
        kept[0].len(),
        graph.nodes[input].name
    );
    Ok(())
}
