//! GPU access in one place: adapter selection, buffer upload/download, one pipeline cache and
//! dispatch. Everything else in polycnn talks to the GPU through `Gpu`.

pub mod activation;
pub mod conv;
pub mod network;
pub mod noise;
pub mod tensor_ops;

use conv::{ConvShape, TileConfig};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug)]
pub enum GpuError {
    NoAdapter(String),
    Device(String),
    Shader { name: String, message: String },
    Readback(String),
    BadInput(String),
}

impl fmt::Display for GpuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GpuError::NoAdapter(why) => write!(
                f,
                "no GPU adapter found ({why}). On Debian/Ubuntu install the software Vulkan driver with \
                 `apt-get install -y mesa-vulkan-drivers`, or use --backend cpu"
            ),
            GpuError::Device(why) => write!(f, "could not open the GPU device: {why}"),
            GpuError::Shader { name, message } => write!(f, "shader '{name}' failed to compile: {message}"),
            GpuError::Readback(why) => write!(f, "reading results back from the GPU failed: {why}"),
            GpuError::BadInput(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for GpuError {}

/// How the convolution's tile configuration is chosen per shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TilePolicy {
    /// [`TileConfig::for_shape`]'s padding rule (tuned on lavapipe).
    Rule,
    /// Every candidate timed on this adapter, once per shape, the fastest kept for the run.
    Timed,
}

impl TilePolicy {
    /// `POLYCNN_TILES=rule|time`, else timed on a real GPU and the rule on a software adapter
    /// (where timing ResNet-152's shapes would take a minute).
    fn for_adapter(info: &wgpu::AdapterInfo) -> Result<TilePolicy, GpuError> {
        match std::env::var("POLYCNN_TILES").ok().as_deref() {
            Some("rule") => Ok(TilePolicy::Rule),
            Some("time") => Ok(TilePolicy::Timed),
            Some(other) => Err(GpuError::BadInput(format!(
                "POLYCNN_TILES='{other}': expected rule or time"
            ))),
            None if info.device_type == wgpu::DeviceType::Cpu => Ok(TilePolicy::Rule),
            None => Ok(TilePolicy::Timed),
        }
    }
}

/// Buffers whose contents never change once created, shared by content: a network's per-site
/// parameters and polynomial coefficients are uploaded once per run, not per batch.
#[derive(Default)]
struct ConstantBuffers {
    by_content: HashMap<(wgpu::BufferUsages, Vec<u8>), wgpu::Buffer>,
    /// Buffers created so far (a run that reuses its constants adds none).
    created: usize,
}

/// Entries kept before the constant cache starts over (a bound search makes new parameters
/// each round; buffers still bound by recorded work stay alive through wgpu's references).
const MAX_CONSTANT_BUFFERS: usize = 1 << 14;

/// An open device with its queue and compiled pipelines.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pipelines: Mutex<HashMap<String, Arc<wgpu::ComputePipeline>>>,
    placeholder: std::sync::OnceLock<wgpu::Buffer>,
    constants: Mutex<ConstantBuffers>,
    tile_policy: Mutex<TilePolicy>,
    /// The configuration chosen per convolution shape (timed or by rule), for the run.
    tile_choices: Mutex<HashMap<ConvShape, TileConfig>>,
    /// Candidate timings made (each times every configuration of one shape).
    tile_timings: AtomicUsize,
}

impl Gpu {
    /// Open the best adapter: a real GPU before an integrated one before a software one. The
    /// environment variable POLYCNN_ADAPTER=<substring> picks one by name instead.
    pub fn new() -> Result<Gpu, GpuError> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        // Compute needs no GL/EGL: probing it only prints display errors on headless machines.
        // WGPU_BACKEND still overrides this.
        desc.backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::PRIMARY);
        let instance = wgpu::Instance::new(desc);
        let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
        let wanted = std::env::var("POLYCNN_ADAPTER").ok();
        let adapter = choose_adapter(adapters, wanted.as_deref())?;
        let info = adapter.get_info();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("polycnn"),
            required_features: wgpu::Features::empty(),
            // Ask for what the adapter offers: large activation buffers need big bindings.
            required_limits: adapter.limits(),
            ..Default::default()
        }))
        .map_err(|e| GpuError::Device(format!("{} ({:?}): {e}", info.name, info.backend)))?;
        let tile_policy = TilePolicy::for_adapter(&info)?;
        Ok(Gpu {
            device,
            queue,
            info,
            pipelines: Mutex::new(HashMap::new()),
            placeholder: Default::default(),
            constants: Default::default(),
            tile_policy: Mutex::new(tile_policy),
            tile_choices: Default::default(),
            tile_timings: AtomicUsize::new(0),
        })
    }

    pub fn tile_policy(&self) -> TilePolicy {
        *self.tile_policy.lock().expect("tile policy")
    }

    /// Switch how tiles are chosen; forgets the choices made so far.
    pub fn set_tile_policy(&self, policy: TilePolicy) {
        *self.tile_policy.lock().expect("tile policy") = policy;
        self.tile_choices.lock().expect("tile choices").clear();
    }

    /// The tile configuration of `shape`: the cached choice, else made by `choose` and cached.
    pub fn tile_choice(
        &self,
        shape: ConvShape,
        choose: impl FnOnce(TilePolicy) -> Result<TileConfig, GpuError>,
    ) -> Result<TileConfig, GpuError> {
        if let Some(&t) = self.tile_choices.lock().expect("tile choices").get(&shape) {
            return Ok(t);
        }
        let policy = self.tile_policy();
        let tiles = choose(policy)?;
        if policy == TilePolicy::Timed {
            self.tile_timings.fetch_add(1, Ordering::Relaxed);
        }
        self.tile_choices.lock().expect("tile choices").insert(shape, tiles);
        Ok(tiles)
    }

    /// The choices made so far, per shape.
    pub fn tile_choices(&self) -> Vec<(ConvShape, TileConfig)> {
        let map = self.tile_choices.lock().expect("tile choices");
        map.iter().map(|(s, t)| (*s, *t)).collect()
    }

    /// How many shapes had their candidates timed.
    pub fn tile_timings(&self) -> usize {
        self.tile_timings.load(Ordering::Relaxed)
    }

    /// How many constant buffers (parameters, coefficients) were created so far.
    pub fn constant_uploads(&self) -> usize {
        self.constants.lock().expect("constant buffers").created
    }

    /// A buffer holding `bytes` that nobody writes afterwards: the existing one with the same
    /// contents and usage, or a new one.
    fn constant(&self, label: &str, bytes: &[u8], usage: wgpu::BufferUsages) -> wgpu::Buffer {
        use wgpu::util::DeviceExt;
        let mut cache = self.constants.lock().expect("constant buffers");
        let key = (usage, bytes.to_vec());
        if let Some(b) = cache.by_content.get(&key) {
            return b.clone();
        }
        if cache.by_content.len() >= MAX_CONSTANT_BUFFERS {
            cache.by_content.clear();
        }
        let buffer = self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytes,
            usage,
        });
        cache.created += 1;
        cache.by_content.insert(key, buffer.clone());
        buffer
    }

    /// A read-only storage buffer of constants (polynomial coefficients), shared by content.
    pub fn constant_storage<T: bytemuck::Pod>(&self, label: &str, data: &[T]) -> wgpu::Buffer {
        // wgpu rejects zero-sized bindings; keep at least one element.
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let bytes = if bytes.is_empty() { &[0u8; 4][..] } else { bytes };
        self.constant(label, bytes, wgpu::BufferUsages::STORAGE)
    }

    /// "name (backend, type)" for reports.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?})",
            self.info.name, self.info.backend, self.info.device_type
        )
    }

    pub fn storage_from<T: bytemuck::Pod>(&self, label: &str, data: &[T]) -> wgpu::Buffer {
        use wgpu::util::DeviceExt;
        // wgpu rejects zero-sized bindings; keep at least one element.
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let padded;
        let contents = if bytes.is_empty() {
            padded = [0u8; 4];
            &padded[..]
        } else {
            bytes
        };
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        })
    }

    /// A small storage buffer to bind where a kernel's optional input is unused (wgpu needs
    /// every binding filled, and one buffer may not be bound both read-only and writable).
    pub fn placeholder(&self) -> &wgpu::Buffer {
        self.placeholder
            .get_or_init(|| self.storage_zeroed("unused binding", 16))
    }

    pub fn storage_zeroed(&self, label: &str, bytes: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(4),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// A dispatch's parameters: shared by content, so a network's are uploaded on its first
    /// batch and reused by every later one.
    pub fn uniform_from<T: bytemuck::Pod>(&self, label: &str, value: &T) -> wgpu::Buffer {
        self.constant(label, bytemuck::bytes_of(value), wgpu::BufferUsages::UNIFORM)
    }

    /// Copy `count` elements of a storage buffer back to the host (blocking).
    pub fn read_back<T: bytemuck::Pod>(&self, buffer: &wgpu::Buffer, count: usize) -> Result<Vec<T>, GpuError> {
        let bytes = (count * std::mem::size_of::<T>()) as u64;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, bytes.max(4));
        self.queue.submit([encoder.finish()]);
        let slice = staging.slice(..);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Readback(e.to_string()))?;
        rx.recv()
            .map_err(|e| GpuError::Readback(e.to_string()))?
            .map_err(|e| GpuError::Readback(e.to_string()))?;
        let view = slice
            .get_mapped_range()
            .map_err(|e| GpuError::Readback(format!("{e:?}")))?;
        let data = bytemuck::cast_slice::<u8, T>(&view[..bytes as usize]).to_vec();
        drop(view);
        staging.unmap();
        Ok(data)
    }

    /// A compute pipeline from the cache, compiling `source()` on first use. The bind group
    /// layout is derived from the shader, so a kernel's bindings are declared in one place; an
    /// entry point must therefore use every binding the host passes (a phony `_ = &x;` where it
    /// otherwise would not).
    pub fn pipeline(
        &self,
        name: &str,
        entry_point: &str,
        source: impl FnOnce() -> String,
    ) -> Result<Arc<wgpu::ComputePipeline>, GpuError> {
        let key = format!("{name}::{entry_point}");
        if let Some(p) = self.pipelines.lock().expect("pipeline cache").get(&key) {
            return Ok(p.clone());
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(name),
            source: wgpu::ShaderSource::Wgsl(source().into()),
        });
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&key),
            layout: None,
            module: &module,
            entry_point: Some(entry_point),
            compilation_options: Default::default(),
            cache: None,
        });
        if let Some(err) = pollster::block_on(scope.pop()) {
            return Err(GpuError::Shader {
                name: key,
                message: err.to_string(),
            });
        }
        let pipeline = Arc::new(pipeline);
        self.pipelines
            .lock()
            .expect("pipeline cache")
            .insert(key, pipeline.clone());
        Ok(pipeline)
    }

    /// Record one dispatch with `bindings` at bindings 0, 1, 2, … of group 0.
    pub fn encode_dispatch(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        pipeline: &wgpu::ComputePipeline,
        bindings: &[wgpu::BindingResource],
        workgroups: (u32, u32, u32),
    ) {
        let entries: Vec<wgpu::BindGroupEntry> = bindings
            .iter()
            .enumerate()
            .map(|(i, resource)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: resource.clone(),
            })
            .collect();
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        let mut pass = encoder.begin_compute_pass(&Default::default());
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(workgroups.0, workgroups.1, workgroups.2);
    }

    /// Submit and wait (used where the caller needs results or timings).
    pub fn submit_and_wait(&self, encoder: wgpu::CommandEncoder) -> Result<(), GpuError> {
        self.queue.submit([encoder.finish()]);
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| GpuError::Device(e.to_string()))
    }

    /// Seconds per repetition of `encode`: one untimed warm-up submission (compilation,
    /// first touch), then `repeats` recordings in one command buffer (benchmarks).
    pub fn seconds_per_repeat(
        &self,
        repeats: usize,
        mut encode: impl FnMut(&mut wgpu::CommandEncoder) -> Result<(), GpuError>,
    ) -> Result<f64, GpuError> {
        let mut warm_up = self.device.create_command_encoder(&Default::default());
        encode(&mut warm_up)?;
        self.submit_and_wait(warm_up)?;
        let start = std::time::Instant::now();
        let mut encoder = self.device.create_command_encoder(&Default::default());
        for _ in 0..repeats.max(1) {
            encode(&mut encoder)?;
        }
        self.submit_and_wait(encoder)?;
        Ok(start.elapsed().as_secs_f64() / repeats.max(1) as f64)
    }

    /// Workgroup counts covering `threads` threads of `group_size`, folded into 2-D because one
    /// dimension is limited to 65,535 groups. Kernels recover the index as x + y·(groups_x·size).
    pub fn grid_for(threads: u64, group_size: u32) -> (u32, u32, u32) {
        let groups = threads.div_ceil(group_size as u64).max(1);
        let x = groups.min(65_535);
        let y = groups.div_ceil(x);
        (x as u32, y as u32, 1)
    }
}

fn choose_adapter(adapters: Vec<wgpu::Adapter>, wanted: Option<&str>) -> Result<wgpu::Adapter, GpuError> {
    if adapters.is_empty() {
        return Err(GpuError::NoAdapter("wgpu enumerated no adapters on any backend".into()));
    }
    let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
    if let Some(wanted) = wanted {
        let needle = wanted.to_lowercase();
        return adapters
            .into_iter()
            .find(|a| a.get_info().name.to_lowercase().contains(&needle))
            .ok_or_else(|| GpuError::NoAdapter(format!("POLYCNN_ADAPTER='{wanted}' matches none of {names:?}")));
    }
    let rank = |a: &wgpu::Adapter| match a.get_info().device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    };
    // Vulkan before GL: the GL backend lacks storage-buffer features the kernels use.
    let backend_rank = |a: &wgpu::Adapter| {
        if a.get_info().backend == wgpu::Backend::Vulkan {
            0
        } else {
            1
        }
    };
    adapters
        .into_iter()
        .filter(|a| a.get_info().backend != wgpu::Backend::Noop)
        .min_by_key(|a| (rank(a), backend_rank(a)))
        .ok_or_else(|| GpuError::NoAdapter(format!("only unusable adapters: {names:?}")))
}
