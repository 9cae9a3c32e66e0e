//! Reading an `.onnx` file: the protobuf message, and initializer / constant tensors with their
//! values inline (typed fields or `raw_data`) or in an external-data file beside the model.
//!
//! Sizes come from the file and are never trusted: a tensor's element count (a checked product
//! of its dims) must match the bytes actually present — inline, or in the external file, whose
//! length is known before anything is read — before its values are allocated.

use super::error::OnnxError;
use super::fold::{Constant, Data};
use super::proto::{DataType, ModelProto, TensorProto};
use prost::Message;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

/// The model file being imported: its name for messages and its folder for external data.
pub struct ModelFile {
    pub display: String,
    pub dir: PathBuf,
}

impl ModelFile {
    pub fn new(path: &Path) -> ModelFile {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        ModelFile {
            display: path.display().to_string(),
            dir,
        }
    }

    /// Reads and decodes the whole model message (not yet the external data).
    pub fn read(&self, path: &Path) -> Result<ModelProto, OnnxError> {
        let bytes = std::fs::read(path).map_err(|e| OnnxError::file(&self.display, e.to_string()))?;
        ModelProto::decode(bytes.as_slice()).map_err(|e| {
            OnnxError::file(
                &self.display,
                format!("not a valid ONNX model (truncated or corrupt protobuf: {e})"),
            )
        })
    }

    fn tensor_error(&self, tensor: &TensorProto, detail: impl Into<String>) -> OnnxError {
        OnnxError::tensor(&self.display, tensor.name.as_deref().unwrap_or("<unnamed>"), detail)
    }

    /// The values of `tensor` as a [`Constant`] (floats as f32, integers and bools as i64).
    pub fn constant(&self, tensor: &TensorProto) -> Result<Constant, OnnxError> {
        let code = tensor.data_type.unwrap_or(0);
        let dtype = DataType::from_code(code)
            .ok_or_else(|| self.tensor_error(tensor, format!("element type {code} is not supported")))?;
        let dims = self.dims(tensor)?;
        let numel = dims
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .ok_or_else(|| self.tensor_error(tensor, format!("dims {:?} overflow", tensor.dims)))?;
        let data = if is_external(tensor) {
            let bytes = self.external_bytes(tensor, numel, dtype)?;
            from_raw(&bytes, dtype)
        } else if let Some(raw) = &tensor.raw_data {
            self.check_count(tensor, raw.len() / dtype.width(), numel, raw.len() % dtype.width() != 0)?;
            from_raw(raw, dtype)
        } else {
            self.typed_fields(tensor, dtype, numel)?
        };
        if let Data::Int(values) = &data
            && values.iter().any(Option::is_none)
        {
            return Err(self.tensor_error(tensor, "holds an unsigned value beyond the int64 range"));
        }
        Ok(Constant { dims, data })
    }

    fn dims(&self, tensor: &TensorProto) -> Result<Vec<usize>, OnnxError> {
        tensor
            .dims
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| self.tensor_error(tensor, format!("negative dimension {d}"))))
            .collect()
    }

    fn check_count(&self, tensor: &TensorProto, found: usize, numel: usize, ragged: bool) -> Result<(), OnnxError> {
        if found != numel || ragged {
            return Err(self.tensor_error(
                tensor,
                format!(
                    "holds data for {found} elements, its dims {:?} need {numel}",
                    tensor.dims
                ),
            ));
        }
        Ok(())
    }

    /// Values stored in the type-specific repeated fields.
    fn typed_fields(&self, tensor: &TensorProto, dtype: DataType, numel: usize) -> Result<Data, OnnxError> {
        use DataType::*;
        let found = match dtype {
            Float => tensor.float_data.len(),
            Double => tensor.double_data.len(),
            Int64 => tensor.int64_data.len(),
            Uint32 | Uint64 => tensor.uint64_data.len(),
            Uint8 | Int8 | Uint16 | Int16 | Int32 | Bool | Float16 | Bfloat16 => tensor.int32_data.len(),
        };
        self.check_count(tensor, found, numel, false)?;
        Ok(match dtype {
            Float => Data::Float(tensor.float_data.clone()),
            Double => Data::Float(tensor.double_data.iter().map(|&v| v as f32).collect()),
            Float16 => Data::Float(
                tensor
                    .int32_data
                    .iter()
                    .map(|&b| half::f16::from_bits(b as u16).to_f32())
                    .collect(),
            ),
            Bfloat16 => Data::Float(
                tensor
                    .int32_data
                    .iter()
                    .map(|&b| half::bf16::from_bits(b as u16).to_f32())
                    .collect(),
            ),
            Int64 => Data::Int(tensor.int64_data.iter().map(|&v| Some(v)).collect()),
            Uint32 | Uint64 => Data::Int(tensor.uint64_data.iter().map(|&v| i64::try_from(v).ok()).collect()),
            _ => Data::Int(tensor.int32_data.iter().map(|&v| Some(v as i64)).collect()),
        })
    }

    /// The bytes of an external-data tensor: `location` must name a file inside the model's
    /// folder; `offset` and `length` (default: to the end) must lie within it and `length`
    /// must be exactly the tensor's size, all checked before reading.
    fn external_bytes(&self, tensor: &TensorProto, numel: usize, dtype: DataType) -> Result<Vec<u8>, OnnxError> {
        let entry = |key: &str| {
            tensor
                .external_data
                .iter()
                .find(|e| e.key.as_deref() == Some(key))
                .and_then(|e| e.value.clone())
        };
        let location =
            entry("location").ok_or_else(|| self.tensor_error(tensor, "external data without a location"))?;
        let path = self.confined(tensor, &location)?;
        let number = |key: &str| -> Result<Option<u64>, OnnxError> {
            entry(key)
                .map(|v| {
                    v.trim()
                        .parse::<u64>()
                        .map_err(|_| self.tensor_error(tensor, format!("external data {key} `{v}` is not a number")))
                })
                .transpose()
        };
        let offset = number("offset")?.unwrap_or(0);
        let mut file = File::open(&path)
            .map_err(|e| self.tensor_error(tensor, format!("external data file {}: {e}", path.display())))?;
        let file_len = file
            .metadata()
            .map_err(|e| self.tensor_error(tensor, format!("external data file {}: {e}", path.display())))?
            .len();
        let available = file_len.checked_sub(offset).ok_or_else(|| {
            self.tensor_error(
                tensor,
                format!(
                    "external data offset {offset} is past the end of {} ({file_len} bytes)",
                    path.display()
                ),
            )
        })?;
        let length = number("length")?.unwrap_or(available);
        if length > available {
            return Err(self.tensor_error(
                tensor,
                format!(
                    "external data [{offset}, {offset}+{length}) runs past the end of {} ({file_len} bytes)",
                    path.display()
                ),
            ));
        }
        let want = numel.checked_mul(dtype.width()).map(|b| b as u64);
        if want != Some(length) {
            return Err(self.tensor_error(
                tensor,
                format!(
                    "external data holds {length} bytes, its dims {:?} of {dtype:?} need {}",
                    tensor.dims,
                    want.map_or("more than addressable".into(), |w| w.to_string())
                ),
            ));
        }
        let mut bytes = vec![0u8; length as usize];
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| file.read_exact(&mut bytes))
            .map_err(|e| self.tensor_error(tensor, format!("reading external data {}: {e}", path.display())))?;
        Ok(bytes)
    }

    /// `location` resolved inside the model's folder: relative, no `..`, and (after resolving
    /// symbolic links) still inside that folder.
    fn confined(&self, tensor: &TensorProto, location: &str) -> Result<PathBuf, OnnxError> {
        let relative = Path::new(location);
        let escapes = relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
        if escapes || location.is_empty() {
            return Err(self.tensor_error(
                tensor,
                format!("external data location `{location}` is not a path inside the model's folder"),
            ));
        }
        let path = self.dir.join(relative);
        let inside = match (path.canonicalize(), self.dir.canonicalize()) {
            (Ok(file), Ok(dir)) => file.starts_with(dir),
            // Missing file: reported with its name when opened.
            _ => true,
        };
        if !inside {
            return Err(self.tensor_error(
                tensor,
                format!("external data location `{location}` leads outside the model's folder"),
            ));
        }
        Ok(path)
    }
}

fn is_external(tensor: &TensorProto) -> bool {
    tensor.data_location == Some(1)
}

/// Little-endian fixed-width values (length already checked to be a multiple of the width).
fn from_raw(raw: &[u8], dtype: DataType) -> Data {
    use DataType::*;
    let w = dtype.width();
    let chunks = raw.chunks_exact(w);
    let u16s = |c: &[u8]| u16::from_le_bytes([c[0], c[1]]);
    match dtype {
        Float => Data::Float(chunks.map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()),
        Double => Data::Float(
            chunks
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
                .collect(),
        ),
        Float16 => Data::Float(chunks.map(|c| half::f16::from_bits(u16s(c)).to_f32()).collect()),
        Bfloat16 => Data::Float(chunks.map(|c| half::bf16::from_bits(u16s(c)).to_f32()).collect()),
        Int64 => Data::Int(
            chunks
                .map(|c| Some(i64::from_le_bytes(c.try_into().unwrap())))
                .collect(),
        ),
        Uint64 => Data::Int(
            chunks
                .map(|c| i64::try_from(u64::from_le_bytes(c.try_into().unwrap())).ok())
                .collect(),
        ),
        Int32 => Data::Int(
            chunks
                .map(|c| Some(i32::from_le_bytes(c.try_into().unwrap()) as i64))
                .collect(),
        ),
        Uint32 => Data::Int(
            chunks
                .map(|c| Some(u32::from_le_bytes(c.try_into().unwrap()) as i64))
                .collect(),
        ),
        Int16 => Data::Int(chunks.map(|c| Some(i16::from_le_bytes([c[0], c[1]]) as i64)).collect()),
        Uint16 => Data::Int(chunks.map(|c| Some(u16s(c) as i64)).collect()),
        Int8 => Data::Int(chunks.map(|c| Some(c[0] as i8 as i64)).collect()),
        Uint8 | Bool => Data::Int(chunks.map(|c| Some(c[0] as i64)).collect()),
    }
}
