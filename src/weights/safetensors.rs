//! safetensors: an 8-byte little-endian header length, a JSON header
//! `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}`, then raw
//! little-endian data. Simple enough that serde_json beats pulling in the `safetensors` crate.
//!
//! Like the reference loader, a file is refused unless its tensors tile the data exactly: sorted
//! by offsets, each starts where the previous ended (no gap, overlap or alias), the first at 0,
//! the last at the end of the file; and no name appears twice in the header. Any of those loads
//! "fine" with wrong weights otherwise.

use std::collections::HashSet;
use std::fmt;
use std::io::Write;

use serde::de::{Error as _, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

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

/// True when `bytes` plausibly starts with a safetensors header (a JSON object after the 8-byte
/// length). The length itself is checked by [`parse`], so a wrong one is reported as such.
pub(super) fn looks_like_safetensors(bytes: &[u8]) -> bool {
    bytes.get(8) == Some(&b'{')
}

/// Parses a whole file; tensors come out in data order, which is the order they were written.
pub(super) fn parse(bytes: &[u8]) -> Parsed<Vec<Record>> {
    let (header, data) = split_header(bytes)?;
    let mut infos = Vec::new();
    for (name, info) in header.0 {
        if name == "__metadata__" {
            continue;
        }
        let info: EntryInfo = serde_json::from_value(info).map_err(|e| bad(&name, format!("bad header entry: {e}")))?;
        infos.push((name, info));
    }
    infos.sort_by_key(|(_, info)| info.data_offsets);
    check_tiling(&infos, data.len())?;
    infos
        .into_iter()
        .map(|(name, info)| decode_entry(data, name, info))
        .collect()
}

/// The header's entries in file order; a name given twice is an error (a JSON map would keep
/// the last one silently).
struct Header(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for Header {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Header, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = Header;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object of tensors")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Header, A::Error> {
                let (mut seen, mut entries) = (HashSet::new(), Vec::new());
                while let Some((name, value)) = map.next_entry::<String, serde_json::Value>()? {
                    if !seen.insert(name.clone()) {
                        return Err(A::Error::custom(format!("`{name}` appears twice in the header")));
                    }
                    entries.push((name, value));
                }
                Ok(Header(entries))
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

fn split_header(bytes: &[u8]) -> Parsed<(Header, &[u8])> {
    let len_bytes = bytes.get(..8).ok_or_else(|| corrupt("safetensors file is truncated"))?;
    let len = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes"));
    let end = usize::try_from(len)
        .ok()
        .and_then(|len| len.checked_add(8))
        .filter(|&end| end <= bytes.len())
        .ok_or_else(|| {
            corrupt(format!(
                "safetensors header length {len} exceeds the file's {} bytes (truncated or damaged)",
                bytes.len()
            ))
        })?;
    let header = serde_json::from_slice(&bytes[8..end]).map_err(|e| corrupt(format!("bad safetensors header: {e}")))?;
    Ok((header, &bytes[end..]))
}

/// `infos` sorted by offsets must cover `0..data_len` exactly, each tensor once.
fn check_tiling(infos: &[(String, EntryInfo)], data_len: usize) -> Parsed<()> {
    let mut covered = 0; // the data bytes before this are claimed
    let mut previous = None;
    for (name, info) in infos {
        let [begin, end] = info.data_offsets;
        let detail = if end < begin {
            Some("ends before it begins".to_string())
        } else if end > data_len {
            Some(format!("lie outside the {data_len} data bytes"))
        } else if begin < covered {
            Some(format!(
                "overlap `{}`, whose data ends at {covered}",
                previous.unwrap_or_default()
            ))
        } else if begin > covered {
            Some(format!("leave bytes {covered}..{begin} of the data unused"))
        } else {
            None
        };
        if let Some(detail) = detail {
            return Err(bad(name, format!("data offsets [{begin}, {end}] {detail}")));
        }
        covered = end;
        previous = Some(name.as_str());
    }
    if covered != data_len {
        return Err(corrupt(format!(
            "the tensors' data ends at byte {covered} of the {data_len} data bytes: the file has trailing bytes"
        )));
    }
    Ok(())
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
