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
use polycnn::gpu::Gpu;
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
    let gpu = match Gpu::new() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("skipped: no GPU adapter ({e})");
            return;
        }
    };
    // One export per network keeps this short on a software rasteriser.
    let mut seen = std::collections::HashSet::new();
    each_export(|net, export, graph| {
        if !seen.insert(net.name.clone()) {
            return;
        }
        if net.name.starts_with("mobilenet") {
            // Grouped convolution and ReLU6's Sub/Affine are CPU-only in the IR's first step.
            eprintln!(
                "skipped on the GPU: {} (grouped convolution not in the GPU backend yet)",
                export.file
            );
            return;
        }
        let batch = net.batch();
        let a = &net.approx;
        let network = GpuNetwork::new(&gpu, &graph, Scheme::Clenshaw).unwrap();
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
fn shared_data() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    dir.is_dir().then_some(dir)
}

impl RealNet {
    /// The built-in network from the checkpoint, and each export with its `.data` file written
    /// from the same checkpoint (read by polycnn's state-dict reader) in the script's layout.
    fn graphs(&self, data: &Path) -> (Graph, Vec<(String, Graph)>) {
        let checkpoint = data.join(&self.checkpoint);
        let builtin = polycnn::model::load(self.arch.parse().unwrap(), &checkpoint).unwrap();
        let dict = StateDict::load(&checkpoint).unwrap();
        let mut bytes = Vec::new();
        for (name, shape) in &self.tensors {
            let t = dict
                .get(name)
                .unwrap_or_else(|| panic!("{name} not in {}", checkpoint.display()));
            assert_eq!(&t.shape, shape, "{name}");
            bytes.extend(le_bytes(&t.data, false));
        }
        let exports = self
            .files
            .iter()
            .map(|export| {
                let dir = temp_dir(&export.file);
                std::fs::copy(fixture_dir().join(&export.file), dir.join(&export.file)).unwrap();
                std::fs::write(dir.join(format!("{}.data", export.file)), &bytes).unwrap();
                let graph = onnx::load(&dir.join(&export.file)).unwrap_or_else(|e| panic!("{e}"));
                (export.file.clone(), graph)
            })
            .collect();
        (builtin, exports)
    }
}

/// akamaster's ResNet-20 and the CIFAR VGG-11-bn, from their checkpoints and from ONNX exports
/// whose weights are the same checkpoints: on the 16 lossless CIFAR-10 test images of the
/// PyTorch fixtures, exact and approximated (α = 14, B = 50), the logits and every site's
/// statistics are identical.
#[test]
fn onnx_and_builtin_networks_agree_exactly_on_real_weights() {
    let Some(data) = shared_data() else {
        eprintln!("skipped: ../shared/data is absent (real checkpoints)");
        return;
    };
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
