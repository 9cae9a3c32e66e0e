//! safetensors: an 8-byte little-endian header length, a JSON header
//! `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}`, then raw
//! little-endian data. Simple enough that serde_json beats pulling in the `safetensors` crate.

use std::io::Write;

use serde::Deserialize;

use super::dtype::{DType, Elements, checked_numel};
use super::error::{Fault, Parsed, corrupt};

/// One header entry, as the format specifies it.
#[derive(Deserialize)]
struct EntryInfo {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [usize; 2],
}

/// A tensor read from the file: name, shape, decoded elements.
pub(super) type Record = (String, Vec<usize>, Elements);

/// True when `bytes` plausibly starts with a safetensors header (length fits, JSON object follows).
pub(super) fn looks_like_safetensors(bytes: &[u8]) -> bool {
    match bytes.get(..9) {
        Some(head) => {
            let len = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
            head[8] == b'{' && len <= (bytes.len() - 8) as u64
        }
        None => false,
    }
}

/// Parses a whole file; tensors come out in data order, which is the order they were written.
pub(super) fn parse(bytes: &[u8]) -> Parsed<Vec<Record>> {
    let (header, data) = split_header(bytes)?;
    let mut infos = Vec::new();
    for (name, info) in header {
        if name == "__metadata__" {
            continue;
        }
        let info: EntryInfo = serde_json::from_value(info).map_err(|e| bad(&name, format!("bad header entry: {e}")))?;
        infos.push((name, info));
    }
    infos.sort_by_key(|(_, info)| info.data_offsets[0]);
    infos
        .into_iter()
        .map(|(name, info)| decode_entry(data, name, info))
        .collect()
}

fn split_header(bytes: &[u8]) -> Parsed<(serde_json::Map<String, serde_json::Value>, &[u8])> {
    let len_bytes = bytes.get(..8).ok_or_else(|| corrupt("safetensors file is truncated"))?;
    let len = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes"));
    let end = usize::try_from(len)
        .ok()
        .and_then(|len| len.checked_add(8))
        .filter(|&end| end <= bytes.len())
        .ok_or_else(|| corrupt(format!("safetensors header length {len} exceeds the file (truncated?)")))?;
    let header = serde_json::from_slice(&bytes[8..end]).map_err(|e| corrupt(format!("bad safetensors header: {e}")))?;
    Ok((header, &bytes[end..]))
}

fn decode_entry(data: &[u8], name: String, info: EntryInfo) -> Parsed<Record> {
    let dtype =
        DType::from_safetensors(&info.dtype).ok_or_else(|| bad(&name, format!("unsupported dtype {}", info.dtype)))?;
    let [begin, end] = info.data_offsets;
    let bytes = data.get(begin..end).ok_or_else(|| {
        bad(
            &name,
            format!(
                "data offsets [{begin}, {end}] lie outside the {} data bytes",
                data.len()
            ),
        )
    })?;
    let expected = checked_numel(&info.shape).and_then(|n| n.checked_mul(dtype.size()));
    if expected != Some(bytes.len()) {
        return Err(bad(
            &name,
            format!(
                "shape {:?} of {} does not match {} data bytes",
                info.shape,
                info.dtype,
                bytes.len()
            ),
        ));
    }
    Ok((name, info.shape, dtype.decode(bytes, false)))
}

fn bad(tensor: &str, detail: String) -> Fault {
    Fault::Tensor {
        tensor: tensor.to_string(),
        detail,
    }
}

/// One tensor to write: name, dtype, shape and its little-endian bytes.
pub(super) struct Outgoing<'a> {
    pub name: &'a str,
    pub dtype: DType,
    pub shape: &'a [usize],
    pub bytes: Vec<u8>,
}

/// Writes tensors in the given order. The header is padded with spaces to a multiple of 8 bytes,
/// as the reference implementation does, so readers can map the data aligned.
pub(super) fn write(out: &mut impl Write, tensors: &[Outgoing]) -> std::io::Result<()> {
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for t in tensors {
        let end = offset + t.bytes.len();
        let info =
            serde_json::json!({"dtype": t.dtype.safetensors_name(), "shape": t.shape, "data_offsets": [offset, end]});
        header.insert(t.name.to_string(), info);
        offset = end;
    }
    let mut json = serde_json::to_vec(&header).map_err(std::io::Error::other)?;
    json.resize(json.len().next_multiple_of(8), b' ');
    out.write_all(&(json.len() as u64).to_le_bytes())?;
    out.write_all(&json)?;
    for t in tensors {
        out.write_all(&t.bytes)?;
    }
    out.flush()
}
