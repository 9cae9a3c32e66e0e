//! Errors of weight loading. Every public error names the file, and the tensor when one is involved,
//! so a user with several checkpoints knows which one is bad.

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a checkpoint could not be loaded, saved or used.
#[derive(Debug)]
pub enum WeightsError {
    /// The file could not be read or written.
    Io { path: PathBuf, source: std::io::Error },
    /// Not a format we read, or truncated / corrupt.
    Format { path: PathBuf, detail: String },
    /// The pickle names a global outside the allow-list. Nothing is ever executed; loading stops here.
    ForbiddenGlobal { path: PathBuf, global: String },
    /// One tensor is unusable (unsupported dtype, storage out of range, ...).
    BadTensor {
        path: PathBuf,
        tensor: String,
        detail: String,
    },
    /// A requested tensor is not in the file, or was already taken.
    MissingTensor {
        path: PathBuf,
        tensor: String,
        already_taken: bool,
    },
    /// A requested tensor does not have the shape the model expects.
    ShapeMismatch {
        path: PathBuf,
        tensor: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
}

impl fmt::Display for WeightsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Self::Format { path, detail } => write!(f, "{}: {detail}", path.display()),
            Self::ForbiddenGlobal { path, global } => write!(
                f,
                "{}: refusing pickle global `{global}` (only tensor-rebuilding globals are allowed; \
                 nothing was executed)",
                path.display()
            ),
            Self::BadTensor { path, tensor, detail } => {
                write!(f, "{}: tensor `{tensor}`: {detail}", path.display())
            }
            Self::MissingTensor {
                path,
                tensor,
                already_taken,
            } => {
                let why = if *already_taken {
                    "was already taken"
                } else {
                    "is not in the file"
                };
                write!(f, "{}: tensor `{tensor}` {why}", path.display())
            }
            Self::ShapeMismatch {
                path,
                tensor,
                expected,
                found,
            } => write!(
                f,
                "{}: tensor `{tensor}` has shape {found:?}, expected {expected:?}",
                path.display()
            ),
        }
    }
}

impl std::error::Error for WeightsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A problem found by the parsers, which do not know the file name; `at` attaches it.
#[derive(Debug)]
pub(super) enum Fault {
    Format(String),
    ForbiddenGlobal(String),
    Tensor { tensor: String, detail: String },
}

pub(super) type Parsed<T> = Result<T, Fault>;

/// Shorthand for the most common fault.
pub(super) fn corrupt(detail: impl Into<String>) -> Fault {
    Fault::Format(detail.into())
}

impl Fault {
    pub(super) fn at(self, path: &Path) -> WeightsError {
        let path = path.to_path_buf();
        match self {
            Fault::Format(detail) => WeightsError::Format { path, detail },
            Fault::ForbiddenGlobal(global) => WeightsError::ForbiddenGlobal { path, global },
            Fault::Tensor { tensor, detail } => WeightsError::BadTensor { path, tensor, detail },
        }
    }

    /// Turns a storage-level problem into one that names the tensor being built.
    pub(super) fn for_tensor(self, tensor: &str) -> Fault {
        match self {
            Fault::Format(detail) => Fault::Tensor {
                tensor: tensor.to_string(),
                detail,
            },
            other => other,
        }
    }
}
