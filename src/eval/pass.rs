//! One pass over a dataset: every batch through the exact network and each approximate plan,
//! counted (top-1/top-5 hits, agreement, per-site statistics), never averaged.

use super::config::ApproxConfig;
use crate::data::Dataset;
use crate::data::Normalize;
use crate::data::loader::{Loader, LoaderConfig};
use crate::exec::{ActivationPlan, Backend, Progress, SiteStats};
use crate::model::{Batch, Graph, Shape};
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

/// Top-1 and top-5 hits of one configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Hits {
    pub top1: u64,
    pub top5: u64,
}

/// Counts of one approximate configuration over the images seen.
#[derive(Clone, Debug, Serialize)]
pub struct ApproxTally {
    pub label: String,
    pub alpha: u32,
    pub hits: Hits,
    /// Images whose approximate top-1 equals the exact top-1.
    pub agree: u64,
    pub sites: Vec<SiteStats>,
}

/// Everything counted in a pass.
#[derive(Clone, Debug, Serialize)]
pub struct Tally {
    pub images: u64,
    pub exact: Hits,
    pub exact_sites: Vec<SiteStats>,
    pub approx: Vec<ApproxTally>,
    /// Images that could not be decoded: (source, error).
    pub failures: Vec<(String, String)>,
    pub seconds: f64,
}

impl Tally {
    fn new(graph: &Graph, configs: &[ApproxConfig]) -> Tally {
        let empty = || {
            graph
                .sites
                .iter()
                .map(|s| SiteStats::new(&s.name, s.kind))
                .collect::<Vec<_>>()
        };
        Tally {
            images: 0,
            exact: Hits::default(),
            exact_sites: empty(),
            approx: configs
                .iter()
                .map(|c| ApproxTally {
                    label: c.label.clone(),
                    alpha: c.alpha,
                    hits: Hits::default(),
                    agree: 0,
                    sites: empty(),
                })
                .collect(),
            failures: Vec::new(),
            seconds: 0.0,
        }
    }

    pub fn images_per_second(&self) -> f64 {
        self.images as f64 / self.seconds.max(1e-9)
    }
}

/// The ranks of the 5 largest logits of each row (NaN never ranks).
pub fn top5(logits: &[f32], classes: usize) -> Vec<Vec<usize>> {
    logits
        .chunks_exact(classes)
        .map(|row| {
            let mut order: Vec<usize> = (0..classes).filter(|&i| !row[i].is_nan()).collect();
            order.sort_by(|&a, &b| row[b].partial_cmp(&row[a]).expect("no NaN").then(a.cmp(&b)));
            order.truncate(5);
            order
        })
        .collect()
}

fn hits(ranked: &[Vec<usize>], labels: &[usize]) -> Hits {
    let mut h = Hits::default();
    for (r, &l) in ranked.iter().zip(labels) {
        h.top1 += (r.first() == Some(&l)) as u64;
        h.top5 += r.contains(&l) as u64;
    }
    h
}


/// What a pass needs besides the configurations.
pub struct PassInput<'a> {
    pub graph: &'a Graph,
    pub backend: &'a dyn Backend,
    /// Told how far the pass got.
    pub progress: &'a dyn Progress,
    pub dataset: Arc<dyn Dataset>,
    pub normalize: Normalize,
    pub indices: Vec<usize>,
    pub batch_size: usize,
    /// Shown while running (e.g. "exact statistics", "evaluation").
    pub title: String,
}

/// One pass: every batch through the exact network and each plan; counts accumulated.
pub fn evaluate(input: &PassInput, configs: &[ApproxConfig], plans: &[ActivationPlan]) -> Result<Tally, String> {
    let graph = input.graph;
    let exact_plan = ActivationPlan::exact(graph);
    let mut tally = Tally::new(graph, configs);
    let shape = graph.input;
    let data_shape = input.dataset.shape();
    if [shape.c, shape.h, shape.w] != data_shape {
        return Err(format!(
            "{} takes {}x{}x{} images but the dataset gives {}x{}x{}",
            graph.name, shape.c, shape.h, shape.w, data_shape[0], data_shape[1], data_shape[2]
        ));
    }
    let progress = input.progress;
    progress.start(&input.title, input.indices.len() as u64);
    let config = LoaderConfig {
        batch_size: input.batch_size,
        normalize: input.normalize,
        prefetch: 2,
    };
    let start = Instant::now();
    for batch in Loader::new(input.dataset.clone(), input.indices.clone(), config) {
        tally
            .failures
            .extend(batch.failures.iter().map(|f| (f.source.clone(), f.error.to_string())));
        progress.advance(batch.failures.len() as u64);
        if batch.is_empty() {
            continue;
        }
        let images = Batch::new(batch.len(), Shape::new(shape.c, shape.h, shape.w), batch.data)?;
        let exact = input.backend.run(graph, &images, &exact_plan)?;
        let exact_ranked = top5(&exact.logits, exact.classes);
        add_hits(&mut tally.exact, hits(&exact_ranked, &batch.labels));
        merge_sites(&mut tally.exact_sites, &exact.sites);
        for (approx_tally, plan) in tally.approx.iter_mut().zip(plans) {
            let approx = input.backend.run(graph, &images, plan)?;
            let ranked = top5(&approx.logits, approx.classes);
            add_hits(&mut approx_tally.hits, hits(&ranked, &batch.labels));
            approx_tally.agree += ranked
                .iter()
                .zip(&exact_ranked)
                .filter(|(a, e)| a.first() == e.first())
                .count() as u64;
            merge_sites(&mut approx_tally.sites, &approx.sites);
        }
        tally.images += images.n as u64;
        progress.advance(images.n as u64);
    }
    progress.finish();
    tally.seconds = start.elapsed().as_secs_f64();
    Ok(tally)
}

fn add_hits(total: &mut Hits, h: Hits) {
    total.top1 += h.top1;
    total.top5 += h.top5;
}

fn merge_sites(total: &mut [SiteStats], batch: &[SiteStats]) {
    total.iter_mut().zip(batch).for_each(|(t, b)| t.merge(b));
}

