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
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecError::Graph(e) => write!(f, "bad graph: {e}"),
            ExecError::Input(s) => write!(f, "bad input: {s}"),
            ExecError::Site { site, detail } => write!(f, "activation site `{site}`: {detail}"),
            ExecError::Device(s) => write!(f, "{s}"),
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
