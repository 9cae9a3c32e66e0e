//! What `polycnn eval` / `sweep` are asked to do ([`EvalRequest`]), with the command line's
//! defaults in one place ([`defaults`]).

use super::bounds::{BoundRule, RequestedBound};
use super::ckks_noise::PolyEval;
use super::config::Mode;
use super::plan_file::PrecisionPlan;
use super::preprocess::PreprocessingOverrides;
use super::shard::Shard;
use crate::gpu::activation::Scheme;
use crate::he::CkksPreset;
use crate::model::{Arch, ModelSource, SearchGrid};
use std::path::PathBuf;

/// The defaults of `eval`/`sweep` options: the command line's `default_value`s and
/// [`EvalRequest::new`] both read these.
pub mod defaults {
    pub const ALPHA: u32 = 14;
    /// `--relu` and `--maxpool`.
    pub const MODE: &str = "approx";
    /// `--bound` and `--bound-max`: the official search on the network's grid.
    pub const BOUND: &str = "search";
    /// `calibrate` bounds: 0 is a tenth of the evaluated images, at least one batch.
    pub const CALIBRATION_IMAGES: usize = 0;
    pub const BATCH: usize = 32;
}

/// Everything an evaluation needs, as the command line gives it.
#[derive(Clone, Debug)]
pub struct EvalRequest {
    /// The network: a built-in architecture and its checkpoint, or an ONNX file.
    pub model: ModelSource,
    pub data: PathBuf,
    /// Flat ImageNet layouts: `LOC_val_solution.csv` or `<file> <index>` lines.
    pub labels: Option<PathBuf>,
    /// `imagenet_class_index.json` (torchvision's class order) for ImageNet layouts.
    pub class_index: Option<PathBuf>,
    pub alphas: Vec<u32>,
    /// Stage degrees for every α (default: the paper's list per α).
    pub degrees: Option<Vec<usize>>,
    /// Use the paper's published polynomials from this directory instead of ours.
    pub coeffs_dir: Option<PathBuf>,
    pub relu: Mode,
    pub maxpool: Mode,
    /// Clamp approximate inputs to [-B, B] instead of only reporting them.
    pub clamp: bool,
    /// `--bound` (ReLU sites) and `--bound-max` (max-pool sites): a grid-less search takes the
    /// network's grid once it is loaded ([`EvalRequest::bound_rules`]).
    pub bound: RequestedBound,
    pub bound_max: RequestedBound,
    /// Images used by `calibrate` bounds (0: a tenth of the evaluated images, at least one batch).
    pub calibration_images: usize,
    pub batch: usize,
    pub limit: Option<usize>,
    /// A preprocessed uint8 cache of the dataset (built on first use, rebuilt when stale), so
    /// α sweeps and repeated runs decode the images once.
    pub cache: Option<PathBuf>,
    pub gpu: bool,
    pub scheme: Scheme,
    /// Evaluate only this shard of the images (bounds still come from the same images as a whole run).
    pub shard: Option<Shard>,
    /// Evaluate this per-site precision plan (one configuration) instead of `alphas` and `bound`.
    pub plan: Option<PrecisionPlan>,
    /// Add each configuration's CKKS cost under these parameters to `he_cost`.
    pub ckks: Option<CkksPreset>,
    /// `--resize`, `--crop`, `--interpolation`, `--mean`, `--std` (default: the network's).
    pub preprocessing: PreprocessingOverrides,
    /// Keep one row per image in the report's tally (`--predictions FILE.csv`).
    pub predictions: bool,
    /// Resume state of the evaluation pass: continued when it exists (same run only), saved
    /// after every batch, removed when the run completes.
    pub resume: Option<PathBuf>,
    /// Stop the evaluation pass with an error after this many batches, as an interruption would
    /// (tests of the resume path).
    pub stop_after_batches: Option<usize>,
    /// With `ckks`: keys the simulated CKKS noise of the "+ CKKS noise" twins (`--ckks-seed`).
    pub ckks_seed: u64,
    /// With `ckks`: one twin per bootstrapping precision in bits (`--ckks-precision`); empty:
    /// the preset's own.
    pub ckks_precisions: Vec<u32>,
    /// With `ckks`: how the twins evaluate the composite (`--ckks-poly-eval`).
    pub ckks_poly_eval: PolyEval,
}

impl EvalRequest {
    /// The built-in `model` with `weights` on `data`, everything else as the command line
    /// defaults it ([`defaults`], see [`EvalRequest::with_model`]).
    pub fn new(model: Arch, weights: PathBuf, data: PathBuf) -> EvalRequest {
        EvalRequest::with_model(ModelSource::Builtin { arch: model, weights }, data)
    }

    /// `model` on `data`, everything else as the command line defaults it ([`defaults`]):
    /// α = 14, ReLU and max-pool approximated with our polynomials, the official B search on
    /// the network's grid ([`crate::model::NetworkDescriptor::search_grid`]), batches of 32
    /// on the CPU backend, all images, no cache.
    pub fn with_model(model: ModelSource, data: PathBuf) -> EvalRequest {
        let search = RequestedBound::NetworkGrid { exact: false };
        EvalRequest {
            model,
            data,
            labels: None,
            class_index: None,
            alphas: vec![defaults::ALPHA],
            degrees: None,
            coeffs_dir: None,
            relu: Mode::Approx,
            maxpool: Mode::Approx,
            clamp: false,
            bound: search.clone(),
            bound_max: search,
            calibration_images: defaults::CALIBRATION_IMAGES,
            batch: defaults::BATCH,
            limit: None,
            cache: None,
            gpu: false,
            scheme: Scheme::DEFAULT,
            shard: None,
            plan: None,
            ckks: None,
            preprocessing: PreprocessingOverrides::default(),
            predictions: false,
            resume: None,
            stop_after_batches: None,
            ckks_seed: 0,
            ckks_precisions: Vec::new(),
            ckks_poly_eval: PolyEval::Plain,
        }
    }

    /// The ReLU and max-pool rules, a grid-less search on `grid` (the loaded network's).
    pub fn bound_rules(&self, grid: &SearchGrid) -> (BoundRule, BoundRule) {
        (self.bound.resolve(grid.relu), self.bound_max.resolve(grid.maxpool))
    }
}
