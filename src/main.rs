//! The polycnn command line. With no arguments it runs the offline default job: the shipped
//! digits CNN, exact vs approximate for α = 5..14.

use clap::{Args, Parser, Subcommand};
use polycnn::eval::BoundRule;
use polycnn::eval::Mode;
use polycnn::eval::command::{EvalRequest, default_search_grid, run_eval};
use polycnn::eval::report::{EvalReport, format_summary, sweep_csv, sweep_markdown};
use polycnn::gpu::Gpu;
use polycnn::gpu::activation::{ActivationKernel, Scheme};
use polycnn::model::Arch;
use polycnn::poly::degrees::{SearchLimits, degree_rows};
use polycnn::poly::parse_degree_list;
use polycnn::report::cost_report::{
    CostRequest, format_cost_summary, format_degree_table, format_network_cost, network_costs,
};
use polycnn::report::poly_report::{PolyRequest, build_rows, format_table, our_composite};
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
    /// HE cost of a network's approximate activations: per site and total depth, multiplications.
    Cost(CostArgs),
    /// Cheapest odd degree lists meeting the ReLU bound 2^-α (depth, then mults), verified.
    Degrees(DegreesArgs),
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
    /// ReLU evaluation: exact or approx.
    #[arg(long, default_value = "approx")]
    relu: String,
    /// Max-pool evaluation: exact or approx.
    #[arg(long, default_value = "approx")]
    maxpool: String,
    /// ReLU bound B: a number, `search[:START:STEP]` (the paper's grid, from one statistics
    /// pass) or `calibrate[:MARGIN]` (per site: max |x| on a calibration subset × margin).
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
    /// Elements per activation pass.
    #[arg(long, default_value_t = 1 << 22)]
    elements: usize,
    /// Passes timed per scheme.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Networks timed end to end (random weights), comma-separated.
    #[arg(long, default_value = "resnet20,resnet56,resnet50,resnet152")]
    models: String,
    /// Images per batch for the network timings (CIFAR nets; ImageNet nets use 1 on the GPU
    /// when the adapter is a software one).
    #[arg(long, default_value_t = 8)]
    batch: usize,
}

#[derive(Args)]
struct CostArgs {
    /// Architecture (as for eval); weights are random unless --weights is given (shapes only).
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Poly(args)) => run_poly(args),
        Some(Command::Eval(args)) => run_eval_command(&args).map(|_| ()),
        Some(Command::Sweep(args)) => run_sweep(args),
        Some(Command::Bench(args)) => run_bench(args),
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

fn parse_mode(s: &str, flag: &str) -> AnyResult<Mode> {
    match s {
        "exact" => Ok(Mode::Exact),
        "approx" => Ok(Mode::Approx),
        _ => Err(format!("{flag} '{s}': expected exact or approx").into()),
    }
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
        relu: parse_mode(&args.relu, "--relu")?,
        maxpool: parse_mode(&args.maxpool, "--maxpool")?,
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

/// The convolution kernel at real ResNet shapes (batch 1, 224x224 input), tiled vs naive.
fn bench_conv(gpu: &Gpu) -> AnyResult<()> {
    use polycnn::gpu::conv::{ConvKernel, ConvShape, time_conv};
    println!(
        "== GPU convolution (implicit GEMM) at ResNet shapes, batch 1 ({})",
        gpu.describe()
    );
    println!("  layer                       M      N      K    tiled ms  GFLOP/s   naive ms  GFLOP/s   speed-up");
    let conv = |c: usize, hw: usize, o: usize, k: usize, stride: usize| ConvShape {
        batch: 1,
        in_c: c,
        in_h: hw,
        in_w: hw,
        out_c: o,
        kernel_h: k,
        kernel_w: k,
        stride,
        pad: k / 2,
    };
    let layers = [
        ("conv 3x3 56x56 64→64", conv(64, 56, 64, 3, 1)),
        ("conv 3x3 28x28 128→128", conv(128, 28, 128, 3, 1)),
        ("conv 3x3 14x14 256→256", conv(256, 14, 256, 3, 1)),
        ("conv 1x1 56x56 64→256", conv(64, 56, 256, 1, 1)),
        ("conv 1x1 56x56 256→64", conv(256, 56, 64, 1, 1)),
        ("conv 1x1 14x14 1024→256", conv(1024, 14, 256, 1, 1)),
    ];
    for (name, shape) in layers {
        let (oh, ow) = shape.out_hw();
        let (m, n, k) = (oh * ow, shape.out_c, shape.in_c * shape.kernel_h * shape.kernel_w);
        let tiled = time_conv(gpu, shape, ConvKernel::Tiled, 3)?;
        let naive = time_conv(gpu, shape, ConvKernel::Naive, 1)?;
        let gf = |s: f64| shape.flops() / s / 1e9;
        println!(
            "  {name:<24} {m:>6} {n:>6} {k:>6}  {:>9.2} {:>8.2}  {:>9.2} {:>8.2}  {:>8.1}x",
            tiled * 1e3,
            gf(tiled),
            naive * 1e3,
            gf(naive),
            naive / tiled
        );
    }
    Ok(())
}

/// Seconds per image of `plan` on `backend`, after one untimed warm-up run.
fn time_network(
    backend: &polycnn::eval::Backend,
    graph: &polycnn::model::Graph,
    batch: &polycnn::model::Batch,
    plans: &[&polycnn::cpu::ActivationPlan],
) -> AnyResult<f64> {
    for plan in plans {
        backend.run(graph, batch, plan)?;
    }
    let start = std::time::Instant::now();
    for plan in plans {
        backend.run(graph, batch, plan)?;
    }
    Ok(start.elapsed().as_secs_f64() / batch.n as f64)
}

/// Images/s of whole networks (random weights): exact, approximate (α=14) and both in one pass,
/// on the CPU and the GPU backends.
fn bench_networks(args: &BenchArgs, gpu: Option<&Gpu>) -> AnyResult<()> {
    use polycnn::cpu::{ActivationPlan, SiteMode};
    use polycnn::eval::Backend;
    use polycnn::gpu::network::GpuNetwork;
    use polycnn::model::{self, Batch};
    let (sc, _) = our_composite(14, None)?;
    println!("== networks, random weights: seconds per image (images/s)");
    println!("  model              backend  batch        exact        approx α=14    exact+approx (one pass)");
    for name in args.models.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let arch: Arch = name.parse()?;
        let graph = model::random(arch, 1)?;
        let approx = ActivationPlan::uniform(&graph, SiteMode::approx(&sc.composite, 14, 100.0));
        let exact = ActivationPlan::exact(&graph);
        let software_gpu = gpu.is_some_and(|g| g.info.device_type == wgpu::DeviceType::Cpu);
        let mut backends: Vec<(Backend, usize)> = vec![(Backend::Cpu, args.batch)];
        if let Some(gpu) = gpu {
            let n = if software_gpu && graph.input.h > 64 {
                1
            } else {
                args.batch
            };
            backends.push((
                Backend::Gpu(Box::new(GpuNetwork::new(gpu, &graph, Scheme::DEFAULT)?)),
                n,
            ));
        }
        for (backend, n) in &backends {
            let data: Vec<f32> = (0..n * graph.input.numel())
                .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
                .collect();
            let batch = Batch::new(*n, graph.input, data)?;
            let e = time_network(backend, &graph, &batch, &[&exact])?;
            let a = time_network(backend, &graph, &batch, &[&approx])?;
            let both = time_network(backend, &graph, &batch, &[&exact, &approx])?;
            let cell = |s: f64| format!("{s:8.4} s ({:7.1}/s)", 1.0 / s);
            println!(
                "  {:<18} {:<7} {:>6}  {}  {}  {}",
                graph.name,
                backend.name(),
                n,
                cell(e),
                cell(a),
                cell(both)
            );
        }
    }
    Ok(())
}

fn run_bench(args: BenchArgs) -> AnyResult<()> {
    println!("== composite generation (Remez in double-double, ε search; release build)");
    let start = std::time::Instant::now();
    for alpha in 4..=14 {
        let (sc, ms) = our_composite(alpha, None)?;
        println!("  α={alpha:2} degrees {:?}: {ms:7.1} ms", sc.composite.degrees());
    }
    let total = start.elapsed().as_secs_f64();
    println!(
        "  all α 4..14: {:.3} s (target < 1 s: {})",
        total,
        if total < 1.0 { "met" } else { "NOT met" }
    );

    let gpu = try_gpu(true);
    bench_networks(&args, gpu.as_ref())?;
    let Some(gpu) = gpu else { return Ok(()) };
    bench_conv(&gpu)?;
    println!(
        "== GPU activation kernel, ReLU mode, {} elements, {} passes ({})",
        args.elements,
        args.repeats,
        gpu.describe()
    );
    println!("  α   scheme     ms/pass   Gelem/s   GB/s (read+write)");
    for alpha in [7, 14] {
        let (sc, _) = our_composite(alpha, None)?;
        for scheme in Scheme::ALL {
            let kernel = ActivationKernel::new(&gpu, &sc.composite, scheme);
            let seconds = kernel.time_relu(args.elements, args.repeats)?;
            let per_s = args.elements as f64 / seconds;
            println!(
                "  {alpha:2}  {:<9} {:9.3}  {:8.3}  {:8.3}",
                scheme.name(),
                seconds * 1e3,
                per_s / 1e9,
                per_s * 8.0 / 1e9
            );
        }
    }
    Ok(())
}

fn run_cost(args: CostArgs) -> AnyResult<()> {
    let request = CostRequest {
        model: args.model.parse::<Arch>()?,
        weights: args.weights,
        alphas: parse_alphas(&args.alpha)?,
        degrees: args.degrees.as_deref().map(parse_degree_list).transpose()?,
        relu: parse_mode(&args.relu, "--relu")? == Mode::Approx,
        maxpool: parse_mode(&args.maxpool, "--maxpool")? == Mode::Approx,
    };
    let costs = network_costs(&request)?;
    match costs.as_slice() {
        [one] => print!("{}", format_network_cost(one)),
        many => print!("{}", format_cost_summary(many)),
    }
    if let Some(path) = args.json {
        write_file(&path, &serde_json::to_string_pretty(&costs)?)?;
    }
    Ok(())
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
