//! Element types found in checkpoints, and their decoding. Floating types become f32 (what the
//! evaluator computes in); integer and bool types become i64 and are kept apart from the weights.

use std::borrow::Cow;

use super::error::{Parsed, corrupt};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum DType {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

/// Decoded elements of one tensor.
pub(super) enum Elements {
    Float(Vec<f32>),
    Int(Vec<i64>),
}

impl DType {
    /// The dtype of a `torch.XxxStorage` class (the only way pickles name dtypes).
    pub(super) fn from_torch_storage(class: &str) -> Option<DType> {
        Some(match class {
            "FloatStorage" => DType::F32,
            "DoubleStorage" => DType::F64,
            "HalfStorage" => DType::F16,
            "BFloat16Storage" => DType::BF16,
            "LongStorage" => DType::I64,
            "IntStorage" => DType::I32,
            "ShortStorage" => DType::I16,
            "CharStorage" => DType::I8,
            "ByteStorage" => DType::U8,
            "BoolStorage" => DType::Bool,
            _ => return None,
        })
    }

    pub(super) fn from_safetensors(name: &str) -> Option<DType> {
        Some(match name {
            "F32" => DType::F32,
            "F64" => DType::F64,
            "F16" => DType::F16,
            "BF16" => DType::BF16,
            "I64" => DType::I64,
            "I32" => DType::I32,
            "I16" => DType::I16,
            "I8" => DType::I8,
            "U8" => DType::U8,
            "BOOL" => DType::Bool,
            _ => return None,
        })
    }

    pub(super) fn safetensors_name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F64 => "F64",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::I64 => "I64",
            DType::I32 => "I32",
            DType::I16 => "I16",
            DType::I8 => "I8",
            DType::U8 => "U8",
            DType::Bool => "BOOL",
        }
    }

    pub(super) fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    /// Decodes densely packed elements (`bytes.len()` a multiple of `size()`).
    pub(super) fn decode(self, bytes: &[u8], big_endian: bool) -> Elements {
        // One match outside the loop keeps the per-element work a plain byte conversion.
        match self {
            DType::F32 => Elements::Float(map_chunks(bytes, big_endian, f32::from_le_bytes)),
            DType::F64 => Elements::Float(map_chunks(bytes, big_endian, |b| f64::from_le_bytes(b) as f32)),
            DType::F16 => Elements::Float(map_chunks(bytes, big_endian, |b| half::f16::from_le_bytes(b).to_f32())),
            DType::BF16 => Elements::Float(map_chunks(bytes, big_endian, |b| half::bf16::from_le_bytes(b).to_f32())),
            DType::I64 => Elements::Int(map_chunks(bytes, big_endian, i64::from_le_bytes)),
            DType::I32 => Elements::Int(map_chunks(bytes, big_endian, |b| i32::from_le_bytes(b).into())),
            DType::I16 => Elements::Int(map_chunks(bytes, big_endian, |b| i16::from_le_bytes(b).into())),
            DType::I8 => Elements::Int(bytes.iter().map(|&b| (b as i8).into()).collect()),
            DType::U8 => Elements::Int(bytes.iter().map(|&b| b.into()).collect()),
            DType::Bool => Elements::Int(bytes.iter().map(|&b| i64::from(b != 0)).collect()),
        }
    }
}

/// Converts each N-byte chunk; big-endian input is reversed first so every converter reads LE.
fn map_chunks<const N: usize, T>(bytes: &[u8], big_endian: bool, convert: impl Fn([u8; N]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(N)
        .map(|chunk| {
            let mut le: [u8; N] = chunk.try_into().expect("chunks_exact yields N bytes");
            if big_endian {
                le.reverse();
            }
            convert(le)
        })
        .collect()
}

/// Where a tensor's elements sit in its storage, in elements (as torch records them).
pub(super) struct Layout<'a> {
    pub offset: usize,
    pub shape: &'a [usize],
    pub stride: &'a [usize],
}

/// Number of elements of a shape, or None on overflow (a corrupt shape must not wrap around).
pub(super) fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// The bytes of a tensor in row-major order: borrowed when the layout is already contiguous,
/// gathered element by element otherwise. Every index is bounds-checked against the storage first.
pub(super) fn gather<'s>(storage: &'s [u8], elem_size: usize, layout: &Layout) -> Parsed<Cow<'s, [u8]>> {
    if layout.shape.len() != layout.stride.len() {
        return Err(corrupt(format!(
            "shape {:?} and stride {:?} differ in rank",
            layout.shape, layout.stride
        )));
    }
    let numel = checked_numel(layout.shape).ok_or_else(|| corrupt(format!("shape {:?} overflows", layout.shape)))?;
    let storage_len = storage.len() / elem_size;
    if numel == 0 {
        return Ok(Cow::Borrowed(&[]));
    }
    // Zero strides could otherwise turn a few stored bytes into gigabytes; real checkpoints never
    // hold such expanded tensors, and this bounds the output by the file size.
    if numel > storage_len {
        return Err(corrupt(format!(
            "shape {:?} has more elements than its storage of {storage_len} (expanded tensor? save it \
             with .contiguous())",
            layout.shape
        )));
    }
    last_element(layout).filter(|&last| last < storage_len).ok_or_else(|| {
        corrupt(format!(
            "offset {} with shape {:?} and stride {:?} reaches past the storage of {storage_len} elements",
            layout.offset, layout.shape, layout.stride
        ))
    })?;
    if is_row_major(layout.shape, layout.stride) {
        let start = layout.offset * elem_size;
        return Ok(Cow::Borrowed(&storage[start..start + numel * elem_size]));
    }
    Ok(Cow::Owned(gather_strided(storage, elem_size, layout, numel)))
}

/// Index of the furthest element the layout touches, or None on overflow.
fn last_element(layout: &Layout) -> Option<usize> {
    layout
        .shape
        .iter()
        .zip(layout.stride)
        .try_fold(layout.offset, |acc, (&d, &s)| acc.checked_add((d - 1).checked_mul(s)?))
}

/// Row-major contiguity; dimensions of size 1 may carry any stride (torch leaves them arbitrary).
fn is_row_major(shape: &[usize], stride: &[usize]) -> bool {
    let mut expected = 1usize;
    for (&d, &s) in shape.iter().zip(stride).rev() {
        if d != 1 && s != expected {
            return false;
        }
        expected *= d;
    }
    true
}

/// Walks the multi-index like an odometer (last dimension fastest). Bounds were checked by the caller.
fn gather_strided(storage: &[u8], elem_size: usize, layout: &Layout, numel: usize) -> Vec<u8> {
    let rank = layout.shape.len();
    let mut out = Vec::with_capacity(numel * elem_size);
    let mut index = vec![0usize; rank];
    let mut position = layout.offset;
    for _ in 0..numel {
        out.extend_from_slice(&storage[position * elem_size..(position + 1) * elem_size]);
        for dim in (0..rank).rev() {
            // Wrapping: a size-1 dimension may carry a huge stride that is stepped over, never read.
            index[dim] += 1;
            position = position.wrapping_add(layout.stride[dim]);
            if index[dim] < layout.shape[dim] {
                break;
            }
            position = position.wrapping_sub(layout.stride[dim].wrapping_mul(layout.shape[dim]));
            index[dim] = 0;
        }
    }
    out
}
