//! Evaluation: run a dataset through the exact network and one or more approximate ones in the
//! same pass, and account for accuracy (top-1/top-5), agreement and per-site ranges.
//!
//! Flow ([`command::run_eval`]): the request ([`request`]) becomes a list of approximate
//! configurations ([`config`]); [`bounds::choose_bounds`] resolves the bound rule (fixed, the
//! paper's grid search, or per-site calibration) from a statistics pass of the exact network when
//! it needs one, [`search`] runs the official B search on the approximate network; [`pass::evaluate`]
//! decodes batches in the background, runs each batch exactly once through the exact network and
//! once per approximate plan on any [`crate::exec::Backend`], and tallies everything by counts
//! (never averages of averages); [`report`] builds the report once from the run's description.

pub mod bounds;
pub mod check;
pub mod ckks_noise;
pub mod command;
pub mod config;
pub mod dataset;
pub mod merge;
pub mod paired;
pub mod pass;
pub mod plan;
pub mod plan_file;
pub mod plot;
pub mod predictions;
pub mod prepared_plan;
pub mod preprocess;
pub mod report;
pub mod request;
pub mod resume;
pub mod search;
pub mod shard;
pub mod stats;
pub mod summary;

pub use bounds::{BoundRule, BoundSearch, Bounds, Overflow, RequestedBound, SearchTry, SiteBound, choose_bounds};
pub use config::{ApproxConfig, Mode, PolyInfo, approx_plan, config_label};
pub use pass::{ApproxTally, Hits, PassInput, Tally, evaluate, top5};
pub use search::{KindBounds, MAX_SEARCH_TRIES, first_overflow, search_bounds, with_searched_bounds};
