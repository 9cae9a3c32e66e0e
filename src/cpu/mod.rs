//! CPU backend: runs a network [`Graph`] on a batch with rayon; the reference for the GPU
//! executor and a fallback without one.
//!
//! ```text
//! let plan = ActivationPlan::exact(&graph);    // exec::ActivationPlan, or ::uniform(&graph, SiteMode::approx(..))
//! let out = cpu::run(&graph, &batch, &plan)?; // logits [n, classes] + per-site stats
//! ```
//!
//! Parallelism: a batch of at least twice as many images as threads is cut into chunks that run
//! the whole graph independently (single-threaded GEMMs, no synchronisation per layer); a
//! smaller batch runs chunk after chunk, each one's GEMMs and activations using every thread.
//! Chunks are sized so that a chunk's largest value stays around 32 MB.
//!
//! Fusion follows [`crate::model::schedule`]: bias and residual are added to the GEMM's
//! product, and a fused ReLU site is applied to each group of images' output while it is
//! still in cache. Results are bit-identical for any thread count and chunking: each output of
//! a GEMM is one FMA chain in a fixed order ([`gemm`]), and every other op is per value or per
//! image.
//!
//! Statistics: every site records what it saw ([`SiteStats`]) in the same pass.

pub mod activation;
mod buffers;
mod conv;
pub mod gemm;
mod ops;
pub mod sign_f32;

use crate::exec::{ActivationPlan, Backend, ExecError, RunOutput, SiteMode, SiteStats, check_bound};
use crate::he::noise_rng::{NoiseKey, add_noise};
use crate::model::schedule::{Step, fused_schedule_keeping, reader_counts};
use crate::model::{Batch, Graph, NodeId, Op, Shape, SiteId};
use activation::{MaxPoolSite, SitePoly, relu_in_place};
use conv::{ConvGeometry, ConvWeights, conv_group};
use gemm::{MatRef, Threads, matmul};
use rayon::prelude::*;
use std::borrow::Cow;

/// The CPU backend for [`crate::exec::Backend`] callers (the free functions serve tests and
/// benchmarks that want the CPU explicitly): made for one graph, whose convolution weights it
/// packs for the GEMM once instead of on every run. The borrow keeps the graph from changing
/// while the packed copy lives; a run on another graph packs its own.
pub struct CpuBackend<'g> {
    graph: &'g Graph,
    weights: Option<Vec<Option<ConvWeights>>>,
}

impl<'g> CpuBackend<'g> {
    pub fn new(graph: &'g Graph) -> CpuBackend<'g> {
        // A graph whose shapes do not check packs nothing: its runs report the error.
        let weights = graph.shapes().ok().map(|shapes| pack_weights(graph, &shapes));
        CpuBackend { graph, weights }
    }
}

impl Backend for CpuBackend<'_> {
    fn run(&self, graph: &Graph, batch: &Batch, plan: &ActivationPlan) -> Result<RunOutput, ExecError> {
        let weights = self.weights.as_deref().filter(|_| std::ptr::eq(graph, self.graph));
        Ok(run_with(graph, batch, plan, &[], weights)?.0)
    }

    fn name(&self) -> &'static str {
        "cpu"
    }
}

/// Runs `graph` on `batch` with the activation `plan`.
pub fn run(graph: &Graph, batch: &Batch, plan: &ActivationPlan) -> Result<RunOutput, ExecError> {
    Ok(run_keeping(graph, batch, plan, &[])?.0)
}

/// Like [`run`], also returning the values of the nodes `keep`, in that order (NCHW, the whole
/// batch each): to compare another executor layer by layer. Kept nodes are never
/// fused away, so a kept conv is its output before the ReLU that follows it.
pub fn run_keeping(
    graph: &Graph,
    batch: &Batch,
    plan: &ActivationPlan,
    keep: &[NodeId],
) -> Result<(RunOutput, Vec<Vec<f32>>), ExecError> {
    run_with(graph, batch, plan, keep, None)
}

/// Every conv node's weights packed for the GEMM (None for other nodes).
fn pack_weights(graph: &Graph, shapes: &[Shape]) -> Vec<Option<ConvWeights>> {
    graph
        .nodes
        .par_iter()
        .enumerate()
        .map(|(id, node)| match &node.op {
            Op::Conv2d(c) => ConvWeights::new(c, &ConvGeometry::of(c, shapes[c.input], shapes[id])),
            _ => None,
        })
        .collect()
}

/// [`run_keeping`] with the graph's weights already packed (by [`pack_weights`]) or not.
fn run_with(
    graph: &Graph,
    batch: &Batch,
    plan: &ActivationPlan,
    keep: &[NodeId],
    weights: Option<&[Option<ConvWeights>]>,
) -> Result<(RunOutput, Vec<Vec<f32>>), ExecError> {
    if let Some(bad) = keep.iter().find(|&&id| id >= graph.nodes.len()) {
        return Err(ExecError::Input(format!(
            "cannot keep node {bad}: {} has {} nodes",
            graph.name,
            graph.nodes.len()
        )));
    }
    let prepared = Prepared::new(graph, plan, keep, weights)?;
    batch.check_against(graph).map_err(ExecError::Input)?;
    if let Some(noise) = &plan.noise
        && noise.images.len() != batch.n
    {
        return Err(ExecError::Input(format!(
            "the CKKS noise run names {} images for a batch of {}",
            noise.images.len(),
            batch.n
        )));
    }
    let classes = prepared.shapes[graph.output].numel();
    let per_image = graph.input.numel();
    let (chunk, threads) = prepared.chunking(batch.n);
    let run_chunk =
        |(k, images): (usize, &[f32])| prepared.run_chunk(images, images.len() / per_image, k * chunk, threads);
    let mut results: Vec<ChunkResult> = match threads {
        Threads::One => batch
            .data
            .par_chunks(chunk * per_image)
            .enumerate()
            .map(run_chunk)
            .collect(),
        Threads::All => batch
            .data
            .chunks(chunk * per_image)
            .enumerate()
            .map(run_chunk)
            .collect(),
    };
    let mut sites = prepared.empty_stats();
    if let [only] = &mut results[..] {
        // one chunk: its logits are the batch's (no copy)
        sites.iter_mut().zip(&only.stats).for_each(|(a, b)| a.merge(b));
        let (logits, kept) = (std::mem::take(&mut only.logits), std::mem::take(&mut only.kept));
        return Ok((RunOutput { logits, classes, sites }, kept));
    }
    let mut logits = Vec::with_capacity(batch.n * classes);
    let mut kept: Vec<Vec<f32>> = vec![Vec::new(); keep.len()];
    for chunk in results {
        logits.extend(chunk.logits);
        sites.iter_mut().zip(&chunk.stats).for_each(|(a, b)| a.merge(b));
        kept.iter_mut().zip(chunk.kept).for_each(|(all, part)| all.extend(part));
    }
    Ok((RunOutput { logits, classes, sites }, kept))
}

/// A node's value over a chunk: the batch's images themselves, or computed.
type Value<'b> = Cow<'b, [f32]>;

/// What one chunk of images produced.
struct ChunkResult {
    logits: Vec<f32>,
    stats: Vec<SiteStats>,
    kept: Vec<Vec<f32>>,
}

/// A graph checked against a plan, with its fused schedule.
struct Prepared<'a> {
    graph: &'a Graph,
    plan: &'a ActivationPlan<'a>,
    shapes: Vec<Shape>,
    steps: Vec<Step>,
    /// Per node, how many reads of its value are outstanding at the start; the output and kept
    /// nodes count one extra read that never happens, so they are never freed nor fused away.
    readers: Vec<usize>,
    keep: &'a [NodeId],
    /// Per max-pool site, its prepared pooling (None for ReLU sites).
    pools: Vec<Option<MaxPoolSite<'a>>>,
    /// Per approximate site, its polynomial ready for fast evaluation.
    signs: Vec<Option<SitePoly>>,
    /// Per node, a convolution's weights packed for the GEMM (None for other nodes and
    /// depthwise convolutions): the backend's, or packed for this run.
    weights: Cow<'a, [Option<ConvWeights>]>,
}

impl<'a> Prepared<'a> {
    fn new(
        graph: &'a Graph,
        plan: &'a ActivationPlan<'a>,
        keep: &'a [NodeId],
        weights: Option<&'a [Option<ConvWeights>]>,
    ) -> Result<Prepared<'a>, ExecError> {
        let shapes = graph.shapes()?;
        if plan.modes.len() != graph.sites.len() {
            return Err(ExecError::Site {
                site: graph.name.clone(),
                detail: format!(
                    "the plan has {} modes for {} sites",
                    plan.modes.len(),
                    graph.sites.len()
                ),
            });
        }
        plan.check_fits(graph).map_err(ExecError::Plan)?;
        let pools = graph
            .sites
            .iter()
            .zip(&plan.modes)
            .map(|(site, mode)| prepare_site(graph, &shapes, site.node, mode))
            .collect::<Result<_, _>>()?;
        let signs = plan
            .modes
            .iter()
            .map(|mode| match mode {
                SiteMode::Exact | SiteMode::Poly(_) => None,
                SiteMode::Approx(a) => Some(SitePoly::new(a)),
            })
            .collect();
        if let Some(noise) = &plan.noise
            && noise.plan.nodes.len() != graph.nodes.len()
        {
            return Err(ExecError::Input(format!(
                "the CKKS noise plan has {} nodes for {}'s {}",
                noise.plan.nodes.len(),
                graph.name,
                graph.nodes.len()
            )));
        }
        let readers = reader_counts(graph, keep);
        // noisy nodes are never fused away: their noise lands before their consumers read them
        let mut unfused = keep.to_vec();
        unfused.extend(plan.noise.iter().flat_map(|n| n.plan.noisy_nodes()));
        let steps = fused_schedule_keeping(graph, &unfused);
        let weights = match weights {
            Some(w) => Cow::Borrowed(w),
            None => Cow::Owned(pack_weights(graph, &shapes)),
        };
        Ok(Prepared {
            graph,
            plan,
            shapes,
            steps,
            readers,
            keep,
            pools,
            signs,
            weights,
        })
    }

    /// Images per chunk, and whether chunks run in parallel (each single-threaded) or one after
    /// the other (each using every thread). Parallel chunks need enough images to keep every
    /// thread busy; every chunk is small enough that its largest value stays around 32 MB.
    fn chunking(&self, n: usize) -> (usize, Threads) {
        let threads = rayon::current_num_threads();
        let largest = self.shapes.iter().map(Shape::numel).max().unwrap_or(1);
        let by_memory = ((8 << 20) / largest).clamp(1, 32);
        if threads > 1 && n >= 2 * threads {
            (n.div_ceil(4 * threads).clamp(1, by_memory), Threads::One)
        } else {
            (by_memory, Threads::All)
        }
    }

    fn empty_stats(&self) -> Vec<SiteStats> {
        self.graph
            .sites
            .iter()
            .map(|s| SiteStats::new(&s.name, s.kind))
            .collect()
    }

    /// Runs the whole graph on `n` images, the batch's images `first..first + n`; returns their
    /// logits and the sites' statistics.
    fn run_chunk(&self, input: &[f32], n: usize, first: usize, threads: Threads) -> ChunkResult {
        let mut values: Vec<Option<Value>> = vec![None; self.graph.nodes.len()];
        let mut remaining = self.readers.clone();
        let mut stats = self.empty_stats();
        // The batch's images are read in place unless noise lands on them (or an in-place op
        // takes them, which copies).
        values[0] = Some(match self.noise_scale(0) {
            Some(_) => {
                let mut input = buffers::copy_of(input);
                self.add_noise(0, &mut input, first);
                Cow::Owned(input)
            }
            None => Cow::Borrowed(input),
        });
        for step in &self.steps {
            let mut out = self.run_step(step, &mut values, &remaining, n, &mut stats, threads);
            self.add_noise(step.output(), &mut out, first);
            for read in step.reads(self.graph) {
                remaining[read] -= 1;
                if remaining[read] == 0
                    && let Some(Cow::Owned(buf)) = values[read].take()
                {
                    buffers::recycle(buf);
                }
            }
            values[step.output()] = Some(Cow::Owned(out));
        }
        let kept = self
            .keep
            .iter()
            .map(|&id| values[id].as_deref().expect("kept values are computed").to_vec())
            .collect();
        let mut logits = values[self.graph.output]
            .take()
            .expect("the output node was computed")
            .into_owned();
        if logits.capacity() > 2 * logits.len() {
            // a recycled buffer much larger than the logits stays here for the next run
            let exact = logits.clone();
            buffers::recycle(std::mem::replace(&mut logits, exact));
        }
        ChunkResult { logits, stats, kept }
    }

    /// The noise plan's scale for `node`, if noise lands on it.
    fn noise_scale(&self, node: NodeId) -> Option<f32> {
        let scale = self.plan.noise.as_ref()?.plan.nodes[node].scale;
        (scale != 0.0 && self.shapes[node].numel() > 0).then_some(scale)
    }

    /// Adds the noise plan's noise for `node` to its value over the chunk's images.
    fn add_noise(&self, node: NodeId, values: &mut [f32], first: usize) {
        let (Some(run), Some(scale)) = (&self.plan.noise, self.noise_scale(node)) else {
            return;
        };
        let per_image = self.shapes[node].numel();
        for (j, image) in values.chunks_mut(per_image).enumerate() {
            let key = NoiseKey {
                seed: run.plan.seed,
                point: node as u32,
                image: run.images[first + j],
                element: 0,
            };
            add_noise(image, key, scale);
        }
    }

    fn run_step(
        &self,
        step: &Step,
        values: &mut [Option<Value>],
        remaining: &[usize],
        n: usize,
        stats: &mut [SiteStats],
        threads: Threads,
    ) -> Vec<f32> {
        let id = match *step {
            Step::Conv {
                conv,
                residual,
                site,
                output,
            } => {
                let v = |id: NodeId| values[id].as_deref().expect("inputs are computed before use");
                let residual = residual.map(v);
                return self.conv(conv, v, residual, site, output, n, stats, threads);
            }
            Step::Node(id) => id,
        };
        let shape = self.shapes[id];
        // The input buffer itself when this is its last reader (in-place ops), else a copy.
        let owned = |input: NodeId, values: &mut [Option<Value>]| -> Vec<f32> {
            match values[input].take().expect("inputs are computed before use") {
                Cow::Owned(v) if remaining[input] == 1 => v,
                other => {
                    let copy = buffers::copy_of(&other);
                    values[input] = Some(other);
                    copy
                }
            }
        };
        match &self.graph.nodes[id].op {
            Op::Input => unreachable!("the input is not a step"),
            Op::Conv2d(_) => {
                let v = |id: NodeId| values[id].as_deref().expect("inputs are computed before use");
                self.conv(id, v, None, None, id, n, stats, threads)
            }
            Op::Relu { input, site } => {
                let mut x = owned(*input, values);
                self.apply_relu(&mut x, *site, &mut stats[*site], threads);
                x
            }
            Op::Add { a, b } | Op::Sub { a, b } => {
                let mut x = owned(*a, values);
                // `a` is only taken when this is its last reader, so `b` (even if `a == b`) is still there.
                let y = values[*b].as_deref().expect("inputs are computed before use");
                if matches!(self.graph.nodes[id].op, Op::Add { .. }) {
                    x.iter_mut().zip(y).for_each(|(x, y)| *x += y);
                } else {
                    x.iter_mut().zip(y).for_each(|(x, y)| *x -= y);
                }
                x
            }
            Op::Affine(affine) => {
                let mut x = owned(affine.input, values);
                ops::affine_in_place(&mut x, shape, affine);
                x
            }
            Op::Pointwise { input, func } => {
                let mut x = owned(*input, values);
                x.iter_mut().for_each(|v| *v = ops::pointwise(func, *v));
                x
            }
            Op::Flatten { input } => owned(*input, values),
            Op::Concat { inputs } => {
                let parts: Vec<(&[f32], usize)> = inputs
                    .iter()
                    .map(|&i| {
                        let v = values[i].as_deref().expect("inputs are computed before use");
                        (v, self.shapes[i].numel())
                    })
                    .collect();
                ops::concat_channels(&parts, n)
            }
            Op::Linear(lin) => {
                let x = values[lin.input].as_deref().expect("inputs are computed before use");
                let (in_f, out_f) = (lin.weight.shape[1], lin.weight.shape[0]);
                let mut out: Vec<f32> = (0..n).flat_map(|_| lin.bias.iter().copied()).collect();
                let weight_t = MatRef::transposed(&lin.weight.data, in_f, out_f);
                matmul(MatRef::row_major(x, n, in_f), weight_t, &mut out, true, threads);
                out
            }
            Op::MaxPool { input, site, .. } => {
                let pool = self.pools[*site].as_ref().expect("max-pool sites are prepared");
                let x = values[*input].as_deref().expect("inputs are computed before use");
                let (site_stats, out) = per_image(
                    x,
                    self.shapes[*input],
                    shape,
                    n,
                    threads,
                    &stats[*site],
                    |img, out, st| pool.run(img, out, st),
                );
                stats[*site].merge(&site_stats);
                out
            }
            Op::AvgPool {
                input,
                pool,
                count_include_pad,
            } => {
                let x = values[*input].as_deref().expect("inputs are computed before use");
                let from = self.shapes[*input];
                map_images(x, from, shape, n, |img, out| {
                    ops::avg_pool(img, from, shape, pool, *count_include_pad, out)
                })
            }
            Op::GlobalAvgPool { input } => {
                let x = values[*input].as_deref().expect("inputs are computed before use");
                let from = self.shapes[*input];
                map_images(x, from, shape, n, |img, out| ops::global_avg_pool(img, from, out))
            }
            Op::ShortcutA { input, stride, .. } => {
                let x = values[*input].as_deref().expect("inputs are computed before use");
                let from = self.shapes[*input];
                map_images(x, from, shape, n, |img, out| {
                    ops::shortcut_a(img, from, shape, *stride, out)
                })
            }
        }
    }

    /// ReLU site over a buffer: in parallel pieces (merged statistics) when threads are free.
    fn apply_relu(&self, values: &mut [f32], site: SiteId, stats: &mut SiteStats, threads: Threads) {
        const PIECE: usize = 1 << 14;
        let (mode, sign) = (&self.plan.modes[site], self.signs[site].as_ref());
        if threads == Threads::One || values.len() <= PIECE {
            return relu_in_place(values, mode, sign, stats);
        }
        let pieces: Vec<SiteStats> = values
            .par_chunks_mut(PIECE)
            .map(|piece| {
                let mut local = SiteStats::new(&stats.name, stats.kind);
                relu_in_place(piece, mode, sign, &mut local);
                local
            })
            .collect();
        pieces.iter().for_each(|p| stats.merge(p));
    }

    /// Conv node `conv` (+ residual, + ReLU site) over `n` images; the result is node `output`'s.
    #[allow(clippy::too_many_arguments)]
    fn conv<'v>(
        &self,
        conv: NodeId,
        value: impl Fn(NodeId) -> &'v [f32],
        residual: Option<&[f32]>,
        site: Option<SiteId>,
        output: NodeId,
        n: usize,
        stats: &mut [SiteStats],
        threads: Threads,
    ) -> Vec<f32> {
        let Op::Conv2d(c) = &self.graph.nodes[conv].op else {
            unreachable!("conv step on a conv")
        };
        let (from, to) = (self.shapes[c.input], self.shapes[output]);
        let g = ConvGeometry::of(c, from, to);
        let x = value(c.input);
        let mut out = buffers::zeroed(n * to.numel());
        let group = g.images_per_gemm(n);
        // Each group's output gets its activation while still in cache.
        for (i, y) in out.chunks_mut(group * to.numel()).enumerate() {
            let images = i * group..(i * group + y.len() / to.numel());
            let r = residual.map(|r| &r[images.start * to.numel()..images.end * to.numel()]);
            let x = &x[images.start * from.numel()..images.end * from.numel()];
            conv_group(c, self.weights[conv].as_ref(), &g, x, r, y, threads);
            if let Some(s) = site {
                self.apply_relu(y, s, &mut stats[s], threads);
            }
        }
        out
    }
}

/// Checks one site's mode and prepares max-pooling geometry (None for ReLU sites).
fn prepare_site<'a>(
    graph: &Graph,
    shapes: &[Shape],
    node: NodeId,
    mode: &'a SiteMode<'a>,
) -> Result<Option<MaxPoolSite<'a>>, ExecError> {
    let name = &graph.nodes[node].name;
    let bad = |detail: String| ExecError::Site {
        site: name.clone(),
        detail,
    };
    if let Some(bound) = mode.bound() {
        check_bound(bound).map_err(bad)?;
    }
    match &graph.nodes[node].op {
        Op::MaxPool { input, pool, .. } => MaxPoolSite::new(*pool, shapes[*input], shapes[node], mode)
            .map(Some)
            .map_err(bad),
        _ => Ok(None),
    }
}

/// Applies `f(image, out)` to each of `n` images.
fn map_images(x: &[f32], from: Shape, to: Shape, n: usize, f: impl Fn(&[f32], &mut [f32])) -> Vec<f32> {
    let mut out = buffers::zeroed(n * to.numel());
    for (img, y) in x.chunks_exact(from.numel()).zip(out.chunks_exact_mut(to.numel())) {
        f(img, y);
    }
    out
}

/// Applies a statistics-gathering `f(image, out, stats)` to each image, in parallel when allowed.
fn per_image(
    x: &[f32],
    from: Shape,
    to: Shape,
    n: usize,
    threads: Threads,
    template: &SiteStats,
    f: impl Fn(&[f32], &mut [f32], &mut SiteStats) + Sync,
) -> (SiteStats, Vec<f32>) {
    let mut out = buffers::zeroed(n * to.numel());
    let fresh = || SiteStats::new(&template.name, template.kind);
    let pairs = x
        .par_chunks_exact(from.numel())
        .zip(out.par_chunks_exact_mut(to.numel()));
    let stats = match threads {
        Threads::All => pairs
            .map(|(img, y)| {
                let mut s = fresh();
                f(img, y, &mut s);
                s
            })
            .reduce(fresh, |mut a, b| {
                a.merge(&b);
                a
            }),
        Threads::One => {
            let mut s = fresh();
            for (img, y) in x.chunks_exact(from.numel()).zip(out.chunks_exact_mut(to.numel())) {
                f(img, y, &mut s);
            }
            s
        }
    };
    (stats, out)
}
