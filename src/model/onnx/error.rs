//! Errors of ONNX import. Every one names the file, and the node (name, operator, opset) or the
//! tensor when one is involved, so a user knows what in which file to change.

use std::fmt;

/// Where in the file an error is.
#[derive(Clone, Debug, PartialEq)]
pub enum Place {
    /// The file as a whole (unreadable, not ONNX, no graph, bad opset).
    File,
    /// A node: its name (or its first output's name when unnamed), operator type and the opset.
    Node { name: String, op_type: String, opset: i64 },
    /// An initializer, a constant's tensor or a graph input/output.
    Tensor(String),
}

/// Why an ONNX model could not be imported.
#[derive(Clone, Debug, PartialEq)]
pub struct OnnxError {
    pub file: String,
    pub place: Place,
    pub detail: String,
}

impl OnnxError {
    pub fn file(file: &str, detail: impl Into<String>) -> OnnxError {
        OnnxError {
            file: file.to_string(),
            place: Place::File,
            detail: detail.into(),
        }
    }

    pub fn tensor(file: &str, tensor: &str, detail: impl Into<String>) -> OnnxError {
        OnnxError {
            file: file.to_string(),
            place: Place::Tensor(tensor.to_string()),
            detail: detail.into(),
        }
    }
}

impl fmt::Display for OnnxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.place {
            Place::File => write!(f, "{}: {}", self.file, self.detail),
            Place::Node { name, op_type, opset } => {
                write!(
                    f,
                    "{}: node `{name}` ({op_type}, opset {opset}): {}",
                    self.file, self.detail
                )
            }
            Place::Tensor(name) => write!(f, "{}: tensor `{name}`: {}", self.file, self.detail),
        }
    }
}

impl std::error::Error for OnnxError {}
