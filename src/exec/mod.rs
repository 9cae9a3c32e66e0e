//! The execution contract every backend implements and the evaluation drives: what to run
//! ([`ActivationPlan`]: a [`SiteMode`] per activation site), what comes back ([`RunOutput`]:
//! logits and a [`SiteStats`] per site) and the [`Backend`] trait itself. Backends (`cpu`,
//! `gpu`) import this module and never each other; callers hold a `&dyn Backend`.
//!
//! ```text
//! let plan = ActivationPlan::uniform(&graph, SiteMode::approx(&composite, 14, 50.0));
//! let out = backend.run(&graph, &batch, &plan)?;   // out.logits, out.sites[site].max_abs, …
//! ```

mod mode;
mod progress;
mod stats;

pub use mode::{Approx, PolySite, ReluPoly, SiteMode, check_bound};
pub use progress::{NoProgress, Progress};
pub use stats::{HIST_BINS, LOG2_MIN, STATS_HEADER_WORDS, STATS_WORDS, SiteStats, log2_bin};

use crate::model::{Batch, Graph, GraphError};
use std::fmt;

/// How every activation site of a graph is evaluated (indexed by `SiteId`).
#[derive(Clone, Debug)]
pub struct ActivationPlan<'a> {
    pub modes: Vec<SiteMode<'a>>,
}

impl<'a> ActivationPlan<'a> {
    /// Every ReLU and max-pool exact.
    pub fn exact(graph: &Graph) -> ActivationPlan<'a> {
        Self::uniform(graph, SiteMode::Exact)
    }

    /// The same mode at every site.
    pub fn uniform(graph: &Graph, mode: SiteMode<'a>) -> ActivationPlan<'a> {
        ActivationPlan {
            modes: vec![mode; graph.sites.len()],
        }
    }

    /// Whether any site is approximated (by the composite or a ReLU polynomial).
    pub fn is_approximate(&self) -> bool {
        self.modes.iter().any(|m| !matches!(m, SiteMode::Exact))
    }

    /// Whether this plan can run on `graph` at all (every backend asks before running; a caller
    /// may ask before reading any image): an approximate plan needs every non-linearity to be a
    /// site ([`Graph::refuse_approximation`]), and sites sharing a bound (ReLU6's halves) must
    /// get the same one ([`Graph::check_shared_bounds`]).
    pub fn check_fits(&self, graph: &Graph) -> Result<(), GraphError> {
        if self.is_approximate() {
            graph.refuse_approximation()?;
        }
        let bounds: Vec<Option<f64>> = self.modes.iter().map(SiteMode::bound).collect();
        graph.check_shared_bounds(&bounds)
    }
}

/// The result of a run: logits `[n, classes]` row-major and what each site saw.
#[derive(Clone, Debug)]
pub struct RunOutput {
    pub logits: Vec<f32>,
    pub classes: usize,
    /// Indexed by `SiteId`, named as [`Graph::sites`].
    pub sites: Vec<SiteStats>,
}

impl RunOutput {
    /// The arg-max class of each image (the first on ties; NaN logits never win).
    pub fn predictions(&self) -> Vec<usize> {
        self.logits
            .chunks_exact(self.classes)
            .map(|row| {
                (0..row.len()).fold(0, |best, i| {
                    if row[i] > row[best] || row[best].is_nan() {
                        i
                    } else {
                        best
                    }
                })
            })
            .collect()
    }

    /// How many predictions equal `labels` (compared up to the shorter length).
    pub fn correct(&self, labels: &[usize]) -> usize {
        self.predictions().iter().zip(labels).filter(|(p, l)| p == l).count()
    }
}

/// Why a run could not start or finish. Non-finite activations produced by an approximation
/// are not errors: they are counted in [`SiteStats::non_finite`].
#[derive(Debug)]
pub enum ExecError {
    Graph(GraphError),
    /// The batch does not fit the graph, or holds NaN/infinity.
    Input(String),
    /// The plan does not fit the graph, or a site's mode is unusable.
    Site {
        site: String,
        detail: String,
    },
    /// The device failed (GPU: adapter, shader, buffer or submission errors).
    Device(String),
    /// The plan cannot run on this graph ([`ActivationPlan::check_fits`]): approximation asked
    /// of a graph with exact-only nodes, or different bounds for sites that share one.
    Plan(GraphError),
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecError::Graph(e) => write!(f, "bad graph: {e}"),
            ExecError::Input(s) => write!(f, "bad input: {s}"),
            ExecError::Site { site, detail } => write!(f, "activation site `{site}`: {detail}"),
            ExecError::Device(s) => write!(f, "{s}"),
            ExecError::Plan(e) => write!(f, "the activation plan cannot run: {e}"),
        }
    }
}

impl std::error::Error for ExecError {}

impl From<GraphError> for ExecError {
    fn from(e: GraphError) -> Self {
        ExecError::Graph(e)
    }
}

impl From<ExecError> for String {
    fn from(e: ExecError) -> String {
        e.to_string()
    }
}

/// Something that runs a graph on a batch under an activation plan. Adding a backend is one
/// folder implementing this trait.
pub trait Backend {
    /// Logits and per-site statistics of `batch` through `graph`, activations as `plan` says.
    fn run(&self, graph: &Graph, batch: &Batch, plan: &ActivationPlan) -> Result<RunOutput, ExecError>;

    /// "cpu", "gpu", …: how reports name it.
    fn name(&self) -> &'static str;
}
