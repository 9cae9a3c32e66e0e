//! `polycnn bench`: throughput of every stage a user pays for, printed row by row as measured and
//! returned as one [`BenchReport`] (the `--json` output). Sections: composite generation, whole
//! networks (exact, approximate α=14, both in one pass), the convolution at ResNet shapes (GPU
//! tiled and naive kernels, CPU GEMM path), the fused polynomial epilogue's cost, the activation
//! kernel per scheme, JPEG decode + preprocess, and the peak memory of each phase.
//! [`pytorch`] reads `scripts/bench_pytorch.py`'s JSON and sets the two side by side.

mod kernels;
mod memory;
mod networks;
pub mod pytorch;

use crate::data::Dataset;
use crate::data::imagenet::{self, ClassIndex, Layout};
use crate::data::loader::load_batch;
use crate::gpu::Gpu;
use crate::model::{Arch, ModelSource};
use crate::tables::poly_table::our_composite;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Instant;

pub use kernels::{ActivationRow, ConvRow, EpilogueRow};
pub use memory::PeakMemory;
pub use networks::NetworkRow;
pub use pytorch::{Comparison, PytorchReport};

type AnyError = Box<dyn std::error::Error>;

/// Which parts of the benchmark to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    Composite,
    Networks,
    Conv,
    Activation,
    Data,
}

impl Section {
    pub const ALL: [Section; 5] = [
        Section::Composite,
        Section::Networks,
        Section::Conv,
        Section::Activation,
        Section::Data,
    ];

    fn name(self) -> &'static str {
        match self {
            Section::Composite => "composite",
            Section::Networks => "networks",
            Section::Conv => "conv",
            Section::Activation => "activation",
            Section::Data => "data",
        }
    }

    /// "all" or a comma-separated list of section names.
    pub fn parse_list(s: &str) -> Result<Vec<Section>, String> {
        if s.trim() == "all" {
            return Ok(Section::ALL.to_vec());
        }
        s.split(',')
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .map(|w| {
                Section::ALL.into_iter().find(|s| s.name() == w).ok_or_else(|| {
                    let names: Vec<_> = Section::ALL.iter().map(|s| s.name()).collect();
                    format!("--sections: unknown section '{w}' (expected all or some of {names:?})")
                })
            })
            .collect()
    }
}

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub sections: Vec<Section>,
    /// Networks timed end to end: built-in architectures with random weights, ONNX files with theirs.
    pub models: Vec<ModelSource>,
    /// Images per batch (ImageNet nets use 1 on a software GPU adapter).
    pub batch: usize,
    /// Elements per activation pass.
    pub elements: usize,
    /// Timed repetitions of each kernel.
    pub repeats: usize,
    /// Timed rounds of each network plan, after one untimed round (the mean is reported).
    pub network_repeats: usize,
    /// JPEG folder for the decode + preprocess timing (synset-prefixed, class folders, ...).
    pub images: PathBuf,
    /// imagenet_class_index.json, needed by synset-prefixed folders.
    pub class_index: Option<PathBuf>,
    /// Changes to ResNet-50's preprocessing for the decode timing (`--resize`, `--interpolation`, …).
    pub preprocessing: crate::eval::preprocess::PreprocessingOverrides,
    /// Open the GPU (the first adapter `Gpu::new` picks) for its rows.
    pub gpu: bool,
    /// `scripts/bench_pytorch.py`'s JSON: print the ratios against it.
    pub pytorch: Option<PathBuf>,
    /// Write the whole report here as JSON.
    pub json: Option<PathBuf>,
}

/// Composite generation time per α.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CompositeRow {
    pub alpha: u32,
    pub degrees: Vec<usize>,
    pub ms: f64,
}

/// JPEG decode + resize + crop + normalise on every core.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DataRow {
    pub folder: String,
    pub images: usize,
    pub failures: usize,
    pub threads: usize,
    pub seconds: f64,
    pub images_per_s: f64,
    pub peak_mib: Option<f64>,
}

/// Everything one `polycnn bench` measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct BenchReport {
    pub polycnn_version: String,
    /// rayon threads (= cores used by the CPU backend and the decoder).
    pub threads: usize,
    pub gpu: Option<String>,
    /// /proc/loadavg when the run started (other processes disturb the timings).
    pub load_average: Option<String>,
    pub composite: Vec<CompositeRow>,
    pub networks: Vec<NetworkRow>,
    pub conv: Vec<ConvRow>,
    pub epilogue: Vec<EpilogueRow>,
    pub activation: Vec<ActivationRow>,
    pub data: Option<DataRow>,
    pub peak_mib_total: Option<f64>,
    pub pytorch: Option<PytorchReport>,
    pub comparison: Vec<Comparison>,
}

/// `polycnn bench`: opens the GPU when asked, runs the sections, prints the PyTorch ratios and
/// writes the JSON report.
pub fn command(options: &BenchOptions) -> Result<BenchReport, AnyError> {
    // Read the PyTorch file first: a bad path should not cost a full benchmark run.
    let pytorch = options.pytorch.as_deref().map(pytorch::load).transpose()?;
    let gpu = if options.gpu { open_gpu() } else { None };
    let mut report = run(options, gpu.as_ref())?;
    if let Some(theirs) = pytorch {
        report.comparison = pytorch::compare(&report, &theirs);
        print!("{}", pytorch::format_comparison(&theirs, &report.comparison));
        report.pytorch = Some(theirs);
    }
    if let Some(path) = &options.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(report)
}

/// The GPU if one opens; otherwise the reason, and the CPU rows only.
fn open_gpu() -> Option<Gpu> {
    match Gpu::new() {
        Ok(gpu) => Some(gpu),
        Err(e) => {
            eprintln!("note: {e}\n      (benchmarking without the GPU rows)");
            None
        }
    }
}

/// Runs the selected sections, printing each row as it is measured.
pub fn run(options: &BenchOptions, gpu: Option<&Gpu>) -> Result<BenchReport, AnyError> {
    let mut report = BenchReport {
        polycnn_version: env!("CARGO_PKG_VERSION").into(),
        threads: rayon::current_num_threads(),
        gpu: gpu.map(Gpu::describe),
        load_average: std::fs::read_to_string("/proc/loadavg")
            .ok()
            .map(|s| s.trim().to_string()),
        ..BenchReport::default()
    };
    println!(
        "polycnn bench: {} threads, load average {}, GPU {}",
        report.threads,
        report.load_average.as_deref().unwrap_or("?"),
        report.gpu.as_deref().unwrap_or("none")
    );
    let wants = |s: Section| options.sections.contains(&s);
    if wants(Section::Composite) {
        report.composite = bench_composites()?;
    }
    if wants(Section::Networks) {
        report.networks = networks::bench_networks(options, gpu)?;
    }
    if wants(Section::Conv) {
        let (conv, epilogue) = kernels::bench_conv(gpu, options.repeats)?;
        report.conv = conv;
        report.epilogue = epilogue;
    }
    if wants(Section::Activation) {
        report.activation = kernels::bench_activation(gpu, options.elements, options.repeats)?;
    }
    if wants(Section::Data) {
        report.data = Some(bench_decode(options)?);
        if let Some(note) = decode_bottleneck_note(&report) {
            println!("  {note}");
        }
    }
    report.peak_mib_total = PeakMemory::whole_run_mib();
    if let Some(mib) = report.peak_mib_total {
        println!("== peak resident memory of the whole run: {mib:.0} MiB");
    }
    Ok(report)
}

fn bench_composites() -> Result<Vec<CompositeRow>, AnyError> {
    println!("== composite generation (Remez in double-double, ε search)");
    let start = Instant::now();
    let mut rows = Vec::new();
    for alpha in 4..=14 {
        let (sc, ms) = our_composite(alpha, None)?;
        let degrees = sc.composite.degrees();
        println!("  α={alpha:2} degrees {degrees:?}: {ms:7.1} ms");
        rows.push(CompositeRow { alpha, degrees, ms });
    }
    let total = start.elapsed().as_secs_f64();
    println!(
        "  all α 4..14: {total:.3} s (target < 1 s: {})",
        if total < 1.0 { "met" } else { "NOT met" }
    );
    Ok(rows)
}

/// Decodes and preprocesses every image of `options.images` (ResNet-50's geometry, as changed by
/// `options.preprocessing`) with
/// the loader's own batch function, on all cores.
fn bench_decode(options: &BenchOptions) -> Result<DataRow, AnyError> {
    let root = &options.images;
    let preprocessing = options.preprocessing.apply(&Arch::ResNet(50).descriptor())?;
    println!(
        "== JPEG decode + {} + normalise ({})",
        preprocessing.geometry.key(),
        root.display()
    );
    let classes = options.class_index.as_deref().map(ClassIndex::load).transpose()?;
    let layout = Layout::detect(root, None)?;
    let dataset = imagenet::open(root, &layout, classes.as_ref(), preprocessing.geometry)?;
    let normalize = preprocessing.normalize;
    let indices: Vec<usize> = (0..dataset.len()).collect();
    let memory = PeakMemory::start();
    let start = Instant::now();
    let batch = load_batch(&dataset, &indices, &normalize);
    let seconds = start.elapsed().as_secs_f64();
    let row = DataRow {
        folder: root.display().to_string(),
        images: batch.len(),
        failures: batch.failures.len(),
        threads: rayon::current_num_threads(),
        seconds,
        images_per_s: batch.len() as f64 / seconds,
        peak_mib: memory.peak_mib(),
    };
    println!(
        "  {} images ({} failed) on {} threads: {:.2} s, {:.1} images/s, peak {}",
        row.images,
        row.failures,
        row.threads,
        seconds,
        row.images_per_s,
        mib_text(row.peak_mib)
    );
    Ok(row)
}

/// Whether decoding would limit an ImageNet evaluation on the CPU backend (it runs on the same
/// cores as the network, so the two rates add up as times).
fn decode_bottleneck_note(report: &BenchReport) -> Option<String> {
    let data = report.data.as_ref()?;
    let fastest = report
        .networks
        .iter()
        .filter(|r| r.backend == "cpu" && r.model.ends_with("_imagenet"))
        .max_by(|a, b| a.exact_images_per_s().total_cmp(&b.exact_images_per_s()))?;
    let net = fastest.exact_images_per_s();
    let share = net / (net + data.images_per_s);
    Some(format!(
        "decoding would take {:.0}% of the time of a {} exact evaluation on the CPU ({:.1} vs {:.1} images/s){}",
        share * 100.0,
        fastest.model,
        data.images_per_s,
        net,
        if data.images_per_s < net {
            ": the data pipeline is the bottleneck (use --cache)"
        } else {
            ""
        }
    ))
}

fn mib_text(mib: Option<f64>) -> String {
    mib.map_or("?".into(), |m| format!("{m:.0} MiB"))
}
