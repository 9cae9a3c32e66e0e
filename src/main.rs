//! The polycnn command line. With no arguments it runs the offline default job: the shipped
//! digits CNN, exact vs approximate for α = 5..14.

use clap::{Args, Parser, Subcommand};
use polycnn::data::Interpolation;
use polycnn::eval::Mode;
use polycnn::eval::check::{Verdict, compare_files, format_comparison};
use polycnn::eval::ckks_noise::{PolyEval, parse_precisions};
use polycnn::eval::command::run_eval;
use polycnn::eval::merge::{ShardReport, merge_reports};
use polycnn::eval::plan::{PlanRequest, format_plan, search_plan};
use polycnn::eval::plan_file::PrecisionPlan;
use polycnn::eval::predictions::predictions_csv;
use polycnn::eval::preprocess::{PreprocessingOverrides, parse_channels};
use polycnn::eval::report::EvalReport;
use polycnn::eval::request::{EvalRequest, defaults};
use polycnn::eval::resume::state_path_for;
use polycnn::eval::shard::Shard;
use polycnn::eval::summary::{format_summary, sweep_csv, sweep_markdown};
use polycnn::eval::{BoundRule, RequestedBound};
use polycnn::exec::Progress;
use polycnn::gpu::Gpu;
use polycnn::gpu::activation::Scheme;
use polycnn::he::load_preset;
use polycnn::model::ModelSource;
use polycnn::poly::degrees::{DegreeLists, SearchLimits, degree_rows};
use polycnn::poly::parse_degree_list;
use polycnn::tables::cost_table::{
    CostRequest, format_ckks_cost, format_ckks_summary, format_cost_summary, format_degree_table, format_network_cost,
    network_costs,
};
use polycnn::tables::poly_table::{PolyRequest, build_rows, format_table};
use polycnn::validate;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "polycnn",
    version,
    about = "Accuracy of CNNs whose ReLU and max-pool are replaced by FHE-friendly polynomials"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Build and verify the composite minimax polynomials for precision α (and compare with the
    /// paper's published ones).
    Poly(PolyArgs),
    /// Accuracy of a pretrained network exact vs with polynomial activations, in one pass.
    Eval(EvalArgs),
    /// `eval` over a range of α: table (markdown, CSV), plot (SVG) and JSON.
    Sweep(SweepArgs),
    /// Benchmarks: polynomial generation time and the GPU kernels' throughput.
    Bench(BenchArgs),
    /// Combine the JSON reports of all shards (`--shard I/N`) of one run into the whole run's report.
    Merge(MergeArgs),
    /// CI regression gate: exit 1 when a top-1/top-5/agreement figure dropped beyond the tolerance
    /// against a baseline report, 2 when the reports cannot be read or compared.
    Check(CheckArgs),
    /// Per-site precision plan: the cheapest α per activation site (HE non-scalar multiplications)
    /// keeping top-1 within a budget of exact; writes a plan that `eval --plan` runs.
    Plan(PlanArgs),
    /// HE cost of a network's approximate activations: per site and total depth, multiplications.
    Cost(CostArgs),
    /// Cheapest odd degree lists meeting the ReLU bound 2^-α (depth, then mults), verified.
    Degrees(DegreesArgs),
}

/// The network and the images: what `eval`, `sweep` and `plan` share.
#[derive(Args, Clone)]
struct SourceArgs {
    /// resnet20/32/44/56/110 (CIFAR), resnet18/34/50/101/152, vgg11/13/16/19_bn, googlenet,
    /// inception_v3 (ImageNet), vgg11/13/16/19_bn_cifar10, vgg11/13/16/19_bn_cifar10_paper,
    /// digits_cnn; or FILE.onnx (graph and weights, e.g. from torch.onnx.export).
    #[arg(long)]
    model: String,
    /// Checkpoint of a built-in architecture: PyTorch (.pth/.th, zip or legacy) or safetensors
    /// (required for them; an ONNX model holds its own weights).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Dataset: CIFAR-10 (batch file, pickle, class folders, the PNG strip, or a root holding
    /// cifar-10-batches-py/ or -bin/), ImageNet val (class folders, flat + --labels,
    /// synset-prefixed files, or a root holding val/ or validation/), or the digits file.
    #[arg(long)]
    data: PathBuf,
    /// Labels for flat ImageNet folders: LOC_val_solution.csv or `<file> <index>` lines.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// imagenet_class_index.json or synset_words.txt: the label order of ImageNet synsets.
    /// Default: torchvision's, built in (class folders must then be all 1,000 synsets).
    #[arg(long)]
    class_index: Option<PathBuf>,
    #[command(flatten)]
    preprocessing: PreprocessArgs,
}

/// Overrides of the network's preprocessing (default: its torchvision eval transform).
#[derive(Args, Clone, Default)]
struct PreprocessArgs {
    /// Shorter side after resizing (ImageNet networks; default 256, 342 for inception_v3;
    /// torchvision's IMAGENET1K_V2 ResNet-50/101/152 weights want 232).
    #[arg(long)]
    resize: Option<usize>,
    /// Center crop: the network's input size (checked).
    #[arg(long)]
    crop: Option<usize>,
    /// Resampling filter of the resize, PIL-exact: bilinear (default) or bicubic.
    #[arg(long)]
    interpolation: Option<String>,
    /// Per-channel mean, "r,g,b" (or one number for all), of pixels scaled to [0, 1].
    #[arg(long)]
    mean: Option<String>,
    /// Per-channel standard deviation, "r,g,b" (or one number).
    #[arg(long)]
    std: Option<String>,
}

impl PreprocessArgs {
    fn overrides(&self) -> AnyResult<PreprocessingOverrides> {
        Ok(PreprocessingOverrides {
            resize: self.resize,
            crop: self.crop,
            interpolation: self.interpolation.as_deref().map(Interpolation::parse).transpose()?,
            mean: self.mean.as_deref().map(|s| parse_channels("--mean", s)).transpose()?,
            std: self.std.as_deref().map(|s| parse_channels("--std", s)).transpose()?,
        })
    }
}

#[derive(Args, Clone)]
struct EvalArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// One α ("14") or a range ("4..14"); each is evaluated in the same pass.
    #[arg(long, default_value_t = defaults::ALPHA.to_string())]
    alpha: String,
    /// Stage degrees for every α, e.g. "15,27,29" (default: the paper's list per α).
    #[arg(long)]
    degrees: Option<String>,
    /// Use the paper's published polynomials (deg_A.txt, coeff_A.txt) from this directory.
    #[arg(long)]
    coeffs_dir: Option<PathBuf>,
    /// ReLU evaluation: exact, approx (composite polynomial), square (x²), relu-aq
    /// (x²/8 + x/2 + 1/4) or poly:FILE (one coefficient per line, lowest degree first; a line
    /// `scaled` means the polynomial is in x/B, its value times B). The last three keep
    /// max-pooling exact, as the official code does.
    #[arg(long, default_value = defaults::MODE)]
    relu: String,
    /// Max-pool evaluation: exact or approx.
    #[arg(long, default_value = defaults::MODE)]
    maxpool: String,
    /// ReLU bound B: a number, `search[:START:STEP]` (the official code's search on the
    /// approximate network, per α), `search-exact[:START:STEP]` (the same grid from one
    /// statistics pass of the exact network) or `calibrate[:MARGIN]` (per site: max |x| on a
    /// calibration subset × margin).
    #[arg(long, default_value = defaults::BOUND)]
    bound: String,
    /// Max-pool bound, same forms as --bound.
    #[arg(long, default_value = defaults::BOUND)]
    bound_max: String,
    /// Clamp approximate inputs to [-B, B] (default: let them reach the polynomial, as under
    /// encryption; out-of-range values are counted per site either way).
    #[arg(long)]
    clamp: bool,
    /// Images for `calibrate` (default: a tenth of the evaluated ones).
    #[arg(long, default_value_t = defaults::CALIBRATION_IMAGES)]
    calibration_images: usize,
    #[arg(long, default_value_t = defaults::BATCH)]
    batch: usize,
    /// Evaluate only the first N images.
    #[arg(long)]
    limit: Option<usize>,
    /// Preprocessed uint8 cache file: built on first use, reused while the data and
    /// preprocessing are unchanged (α sweeps then decode the images once).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// gpu, cpu, or auto: the GPU when it is a real one, the CPU backend when the only adapter
    /// is a software rasteriser (lavapipe is far slower than the CPU GEMM).
    #[arg(long, default_value = "auto")]
    backend: String,
    /// Polynomial scheme. GPU: horner, clenshaw (f32), clenshaw-df (double-float). CPU: clenshaw
    /// (f32 SIMD, the default), clenshaw-df (f64, the reference).
    #[arg(long, default_value = Scheme::DEFAULT.name())]
    scheme: String,
    /// Write the full report as JSON. An interrupted run leaves its state next to it
    /// (`FILE.resume.json`); the same command run again continues from the last completed batch.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Keep the evaluation's state in this file and continue from it when it exists (default
    /// with --json: FILE.resume.json next to the report).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Write one CSV row per image: file, label, exact top-1 and margin, each configuration's
    /// top-1 and max |Δlogit| against exact.
    #[arg(long)]
    predictions: Option<PathBuf>,
    /// Stop after N batches of the evaluation, as an interruption would (tests of --resume).
    #[arg(long, hide = true)]
    stop_after_batches: Option<usize>,
    /// Evaluate only shard I of N (0-based, contiguous image ranges); `polycnn merge` combines
    /// the shards' JSON reports.
    #[arg(long)]
    shard: Option<String>,
    /// Evaluate a per-site precision plan (JSON from `polycnn plan`) as the one approximate
    /// configuration: it replaces --alpha, --degrees and --bound/--bound-max.
    #[arg(long)]
    plan: Option<PathBuf>,
    /// CKKS parameters (a shipped preset name or a JSON file): each configuration's `he_cost`
    /// also carries its level model and bootstrap placement, and each approximate configuration
    /// gets a "+ CKKS noise" twin in the same pass (the errors a CKKS evaluation adds, simulated).
    #[arg(long)]
    ckks: Option<String>,
    /// Seed of the simulated CKKS noise (with --ckks); part of the resume key.
    #[arg(long, default_value_t = 0)]
    ckks_seed: u64,
    /// Bootstrapping precision(s) in bits to simulate instead of the preset's: "20" or "8..30"
    /// (one twin per precision; sweep also plots top-1 against it and reports the cliff).
    #[arg(long)]
    ckks_precision: Option<String>,
    /// How the twins evaluate the composite: plain (as the plaintext configuration) or he (the
    /// Chebyshev basis and baby-step giant-step order of an HE evaluator, in f64; CPU backend).
    #[arg(long, default_value = "plain")]
    ckks_poly_eval: String,
}

#[derive(Args)]
struct PlanArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Allowed top-1 drop against exact on the calibration split, in percentage points.
    #[arg(long, default_value_t = 0.5)]
    budget: f64,
    /// Candidate α per site (a range, up to 4..20 with the optimizer's lists).
    #[arg(long, default_value = "4..14")]
    alpha: String,
    /// Degree lists per α: paper (α 4..14), optimized (the degree optimizer's, α 4..20), or auto
    /// (the paper's where it has one).
    #[arg(long, default_value = "auto")]
    lists: String,
    /// CKKS parameters (a shipped preset name or a JSON file): minimise bootstrapped ciphertexts
    /// of the optimal bootstrap placement instead of multiplications.
    #[arg(long)]
    ckks: Option<String>,
    /// N images spread evenly over the dataset calibrate B and the search; the rest (up to
    /// --limit) are held out.
    #[arg(long, default_value_t = 500)]
    calibration: usize,
    /// B per site = max |x| on the calibration images × margin. (ResNet-20, 500 calibration
    /// images: at 1.1 held-out inputs beyond B made the low-α sites diverge.)
    #[arg(long, default_value_t = 1.5)]
    margin: f64,
    /// Greedy rounds at most (each: one pass of single-site changes, one of combined plans).
    #[arg(long, default_value_t = 4)]
    rounds: usize,
    /// Use only the first N images (calibration + held-out).
    #[arg(long)]
    limit: Option<usize>,
    #[arg(long, default_value_t = 50)]
    batch: usize,
    /// Preprocessed uint8 cache file (as for eval).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Where to write the plan.
    #[arg(long, default_value = "plan.json")]
    json: PathBuf,
}

#[derive(Args)]
struct MergeArgs {
    /// The shard reports (JSON written by eval --json or sweep), one per shard.
    #[arg(required = true)]
    reports: Vec<PathBuf>,
    /// Where to write the merged report.
    #[arg(long)]
    json: PathBuf,
}

#[derive(Args)]
struct CheckArgs {
    /// The report to check (eval --json, sweep's report.json, or merge output).
    #[arg(long)]
    report: PathBuf,
    /// The accepted report to compare against.
    #[arg(long)]
    baseline: PathBuf,
    /// Largest accepted drop, in percentage points.
    #[arg(long, default_value_t = 0.2)]
    tolerance: f64,
}

#[derive(Args)]
struct SweepArgs {
    #[command(flatten)]
    eval: EvalArgs,
    /// Folder for sweep.md, sweep.csv, sweep.svg and report.json.
    #[arg(long, default_value = "sweep")]
    out: PathBuf,
}

#[derive(Args)]
struct PolyArgs {
    /// One α ("14") or a range ("4..14").
    #[arg(long, default_value = "4..14")]
    alpha: String,
    /// Stage degrees, e.g. "15,27,29" (odd, ≤ 63); default: the paper's list for each α.
    #[arg(long)]
    degrees: Option<String>,
    /// The paper's coefficient files (deg_A.txt, coeff_A.txt) to compare against.
    /// Default: ../shared/data/approxcnn_coeffs when it exists.
    #[arg(long)]
    coeffs_dir: Option<PathBuf>,
    /// Skip the GPU float32 columns.
    #[arg(long)]
    no_gpu: bool,
    /// Write the full report (coefficients in both bases included) as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
struct BenchArgs {
    /// Sections: all, or some of composite,networks,conv,activation,data.
    #[arg(long, default_value = "all")]
    sections: String,
    /// Networks timed end to end, comma-separated: built-in architectures (random weights) and
    /// FILE.onnx models (their own weights); `--model FILE.onnx` times that one alone.
    #[arg(
        long,
        visible_alias = "model",
        default_value = "resnet20,resnet56,resnet50,resnet152"
    )]
    models: String,
    /// Images per batch for the network timings (ImageNet nets use 1 on a software GPU).
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Elements per activation pass.
    #[arg(long, default_value_t = 1 << 22)]
    elements: usize,
    /// Timed repetitions of each kernel.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Timed rounds of each network plan (the mean is reported): more than one steadies a
    /// machine whose speed drifts.
    #[arg(long, default_value_t = 1)]
    network_repeats: usize,
    /// JPEG folder for the decode + preprocess timing.
    #[arg(long, default_value = "../shared/data/imagenet/train_sample250")]
    images: PathBuf,
    /// imagenet_class_index.json (needed by <synset>_<name>.JPEG folders).
    #[arg(long, default_value = "../shared/data/imagenet/labels/imagenet_class_index.json")]
    class_index: PathBuf,
    /// The data section's preprocessing (default: ResNet-50's, resize 256 bilinear, crop 224).
    #[command(flatten)]
    preprocessing: PreprocessArgs,
    /// CPU rows only.
    #[arg(long)]
    no_gpu: bool,
    /// CPU threads (default: every core); compare with `scripts/bench_pytorch.py --threads` alike.
    #[arg(long)]
    threads: Option<usize>,
    /// JSON written by scripts/bench_pytorch.py: print polycnn/PyTorch ratios.
    #[arg(long)]
    pytorch: Option<PathBuf>,
    /// Write the whole report as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
struct CostArgs {
    /// Architecture (as for eval) or FILE.onnx; a built-in's weights are random unless --weights
    /// is given (the cost needs only shapes).
    #[arg(long)]
    model: String,
    #[arg(long)]
    weights: Option<PathBuf>,
    /// One α ("14") or a range ("4..14").
    #[arg(long, default_value = "14")]
    alpha: String,
    /// Stage degrees for every α, e.g. "15,27,29" (default: the paper's list per α).
    #[arg(long)]
    degrees: Option<String>,
    /// ReLU evaluation: exact or approx.
    #[arg(long, default_value = "approx")]
    relu: String,
    /// Max-pool evaluation: exact or approx.
    #[arg(long, default_value = "approx")]
    maxpool: String,
    /// Degree lists per α: paper (α 4..14), optimized (the degree optimizer's, α 4..20), or auto
    /// (the paper's where it has one).
    #[arg(long, default_value = "auto")]
    lists: String,
    /// CKKS parameters (a shipped preset name or a JSON file): add the level model and the
    /// bootstrap placement (greedy and optimal) to the report.
    #[arg(long)]
    ckks: Option<String>,
    /// Write the per-site costs as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
struct DegreesArgs {
    /// One α ("14") or a range ("4..20").
    #[arg(long, default_value = "4..20")]
    alpha: String,
    /// Largest stage degree searched (odd, 3..=63).
    #[arg(long, default_value_t = 63)]
    max_degree: usize,
    /// Most stages searched.
    #[arg(long, default_value_t = 6)]
    max_stages: usize,
    /// Write the table as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// The library's `log` messages, printed on stderr as they are.
struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Info
    }

    fn log(&self, record: &log::Record) {
        match record.level() {
            log::Level::Error | log::Level::Warn => eprintln!("warning: {}", record.args()),
            _ if self.enabled(record.metadata()) => eprintln!("{}", record.args()),
            _ => {}
        }
    }

    fn flush(&self) {}
}

/// The terminal progress bar of a pass (one at a time).
#[derive(Default)]
struct ProgressBar {
    bar: std::sync::Mutex<Option<indicatif::ProgressBar>>,
}

impl Progress for ProgressBar {
    fn start(&self, title: &str, total: u64) {
        let bar = indicatif::ProgressBar::new(total);
        let style =
            indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} images  {per_sec}  ETA {eta}")
                .expect("valid template")
                .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(title.to_string());
        *self.bar.lock().expect("progress lock") = Some(bar);
    }

    fn advance(&self, n: u64) {
        if let Some(bar) = self.bar.lock().expect("progress lock").as_ref() {
            bar.inc(n);
        }
    }

    fn finish(&self) {
        if let Some(bar) = self.bar.lock().expect("progress lock").take() {
            bar.finish_and_clear();
        }
    }
}

fn main() -> ExitCode {
    static LOG: StderrLog = StderrLog;
    if log::set_logger(&LOG).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Poly(args)) => run_poly(args),
        Some(Command::Eval(args)) => run_eval_command(&args).map(|_| ()),
        Some(Command::Sweep(args)) => run_sweep(args),
        Some(Command::Bench(args)) => run_bench(args),
        Some(Command::Merge(args)) => run_merge(args),
        Some(Command::Plan(args)) => run_plan(args),
        Some(Command::Check(args)) => return run_check(args),
        Some(Command::Cost(args)) => run_cost(args),
        Some(Command::Degrees(args)) => run_degrees(args),
        None => run_default_job(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

fn parse_alphas(s: &str) -> AnyResult<Vec<u32>> {
    let bad = || format!("--alpha '{s}': expected a number like 14 or a range like 4..14 (α in 1..=30)");
    let (lo, hi) = match s.split_once("..") {
        Some((a, b)) => (
            a.trim().parse::<u32>().map_err(|_| bad())?,
            b.trim().parse::<u32>().map_err(|_| bad())?,
        ),
        None => {
            let a = s.trim().parse::<u32>().map_err(|_| bad())?;
            (a, a)
        }
    };
    if lo == 0 || hi > 30 || lo > hi {
        return Err(bad().into());
    }
    Ok((lo..=hi).collect())
}

fn default_coeffs_dir() -> Option<PathBuf> {
    let dir = PathBuf::from("../shared/data/approxcnn_coeffs");
    dir.is_dir().then_some(dir)
}

/// The GPU if one can be opened; otherwise say why and go on without it.
fn try_gpu(wanted: bool) -> Option<Gpu> {
    if !wanted {
        return None;
    }
    match Gpu::new() {
        Ok(gpu) => {
            eprintln!("GPU: {}", gpu.describe());
            Some(gpu)
        }
        Err(e) => {
            eprintln!("note: {e}\n      (continuing without the GPU columns)");
            None
        }
    }
}

/// The offline default: the shipped digits CNN, exact vs approximate ReLU + max-pool for a
/// few α, with the sweep table printed and its files written to ./sweep-digits.
fn run_default_job() -> AnyResult<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("datasets/digits");
    eprintln!("polycnn default job: the digits CNN shipped in datasets/digits (see README for the CIFAR-10 command)");
    let path = |file: &str| root.join(file).into_os_string();
    // Only what differs from the command line's defaults.
    let cli = Cli::parse_from([
        "polycnn".into(),
        "sweep".into(),
        "--model".into(),
        "digits_cnn".into(),
        "--weights".into(),
        path("digits_cnn.safetensors"),
        "--data".into(),
        path("digits_test.bin"),
        "--alpha".into(),
        "5..14".into(),
        "--batch".into(),
        "100".into(),
        "--out".into(),
        "sweep-digits".into(),
    ] as [std::ffi::OsString; 14]);
    match cli.command {
        Some(Command::Sweep(args)) => run_sweep(args),
        _ => unreachable!("the default job is a sweep"),
    }
}

impl SourceArgs {
    /// The network `--model` and `--weights` name, its files checked to exist.
    fn model(&self) -> AnyResult<ModelSource> {
        let model = ModelSource::parse(&self.model, self.weights.clone())?;
        check_model_files(&model)?;
        Ok(model)
    }
}

/// Bad `--model`/`--weights` paths fail before any work starts.
fn check_model_files(model: &ModelSource) -> AnyResult<()> {
    match model {
        ModelSource::Builtin { weights, .. } => validate::input(weights, "--weights")?,
        ModelSource::Onnx(path) => validate::input(path, "--model")?,
        ModelSource::Random { .. } => {}
    }
    Ok(())
}

fn eval_request(args: &EvalArgs) -> AnyResult<EvalRequest> {
    let model = args.source.model()?;
    let gpu = match args.backend.as_str() {
        "gpu" | "auto" => true,
        "cpu" => false,
        other => return Err(format!("--backend '{other}': expected gpu, cpu or auto").into()),
    };
    if args.batch == 0 {
        return Err("--batch must be at least 1".into());
    }
    if args.ckks.is_none() && (args.ckks_seed != 0 || args.ckks_precision.is_some() || args.ckks_poly_eval != "plain") {
        return Err("--ckks-seed, --ckks-precision and --ckks-poly-eval shape the CKKS twins: give --ckks too".into());
    }
    Ok(EvalRequest {
        model,
        data: args.source.data.clone(),
        labels: args.source.labels.clone(),
        class_index: args.source.class_index.clone(),
        alphas: parse_alphas(&args.alpha)?,
        degrees: args.degrees.as_deref().map(parse_degree_list).transpose()?,
        coeffs_dir: args.coeffs_dir.clone(),
        relu: Mode::parse_relu(&args.relu)?,
        maxpool: Mode::parse_maxpool(&args.maxpool)?,
        clamp: args.clamp,
        bound: RequestedBound::parse(&args.bound)?,
        bound_max: RequestedBound::parse(&args.bound_max)?,
        calibration_images: args.calibration_images,
        batch: args.batch,
        limit: args.limit,
        cache: args.cache.clone(),
        gpu,
        scheme: args.scheme.parse()?,
        shard: args.shard.as_deref().map(Shard::parse).transpose()?,
        plan: match &args.plan {
            Some(_) if args.relu != "approx" || args.maxpool != "approx" => {
                return Err("--plan approximates every site: drop --relu/--maxpool exact".into());
            }
            Some(path) => Some(PrecisionPlan::load(path)?),
            None => None,
        },
        ckks: args.ckks.as_deref().map(load_preset).transpose()?,
        preprocessing: args.source.preprocessing.overrides()?,
        predictions: args.predictions.is_some(),
        resume: args.resume.clone().or_else(|| args.json.as_deref().map(state_path_for)),
        stop_after_batches: args.stop_after_batches,
        ckks_seed: args.ckks_seed,
        ckks_precisions: args
            .ckks_precision
            .as_deref()
            .map(parse_precisions)
            .transpose()?
            .unwrap_or_default(),
        ckks_poly_eval: PolyEval::parse(&args.ckks_poly_eval)?,
    })
}

fn run_eval_command(args: &EvalArgs) -> AnyResult<EvalReport> {
    let request = eval_request(args)?;
    // Bad paths fail now, before the GPU is opened and the run starts (the model's: in eval_request).
    validate::input(&request.data, "--data")?;
    for (path, flag) in [
        (&args.json, "--json"),
        (&args.predictions, "--predictions"),
        (&request.resume, "--resume"),
    ] {
        if let Some(path) = path {
            validate::output_file(path, flag)?;
        }
    }
    let gpu = match args.backend.as_str() {
        "gpu" => Some(Gpu::new()?),
        "auto" => match Gpu::new() {
            Ok(gpu) if gpu.info.device_type != wgpu::DeviceType::Cpu => Some(gpu),
            Ok(gpu) => {
                eprintln!(
                    "note: the only GPU adapter is a software one ({}); using the CPU backend",
                    gpu.describe()
                );
                None
            }
            Err(e) => {
                eprintln!("note: {e}\n      using the CPU backend");
                None
            }
        },
        _ => None,
    };
    let request = EvalRequest {
        gpu: gpu.is_some(),
        ..request
    };
    let report = run_eval(&request, gpu.as_ref(), &ProgressBar::default())?;
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    print!("{}", format_summary(&report, 8));
    if let Some(path) = &args.predictions {
        let labels: Vec<String> = report.configs.iter().map(|c| c.label.clone()).collect();
        write_file(path, &predictions_csv(&labels, &report.predictions))?;
    }
    if let Some(path) = &args.json {
        write_file(path, &serde_json::to_string_pretty(&report)?)?;
    }
    Ok(report)
}

fn run_sweep(args: SweepArgs) -> AnyResult<()> {
    validate::output_folder(&args.out, "--out")?;
    let report = run_eval_command(&args.eval)?;
    println!();
    print!("{}", sweep_markdown(&report));
    write_file(&args.out.join("sweep.md"), &sweep_markdown(&report))?;
    write_file(&args.out.join("sweep.csv"), &sweep_csv(&report))?;
    for path in polycnn::eval::plot::write_plots(&report, &args.out)? {
        eprintln!("wrote {}", path.display());
    }
    write_file(&args.out.join("report.json"), &serde_json::to_string_pretty(&report)?)?;
    Ok(())
}

fn run_merge(args: MergeArgs) -> AnyResult<()> {
    let shards = args
        .reports
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let report = serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
            Ok(ShardReport {
                source: path.display().to_string(),
                report,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let merged = merge_reports(shards)?;
    write_file(&args.json, &serde_json::to_string_pretty(&merged)?)
}

fn run_plan(args: PlanArgs) -> AnyResult<()> {
    let model = args.source.model()?;
    if args.batch == 0 {
        return Err("--batch must be at least 1".into());
    }
    let eval = EvalRequest {
        labels: args.source.labels.clone(),
        class_index: args.source.class_index.clone(),
        alphas: vec![],
        bound: BoundRule::Calibrate {
            margin: args.margin,
            images: args.calibration,
        }
        .into(),
        bound_max: BoundRule::Calibrate {
            margin: args.margin,
            images: args.calibration,
        }
        .into(),
        calibration_images: args.calibration,
        batch: args.batch,
        limit: args.limit,
        cache: args.cache.clone(),
        preprocessing: args.source.preprocessing.overrides()?,
        ..EvalRequest::with_model(model, args.source.data.clone())
    };
    let request = PlanRequest {
        eval,
        budget: args.budget,
        alphas: parse_alphas(&args.alpha)?,
        lists: args.lists.parse::<DegreeLists>()?,
        ckks: args.ckks.as_deref().map(load_preset).transpose()?,
        calibration_images: args.calibration,
        margin: args.margin,
        rounds: args.rounds,
    };
    let (plan, graph) = search_plan(&request, &ProgressBar::default())?;
    print!("{}", format_plan(&plan, &graph)?);
    write_file(&args.json, &serde_json::to_string_pretty(&plan)?)
}

/// Exit code 0 / 1 / 2: see `polycnn::eval::check`.
fn run_check(args: CheckArgs) -> ExitCode {
    match compare_files(&args.report, &args.baseline, args.tolerance) {
        Ok(comparison) => {
            print!("{}", format_comparison(&comparison));
            ExitCode::from(comparison.verdict().exit_code())
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(Verdict::Unusable.exit_code())
        }
    }
}

fn write_file(path: &std::path::Path, contents: &str) -> AnyResult<()> {
    std::fs::write(path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

fn run_poly(args: PolyArgs) -> AnyResult<()> {
    let alphas = parse_alphas(&args.alpha)?;
    let degrees = args.degrees.as_deref().map(parse_degree_list).transpose()?;
    let official_dir = args.coeffs_dir.clone().or_else(default_coeffs_dir);
    if let Some(dir) = &args.coeffs_dir
        && !dir.is_dir()
    {
        return Err(format!("--coeffs-dir {}: not a directory", dir.display()).into());
    }
    // The paper's files exist for α = 4..14 with its own degree lists only.
    let compare = official_dir.filter(|_| degrees.is_none() && alphas.iter().all(|a| (4..=14).contains(a)));
    let gpu = try_gpu(!args.no_gpu);
    let request = PolyRequest {
        alphas,
        degrees,
        official_dir: compare.as_deref(),
    };
    let rows = build_rows(&request, gpu.as_ref())?;
    print!("{}", format_table(&rows));
    if let Some(path) = args.json {
        let report = serde_json::json!({
            "polycnn_version": env!("CARGO_PKG_VERSION"),
            "gpu": gpu.as_ref().map(|g| g.describe()),
            "rows": rows,
        });
        std::fs::write(&path, serde_json::to_string_pretty(&report)?)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn run_bench(args: BenchArgs) -> AnyResult<()> {
    let counts = [args.batch, args.elements, args.repeats, args.network_repeats];
    if counts.contains(&0) || args.threads == Some(0) {
        return Err("--batch, --elements, --repeats, --network-repeats and --threads must be at least 1".into());
    }
    if let Some(threads) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global()
            .map_err(|e| format!("--threads {threads}: {e}"))?;
    }
    let models = args.models.split(',').map(str::trim).filter(|s| !s.is_empty());
    // built-in architectures with random weights (seed 1), ONNX files with theirs
    let source = |m: &str| -> AnyResult<ModelSource> {
        let model = ModelSource::parse_or_random(m, None, 1)?;
        check_model_files(&model)?;
        Ok(model)
    };
    let options = polycnn::bench::BenchOptions {
        sections: polycnn::bench::Section::parse_list(&args.sections)?,
        models: models.map(source).collect::<AnyResult<_>>()?,
        batch: args.batch,
        elements: args.elements,
        repeats: args.repeats,
        network_repeats: args.network_repeats,
        images: args.images,
        class_index: Some(args.class_index),
        preprocessing: args.preprocessing.overrides()?,
        gpu: !args.no_gpu,
        pytorch: args.pytorch,
        json: args.json,
    };
    polycnn::bench::command(&options)?;
    Ok(())
}

fn run_cost(args: CostArgs) -> AnyResult<()> {
    let model = ModelSource::parse_or_random(&args.model, args.weights, 0)?;
    check_model_files(&model)?;
    let request = CostRequest {
        model,
        alphas: parse_alphas(&args.alpha)?,
        degrees: args.degrees.as_deref().map(parse_degree_list).transpose()?,
        lists: args.lists.parse::<DegreeLists>()?,
        relu: approximated(&args.relu, "--relu")?,
        maxpool: approximated(&args.maxpool, "--maxpool")?,
        ckks: args.ckks.as_deref().map(load_preset).transpose()?,
    };
    let costs = network_costs(&request)?;
    match costs.as_slice() {
        [one] => {
            print!("{}", format_network_cost(one));
            if let Some(c) = &one.ckks {
                print!("{}", format_ckks_cost(c));
            }
        }
        many => {
            print!("{}", format_cost_summary(many));
            if many.iter().any(|r| r.ckks.is_some()) {
                print!("{}", format_ckks_summary(many));
            }
        }
    }
    if let Some(path) = args.json {
        write_file(&path, &serde_json::to_string_pretty(&costs)?)?;
    }
    Ok(())
}

/// `exact` → false, `approx` → true (the cost model knows only the composite approximation).
fn approximated(value: &str, flag: &str) -> AnyResult<bool> {
    match value {
        "exact" => Ok(false),
        "approx" => Ok(true),
        other => Err(format!("{flag} '{other}': expected exact or approx").into()),
    }
}

fn run_degrees(args: DegreesArgs) -> AnyResult<()> {
    if !(3..=63).contains(&args.max_degree) || !(1..=8).contains(&args.max_stages) {
        return Err("--max-degree must be in 3..=63 and --max-stages in 1..=8".into());
    }
    let limits = SearchLimits {
        max_degree: args.max_degree,
        max_stages: args.max_stages,
        ..SearchLimits::default()
    };
    let rows = degree_rows(&parse_alphas(&args.alpha)?, &limits)?;
    print!("{}", format_degree_table(&rows));
    if let Some(path) = args.json {
        write_file(&path, &serde_json::to_string_pretty(&rows)?)?;
    }
    Ok(())
}
