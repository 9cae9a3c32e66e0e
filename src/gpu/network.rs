//! Runs a network [`Graph`] on the GPU: weights uploaded once, one command buffer per batch
//! (no host round trip between layers), activation buffers allocated once per batch size and
//! reused across batches and — by liveness — across layers, every site's statistics in one
//! buffer read back with the logits.

use super::activation::{
    PolyBuffer, RANGE_STATS_STRIDE, Scheme, SiteBuffers, SiteEval, StatsSlot, decode_range_stats, encode_max_pool,
    encode_relu, range_stats_buffer_for,
};
use super::conv::{ConvBuffers, ConvShape, Epilogue, encode_conv};
use super::noise::encode_add_noise;
use super::tensor_ops::{
    Dims, affine_constants, encode_add, encode_affine, encode_avg_pool, encode_copy_channels, encode_pointwise,
    encode_shortcut_a, encode_sub,
};
use super::{Gpu, GpuError};
use crate::exec::{ActivationPlan, Backend, ExecError, RunOutput, SiteMode, SiteStats};
use crate::model::{
    Batch, Graph, NodeId, Op, Shape, SiteId, Window2d, schedule::Step, schedule::fused_schedule_keeping,
};
use crate::poly::activation::max_pool_scale;
use std::cell::RefCell;

/// The network's own graph only: its weights are on the device already.
impl Backend for GpuNetwork<'_> {
    fn run(&self, graph: &Graph, batch: &Batch, plan: &ActivationPlan) -> Result<RunOutput, ExecError> {
        if !std::ptr::eq(graph, self.graph) {
            return Err(ExecError::Input(format!(
                "this GPU network holds {}, not {}",
                self.graph.name, graph.name
            )));
        }
        GpuNetwork::run(self, batch, plan).map_err(|e| ExecError::Device(e.to_string()))
    }

    fn name(&self) -> &'static str {
        "gpu"
    }
}

/// Weights of a conv or linear node on the device (a linear layer is a 1x1 convolution of a
/// 1x1 image: `[out, in]` is already `[O, C, 1, 1]`).
struct DeviceParams {
    weight: wgpu::Buffer,
    bias: wgpu::Buffer,
}

/// Activation buffers for one batch size: a slot per stored value, shared by liveness.
struct BatchBuffers {
    batch: usize,
    slots: Vec<wgpu::Buffer>,
    /// Slot of each node's value (None: fused away or never stored).
    slot_of: Vec<Option<usize>>,
    stats: wgpu::Buffer,
}

pub struct GpuNetwork<'a> {
    gpu: &'a Gpu,
    graph: &'a Graph,
    shapes: Vec<Shape>,
    steps: Vec<Step>,
    params: Vec<Option<DeviceParams>>,
    /// Per affine node, its per-channel scales and shifts ([`affine_constants`]).
    constants: Vec<Option<wgpu::Buffer>>,
    scheme: Scheme,
    exact_poly: PolyBuffer,
    buffers: RefCell<Option<BatchBuffers>>,
}

impl<'a> GpuNetwork<'a> {
    /// Check the graph and upload its weights. `scheme` is how polynomial sites are evaluated.
    pub fn new(gpu: &'a Gpu, graph: &'a Graph, scheme: Scheme) -> Result<GpuNetwork<'a>, GpuError> {
        Self::with_unfused(gpu, graph, scheme, &[])
    }

    /// Like [`GpuNetwork::new`], with the nodes `unfused` never fused away: the nodes a CKKS
    /// noise plan adds noise to (`NoisePlan::noisy_nodes`), whose values must exist.
    pub fn with_unfused(
        gpu: &'a Gpu,
        graph: &'a Graph,
        scheme: Scheme,
        unfused: &[NodeId],
    ) -> Result<GpuNetwork<'a>, GpuError> {
        let shapes = graph.shapes().map_err(|e| GpuError::BadInput(e.to_string()))?;
        let params = graph
            .nodes
            .iter()
            .map(|node| match &node.op {
                Op::Conv2d(c) => Some(upload_params(gpu, &node.name, &c.weight.data, &c.bias)),
                Op::Linear(l) => Some(upload_params(gpu, &node.name, &l.weight.data, &l.bias)),
                _ => None,
            })
            .collect();
        let constants = graph
            .nodes
            .iter()
            .enumerate()
            .map(|(id, node)| match &node.op {
                Op::Affine(a) => {
                    let values = affine_constants(shapes[id].c, &a.scale, &a.shift);
                    Some(gpu.storage_from(&format!("{}.affine", node.name), &values))
                }
                _ => None,
            })
            .collect();
        let steps = fused_schedule_keeping(graph, unfused);
        let exact_poly = PolyBuffer::empty(gpu);
        Ok(GpuNetwork {
            gpu,
            graph,
            shapes,
            steps,
            params,
            constants,
            scheme,
            exact_poly,
            buffers: RefCell::new(None),
        })
    }

    /// Logits and per-site statistics for `batch`, evaluated as `plan` says (on the graph
    /// given to [`GpuNetwork::new`]).
    pub fn run(&self, batch: &Batch, plan: &ActivationPlan) -> Result<RunOutput, GpuError> {
        self.check(batch, plan)?;
        let polys = self.site_polys(plan);
        let mut cache = self.buffers.borrow_mut();
        if cache.as_ref().is_none_or(|b| b.batch != batch.n) {
            *cache = Some(self.allocate(batch.n));
        }
        let buffers = cache.as_ref().expect("allocated above");
        let gpu = self.gpu;
        let input_slot = buffers.slot_of[0].expect("the input is stored");
        gpu.queue
            .write_buffer(&buffers.slots[input_slot], 0, bytemuck::cast_slice(&batch.data));
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        encoder.clear_buffer(&buffers.stats, 0, None);
        self.encode_noise(&mut encoder, 0, batch.n, plan, buffers)?;
        for step in &self.steps {
            self.encode_step(&mut encoder, step, batch.n, plan, &polys, buffers)?;
            self.encode_noise(&mut encoder, step.output(), batch.n, plan, buffers)?;
        }
        gpu.submit_and_wait(encoder)?;
        let classes = self.shapes[self.graph.output].numel();
        let output_slot = buffers.slot_of[self.graph.output].expect("the output is stored");
        let logits = gpu.read_back::<f32>(&buffers.slots[output_slot], batch.n * classes)?;
        let words = gpu.read_back::<u32>(
            &buffers.stats,
            self.graph.sites.len().max(1) * RANGE_STATS_STRIDE as usize / 4,
        )?;
        let sites = self.site_stats(&words, batch.n);
        Ok(RunOutput { logits, classes, sites })
    }

    /// The noise plan's noise for `node`, added in place to its stored value.
    fn encode_noise(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        node: NodeId,
        n: usize,
        plan: &ActivationPlan,
        buffers: &BatchBuffers,
    ) -> Result<(), GpuError> {
        let Some(run) = &plan.noise else {
            return Ok(());
        };
        let scale = run.plan.nodes[node].scale;
        if scale == 0.0 {
            return Ok(());
        }
        let slot = buffers.slot_of[node].ok_or_else(|| {
            GpuError::BadInput(format!(
                "node `{}` gets CKKS noise but was fused away",
                self.graph.nodes[node].name
            ))
        })?;
        let per_image = self.shapes[node].numel();
        encode_add_noise(
            self.gpu,
            encoder,
            &buffers.slots[slot],
            per_image,
            run.plan.seed,
            node as u32,
            &run.images[..n],
            scale,
        )
    }

    fn check(&self, batch: &Batch, plan: &ActivationPlan) -> Result<(), GpuError> {
        batch.check_against(self.graph).map_err(GpuError::BadInput)?;
        if let Some(run) = &plan.noise {
            if run.plan.nodes.len() != self.graph.nodes.len() || run.images.len() != batch.n {
                return Err(GpuError::BadInput(format!(
                    "the CKKS noise plan has {} nodes and {} images for {}'s {} nodes and a batch of {}",
                    run.plan.nodes.len(),
                    run.images.len(),
                    self.graph.name,
                    self.graph.nodes.len(),
                    batch.n
                )));
            }
            let stored: Vec<bool> = {
                let mut v = vec![false; self.graph.nodes.len()];
                v[0] = true;
                self.steps.iter().for_each(|s| v[s.output()] = true);
                v
            };
            if let Some(id) = run.plan.noisy_nodes().into_iter().find(|&id| !stored[id]) {
                return Err(GpuError::BadInput(format!(
                    "node `{}` gets CKKS noise but this network fuses it away (build it with GpuNetwork::with_unfused)",
                    self.graph.nodes[id].name
                )));
            }
        }
        if batch.n == 0 {
            return Err(GpuError::BadInput(format!(
                "{}: an empty batch has nothing to run",
                self.graph.name
            )));
        }
        if plan.modes.len() != self.graph.sites.len() {
            return Err(GpuError::BadInput(format!(
                "{}: the plan has {} modes for {} activation sites",
                self.graph.name,
                plan.modes.len(),
                self.graph.sites.len()
            )));
        }
        plan.check_fits(self.graph)
            .map_err(|e| GpuError::BadInput(e.to_string()))
    }

    /// One polynomial buffer per approximate site (they are a few hundred bytes each).
    fn site_polys(&self, plan: &ActivationPlan) -> Vec<Option<PolyBuffer>> {
        plan.modes
            .iter()
            .map(|mode| match mode {
                SiteMode::Exact => None,
                SiteMode::Approx(a) => Some(PolyBuffer::new(self.gpu, a.composite, self.scheme)),
                SiteMode::Poly(p) => Some(PolyBuffer::power(self.gpu, &p.poly.coeffs)),
            })
            .collect()
    }

    /// How site `site` is evaluated; `taps` is the max-pool window's size (1 for a ReLU).
    fn site_eval(&self, plan: &ActivationPlan, site: SiteId, taps: usize) -> Result<SiteEval, GpuError> {
        match &plan.modes[site] {
            SiteMode::Exact => Ok(SiteEval::Exact),
            SiteMode::Poly(p) => Ok(SiteEval::Power {
                bound: p.bound as f32,
                scaled: p.poly.scaled,
                clamp: p.clamp,
            }),
            SiteMode::Approx(a) => {
                let pool_scale = if taps > 1 {
                    max_pool_scale(taps, a.alpha, a.bound)
                        .map_err(|e| GpuError::BadInput(format!("site `{}`: {e}", self.graph.sites[site].name)))?
                        as f32
                } else {
                    1.0
                };
                Ok(SiteEval::Approx {
                    bound: a.bound as f32,
                    pool_scale,
                    clamp: a.clamp,
                })
            }
        }
    }

    /// Slots by liveness: a value's slot returns to the free list after its last reader.
    fn allocate(&self, batch: usize) -> BatchBuffers {
        let nodes = self.graph.nodes.len();
        let mut last_read = vec![0usize; nodes];
        for (position, step) in self.steps.iter().enumerate() {
            for read in step.reads(self.graph) {
                last_read[read] = position;
            }
        }
        let mut slot_of: Vec<Option<usize>> = vec![None; nodes];
        let mut slot_sizes: Vec<usize> = Vec::new();
        let mut free: Vec<usize> = Vec::new();
        let acquire = |elements: usize, slot_sizes: &mut Vec<usize>, free: &mut Vec<usize>| {
            let best = free
                .iter()
                .enumerate()
                .filter(|(_, s)| slot_sizes[**s] >= elements)
                .min_by_key(|(_, s)| slot_sizes[**s])
                .map(|(i, _)| i);
            match best {
                Some(i) => free.swap_remove(i),
                None => {
                    slot_sizes.push(elements);
                    slot_sizes.len() - 1
                }
            }
        };
        slot_of[0] = Some(acquire(batch * self.shapes[0].numel(), &mut slot_sizes, &mut free));
        for (position, step) in self.steps.iter().enumerate() {
            let out = step.output();
            slot_of[out] = match self.graph.nodes[out].op {
                // Flatten is a view: same memory, read in the same order.
                Op::Flatten { input } => slot_of[input],
                _ => Some(acquire(batch * self.shapes[out].numel(), &mut slot_sizes, &mut free)),
            };
            for read in step.reads(self.graph) {
                let aliased_later = self.aliases_read_after(read, position, &last_read);
                if last_read[read] == position
                    && read != self.graph.output
                    && !aliased_later
                    && let Some(slot) = slot_of[read]
                    && slot_of[out] != Some(slot)
                {
                    free.push(slot);
                }
            }
        }
        let slots = slot_sizes
            .iter()
            .map(|&e| self.gpu.storage_zeroed("activation slot", (e * 4) as u64))
            .collect();
        let stats = range_stats_buffer_for(self.gpu, self.graph.sites.len());
        BatchBuffers {
            batch,
            slots,
            slot_of,
            stats,
        }
    }

    /// Whether a Flatten view of `node` is read after `position` (its memory must live on).
    fn aliases_read_after(&self, node: NodeId, position: usize, last_read: &[usize]) -> bool {
        self.graph
            .nodes
            .iter()
            .enumerate()
            .any(|(id, n)| matches!(n.op, Op::Flatten { input } if input == node) && last_read[id] > position)
    }

    fn encode_step(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        step: &Step,
        n: usize,
        plan: &ActivationPlan,
        polys: &[Option<PolyBuffer>],
        buffers: &BatchBuffers,
    ) -> Result<(), GpuError> {
        let gpu = self.gpu;
        let slot = |id: NodeId| -> Result<&wgpu::Buffer, GpuError> {
            buffers.slot_of[id].map(|s| &buffers.slots[s]).ok_or_else(|| {
                GpuError::BadInput(format!(
                    "node `{}` was not computed before use",
                    self.graph.nodes[id].name
                ))
            })
        };
        let stats_slot = |site: SiteId| StatsSlot {
            buffer: &buffers.stats,
            site,
        };
        let poly_for = |site: SiteId| polys[site].as_ref().unwrap_or(&self.exact_poly);
        let dims = |id: NodeId| {
            let s = self.shapes[id];
            Dims {
                n,
                c: s.c,
                h: s.h,
                w: s.w,
            }
        };
        match *step {
            Step::Conv {
                conv,
                residual,
                site,
                output,
            } => {
                let (input, shape) = self.conv_shape(conv, n);
                let eval = site.map(|s| self.site_eval(plan, s, 1)).transpose()?;
                let epilogue = match eval {
                    None | Some(SiteEval::Power { .. }) => Epilogue::None,
                    Some(SiteEval::Exact) => Epilogue::Relu,
                    Some(SiteEval::Approx { bound, clamp, .. }) => Epilogue::PolyRelu { bound, clamp },
                };
                // A power-basis ReLU is not fused: the conv writes a scratch buffer that a
                // standalone ReLU dispatch reads.
                let scratch = match (eval, site) {
                    (Some(SiteEval::Power { .. }), Some(_)) => {
                        Some(gpu.storage_zeroed("unfused ReLU input", (n * self.shapes[output].numel() * 4) as u64))
                    }
                    _ => None,
                };
                let params = self.params[conv].as_ref().expect("conv params uploaded");
                let residual_buffer = residual.map(slot).transpose()?;
                let unused_stats = StatsSlot {
                    buffer: &buffers.stats,
                    site: 0,
                };
                let conv_buffers = ConvBuffers {
                    input: slot(input)?,
                    weight: &params.weight,
                    bias: &params.bias,
                    residual: residual_buffer,
                    output: scratch.as_ref().map_or(slot(output)?, |b| b),
                    range_stats: site.map(stats_slot).unwrap_or(unused_stats),
                };
                let poly = site.map(poly_for).unwrap_or(&self.exact_poly);
                encode_conv(gpu, encoder, shape, epilogue, poly, &conv_buffers)?;
                match (scratch, site, eval) {
                    (Some(scratch), Some(site), Some(eval)) => {
                        let site_buffers = SiteBuffers {
                            input: &scratch,
                            output: slot(output)?,
                            range_stats: stats_slot(site),
                        };
                        let count = n * self.shapes[output].numel();
                        encode_relu(gpu, encoder, poly_for(site), eval, count, &site_buffers)
                    }
                    _ => Ok(()),
                }
            }
            Step::Node(id) => match &self.graph.nodes[id].op {
                Op::Input | Op::Conv2d(_) => unreachable!("scheduled as input / conv steps"),
                Op::Linear(_) => {
                    let (input, shape) = self.conv_shape(id, n);
                    let params = self.params[id].as_ref().expect("linear params uploaded");
                    let conv_buffers = ConvBuffers {
                        input: slot(input)?,
                        weight: &params.weight,
                        bias: &params.bias,
                        residual: None,
                        output: slot(id)?,
                        range_stats: StatsSlot {
                            buffer: &buffers.stats,
                            site: 0,
                        },
                    };
                    encode_conv(gpu, encoder, shape, Epilogue::None, &self.exact_poly, &conv_buffers)
                }
                &Op::Relu { input, site } => {
                    let eval = self.site_eval(plan, site, 1)?;
                    let site_buffers = SiteBuffers {
                        input: slot(input)?,
                        output: slot(id)?,
                        range_stats: stats_slot(site),
                    };
                    encode_relu(
                        gpu,
                        encoder,
                        poly_for(site),
                        eval,
                        n * self.shapes[id].numel(),
                        &site_buffers,
                    )
                }
                &Op::MaxPool { input, pool, site } => {
                    let eval = self.site_eval(plan, site, pool.taps())?;
                    let d = dims(input);
                    let shape = super::activation::PoolShape {
                        planes: d.n * d.c,
                        height: d.h,
                        width: d.w,
                        window: pool,
                    };
                    let site_buffers = SiteBuffers {
                        input: slot(input)?,
                        output: slot(id)?,
                        range_stats: stats_slot(site),
                    };
                    encode_max_pool(gpu, encoder, poly_for(site), eval, shape, &site_buffers)
                }
                &Op::AvgPool {
                    input,
                    pool,
                    count_include_pad,
                } => {
                    let out = self.shapes[id];
                    let (from, to) = (slot(input)?, slot(id)?);
                    encode_avg_pool(
                        gpu,
                        encoder,
                        dims(input),
                        &pool,
                        count_include_pad,
                        (out.h, out.w),
                        from,
                        to,
                    )
                }
                &Op::GlobalAvgPool { input } => {
                    let d = dims(input);
                    let whole = Window2d::new([d.h, d.w], [1, 1], [0, 0]);
                    encode_avg_pool(gpu, encoder, d, &whole, true, (1, 1), slot(input)?, slot(id)?)
                }
                &Op::Add { a, b } => {
                    encode_add(gpu, encoder, n * self.shapes[id].numel(), slot(a)?, slot(b)?, slot(id)?)
                }
                &Op::Sub { a, b } => {
                    encode_sub(gpu, encoder, n * self.shapes[id].numel(), slot(a)?, slot(b)?, slot(id)?)
                }
                Op::Affine(affine) => {
                    let constants = self.constants[id].as_ref().expect("affine constants uploaded");
                    encode_affine(gpu, encoder, dims(id), constants, slot(affine.input)?, slot(id)?)
                }
                &Op::Pointwise { input, func } => {
                    let count = n * self.shapes[id].numel();
                    encode_pointwise(gpu, encoder, count, func, slot(input)?, slot(id)?)
                }
                &Op::ShortcutA {
                    input,
                    out_channels,
                    stride,
                } => encode_shortcut_a(gpu, encoder, dims(input), out_channels, stride, slot(input)?, slot(id)?),
                Op::Flatten { .. } => Ok(()), // a view of its input's buffer
                Op::Concat { inputs } => {
                    let out_channels = self.shapes[id].c;
                    let mut offset = 0;
                    for &input in inputs {
                        let from = dims(input);
                        encode_copy_channels(gpu, encoder, from, (offset, out_channels), slot(input)?, slot(id)?)?;
                        offset += from.c;
                    }
                    Ok(())
                }
            },
        }
    }

    /// The convolution geometry of a conv or linear node (linear: 1x1 kernel on a 1x1 image).
    fn conv_shape(&self, id: NodeId, batch: usize) -> (NodeId, ConvShape) {
        match &self.graph.nodes[id].op {
            Op::Conv2d(c) => {
                let s = self.shapes[c.input];
                let shape = ConvShape {
                    batch,
                    in_c: s.c,
                    in_h: s.h,
                    in_w: s.w,
                    out_c: c.out_channels(),
                    groups: c.groups,
                    window: c.window,
                };
                (c.input, shape)
            }
            Op::Linear(l) => {
                let (in_f, out_f) = (l.weight.shape[1], l.weight.shape[0]);
                let shape = ConvShape::dense(batch, in_f, (1, 1), out_f, [1, 1], 1, [0, 0]);
                (l.input, shape)
            }
            other => unreachable!("conv_shape of {other:?}"),
        }
    }

    fn site_stats(&self, words: &[u32], batch: usize) -> Vec<SiteStats> {
        self.graph
            .sites
            .iter()
            .enumerate()
            .map(|(i, site)| {
                let r = decode_range_stats(words, i);
                let input = match self.graph.nodes[site.node].op {
                    Op::Relu { input, .. } | Op::MaxPool { input, .. } => input,
                    _ => site.node,
                };
                let mut s = SiteStats::new(&site.name, site.kind);
                s.count = (batch * self.shapes[input].numel()) as u64;
                s.max_abs = r.max_abs;
                s.out_of_range = r.out_of_range;
                s.non_finite = r.non_finite;
                s.log2_hist = r.log2_hist;
                s
            })
            .collect()
    }
}

fn upload_params(gpu: &Gpu, name: &str, weight: &[f32], bias: &[f32]) -> DeviceParams {
    DeviceParams {
        weight: gpu.storage_from(&format!("{name}.weight"), weight),
        bias: gpu.storage_from(&format!("{name}.bias"), bias),
    }
}
