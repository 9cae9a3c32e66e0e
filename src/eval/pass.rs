//! One pass over a dataset: every batch through the exact network and each approximate plan,
//! counted (top-1/top-5 hits, agreement, per-site statistics), never averaged.

use super::config::ApproxConfig;
use super::predictions::Prediction;
use super::resume::Checkpoint;
use super::stats::{LogitError, Paired};
use crate::data::Dataset;
use crate::data::Normalize;
use crate::data::loader::{Loader, LoaderConfig};
use crate::exec::{ActivationPlan, Backend, Progress, SiteStats};
use crate::he::{NoisePlan, NoiseRun};
use crate::model::{Batch, Graph, Shape};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Instant;

/// Top-1 and top-5 hits of one configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Hits {
    pub top1: u64,
    pub top5: u64,
}

/// Counts of one approximate configuration over the images seen.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApproxTally {
    pub label: String,
    pub alpha: u32,
    pub hits: Hits,
    /// Images whose approximate top-1 equals the exact top-1.
    pub agree: u64,
    /// Exact vs approximate top-1 correctness, image by image (flips, McNemar, drop interval).
    pub paired: Paired,
    /// Approximate vs exact logits.
    pub logit_error: LogitError,
    pub sites: Vec<SiteStats>,
    /// A "+ CKKS noise" twin's counts against the plaintext configuration it shadows.
    #[serde(default)]
    pub twin: Option<TwinTally>,
}

/// A twin against its base (the plaintext approximation it shadows), counted as `ApproxTally`
/// counts a configuration against exact.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TwinTally {
    /// Index of the base configuration in the pass.
    pub base: usize,
    /// Images whose twin top-1 equals the base's top-1.
    pub agree_base: u64,
    /// Base vs twin top-1 correctness, image by image ("exact" = the base).
    pub paired_base: Paired,
    /// Twin vs base logits.
    pub logit_error_base: LogitError,
}

/// A configuration that is another's "+ CKKS noise" twin: its plan runs with `noise` added,
/// keyed by each image's dataset index.
#[derive(Clone, Copy, Debug)]
pub struct TwinOf<'a> {
    /// Index of the base configuration (earlier in the pass).
    pub base: usize,
    pub noise: &'a NoisePlan,
}

/// Everything counted in a pass.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Tally {
    pub images: u64,
    pub exact: Hits,
    pub exact_sites: Vec<SiteStats>,
    pub approx: Vec<ApproxTally>,
    /// Images that could not be decoded: (source, error).
    pub failures: Vec<(String, String)>,
    /// One row per image, in evaluation order, when [`PassOptions::predictions`] asks for them.
    pub predictions: Vec<Prediction>,
    pub seconds: f64,
}

impl Tally {
    fn new(graph: &Graph, configs: &[ApproxConfig], twins: &[Option<TwinOf>]) -> Tally {
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
                .enumerate()
                .map(|(k, c)| ApproxTally {
                    label: c.label.clone(),
                    alpha: c.alpha,
                    hits: Hits::default(),
                    agree: 0,
                    paired: Paired::default(),
                    logit_error: LogitError::default(),
                    sites: empty(),
                    twin: twins.get(k).copied().flatten().map(|t| TwinTally {
                        base: t.base,
                        agree_base: 0,
                        paired_base: Paired::default(),
                        logit_error_base: LogitError::default(),
                    }),
                })
                .collect(),
            failures: Vec::new(),
            predictions: Vec::new(),
            seconds: 0.0,
        }
    }

    /// A tally read back from a resume state: the same configurations and sites as this run's,
    /// with the site kinds (not written) taken from the graph.
    fn restored(
        graph: &Graph,
        configs: &[ApproxConfig],
        twins: &[Option<TwinOf>],
        mut saved: Tally,
    ) -> Result<Tally, String> {
        let fresh = Tally::new(graph, configs, twins);
        let same_sites =
            |a: &[SiteStats], b: &[SiteStats]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.name == y.name);
        let same_configs = saved.approx.len() == fresh.approx.len()
            && saved.approx.iter().zip(&fresh.approx).all(|(a, b)| {
                a.label == b.label
                    && same_sites(&a.sites, &b.sites)
                    && a.twin.as_ref().map(|t| t.base) == b.twin.as_ref().map(|t| t.base)
            });
        if !same_configs || !same_sites(&saved.exact_sites, &fresh.exact_sites) {
            return Err("the resume state's configurations or sites differ from this run's".into());
        }
        let kinds = |sites: &mut [SiteStats]| sites.iter_mut().zip(&graph.sites).for_each(|(s, g)| s.kind = g.kind);
        kinds(&mut saved.exact_sites);
        saved.approx.iter_mut().for_each(|a| kinds(&mut a.sites));
        Ok(saved)
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

/// What a pass does besides counting.
#[derive(Clone, Copy, Debug, Default)]
pub struct PassOptions<'a> {
    /// Keep one [`Prediction`] row per image.
    pub predictions: bool,
    /// Continue from this state when it exists, and save it after every batch.
    pub checkpoint: Option<&'a Checkpoint>,
    /// Stop with an error after this many batches in all, as an interruption would (tests of
    /// the resume path).
    pub stop_after_batches: Option<usize>,
    /// Per configuration (empty: none): the "+ CKKS noise" twin it is, if it is one.
    pub twins: &'a [Option<TwinOf<'a>>],
}

/// One pass: every batch through the exact network and each plan; counts accumulated.
pub fn evaluate(input: &PassInput, configs: &[ApproxConfig], plans: &[ActivationPlan]) -> Result<Tally, String> {
    evaluate_with(input, configs, plans, &PassOptions::default())
}

/// [`evaluate`] with per-image predictions and a resumable state as `options` ask. A resumed
/// pass skips the batches its state counted (batches are fixed slices of `input.indices`, so
/// the remaining ones are the same) and ends with the counts of an uninterrupted pass.
pub fn evaluate_with(
    input: &PassInput,
    configs: &[ApproxConfig],
    plans: &[ActivationPlan],
    options: &PassOptions,
) -> Result<Tally, String> {
    let graph = input.graph;
    let exact_plan = ActivationPlan::exact(graph);
    let (mut tally, mut batches_done, seconds_before) =
        match options.checkpoint.map(|c| c.load::<Tally>()).transpose()? {
            Some(Some(state)) => {
                let tally = Tally::restored(graph, configs, options.twins, state.progress)
                    .map_err(|e| format!("{}: {e}", options.checkpoint.expect("loaded").path.display()))?;
                (tally, state.batches_done, state.seconds)
            }
            _ => (Tally::new(graph, configs, options.twins), 0, 0.0),
        };
    let shape = graph.input;
    let data_shape = input.dataset.shape();
    check_twins(configs.len(), options.twins)?;
    if [shape.c, shape.h, shape.w] != data_shape {
        return Err(format!(
            "{} takes {}x{}x{} images but the dataset gives {}x{}x{}",
            graph.name, shape.c, shape.h, shape.w, data_shape[0], data_shape[1], data_shape[2]
        ));
    }
    let progress = input.progress;
    progress.start(&input.title, input.indices.len() as u64);
    let batch_size = input.batch_size.max(1);
    let skipped = (batches_done * batch_size).min(input.indices.len());
    progress.advance(skipped as u64);
    let config = LoaderConfig {
        batch_size,
        normalize: input.normalize,
        prefetch: 2,
    };
    let start = Instant::now();
    for batch in Loader::new(input.dataset.clone(), input.indices[skipped..].to_vec(), config) {
        if options.stop_after_batches.is_some_and(|stop| batches_done >= stop) {
            return Err(format!("stopped after {batches_done} batches, as asked"));
        }
        tally
            .failures
            .extend(batch.failures.iter().map(|f| (f.source.clone(), f.error.to_string())));
        progress.advance(batch.failures.len() as u64);
        if !batch.is_empty() {
            let images = batch.len() as u64;
            count_batch(input, &exact_plan, plans, batch, options, &mut tally)?;
            progress.advance(images);
        }
        batches_done += 1;
        if let Some(checkpoint) = options.checkpoint {
            checkpoint.save(batches_done, seconds_before + start.elapsed().as_secs_f64(), &tally)?;
        }
    }
    progress.finish();
    tally.seconds = seconds_before + start.elapsed().as_secs_f64();
    Ok(tally)
}

/// Twins shadow an earlier configuration of the pass.
fn check_twins(configs: usize, twins: &[Option<TwinOf>]) -> Result<(), String> {
    for (k, t) in twins.iter().enumerate() {
        if let Some(t) = t
            && (t.base >= k || k >= configs)
        {
            return Err(format!(
                "configuration {k} of {configs} is the CKKS twin of configuration {}, which does not precede it",
                t.base
            ));
        }
    }
    Ok(())
}

/// Runs one batch through the exact network and every plan and counts it.
fn count_batch(
    input: &PassInput,
    exact_plan: &ActivationPlan,
    plans: &[ActivationPlan],
    batch: crate::data::loader::LoadedBatch,
    options: &PassOptions,
    tally: &mut Tally,
) -> Result<(), String> {
    let (graph, shape) = (input.graph, input.graph.input);
    let images = Batch::new(batch.len(), Shape::new(shape.c, shape.h, shape.w), batch.data)?;
    let exact = input.backend.run(graph, &images, exact_plan)?;
    let exact_ranked = top5(&exact.logits, exact.classes);
    add_hits(&mut tally.exact, hits(&exact_ranked, &batch.labels));
    merge_sites(&mut tally.exact_sites, &exact.sites);
    // the dataset index keys each image's noise: batches, shards and reruns draw the same
    let noise_keys = batch
        .indices
        .iter()
        .map(|&i| u32::try_from(i).map_err(|_| format!("image index {i} beyond the noise generator's 2^32")))
        .collect::<Result<Vec<u32>, String>>()?;
    let mut approx_logits: Vec<Vec<f32>> = Vec::with_capacity(plans.len());
    let mut approx_ranked: Vec<Vec<Vec<usize>>> = Vec::with_capacity(plans.len());
    for (k, (approx_tally, plan)) in tally.approx.iter_mut().zip(plans).enumerate() {
        let twin = options.twins.get(k).copied().flatten();
        let approx = match twin {
            Some(t) => {
                let noisy = ActivationPlan {
                    noise: Some(NoiseRun {
                        plan: t.noise,
                        images: &noise_keys,
                    }),
                    ..plan.clone()
                };
                input.backend.run(graph, &images, &noisy)?
            }
            None => input.backend.run(graph, &images, plan)?,
        };
        let ranked = top5(&approx.logits, approx.classes);
        add_hits(&mut approx_tally.hits, hits(&ranked, &batch.labels));
        for ((a, e), &label) in ranked.iter().zip(&exact_ranked).zip(&batch.labels) {
            approx_tally.agree += (a.first() == e.first()) as u64;
            approx_tally
                .paired
                .add(e.first() == Some(&label), a.first() == Some(&label));
        }
        if let (Some(t), Some(counts)) = (twin, approx_tally.twin.as_mut()) {
            count_against_base(counts, &ranked, &approx_ranked[t.base], &batch.labels);
            let classes = approx.classes;
            for (row, base_row) in approx
                .logits
                .chunks_exact(classes)
                .zip(approx_logits[t.base].chunks_exact(classes))
            {
                _ = counts.logit_error_base.add_image(base_row, row);
            }
        }
        merge_sites(&mut approx_tally.sites, &approx.sites);
        approx_logits.push(approx.logits);
        approx_ranked.push(ranked);
    }
    // Logit errors image by image, in image order (the sums then do not depend on the batch's
    // split over threads); the rows only when asked for.
    let classes = exact.classes;
    let mut errors: Vec<LogitError> = tally.approx.iter().map(|a| a.logit_error).collect();
    for (i, exact_row) in exact.logits.chunks_exact(classes).enumerate() {
        let rows: Vec<&[f32]> = approx_logits
            .iter()
            .map(|l| &l[i * classes..(i + 1) * classes])
            .collect();
        if options.predictions {
            let image = input.dataset.describe(batch.indices[i]);
            tally.predictions.push(Prediction::of_image(
                image,
                batch.labels[i],
                exact_row,
                &rows,
                &mut errors,
            ));
        } else {
            errors
                .iter_mut()
                .zip(&rows)
                .for_each(|(e, row)| _ = e.add_image(exact_row, row));
        }
    }
    for (a, e) in tally.approx.iter_mut().zip(errors) {
        a.logit_error = e;
    }
    tally.images += images.n as u64;
    Ok(())
}

/// A twin's top-1 against its base's, image by image.
fn count_against_base(counts: &mut TwinTally, twin: &[Vec<usize>], base: &[Vec<usize>], labels: &[usize]) {
    for ((t, b), &label) in twin.iter().zip(base).zip(labels) {
        counts.agree_base += (t.first() == b.first()) as u64;
        counts
            .paired_base
            .add(b.first() == Some(&label), t.first() == Some(&label));
    }
}

fn add_hits(total: &mut Hits, h: Hits) {
    total.top1 += h.top1;
    total.top5 += h.top5;
}

fn merge_sites(total: &mut [SiteStats], batch: &[SiteStats]) {
    total.iter_mut().zip(batch).for_each(|(t, b)| t.merge(b));
}
