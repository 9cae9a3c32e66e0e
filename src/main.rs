//! The polycnn command line. With no arguments it runs the offline default job: the shipped
//! digits CNN, exact vs approximate for α = 5..14.

use clap::{Args, Parser, Subcommand};
use polycnn::eval::BoundRule;
use polycnn::eval::Mode;
use polycnn::eval::command::{EvalRequest, default_search_grid, run_eval};
use polycnn::eval::report::{EvalReport, format_summary, sweep_csv, sweep_markdown};
use polycnn::gpu::Gpu;
use polycnn::model::Arch;
use polycnn::poly::parse_degree_list;
use polycnn::report::poly_report::{PolyRequest, build_rows, format_table};
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
}

#[derive(Args, Clone)]
struct EvalArgs {
    /// resnet20/32/44/56/110 (CIFAR), resnet18/34/50/101/152, vgg11/13/16/19_bn (ImageNet),
    /// vgg11_bn_cifar10, digits_cnn.
    #[arg(long)]
    model: String,
    /// Checkpoint: PyTorch (.pth/.th, zip or legacy) or safetensors.
    #[arg(long)]
    weights: PathBuf,
    /// Dataset: CIFAR-10 (batch file, pickle, class folders or the PNG strip), ImageNet val
    /// (class folders, flat + --labels, or synset-prefixed files), or the digits file.
    #[arg(long)]
    data: PathBuf,
    /// Labels for flat ImageNet folders: LOC_val_solution.csv or `<file> <index>` lines.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// imagenet_class_index.json (torchvision class order).
    #[arg(long)]
    class_index: Option<PathBuf>,
    /// One α ("14") or a range ("4..14"); each is evaluated in the same pass.
    #[arg(long, default_value = "14")]
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
    #[arg(long, default_value = "approx")]
    relu: String,
    /// Max-pool evaluation: exact or approx.
    #[arg(long, default_value = "approx")]
    maxpool: String,
    /// ReLU bound B: a number, `search[:START:STEP]` (the official code's search on the
    /// approximate network, per α), `search-exact[:START:STEP]` (the same grid from one
    /// statistics pass of the exact network) or `calibrate[:MARGIN]` (per site: max |x| on a
    /// calibration subset × margin).
    #[arg(long, default_value = "search")]
    bound: String,
    /// Max-pool bound, same forms as --bound.
    #[arg(long, default_value = "search")]
    bound_max: String,
    /// Clamp approximate inputs to [-B, B] (default: let them reach the polynomial, as under
    /// encryption; out-of-range values are counted per site either way).
    #[arg(long)]
    clamp: bool,
    /// Images for `calibrate` (default: a tenth of the evaluated ones).
    #[arg(long, default_value_t = 0)]
    calibration_images: usize,
    #[arg(long, default_value_t = 32)]
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
    /// GPU polynomial scheme: horner, clenshaw, clenshaw-df.
    #[arg(long, default_value = "clenshaw")]
    scheme: String,
    /// Write the full report as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
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
    /// Networks timed end to end (random weights), comma-separated.
    #[arg(long, default_value = "resnet20,resnet56,resnet50,resnet152")]
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
    /// JPEG folder for the decode + preprocess timing.
    #[arg(long, default_value = "../shared/data/imagenet/train_sample250")]
    images: PathBuf,
    /// imagenet_class_index.json (needed by <synset>_<name>.JPEG folders).
    #[arg(long, default_value = "../shared/data/imagenet/labels/imagenet_class_index.json")]
    class_index: PathBuf,
    /// CPU rows only.
    #[arg(long)]
    no_gpu: bool,
    /// JSON written by scripts/bench_pytorch.py: print polycnn/PyTorch ratios.
    #[arg(long)]
    pytorch: Option<PathBuf>,
    /// Write the whole report as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Poly(args)) => run_poly(args),
        Some(Command::Eval(args)) => run_eval_command(&args).map(|_| ()),
        Some(Command::Sweep(args)) => run_sweep(args),
        Some(Command::Bench(args)) => run_bench(args),
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
    let eval = EvalArgs {
        model: "digits_cnn".into(),
        weights: root.join("digits_cnn.safetensors"),
        data: root.join("digits_test.bin"),
        labels: None,
        class_index: None,
        alpha: "5..14".into(),
        degrees: None,
        coeffs_dir: None,
        relu: "approx".into(),
        maxpool: "approx".into(),
        bound: "search".into(),
        bound_max: "search".into(),
        clamp: false,
        calibration_images: 0,
        batch: 100,
        limit: None,
        cache: None,
        backend: "auto".into(),
        scheme: "clenshaw".into(),
        json: None,
    };
    run_sweep(SweepArgs {
        eval,
        out: PathBuf::from("sweep-digits"),
    })
}

fn eval_request(args: &EvalArgs) -> AnyResult<EvalRequest> {
    let model: Arch = args.model.parse()?;
    let (relu_grid, max_grid) = default_search_grid(model);
    let gpu = match args.backend.as_str() {
        "gpu" | "auto" => true,
        "cpu" => false,
        other => return Err(format!("--backend '{other}': expected gpu, cpu or auto").into()),
    };
    if args.batch == 0 {
        return Err("--batch must be at least 1".into());
    }
    Ok(EvalRequest {
        model,
        weights: args.weights.clone(),
        data: args.data.clone(),
        labels: args.labels.clone(),
        class_index: args.class_index.clone(),
        alphas: parse_alphas(&args.alpha)?,
        degrees: args.degrees.as_deref().map(parse_degree_list).transpose()?,
        coeffs_dir: args.coeffs_dir.clone(),
        relu: Mode::parse_relu(&args.relu)?,
        maxpool: Mode::parse_maxpool(&args.maxpool)?,
        clamp: args.clamp,
        bound: BoundRule::parse(&args.bound, relu_grid)?,
        bound_max: BoundRule::parse(&args.bound_max, max_grid)?,
        calibration_images: args.calibration_images,
        batch: args.batch,
        limit: args.limit,
        cache: args.cache.clone(),
        gpu,
        scheme: args.scheme.parse()?,
    })
}

fn run_eval_command(args: &EvalArgs) -> AnyResult<EvalReport> {
    let request = eval_request(args)?;
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
    let report = run_eval(&request, gpu.as_ref())?;
    print!("{}", format_summary(&report, 8));
    if let Some(path) = &args.json {
        write_file(path, &serde_json::to_string_pretty(&report)?)?;
    }
    Ok(report)
}

fn run_sweep(args: SweepArgs) -> AnyResult<()> {
    let report = run_eval_command(&args.eval)?;
    println!();
    print!("{}", sweep_markdown(&report));
    std::fs::create_dir_all(&args.out).map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;
    write_file(&args.out.join("sweep.md"), &sweep_markdown(&report))?;
    write_file(&args.out.join("sweep.csv"), &sweep_csv(&report))?;
    for path in polycnn::eval::plot::write_plots(&report, &args.out)? {
        eprintln!("wrote {}", path.display());
    }
    write_file(&args.out.join("report.json"), &serde_json::to_string_pretty(&report)?)?;
    Ok(())
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
    if args.batch == 0 || args.elements == 0 || args.repeats == 0 {
        return Err("--batch, --elements and --repeats must be at least 1".into());
    }
    let models = args.models.split(',').map(str::trim).filter(|s| !s.is_empty());
    let options = polycnn::bench::BenchOptions {
        sections: polycnn::bench::Section::parse_list(&args.sections)?,
        models: models.map(str::parse).collect::<Result<_, _>>()?,
        batch: args.batch,
        elements: args.elements,
        repeats: args.repeats,
        images: args.images,
        class_index: Some(args.class_index),
        gpu: !args.no_gpu,
        pytorch: args.pytorch,
        json: args.json,
    };
    polycnn::bench::command(&options)?;
    Ok(())
}
