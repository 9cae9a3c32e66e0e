//! PyTorch checkpoints: the zip format (`torch.save` since 1.6) and the legacy format before it.
//! Both are a pickle that describes tensors as windows of storages, plus the storages' raw bytes
//! kept outside the pickle; they differ only in where those bytes are.

use std::collections::HashMap;
use std::rc::Rc;

use super::dtype::{Layout, gather};
use super::error::{Fault, Parsed, corrupt};
use super::pickle::{Object, Pickled, StorageRef, TensorRef, Value, unpickle};
use super::safetensors::Record;
use super::zip::ZipArchive;

/// The first pickle of a legacy file is this integer.
const LEGACY_MAGIC: i128 = 0x1950a86a20f9469cfc6c;
const LEGACY_PROTOCOL: i128 = 1001;

/// Checkpoints often wrap the state dict with training state (`best_prec1`, optimizer, epoch).
const WRAPPER_KEYS: [&str; 3] = ["state_dict", "model_state_dict", "model"];

/// A legacy file opens with `PROTO 2, LONG1 10 bytes, <magic>`.
pub(super) fn is_legacy(bytes: &[u8]) -> bool {
    let magic = &LEGACY_MAGIC.to_le_bytes()[..10];
    bytes.len() >= 14 && bytes[..4] == [0x80, 0x02, 0x8a, 0x0a] && &bytes[4..14] == magic
}

/// Zip layout: `<dir>/data.pkl`, `<dir>/data/<key>` per storage, `<dir>/byteorder` (absent before
/// torch 1.11, when only little-endian was written). `<dir>` is whatever name the file was saved under.
pub(super) fn parse_zip(bytes: &[u8]) -> Parsed<Vec<Record>> {
    let archive = ZipArchive::parse(bytes)?;
    let pickle_entry = archive
        .entries
        .iter()
        .find(|e| e.name.ends_with("/data.pkl") && e.name.matches('/').count() == 1)
        .ok_or_else(|| corrupt("zip archive has no <dir>/data.pkl: not a torch.save checkpoint"))?;
    let prefix = pickle_entry.name.trim_end_matches("data.pkl");
    let big_endian = read_byteorder(&archive, prefix)?;
    let pickled = unpickle(archive.read(pickle_entry)?)?;
    let mut cache: HashMap<Rc<str>, &[u8]> = HashMap::new();
    let mut storage_bytes = |storage: &StorageRef| -> Parsed<&[u8]> {
        if let Some(bytes) = cache.get(&storage.key) {
            return Ok(bytes);
        }
        let name = format!("{prefix}data/{}", storage.key);
        let entry = archive
            .find(&name)
            .ok_or_else(|| corrupt(format!("storage {name} is missing from the archive")))?;
        let bytes = archive.read(entry)?;
        cache.insert(storage.key.clone(), bytes);
        Ok(bytes)
    };
    state_dict_tensors(&pickled)?
        .into_iter()
        .map(|(name, tensor)| {
            let bytes = storage_bytes(&tensor.storage).map_err(|f| f.for_tensor(&name))?;
            materialize(name, &tensor, bytes, big_endian)
        })
        .collect()
}

fn read_byteorder(archive: &ZipArchive, prefix: &str) -> Parsed<bool> {
    let Some(entry) = archive.find(&format!("{prefix}byteorder")) else {
        return Ok(false);
    };
    match archive.read(entry)? {
        b"little" => Ok(false),
        b"big" => Ok(true),
        other => Err(corrupt(format!(
            "unknown byteorder record {:?}",
            String::from_utf8_lossy(other)
        ))),
    }
}

/// Legacy layout: five pickles (magic, protocol, sys_info, the object, storage keys), then for
/// each key in that list order an i64 element count and the elements, all little-endian
/// (torch byte-swaps on big-endian machines when writing this format).
pub(super) fn parse_legacy(bytes: &[u8]) -> Parsed<Vec<Record>> {
    let mut at = 0;
    let magic = next_pickle(bytes, &mut at, "magic number")?;
    if !matches!(magic.root, Value::Int(LEGACY_MAGIC)) {
        return Err(corrupt("legacy checkpoint has a wrong magic number"));
    }
    let protocol = next_pickle(bytes, &mut at, "protocol version")?;
    if !matches!(protocol.root, Value::Int(LEGACY_PROTOCOL)) {
        return Err(corrupt("legacy checkpoint has an unknown protocol version"));
    }
    next_pickle(bytes, &mut at, "sys_info")?;
    let main = next_pickle(bytes, &mut at, "checkpoint object")?;
    let keys = next_pickle(bytes, &mut at, "storage key list")?;
    let storages = read_legacy_storages(bytes, at, &main, &keys)?;
    state_dict_tensors(&main)?
        .into_iter()
        .map(|(name, tensor)| {
            let bytes = storages
                .get(&tensor.storage.key)
                .copied()
                .ok_or_else(|| Fault::Tensor {
                    tensor: name.clone(),
                    detail: format!("storage {} is not in the file's storage list", tensor.storage.key),
                })?;
            materialize(name, &tensor, bytes, false)
        })
        .collect()
}

fn next_pickle(bytes: &[u8], at: &mut usize, what: &str) -> Parsed<Pickled> {
    let pickled = unpickle(&bytes[*at..]).map_err(|fault| match fault {
        Fault::Format(detail) => corrupt(format!("legacy checkpoint, {what} pickle: {detail}")),
        other => other,
    })?;
    *at += pickled.end;
    Ok(pickled)
}

/// Slices the raw storages that follow the pickles. Element sizes come from the storage types the
/// object pickle referenced; a key it never referenced could not be skipped, so it is an error.
fn read_legacy_storages<'a>(
    bytes: &'a [u8],
    mut at: usize,
    main: &Pickled,
    keys: &Pickled,
) -> Parsed<HashMap<Rc<str>, &'a [u8]>> {
    let referenced: HashMap<&str, &StorageRef> = main.storages.iter().map(|s| (&*s.key, &**s)).collect();
    let key_list = keys
        .items(&keys.root)
        .ok_or_else(|| corrupt("legacy storage key list is not a list"))?;
    let mut storages = HashMap::new();
    for key in key_list {
        let Value::Str(key) = key else {
            return Err(corrupt(format!(
                "legacy storage key is not a string but {}",
                key.describe()
            )));
        };
        let storage = referenced.get(&**key).ok_or_else(|| {
            corrupt(format!(
                "storage {key} is listed but never referenced, so its size is unknown"
            ))
        })?;
        let count = read_i64(bytes, at).ok_or_else(|| truncated_storage(key))?;
        if usize::try_from(count).ok() != Some(storage.numel) {
            return Err(corrupt(format!(
                "storage {key} holds {count} elements, the pickle says {}",
                storage.numel
            )));
        }
        let len = storage
            .numel
            .checked_mul(storage.dtype.size())
            .ok_or_else(|| truncated_storage(key))?;
        let start = at + 8;
        let data = start
            .checked_add(len)
            .and_then(|end| bytes.get(start..end))
            .ok_or_else(|| truncated_storage(key))?;
        storages.insert(key.clone(), data);
        at = start + len;
    }
    Ok(storages)
}

fn read_i64(bytes: &[u8], at: usize) -> Option<i64> {
    let raw = bytes.get(at..at.checked_add(8)?)?;
    Some(i64::from_le_bytes(raw.try_into().ok()?))
}

fn truncated_storage(key: &str) -> Fault {
    corrupt(format!("truncated file: storage {key} is cut short"))
}

/// The (name, tensor) pairs of the checkpoint's state dict, in file order.
fn state_dict_tensors(pickled: &Pickled) -> Parsed<Vec<(String, Rc<TensorRef>)>> {
    let entries = state_dict_entries(pickled)?;
    entries
        .iter()
        .map(|(key, value)| {
            let Value::Str(name) = key else {
                return Err(corrupt(format!(
                    "state dict key is not a string but {}",
                    key.describe()
                )));
            };
            match value {
                Value::Object(Object::Tensor(tensor)) => Ok((name.to_string(), tensor.clone())),
                other => Err(Fault::Tensor {
                    tensor: name.to_string(),
                    detail: format!("is not a tensor but {}", other.describe()),
                }),
            }
        })
        .collect()
}

/// The state dict itself, or the one under a wrapper key such as `state_dict`.
fn state_dict_entries(pickled: &Pickled) -> Parsed<&[(Value, Value)]> {
    let top = pickled.entries(&pickled.root).ok_or_else(|| {
        corrupt(format!(
            "checkpoint holds {}, expected a dict of tensors",
            &pickled.root.describe()
        ))
    })?;
    for wanted in WRAPPER_KEYS {
        let inner = top
            .iter()
            .find(|(key, _)| matches!(key, Value::Str(k) if &**k == wanted));
        if let Some(inner) = inner.and_then(|(_, value)| pickled.entries(value)) {
            return Ok(inner);
        }
    }
    Ok(top)
}

/// Copies one tensor out of its storage bytes into a dense row-major record.
fn materialize(name: String, tensor: &TensorRef, storage: &[u8], big_endian: bool) -> Parsed<Record> {
    let at_tensor = |detail: String| Fault::Tensor {
        tensor: name.clone(),
        detail,
    };
    let dtype = tensor.storage.dtype;
    let size = dtype.size();
    let key = &tensor.storage.key;
    let root_len = tensor
        .storage
        .numel
        .checked_mul(size)
        .filter(|&n| n <= storage.len())
        .ok_or_else(|| {
            at_tensor(format!(
                "storage {key} has {} bytes, fewer than its {} elements need",
                storage.len(),
                tensor.storage.numel
            ))
        })?;
    let window = match tensor.storage.view {
        None => &storage[..root_len],
        Some((offset, len)) => offset
            .checked_add(len)
            .and_then(|end| end.checked_mul(size))
            .and_then(|end| storage[..root_len].get(offset * size..end))
            .ok_or_else(|| at_tensor(format!("view [{offset}, +{len}) lies outside storage {key}")))?,
    };
    let layout = Layout {
        offset: tensor.offset,
        shape: &tensor.shape,
        stride: &tensor.stride,
    };
    let bytes = gather(window, size, &layout).map_err(|f| f.for_tensor(&name))?;
    let elements = dtype.decode(&bytes, big_endian);
    Ok((name, tensor.shape.clone(), elements))
}
