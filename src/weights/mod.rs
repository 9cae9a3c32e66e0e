//! Reading pretrained weights (PyTorch checkpoints, safetensors) into named f32 tensors.
//!
//! [`StateDict::load`] sniffs the format from the bytes, not the file name:
//! - PyTorch zip (`torch.save` since 1.6): `<dir>/data.pkl` plus one STORED entry per storage;
//! - PyTorch legacy (before 1.6): five pickles then raw storages (e.g. the akamaster CIFAR ResNets);
//! - safetensors.
//!
//! Pickles are read by a restricted interpreter that executes no code: only tensor-rebuilding
//! globals are accepted, anything else is refused with its name (see `pickle.rs`).
//!
//! Floating tensors (f32, f64, f16, bf16) are converted to f32 and form the state dict proper.
//! Integer and bool tensors (e.g. BatchNorm's int64 `num_batches_tracked`) are bookkeeping, not
//! weights: they are kept apart as [`IntTensor`]s ([`StateDict::int_tensor`]) and are not counted
//! by [`StateDict::len`] nor reported by [`StateDict::remaining`].
//!
//! A checkpoint that wraps its state dict (`{"state_dict": ..., "best_prec1": ...}`, or under
//! `model_state_dict` / `model`) is unwrapped, and a `module.` prefix shared by every name
//! (left by `nn.DataParallel`) is stripped.

mod dtype;
mod error;
mod pickle;
mod safetensors;
pub mod sha256;
mod torch;
mod zip;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use dtype::{DType, Elements};
pub use error::WeightsError;

/// A dense row-major f32 tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    pub fn numel(&self) -> usize {
        self.data.len()
    }
}

/// A dense row-major integer tensor (int64 and smaller integer or bool types widened to i64).
#[derive(Clone, Debug, PartialEq)]
pub struct IntTensor {
    pub shape: Vec<usize>,
    pub data: Vec<i64>,
}

/// Named tensors in file order, from which a model builder takes what it needs.
#[derive(Debug)]
pub struct StateDict {
    path: PathBuf,
    floats: Named<Tensor>,
    ints: Named<IntTensor>,
}

const DATA_PARALLEL_PREFIX: &str = "module.";

impl StateDict {
    /// Loads a checkpoint; the format is recognised from the file's first bytes.
    pub fn load(path: &Path) -> Result<StateDict, WeightsError> {
        let bytes = std::fs::read(path).map_err(|source| WeightsError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let records = parse_any(&bytes).map_err(|fault| fault.at(path))?;
        Ok(Self::from_records(path.to_path_buf(), records))
    }

    /// A state dict built in memory (tests, converters); errors call its file `<memory>`.
    pub fn from_tensors<S: Into<String>>(tensors: impl IntoIterator<Item = (S, Tensor)>) -> StateDict {
        let mut dict = StateDict {
            path: PathBuf::from("<memory>"),
            floats: Named::default(),
            ints: Named::default(),
        };
        for (name, tensor) in tensors {
            dict.floats.insert(name.into(), tensor);
        }
        dict
    }

    /// The file this was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A float tensor not yet taken.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.floats.get(name)
    }

    /// Names of all float tensors the file held, in file order (taken ones included).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.floats.names()
    }

    /// Number of float tensors the file held (taken ones included).
    pub fn len(&self) -> usize {
        self.floats.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Moves a float tensor out (no copy of its data).
    pub fn take(&mut self, name: &str) -> Result<Tensor, WeightsError> {
        self.floats
            .take(name)
            .map_err(|already_taken| self.missing(name, already_taken))
    }

    /// Takes a tensor checking its shape; the error names the tensor and the file. On a shape
    /// mismatch the tensor stays in the dict.
    pub fn take_shaped(&mut self, name: &str, shape: &[usize]) -> Result<Tensor, WeightsError> {
        if let Some(tensor) = self.floats.get(name)
            && tensor.shape != shape
        {
            return Err(WeightsError::ShapeMismatch {
                path: self.path.clone(),
                tensor: name.to_string(),
                expected: shape.to_vec(),
                found: tensor.shape.clone(),
            });
        }
        self.take(name)
    }

    /// Float tensors never taken, in file order: weights the model did not use.
    pub fn remaining(&self) -> Vec<String> {
        self.floats.remaining()
    }

    /// An integer tensor, e.g. `bn1.num_batches_tracked`.
    pub fn int_tensor(&self, name: &str) -> Option<&IntTensor> {
        self.ints.get(name)
    }

    /// Names of the integer tensors, in file order.
    pub fn int_names(&self) -> impl Iterator<Item = &str> {
        self.ints.names()
    }

    /// Writes the float tensors not yet taken, then the integer tensors (as I64), to safetensors.
    pub fn save_safetensors(&self, path: &Path) -> Result<(), WeightsError> {
        let mut out: Vec<safetensors::Outgoing> = self
            .floats
            .present()
            .map(|(name, t)| f32_outgoing(name, t))
            .collect::<Result<_, _>>()
            .map_err(|name| bad_length(path, name))?;
        for (name, t) in self.ints.present() {
            let bytes = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            out.push(safetensors::Outgoing {
                name,
                dtype: DType::I64,
                shape: &t.shape,
                bytes,
            });
        }
        write_safetensors_file(path, &out)
    }

    fn from_records(path: PathBuf, records: Vec<safetensors::Record>) -> StateDict {
        let strip = !records.is_empty()
            && records
                .iter()
                .all(|(name, _, _)| name.starts_with(DATA_PARALLEL_PREFIX));
        let mut dict = StateDict {
            path,
            floats: Named::default(),
            ints: Named::default(),
        };
        for (name, shape, elements) in records {
            let name = if strip {
                name[DATA_PARALLEL_PREFIX.len()..].to_string()
            } else {
                name
            };
            match elements {
                Elements::Float(data) => dict.floats.insert(name, Tensor { shape, data }),
                Elements::Int(data) => dict.ints.insert(name, IntTensor { shape, data }),
            }
        }
        dict
    }

    fn missing(&self, name: &str, already_taken: bool) -> WeightsError {
        WeightsError::MissingTensor {
            path: self.path.clone(),
            tensor: name.to_string(),
            already_taken,
        }
    }
}

/// Writes f32 tensors to a safetensors file in the given order (torchvision-style names are kept
/// as given). Fails, naming the tensor, if a shape does not match its data length.
pub fn save_safetensors(path: &Path, tensors: &[(&str, &Tensor)]) -> Result<(), WeightsError> {
    let out = tensors
        .iter()
        .map(|&(name, t)| f32_outgoing(name, t))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|name| bad_length(path, name))?;
    write_safetensors_file(path, &out)
}

/// The tensor in little-endian bytes, or its name when its shape and data disagree.
fn f32_outgoing<'a>(name: &'a str, t: &'a Tensor) -> Result<safetensors::Outgoing<'a>, &'a str> {
    if dtype::checked_numel(&t.shape) != Some(t.data.len()) {
        return Err(name);
    }
    let bytes = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
    Ok(safetensors::Outgoing {
        name,
        dtype: DType::F32,
        shape: &t.shape,
        bytes,
    })
}

fn bad_length(path: &Path, name: &str) -> WeightsError {
    WeightsError::BadTensor {
        path: path.to_path_buf(),
        tensor: name.to_string(),
        detail: "shape does not match the number of values".to_string(),
    }
}

fn write_safetensors_file(path: &Path, tensors: &[safetensors::Outgoing]) -> Result<(), WeightsError> {
    let io_error = |source| WeightsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut out = BufWriter::new(File::create(path).map_err(io_error)?);
    safetensors::write(&mut out, tensors).map_err(io_error)
}

/// Dispatches on the leading bytes, so a misnamed file still loads.
fn parse_any(bytes: &[u8]) -> error::Parsed<Vec<safetensors::Record>> {
    if bytes.starts_with(b"PK\x03\x04") {
        torch::parse_zip(bytes)
    } else if torch::is_legacy(bytes) {
        torch::parse_legacy(bytes)
    } else if safetensors::looks_like_safetensors(bytes) {
        safetensors::parse(bytes)
    } else if bytes.is_empty() {
        Err(error::corrupt("file is empty"))
    } else {
        Err(error::corrupt(
            "unrecognised format: not a PyTorch checkpoint (zip or legacy) nor a safetensors file",
        ))
    }
}

/// An insertion-ordered map whose values can be moved out while remembering their names.
#[derive(Debug)]
struct Named<T> {
    items: Vec<(String, Option<T>)>,
    index: HashMap<String, usize>,
}

impl<T> Default for Named<T> {
    fn default() -> Self {
        Named {
            items: Vec::new(),
            index: HashMap::new(),
        }
    }
}

impl<T> Named<T> {
    /// A repeated name replaces the earlier value in place, as a Python dict would.
    fn insert(&mut self, name: String, value: T) {
        match self.index.get(&name) {
            Some(&i) => self.items[i].1 = Some(value),
            None => {
                self.index.insert(name.clone(), self.items.len());
                self.items.push((name, Some(value)));
            }
        }
    }

    fn get(&self, name: &str) -> Option<&T> {
        self.index.get(name).and_then(|&i| self.items[i].1.as_ref())
    }

    /// Err(true) when the name exists but was taken, Err(false) when it never existed.
    fn take(&mut self, name: &str) -> Result<T, bool> {
        let &i = self.index.get(name).ok_or(false)?;
        self.items[i].1.take().ok_or(true)
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        self.items.iter().map(|(name, _)| name.as_str())
    }

    fn len(&self) -> usize {
        self.items.len()
    }

    fn present(&self) -> impl Iterator<Item = (&str, &T)> {
        self.items
            .iter()
            .filter_map(|(name, v)| v.as_ref().map(|v| (name.as_str(), v)))
    }

    fn remaining(&self) -> Vec<String> {
        self.present().map(|(name, _)| name.to_string()).collect()
    }
}
