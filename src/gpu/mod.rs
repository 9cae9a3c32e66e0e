//! GPU access in one place: adapter selection, buffer upload/download, one pipeline cache and
//! dispatch. Everything else in polycnn talks to the GPU through `Gpu`.

pub mod activation;
pub mod conv;
pub mod network;
pub mod noise;
pub mod tensor_ops;

use std::collections::HashMap;
use std::fmt;
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

/// An open device with its queue and compiled pipelines.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pipelines: Mutex<HashMap<String, Arc<wgpu::ComputePipeline>>>,
    placeholder: std::sync::OnceLock<wgpu::Buffer>,
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
        Ok(Gpu {
            device,
            queue,
            info,
            pipelines: Mutex::new(HashMap::new()),
            placeholder: Default::default(),
        })
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

    pub fn uniform_from<T: bytemuck::Pod>(&self, label: &str, value: &T) -> wgpu::Buffer {
        use wgpu::util::DeviceExt;
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::bytes_of(value),
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        })
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
