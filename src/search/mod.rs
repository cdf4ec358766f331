//! Joint network × accelerator search (`coex explore`).
//!
//! A sweep file (see [`sweep`]) names a network space (a family with free parameters,
//! a list of workload files, or the NAS-Bench-201 cell space), a hardware space (one
//! or more templates whose `[space]` keys are free, plus fixed `set` overrides and
//! extra free keys), objectives, hard specs, an accuracy provider and a search
//! algorithm. Every design point is evaluated by one function, [`eval::Evaluator`]:
//! network graph + accelerator → latency, energy, area (through `cost`, with a layer
//! schedule cache keyed by (Einsum shape incl. dtype, hardware design)), plus accuracy.
//! The search knows nothing of the mapper's insides.
//!
//! Outputs (see [`output`]): `points.csv` (every evaluated point, appended and flushed
//! batch by batch), `pareto.csv`, `best/` (accelerator and workload files `coex eval`
//! reproduces), `summary.json`.

pub mod accuracy;
pub mod algo;
pub mod eval;
pub mod multitask;
pub mod output;
pub mod pareto;
pub mod space;
pub mod sweep;

pub use algo::{run, RunOptions, RunResult};
pub use eval::{Evaluator, Metrics};
pub use pareto::{hypervolume, pareto_front};
pub use sweep::{Algorithm, Goal, Metric, Objective, Spec, Sweep};

use std::path::PathBuf;

/// Everything that can go wrong in a sweep. Messages name the file, key, line or
/// candidate, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Sweep { path: PathBuf, message: String },
    #[error("{path}: key '{key}': {message}")]
    Key {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("accuracy table {path}: {message}")]
    Table { path: PathBuf, message: String },
    #[error("accuracy predictor `{command}` on candidate {candidate}: {message}")]
    Predictor {
        command: String,
        candidate: String,
        message: String,
    },
    #[error("{path}: {message}")]
    Output { path: PathBuf, message: String },
    #[error("{0}")]
    Usage(String),
}

impl SearchError {
    pub(crate) fn out(path: &std::path::Path, e: impl std::fmt::Display) -> SearchError {
        SearchError::Output {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }
}
