//! ONNX files as a model source (`model::onnx`): PyTorch exports of small networks (both
//! exporters, scripts/make_onnx_fixtures.py) against PyTorch's logits, exact and approximated,
//! on both backends; the same network from ONNX and from the built-in builder + checkpoint; and
//! malformed files, which must give errors naming the file and the node or tensor.
//!
//! Most fixtures hold the graph only: their weights are counter-based (`model::CounterParams`)
//! and the test writes the external-data file they point to into a temporary folder, laid out
//! as the script laid it (the state_dict's float tensors in order, contiguous, little-endian).
//! "Relative difference" = max |got − want| / max |want| over all logits.

use polycnn::cpu;
use polycnn::exec::{ActivationPlan, SiteMode};
use polycnn::gpu::activation::Scheme;
use polycnn::gpu::network::GpuNetwork;
use polycnn::model::onnx::proto::{ModelProto, TensorProto};
use polycnn::model::onnx::{self, OnnxError, Place};
use polycnn::model::{Batch, CounterParams, Graph, ParamKind, ParamSource, Shape};
use polycnn::poly::{Composite, optimise_eps, paper_degrees};
use polycnn::weights::StateDict;
use prost::Message;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

mod common;

#[derive(Deserialize)]
struct Fixtures {
    nets: Vec<Net>,
    real: Vec<RealNet>,
}

/// A network with counter-based weights.
#[derive(Deserialize)]
struct Net {
    name: String,
    seed: u64,
    input_shape: [usize; 4],
    /// The state_dict's float tensors in order: name, shape, kind, fan-in.
    tensors: Vec<(String, Vec<usize>, String, usize)>,
    logits: Vec<f32>,
    /// PyTorch's logits with every weight rounded to float16 (for the float16 export).
    logits_f16_weights: Option<Vec<f32>>,
    approx: ApproxLogits,
    files: Vec<Export>,
}

#[derive(Deserialize)]
struct ApproxLogits {
    alpha: u32,
    bound: f64,
    logits: Vec<f64>,
}

#[derive(Deserialize)]
struct Export {
    file: String,
    exporter: String,
    opset: i64,
    /// "external", "external-f16" or "inline".
    weights: String,
}

/// A network whose weights are a real checkpoint in ../shared/data.
#[derive(Deserialize)]
struct RealNet {
    name: String,
    arch: String,
    checkpoint: String,
    tensors: Vec<(String, Vec<usize>)>,
    files: Vec<Export>,
}

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx")
}

fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| serde_json::from_str(&std::fs::read_to_string(fixture_dir().join("nets.json")).unwrap()).unwrap())
}

/// A fresh folder under the system's temporary directory (unique per call: tests run in parallel).
fn temp_dir(tag: &str) -> PathBuf {
    static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let k = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("polycnn-onnx-{}-{k}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn kind(name: &str, fan_in: usize) -> ParamKind {
    match name {
        "weight" => ParamKind::Weight { fan_in },
        "bias" => ParamKind::Bias,
        "bn_weight" => ParamKind::BnWeight,
        "bn_bias" => ParamKind::BnBias,
        "bn_mean" => ParamKind::BnMean,
        "bn_var" => ParamKind::BnVar,
        other => panic!("unknown tensor kind {other}"),
    }
}

/// Little-endian bytes of `values` as float32, or float16 when `half`.
fn le_bytes(values: &[f32], half: bool) -> Vec<u8> {
    if half {
        values
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect()
    } else {
        values.iter().flat_map(|&v| v.to_le_bytes()).collect()
    }
}

impl Net {
    /// The model of `export`, with its external data written beside a copy of it.
    fn model_path(&self, export: &Export) -> PathBuf {
        if export.weights == "inline" {
            return fixture_dir().join(&export.file);
        }
        let dir = temp_dir(&export.file);
        std::fs::copy(fixture_dir().join(&export.file), dir.join(&export.file)).unwrap();
        let mut params = CounterParams::new(self.seed);
        let mut data = Vec::new();
        for (name, shape, k, fan_in) in &self.tensors {
            let t = params.tensor(name, shape, kind(k, *fan_in)).unwrap();
            data.extend(le_bytes(&t.data, export.weights == "external-f16"));
        }
        std::fs::write(dir.join(format!("{}.data", export.file)), data).unwrap();
        dir.join(&export.file)
    }

    fn batch(&self) -> Batch {
        let [n, c, h, w] = self.input_shape;
        Batch::new(n, Shape::new(c, h, w), CounterParams::input(self.seed, n * c * h * w)).unwrap()
    }

    fn exact_logits(&self, export: &Export) -> &[f32] {
        match (&self.logits_f16_weights, export.weights.as_str()) {
            (Some(l), "external-f16") => l,
            _ => &self.logits,
        }
    }
}

fn relative_difference(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    got.iter()
        .zip(want)
        .fold(0.0f64, |m, (g, w)| m.max((*g as f64 - w).abs()))
        / scale
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

fn composite(alpha: u32) -> &'static Composite {
    static C: OnceLock<Composite> = OnceLock::new();
    assert_eq!(alpha, 14, "the fixtures are at α = 14");
    C.get_or_init(|| optimise_eps(paper_degrees(alpha).unwrap()).unwrap().composite)
}

fn each_export(mut f: impl FnMut(&Net, &Export, Graph)) {
    for net in &fixtures().nets {
        for export in &net.files {
            let path = net.model_path(export);
            let graph = onnx::load(&path).unwrap_or_else(|e| panic!("{}: {e}", export.file));
            f(net, export, graph);
        }
    }
}

#[test]
fn exports_match_pytorch_logits_on_cpu_exact_and_approximate() {
    each_export(|net, export, graph| {
        let batch = net.batch();
        let exact = cpu::run(&graph, &batch, &ActivationPlan::exact(&graph)).unwrap();
        let diff = relative_difference(&exact.logits, &widen(net.exact_logits(export)));
        eprintln!(
            "{} ({} opset {}): exact CPU vs PyTorch {diff:.2e}",
            export.file, export.exporter, export.opset
        );
        assert!(diff <= 1e-4, "{}: exact CPU vs PyTorch {diff:e}", export.file);
        if export.weights == "external-f16" {
            return;
        }
        let a = &net.approx;
        let plan = ActivationPlan::uniform(&graph, SiteMode::approx(composite(a.alpha), a.alpha, a.bound));
        let approx = cpu::run(&graph, &batch, &plan).unwrap();
        let diff = relative_difference(&approx.logits, &a.logits);
        eprintln!("{}: α={} CPU vs float64 PyTorch {diff:.2e}", export.file, a.alpha);
        assert!(diff <= 1e-4, "{}: approximate CPU vs PyTorch {diff:e}", export.file);
        assert!(approx.sites.iter().all(|s| s.out_of_range == 0 && s.non_finite == 0));
    });
}

#[test]
fn gpu_runs_exports_as_the_cpu_does() {
    let Some(gpu) = common::gpu() else { return };
    // One export per network keeps this short on a software rasteriser.
    let mut seen = std::collections::HashSet::new();
    each_export(|net, export, graph| {
        if !seen.insert(net.name.clone()) {
            return;
        }
        let batch = net.batch();
        let a = &net.approx;
        let network = GpuNetwork::new(gpu, &graph, Scheme::Clenshaw).unwrap();
        for plan in [
            ActivationPlan::exact(&graph),
            ActivationPlan::uniform(&graph, SiteMode::approx(composite(a.alpha), a.alpha, a.bound)),
        ] {
            let want = cpu::run(&graph, &batch, &plan).unwrap();
            let got = network.run(&batch, &plan).unwrap();
            let diff = relative_difference(&got.logits, &widen(&want.logits));
            eprintln!("{}: GPU vs CPU {diff:.2e}", export.file);
            assert!(diff <= 1e-4, "{}: GPU vs CPU {diff:e}", export.file);
        }
    });
}

/// Site names are the ONNX node names of the Relu and MaxPool nodes.
#[test]
fn sites_are_named_after_the_onnx_nodes() {
    let net = &fixtures().nets[0];
    let export = &net.files[0];
    let path = net.model_path(export);
    let graph = onnx::load(&path).unwrap();
    let model = read_model(&path);
    let names: Vec<&str> = model
        .graph
        .as_ref()
        .unwrap()
        .node
        .iter()
        .filter(|n| matches!(n.op_type.as_deref(), Some("Relu" | "MaxPool")))
        .map(|n| n.name.as_deref().unwrap())
        .collect();
    let sites: Vec<&str> = graph.sites.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(sites, names);
    assert!(sites.contains(&"/layer1/layer1.0/Relu"), "{sites:?}");
}

fn read_model(path: &Path) -> ModelProto {
    ModelProto::decode(std::fs::read(path).unwrap().as_slice()).unwrap()
}

/// The small inline export, decoded for editing.
fn small_model() -> (ModelProto, PathBuf) {
    let net = fixtures().nets.iter().find(|n| n.name == "cifar_resnet18_w2").unwrap();
    let path = fixture_dir().join(&net.files[0].file);
    (read_model(&path), path)
}

/// Writes `model` as `name` in a fresh folder and loads it.
fn load_edited(model: &ModelProto, name: &str) -> OnnxError {
    let dir = temp_dir(name);
    let path = dir.join(format!("{name}.onnx"));
    std::fs::write(&path, model.encode_to_vec()).unwrap();
    let err = onnx::load(&path).expect_err("a malformed model must not load");
    assert!(err.file.ends_with(&format!("{name}.onnx")), "{err}");
    err
}

fn node_place(err: &OnnxError) -> (&str, &str, i64) {
    match &err.place {
        Place::Node { name, op_type, opset } => (name, op_type, *opset),
        other => panic!("expected a node in `{err}`, got {other:?}"),
    }
}

#[test]
fn truncated_file_is_an_error_naming_it() {
    let (_, path) = small_model();
    let bytes = std::fs::read(&path).unwrap();
    let dir = temp_dir("truncated");
    for cut in [bytes.len() / 3, bytes.len() - 7, 1] {
        let cut_path = dir.join("truncated.onnx");
        std::fs::write(&cut_path, &bytes[..cut]).unwrap();
        let err = onnx::load(&cut_path).expect_err("truncated");
        assert!(err.to_string().contains("truncated.onnx"), "{err}");
    }
}

#[test]
fn unknown_operator_is_an_error_naming_node_op_and_opset() {
    let (mut model, _) = small_model();
    let graph = model.graph.as_mut().unwrap();
    let relu = graph
        .node
        .iter_mut()
        .find(|n| n.op_type.as_deref() == Some("Relu"))
        .unwrap();
    relu.op_type = Some("Softplus".into());
    let name = relu.name.clone().unwrap();
    let err = load_edited(&model, "unknown_op");
    assert_eq!(node_place(&err), (name.as_str(), "Softplus", 17), "{err}");
    assert!(err.to_string().contains("not supported"), "{err}");
}

#[test]
fn wrong_initializer_size_is_an_error_naming_the_tensor() {
    let (mut model, _) = small_model();
    let graph = model.graph.as_mut().unwrap();
    let init: &mut TensorProto = graph.initializer.iter_mut().find(|t| t.dims.len() == 4).unwrap();
    init.dims[0] += 1;
    let name = init.name.clone().unwrap();
    let err = load_edited(&model, "wrong_size");
    assert_eq!(err.place, Place::Tensor(name), "{err}");
    assert!(err.detail.contains("elements"), "{err}");
}

#[test]
fn cycle_and_missing_input_are_errors_naming_the_node() {
    let (mut model, _) = small_model();
    let graph = model.graph.as_mut().unwrap();
    let last_output = graph
        .node
        .iter()
        .rev()
        .find(|n| n.op_type.as_deref() == Some("Add"))
        .unwrap()
        .output[0]
        .clone();
    let conv = graph
        .node
        .iter_mut()
        .find(|n| n.op_type.as_deref() == Some("Conv"))
        .unwrap();
    conv.input[0] = last_output;
    let err = load_edited(&model, "cycle");
    assert!(err.detail.contains("cycle"), "{err}");
    node_place(&err);

    let (mut model, _) = small_model();
    let graph = model.graph.as_mut().unwrap();
    let add = graph
        .node
        .iter_mut()
        .find(|n| n.op_type.as_deref() == Some("Add"))
        .unwrap();
    add.input[1] = "nowhere".into();
    let name = add.name.clone().unwrap();
    let err = load_edited(&model, "missing_input");
    assert_eq!(node_place(&err).0, name);
    assert!(err.detail.contains("`nowhere`"), "{err}");
}

#[test]
fn unsupported_opset_and_multiple_inputs_are_errors() {
    let (mut model, _) = small_model();
    model.opset_import[0].version = Some(9);
    let err = load_edited(&model, "opset9");
    assert!(err.detail.contains("opset 9"), "{err}");
    let (mut model, _) = small_model();
    let graph = model.graph.as_mut().unwrap();
    let mut second = graph.input[0].clone();
    second.name = Some("second".into());
    graph.input.push(second);
    let err = load_edited(&model, "two_inputs");
    assert!(err.detail.contains("2 inputs"), "{err}");
}

/// External data must stay inside the model's folder and within the data file.
#[test]
fn external_data_is_confined_and_bounded() {
    let net = fixtures()
        .nets
        .iter()
        .find(|n| n.files.iter().any(|f| f.weights == "external"))
        .unwrap();
    let export = net.files.iter().find(|f| f.weights == "external").unwrap();
    let path = net.model_path(export);
    let dir = path.parent().unwrap().to_path_buf();
    let edit = |f: &dyn Fn(&mut TensorProto)| {
        let mut model = read_model(&path);
        let init = model
            .graph
            .as_mut()
            .unwrap()
            .initializer
            .iter_mut()
            .find(|t| t.data_location == Some(1))
            .unwrap();
        f(init);
        let edited = dir.join("edited.onnx");
        std::fs::write(&edited, model.encode_to_vec()).unwrap();
        onnx::load(&edited).expect_err("bad external data").to_string()
    };
    let set = |t: &mut TensorProto, key: &str, value: &str| {
        t.external_data
            .iter_mut()
            .find(|e| e.key.as_deref() == Some(key))
            .unwrap()
            .value = Some(value.into());
    };
    let err = edit(&|t| set(t, "location", "../escape.data"));
    assert!(err.contains("not a path inside the model's folder"), "{err}");
    let err = edit(&|t| set(t, "location", "/etc/passwd"));
    assert!(err.contains("not a path inside the model's folder"), "{err}");
    let err = edit(&|t| set(t, "offset", "999999999999"));
    assert!(err.contains("past the end"), "{err}");
    let err = edit(&|t| set(t, "length", "4"));
    assert!(err.contains("need"), "{err}");
    std::fs::remove_file(dir.join(format!("{}.data", export.file))).unwrap();
    let err = onnx::load(&path).expect_err("missing data file").to_string();
    assert!(err.contains(".data"), "{err}");
}

/// `../shared/data` beside the repository, if present.
/// The real data folder (`POLYCNN_DATA`), or `None` after reporting the skip (a failure when
/// `POLYCNN_REQUIRE_DATA=1`).
fn shared_data() -> Option<PathBuf> {
    common::data("cifar10").map(|_| common::data_root())
}

impl RealNet {
    /// The built-in network from the checkpoint, and each export with the same weights.
    fn graphs(&self, data: &Path) -> (Graph, Vec<(String, Graph)>) {
        let checkpoint = data.join(&self.checkpoint);
        let builtin = polycnn::model::load(self.arch.parse().unwrap(), &checkpoint).unwrap();
        let exports = self
            .onnx_files(data)
            .into_iter()
            .map(|(file, path)| (file, onnx::load(&path).unwrap_or_else(|e| panic!("{e}"))))
            .collect();
        (builtin, exports)
    }

    /// Each export, its `.data` file written beside a copy of it from the checkpoint (read by
    /// polycnn's state-dict reader) in the script's layout: (file name, path of the copy).
    fn onnx_files(&self, data: &Path) -> Vec<(String, PathBuf)> {
        let checkpoint = data.join(&self.checkpoint);
        let dict = StateDict::load(&checkpoint).unwrap();
        let mut bytes = Vec::new();
        for (name, shape) in &self.tensors {
            let t = dict
                .get(name)
                .unwrap_or_else(|| panic!("{name} not in {}", checkpoint.display()));
            assert_eq!(&t.shape, shape, "{name}");
            bytes.extend(le_bytes(&t.data, false));
        }
        self.files
            .iter()
            .map(|export| {
                let dir = temp_dir(&export.file);
                std::fs::copy(fixture_dir().join(&export.file), dir.join(&export.file)).unwrap();
                std::fs::write(dir.join(format!("{}.data", export.file)), &bytes).unwrap();
                (export.file.clone(), dir.join(&export.file))
            })
            .collect()
    }
}

/// akamaster's ResNet-20 and the CIFAR VGG-11-bn, from their checkpoints and from ONNX exports
/// whose weights are the same checkpoints: on the 16 lossless CIFAR-10 test images of the
/// PyTorch fixtures, exact and approximated (α = 14, B = 50), the logits and every site's
/// statistics are identical.
#[test]
fn onnx_and_builtin_networks_agree_exactly_on_real_weights() {
    let Some(data) = shared_data() else { return };
    let inputs = [
        ("resnet20_akamaster", "akamaster_resnet20_logits.safetensors"),
        ("vgg11_bn_cifar10", "cifar10_vgg11_bn_logits.safetensors"),
    ];
    for net in &fixtures().real {
        let file = inputs.iter().find(|(n, _)| *n == net.name).unwrap().1;
        let io = StateDict::load(
            &PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(file),
        )
        .unwrap();
        let input = io.get("input").unwrap();
        let (builtin, exports) = net.graphs(&data);
        let batch = Batch::new(input.shape[0], builtin.input, input.data.clone()).unwrap();
        for (file, graph) in &exports {
            assert_eq!(graph.sites.len(), builtin.sites.len(), "{file}");
            for plan_of in [ActivationPlan::exact, |g: &Graph| {
                ActivationPlan::uniform(g, SiteMode::approx(composite(14), 14, 50.0))
            }] {
                let want = cpu::run(&builtin, &batch, &plan_of(&builtin)).unwrap();
                let got = cpu::run(graph, &batch, &plan_of(graph)).unwrap();
                assert_eq!(got.logits, want.logits, "{file}: logits");
                for (g, w) in got.sites.iter().zip(&want.sites) {
                    assert_eq!(
                        (g.count, g.max_abs, g.out_of_range, &g.log2_hist),
                        (w.count, w.max_abs, w.out_of_range, &w.log2_hist),
                        "{file}: site {} (built-in {})",
                        g.name,
                        w.name
                    );
                }
            }
            eprintln!(
                "{file}: identical to the built-in {} ({} sites)",
                net.arch,
                graph.sites.len()
            );
        }
    }
}

/// The descriptor follows the input: 32x32 is CIFAR-10's evaluation (as the built-in CIFAR
/// ResNets'), 224x224 ImageNet's, anything else its own size; classes from the graph.
#[test]
fn descriptors_follow_the_input_shape() {
    use polycnn::model::{Arch, DatasetFamily};
    let net = fixtures().nets.iter().find(|n| n.name == "cifar_resnet18_w2").unwrap();
    let cifar = onnx::open(&net.model_path(&net.files[0])).unwrap().descriptor;
    let builtin = Arch::CifarResNet(20).descriptor();
    assert_eq!(
        (cifar.family, cifar.preprocessing, cifar.input, cifar.classes),
        (builtin.family, builtin.preprocessing, builtin.input, builtin.classes)
    );
    assert_eq!(cifar.search_grid, builtin.search_grid);
    let net = fixtures().nets.iter().find(|n| n.name == "tv_resnet18").unwrap();
    let other = onnx::open(&net.model_path(&net.files[0])).unwrap().descriptor;
    assert_eq!(
        (other.family, other.input, other.classes),
        (DatasetFamily::Other, Shape::new(3, 64, 64), 10)
    );
    let imagenet = onnx::descriptor("x", Shape::new(3, 224, 224), 1000);
    assert_eq!(imagenet.preprocessing, Arch::ResNet(18).descriptor().preprocessing);
}

// ---- ONNX models through `run_eval` and the command line ----

use polycnn::eval::BoundRule;
use polycnn::eval::command::run_eval;
use polycnn::eval::preprocess::PreprocessingOverrides;
use polycnn::eval::request::EvalRequest;
use polycnn::exec::NoProgress;
use polycnn::model::ModelSource;
use polycnn::weights::sha256::{hex, sha256_file};

/// The fixture `name`'s first export, with its weights written beside a copy of it.
fn fixture_model(name: &str) -> PathBuf {
    let net = fixtures().nets.iter().find(|n| n.name == name).unwrap();
    net.model_path(&net.files[0])
}

/// A CIFAR-10 binary batch (label byte + 3x32x32 bytes per image) of `n` deterministic images,
/// in a fresh folder: the layout the built-in CIFAR networks read.
fn cifar_batch(n: usize) -> PathBuf {
    let path = temp_dir("cifar").join("test_batch.bin");
    common::write_cifar_batch(&path, n);
    path
}

fn onnx_request(model: PathBuf, data: PathBuf) -> EvalRequest {
    EvalRequest::with_model(ModelSource::Onnx(model), data)
}

/// MobileNet-V2's ReLU6 halves see different ranges (x and x − 6), so `calibrate` chooses
/// them different bounds; eval makes each pair share the larger one and the approximated
/// network runs on the CPU (the backends refuse a plan that splits a pair).
#[test]
fn relu6_network_runs_approximated_with_calibrated_bounds() {
    let model = fixture_model("mobilenet_v2_w025");
    let graph = onnx::load(&model).unwrap();
    let pairs: Vec<(usize, usize)> = (0..graph.sites.len())
        .filter_map(|s| graph.sites[s].shares_bound_with.map(|leader| (leader, s)))
        .collect();
    assert!(!pairs.is_empty(), "the fixture has ReLU6 sites");
    let request = EvalRequest {
        bound: BoundRule::Calibrate { margin: 1.1, images: 0 }.into(),
        bound_max: BoundRule::Calibrate { margin: 1.1, images: 0 }.into(),
        calibration_images: 8,
        batch: 4,
        ..onnx_request(model, cifar_batch(8))
    };
    let report = run_eval(&request, None, &NoProgress).unwrap();
    assert_eq!(report.images, 8);
    let bounds = &report.bounds.per_site;
    let observed = &report.exact_sites;
    let mut split = 0;
    for &(leader, half) in &pairs {
        assert_eq!(bounds[leader].bound, bounds[half].bound, "{}", bounds[half].site);
        let own = |s: usize| observed[s].max_abs as f64 * 1.1;
        assert_eq!(bounds[half].bound, own(leader).max(own(half)), "{}", bounds[half].site);
        split += usize::from(own(leader) != own(half));
    }
    assert!(
        split > 0,
        "no ReLU6 pair saw different ranges: the test would not catch a split"
    );
    let approx = &report.configs[0];
    assert_eq!(approx.sites.len(), graph.sites.len());
    assert!(approx.non_finite == 0, "{approx:?}");
}

/// akamaster's ResNet-20 and the CIFAR VGG-11-bn from their checkpoints and from the ONNX
/// exports of both exporters holding the same weights (with the checkpoint's `--mean/--std`),
/// evaluated by `run_eval` on 200 CIFAR-10 test images, calibrated bounds, α = 14: the reports are
/// identical but for timing, the model's identity (name, file, hash) and site names.
#[test]
fn onnx_and_builtin_reports_are_identical() {
    let Some(data) = common::data("cifar10") else { return };
    let images = data.join("test_first1000_png");
    for net in &fixtures().real {
        let arch = net.arch.parse().unwrap();
        let builtin = EvalRequest {
            limit: Some(200),
            batch: 50,
            bound: BoundRule::Calibrate { margin: 1.2, images: 0 }.into(),
            bound_max: BoundRule::Calibrate { margin: 1.2, images: 0 }.into(),
            ..EvalRequest::new(arch, data.parent().unwrap().join(&net.checkpoint), images.clone())
        };
        let want = comparable(&run_eval(&builtin, None, &NoProgress).unwrap());
        // The file does not say how its network was trained: a 32x32 ONNX network gets the
        // CIFAR ResNets' statistics unless --mean/--std say otherwise (the VGG's differ).
        let trained = polycnn::model::Arch::descriptor(arch).preprocessing.normalize;
        for (file, path) in net.onnx_files(data.parent().unwrap()) {
            let from_onnx = EvalRequest {
                model: ModelSource::Onnx(path.clone()),
                preprocessing: PreprocessingOverrides {
                    mean: Some(trained.mean),
                    std: Some(trained.std),
                    ..Default::default()
                },
                ..builtin.clone()
            };
            let report = run_eval(&from_onnx, None, &NoProgress).unwrap();
            assert_eq!(report.weights, path.display().to_string());
            assert_eq!(report.weights_sha256, hex(&sha256_file(&path).unwrap()));
            if let Some(at) = first_difference(&comparable(&report), &want) {
                panic!("{file} vs the built-in {}: the reports differ at {at}", net.arch);
            }
            eprintln!("{file}: report identical to the built-in {}'s", net.arch);
            std::fs::remove_dir_all(path.parent().unwrap()).ok();
        }
    }
}

/// Where two JSON values first differ ("/configs/0/approx/top1: 91.5 vs 91"), or None.
fn first_difference(a: &serde_json::Value, b: &serde_json::Value) -> Option<String> {
    use serde_json::Value::{Array, Object};
    match (a, b) {
        (Object(x), Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| match (x.get(k), y.get(k)) {
                (Some(p), Some(q)) => first_difference(p, q).map(|d| format!("/{k}{d}")),
                _ => Some(format!("/{k}: present in one report only")),
            })
        }
        (Array(x), Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (p, q))| first_difference(p, q).map(|d| format!("/{i}{d}"))),
        _ if a == b => None,
        _ => Some(format!(": {a} vs {b}")),
    }
}

/// A report as JSON without what legitimately differs between two sources of one network.
fn comparable(report: &polycnn::eval::report::EvalReport) -> serde_json::Value {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                for key in [
                    "seconds",
                    "images_per_second",
                    "model",
                    "weights",
                    "weights_sha256",
                    "site",
                    "name",
                ] {
                    map.remove(key);
                }
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(report).unwrap();
    strip(&mut v);
    v
}

fn polycnn_cli(args: &[&str]) -> (Option<i32>, String, String) {
    common::polycnn(args)
}

#[test]
fn weights_with_an_onnx_model_is_an_error_naming_both() {
    let model = fixture_dir().join("vgg11_bn_cifar10_torchscript17.onnx");
    let model = model.to_str().unwrap();
    let weights = common::digits("digits_cnn.safetensors");
    let data = common::digits("digits_test.bin");
    for command in ["eval", "plan"] {
        let (code, _, stderr) = polycnn_cli(&[command, "--model", model, "--weights", &weights, "--data", &data]);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(
            stderr.contains("--weights") && stderr.contains(&weights) && stderr.contains(model),
            "{stderr}"
        );
    }
    let (code, _, stderr) = polycnn_cli(&["eval", "--model", "digits_cnn", "--data", &data]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("needs --weights"), "{stderr}");
    let (code, _, stderr) = polycnn_cli(&["cost", "--model", "/nonexistent/net.onnx"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("--model /nonexistent/net.onnx"), "{stderr}");
}

/// Reading an eval request leaves the ONNX file to the run, which decodes it once (a grid-less
/// `--bound search` takes the loaded network's grid): a file that is no ONNX model is found out
/// only after every argument has been checked, and the run's error names it.
#[test]
fn an_eval_request_does_not_decode_the_onnx_file() {
    let model = temp_dir("undecoded").join("garbage.onnx");
    std::fs::write(&model, b"not an ONNX model").unwrap();
    let (model, data) = (model.to_str().unwrap(), cifar_batch(2));
    let data = data.to_str().unwrap();
    let (code, _, stderr) = polycnn_cli(&["eval", "--model", model, "--data", data, "--batch", "0"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("--batch must be at least 1"), "{stderr}");
    let (code, _, stderr) = polycnn_cli(&["eval", "--model", model, "--data", data, "--backend", "cpu"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("garbage.onnx"), "{stderr}");
}

/// `cost --model FILE.onnx`: every site of the graph, named after its node, ReLU6 halves too.
#[test]
fn cost_reads_an_onnx_model() {
    let model = fixture_model("mobilenet_v2_w025");
    let graph = onnx::load(&model).unwrap();
    let json = temp_dir("cost").join("cost.json");
    let (code, stdout, stderr) = polycnn_cli(&[
        "cost",
        "--model",
        model.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let costs = common::read(&json);
    let sites = costs[0]["sites"].as_array().unwrap();
    let names: Vec<&str> = sites.iter().map(|s| s["site"].as_str().unwrap()).collect();
    let want: Vec<&str> = graph.sites.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, want);
    assert!(stdout.contains(want[0]), "{stdout}");
    assert!(costs[0]["nonscalar_mults"].as_u64().unwrap() > 0, "{costs}");
}

/// `plan --model FILE.onnx` on a small CIFAR network and a CIFAR binary batch: the plan names
/// the graph and its ONNX sites, and `eval --plan` runs it.
#[test]
fn plan_and_eval_run_an_onnx_model_from_the_command_line() {
    let model = fixture_model("cifar_resnet18_w2");
    let graph = onnx::load(&model).unwrap();
    let data = cifar_batch(24);
    let dir = temp_dir("plan");
    let (plan, report) = (dir.join("plan.json"), dir.join("report.json"));
    let (model, data) = (model.to_str().unwrap(), data.to_str().unwrap());
    let (code, _, stderr) = polycnn_cli(&[
        "plan",
        "--model",
        model,
        "--data",
        data,
        "--alpha",
        "12..14",
        "--calibration",
        "12",
        "--batch",
        "12",
        "--rounds",
        "1",
        "--budget",
        "100",
        "--json",
        plan.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let written = common::read(&plan);
    assert_eq!(written["model"], graph.name.as_str());
    let sites: Vec<&str> = written["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["site"].as_str().unwrap())
        .collect();
    assert_eq!(sites, graph.sites.iter().map(|s| s.name.as_str()).collect::<Vec<_>>());
    let (code, _, stderr) = polycnn_cli(&[
        "eval",
        "--model",
        model,
        "--data",
        data,
        "--plan",
        plan.to_str().unwrap(),
        "--backend",
        "cpu",
        "--json",
        report.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let report = common::read(&report);
    assert_eq!(report["model"], graph.name.as_str());
    assert!(report["weights"].as_str().unwrap().ends_with(".onnx"));
    assert_eq!(report["images"], 24);
}

/// An ONNX CIFAR network through `eval` takes CIFAR-10's preprocessing (32x32 as they are,
/// the statistics akamaster's networks use), `--mean/--std` change it, and geometry flags are
/// refused as for the built-in CIFAR networks.
#[test]
fn onnx_eval_takes_the_descriptors_preprocessing_and_its_overrides() {
    let model = fixture_model("cifar_resnet18_w2");
    let data = cifar_batch(4);
    let json = temp_dir("pre").join("report.json");
    let (model, data) = (model.to_str().unwrap(), data.to_str().unwrap());
    let base = [
        "eval",
        "--model",
        model,
        "--data",
        data,
        "--backend",
        "cpu",
        "--bound",
        "20",
        "--bound-max",
        "20",
    ];
    let run = |extra: &[&str]| {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        polycnn_cli(&args)
    };
    let (code, _, stderr) = run(&["--json", json.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    let builtin = polycnn::model::Arch::CifarResNet(20).descriptor().preprocessing;
    let pre = &common::read(&json)["preprocessing"];
    let mean: [f32; 3] = serde_json::from_value(pre["mean"].clone()).unwrap();
    assert_eq!(mean, builtin.normalize.mean, "{pre}");
    let (code, _, stderr) = run(&["--mean", "0.5", "--std", "0.25", "--json", json.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    let pre = &common::read(&json)["preprocessing"];
    assert_eq!(pre["mean"][0].as_f64(), Some(0.5), "{pre}");
    assert_eq!(pre["std"][2].as_f64(), Some(0.25), "{pre}");
    let (code, _, stderr) = run(&["--resize", "40"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("--resize") && stderr.contains("32x32"), "{stderr}");
}

/// `bench --model FILE.onnx` times that network (its own weights) on the CPU, over two rounds.
#[test]
fn bench_times_an_onnx_model() {
    let model = fixture_model("cifar_resnet18_w2");
    let (code, stdout, stderr) = polycnn_cli(&[
        "bench",
        "--sections",
        "networks",
        "--model",
        model.to_str().unwrap(),
        "--batch",
        "2",
        "--repeats",
        "1",
        "--network-repeats",
        "2",
        "--no-gpu",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let name = model.file_stem().unwrap().to_str().unwrap();
    assert!(stdout.contains(name), "{stdout}");
    let (code, _, stderr) = polycnn_cli(&["bench", "--sections", "networks", "--network-repeats", "0", "--no-gpu"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("--network-repeats"), "{stderr}");
}

/// `bench` on a network with an exact-only op (here each ReLU of the small export made a
/// Sigmoid): the exact forward is timed, the approximate columns are "-" with the reason said
/// once, and the JSON has null for them and the reason.
#[test]
fn bench_times_the_exact_forward_of_a_network_with_exact_only_ops() {
    let (mut model, _) = small_model();
    for node in &mut model.graph.as_mut().unwrap().node {
        if node.op_type.as_deref() == Some("Relu") {
            node.op_type = Some("Sigmoid".into());
        }
    }
    let dir = temp_dir("bench_sigmoid");
    let path = dir.join("sigmoid_net.onnx");
    std::fs::write(&path, model.encode_to_vec()).unwrap();
    assert!(onnx::load(&path).unwrap().refuse_approximation().is_err());
    let json = dir.join("bench.json");
    let (code, stdout, stderr) = polycnn_cli(&[
        "bench",
        "--sections",
        "networks",
        "--model",
        path.to_str().unwrap(),
        "--batch",
        "2",
        "--repeats",
        "1",
        "--no-gpu",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        stdout.matches("Sigmoid has no polynomial approximation").count(),
        1,
        "{stdout}"
    );
    let row_line = stdout
        .lines()
        .find(|l| l.contains("sigmoid_net") && l.contains(" s ("))
        .unwrap();
    assert_eq!(row_line.matches(" - ").count(), 2, "{row_line}");
    let report = common::read(&json);
    let row = &report["networks"][0];
    assert!(row["exact_s_per_image"].as_f64().unwrap() > 0.0, "{row}");
    assert!(
        row["approx_s_per_image"].is_null() && row["both_s_per_image"].is_null(),
        "{row}"
    );
    assert!(row["approx_refused"].as_str().unwrap().contains("Sigmoid"), "{row}");
}

/// The torchvision ResNet-18 fixture (64x64, ending in a global average pool) with its input
/// declared 3x224x224: a network the ImageNet evaluation applies to.
fn imagenet_sized_model() -> PathBuf {
    use polycnn::model::onnx::proto::DimensionValue;
    let path = fixture_model("tv_resnet18");
    let mut model = read_model(&path);
    let graph = model.graph.as_mut().unwrap();
    let shape = graph.input[0].r#type.as_mut().unwrap().tensor_type.as_mut().unwrap();
    for d in &mut shape.shape.as_mut().unwrap().dim[2..] {
        d.value = Some(DimensionValue::DimValue(224));
    }
    std::fs::write(&path, model.encode_to_vec()).unwrap();
    path
}

/// A flat folder of PNG images of assorted sizes and a `<file> <index>` labels file: the
/// ImageNet layout built-in ImageNet networks read with `--labels`.
fn flat_images(n: usize) -> (PathBuf, PathBuf) {
    let dir = temp_dir("flat");
    let mut labels = String::new();
    for i in 0..n {
        let (w, h) = (230 + 37 * i as u32, 300 - 11 * i as u32);
        let image = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, (i * 40) as u8])
        });
        let name = format!("img_{i}.png");
        image.save(dir.join(&name)).unwrap();
        labels += &format!("{name} {}\n", i % 10);
    }
    let labels_file = temp_dir("labels").join("labels.txt");
    std::fs::write(&labels_file, labels).unwrap();
    (dir, labels_file)
}

/// A 224-input ONNX network through `eval` on the flat ImageNet layout: Resize(256) +
/// CenterCrop(224) bilinear by default, `--resize/--interpolation` change it, a `--crop` other
/// than the graph's input is refused.
#[test]
fn onnx_eval_reads_the_imagenet_layout_for_224_inputs() {
    let model = imagenet_sized_model();
    let (images, labels) = flat_images(3);
    let json = temp_dir("imagenet").join("report.json");
    let base = [
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data",
        images.to_str().unwrap(),
        "--labels",
        labels.to_str().unwrap(),
        "--backend",
        "cpu",
        "--bound",
        "100",
        "--bound-max",
        "100",
        "--json",
        json.to_str().unwrap(),
    ];
    let run = |extra: &[&str]| {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        polycnn_cli(&args)
    };
    let (code, _, stderr) = run(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    let report = common::read(&json);
    assert_eq!(report["images"], 3);
    let pre = &report["preprocessing"];
    assert_eq!(
        (pre["resize"].as_u64(), &pre["crop"]),
        (Some(256), &serde_json::json!([224, 224])),
        "{pre}"
    );
    let (code, _, stderr) = run(&["--resize", "300", "--interpolation", "bicubic"]);
    assert_eq!(code, Some(0), "{stderr}");
    let pre = &common::read(&json)["preprocessing"];
    assert_eq!(
        (pre["resize"].as_u64(), pre["interpolation"].as_str()),
        (Some(300), Some("bicubic")),
        "{pre}"
    );
    let (code, _, stderr) = run(&["--crop", "200"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("--crop 200") && stderr.contains("224x224"), "{stderr}");
}

/// A network of no known data family (the 64x64 torchvision ResNet-18 fixture) reads class
/// folders as torchvision's ImageFolder, images at the input size; an image of another size is
/// a failure the report names.
#[test]
fn onnx_eval_reads_class_folders_for_other_input_sizes() {
    let model = fixture_model("tv_resnet18");
    let root = temp_dir("folders");
    for (class, count) in [("cat", 2u32), ("dog", 3)] {
        std::fs::create_dir_all(root.join(class)).unwrap();
        for i in 0..count {
            let image = image::RgbImage::from_fn(64, 64, |x, y| {
                image::Rgb([(x * 4) as u8, (y * 4) as u8, (i * 60) as u8])
            });
            image.save(root.join(class).join(format!("{i}.png"))).unwrap();
        }
    }
    let json = temp_dir("folders-report").join("report.json");
    let args = [
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data",
        root.to_str().unwrap(),
        "--backend",
        "cpu",
        "--bound",
        "100",
        "--bound-max",
        "100",
        "--json",
        json.to_str().unwrap(),
    ];
    let (code, _, stderr) = polycnn_cli(&args);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(common::read(&json)["images"], 5);
    let odd = root.join("dog").join("odd.png");
    image::RgbImage::new(70, 64).save(&odd).unwrap();
    let (code, _, stderr) = polycnn_cli(&args);
    assert_eq!(code, Some(0), "{stderr}");
    let report = common::read(&json);
    assert_eq!(report["images"], 5, "an image of the wrong size is not evaluated");
    let failures = report["failures"].to_string();
    assert!(failures.contains("odd.png") && failures.contains("70x64"), "{failures}");
}
