//! Tests on the real checkpoints in `../shared/data` plus hand-made files for the edge cases
//! (strides, views, dtypes, hostile pickles, truncation).

use std::path::{Path, PathBuf};

use super::*;
use crate::test_data::data;

/// An akamaster CIFAR-10 ResNet checkpoint of the real data, if present (else the test skips).
fn akamaster(file: &str) -> Option<PathBuf> {
    data(&format!("cifar10/weights_akamaster/{file}"))
}

/// This project's CIFAR-10 VGG-11-bn zip checkpoint, if present (else the test skips).
fn vgg_path() -> Option<PathBuf> {
    data("cifar10/weights_vgg/vgg11_bn_cifar10.pth")
}

/// A scratch directory removed on drop, unique per test so tests can run in parallel.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("polycnn-weights-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn all_finite(dict: &StateDict) -> bool {
    dict.names()
        .all(|n| dict.get(n).unwrap().data.iter().all(|v| v.is_finite()))
}

// ---------------------------------------------------------------- real checkpoints

#[test]
fn akamaster_resnets_load_with_prefix_stripped() {
    for (file, count) in [
        ("resnet20-12fca82f.th", 97),
        ("resnet32-d509ac18.th", 157),
        ("resnet44-014dd654.th", 217),
        ("resnet56-4bfd9763.th", 277),
    ] {
        let Some(path) = akamaster(file) else { return };
        let dict = StateDict::load(&path).unwrap();
        assert_eq!(dict.len(), count, "{file}");
        assert_eq!(
            dict.int_names().count(),
            0,
            "{file}: no num_batches_tracked in these files"
        );
        assert_eq!(dict.names().next(), Some("conv1.weight"), "{file}");
        assert!(dict.names().all(|n| !n.starts_with("module.")), "{file}");
        assert_eq!(dict.get("conv1.weight").unwrap().shape, [16, 3, 3, 3], "{file}");
        assert_eq!(dict.get("linear.weight").unwrap().shape, [10, 64], "{file}");
        assert_eq!(dict.get("linear.bias").unwrap().shape, [10], "{file}");
        assert_eq!(
            dict.get("layer3.0.conv1.weight").unwrap().shape,
            [64, 32, 3, 3],
            "{file}"
        );
        assert!(all_finite(&dict), "{file}");
    }
}

#[test]
fn resnet20_values_match_the_file() {
    // Reference values read from the raw storages with Python's pickle module (not torch).
    let Some(path) = akamaster("resnet20-12fca82f.th") else {
        return;
    };
    let dict = StateDict::load(&path).unwrap();
    assert_eq!(dict.get("conv1.weight").unwrap().data[0], -0.13818146_f32);
    assert_eq!(dict.get("linear.bias").unwrap().data[9], -0.2702594_f32);
    assert_eq!(dict.get("bn1.running_var").unwrap().data[3], 3.9390996_f32);
}

#[test]
fn vgg_zip_checkpoint_loads_with_int_tensors_apart() {
    let Some(path) = vgg_path() else { return };
    let dict = StateDict::load(&path).unwrap();
    let ints: Vec<&str> = dict.int_names().collect();
    assert_eq!(dict.len() + ints.len(), 58);
    assert_eq!(ints.len(), 8);
    assert!(ints.iter().all(|n| n.ends_with("num_batches_tracked")));
    let tracked = dict.int_tensor("features.1.num_batches_tracked").unwrap();
    assert_eq!(
        (tracked.shape.as_slice(), tracked.data.as_slice()),
        (&[][..], &[4680][..])
    );
    assert_eq!(dict.get("features.0.weight").unwrap().shape, [64, 3, 3, 3]);
    assert_eq!(dict.get("classifier.weight").unwrap().shape, [10, 512]);
    assert_eq!(dict.get("features.0.weight").unwrap().data[0], 0.23047693_f32);
    assert_eq!(dict.get("classifier.bias").unwrap().data[0], -0.08672871_f32);
    assert!(
        dict.get("features.1.running_var")
            .unwrap()
            .data
            .iter()
            .all(|&v| v > 0.0)
    );
    assert!(all_finite(&dict));
}

#[test]
fn take_shaped_checks_shape_and_tracks_remaining() {
    let Some(path) = akamaster("resnet20-12fca82f.th") else {
        return;
    };
    let mut dict = StateDict::load(&path).unwrap();
    let err = dict.take_shaped("conv1.weight", &[16, 3, 3]).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("conv1.weight") && text.contains("resnet20-12fca82f.th"),
        "{text}"
    );
    assert!(matches!(err, WeightsError::ShapeMismatch { .. }));

    let conv1 = dict.take_shaped("conv1.weight", &[16, 3, 3, 3]).unwrap();
    assert_eq!(conv1.numel(), 432);
    assert!(dict.get("conv1.weight").is_none());
    assert!(matches!(
        dict.take_shaped("conv1.weight", &[16, 3, 3, 3]),
        Err(WeightsError::MissingTensor {
            already_taken: true,
            ..
        })
    ));
    assert!(matches!(
        dict.take("no.such"),
        Err(WeightsError::MissingTensor {
            already_taken: false,
            ..
        })
    ));

    let names: Vec<String> = dict.names().map(str::to_string).collect();
    for name in names.iter().filter(|n| !n.starts_with("linear")) {
        if name != "conv1.weight" {
            dict.take(name).unwrap();
        }
    }
    assert_eq!(dict.remaining(), ["linear.weight", "linear.bias"]);
    assert_eq!(dict.len(), 97, "len counts what the file held");
}

// ---------------------------------------------------------------- safetensors

#[test]
fn safetensors_round_trip_keeps_order_shapes_and_values() {
    let dir = TempDir::new("st-roundtrip");
    let weight = Tensor {
        shape: vec![2, 3],
        data: vec![1.0, -2.5, 3.25, f32::MIN_POSITIVE, 0.0, -0.0],
    };
    let scalar = Tensor {
        shape: vec![],
        data: vec![42.0],
    };
    let empty = Tensor {
        shape: vec![0, 3],
        data: vec![],
    };
    let path = dir.0.join("small.safetensors");
    save_safetensors(
        &path,
        &[("z.weight", &weight), ("a.scalar", &scalar), ("m.empty", &empty)],
    )
    .unwrap();

    let dict = StateDict::load(&path).unwrap();
    assert_eq!(dict.names().collect::<Vec<_>>(), ["z.weight", "a.scalar", "m.empty"]);
    assert_eq!(dict.get("z.weight"), Some(&weight));
    assert_eq!(dict.get("a.scalar"), Some(&scalar));
    assert_eq!(dict.get("m.empty"), Some(&empty));
}

#[test]
fn vgg_converts_to_safetensors_losslessly() {
    let Some(vgg) = vgg_path() else { return };
    let dir = TempDir::new("st-vgg");
    let original = StateDict::load(&vgg).unwrap();
    let path = dir.0.join("vgg.safetensors");
    original.save_safetensors(&path).unwrap();
    let copy = StateDict::load(&path).unwrap();
    assert_eq!(copy.names().collect::<Vec<_>>(), original.names().collect::<Vec<_>>());
    for name in original.names() {
        assert_eq!(copy.get(name), original.get(name), "{name}");
    }
    for name in original.int_names() {
        assert_eq!(copy.int_tensor(name), original.int_tensor(name), "{name}");
    }
}

#[test]
fn save_refuses_a_tensor_whose_shape_and_data_disagree() {
    let dir = TempDir::new("st-bad");
    let bad = Tensor {
        shape: vec![2, 2],
        data: vec![1.0; 3],
    };
    let err = save_safetensors(&dir.0.join("x.safetensors"), &[("bad.weight", &bad)]).unwrap_err();
    assert!(err.to_string().contains("bad.weight"), "{err}");
}

#[test]
fn safetensors_with_out_of_range_offsets_names_the_tensor() {
    let dir = TempDir::new("st-range");
    let header = br#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&[0; 8]); // only two of the four floats
    let path = dir.write("short.safetensors", &bytes);
    let err = StateDict::load(&path).unwrap_err();
    assert!(
        matches!(&err, WeightsError::BadTensor { tensor, .. } if tensor == "w"),
        "{err}"
    );
}

// ---------------------------------------------------------------- hand-made pickles

/// Builds protocol-2 pickles opcode by opcode.
#[derive(Default)]
struct Pickle(Vec<u8>);

impl Pickle {
    fn new() -> Pickle {
        Pickle(vec![0x80, 2])
    }
    fn op(mut self, byte: u8) -> Self {
        self.0.push(byte);
        self
    }
    fn text(mut self, s: &str) -> Self {
        self.0.push(b'X');
        self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    fn int(mut self, v: i32) -> Self {
        self.0.push(b'J');
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn ints(self, values: &[i32]) -> Self {
        values.iter().fold(self.op(b'('), |p, &v| p.int(v)).op(b't')
    }
    fn global(mut self, module: &str, name: &str) -> Self {
        self.0.push(b'c');
        self.0.extend_from_slice(format!("{module}\n{name}\n").as_bytes());
        self
    }
    /// `_rebuild_tensor_v2(pid(('storage', torch.<class>, key, 'cpu', numel[, None])), offset, size, stride, False, OrderedDict())`
    fn tensor(self, storage: (&str, &str, i32, bool), offset: i32, size: &[i32], stride: &[i32]) -> Self {
        let (class, key, numel, legacy) = storage;
        let pid = self
            .global("torch._utils", "_rebuild_tensor_v2")
            .op(b'(')
            .op(b'(')
            .text("storage")
            .global("torch", class)
            .text(key)
            .text("cpu")
            .int(numel);
        let pid = if legacy { pid.op(b'N') } else { pid };
        pid.op(b't')
            .op(b'Q')
            .int(offset)
            .ints(size)
            .ints(stride)
            .op(0x89)
            .global("collections", "OrderedDict")
            .op(b')')
            .op(b'R')
            .op(b't')
            .op(b'R')
    }
    fn stop(self) -> Vec<u8> {
        self.op(b'.').0
    }
}

/// Legacy layout: magic, protocol, sys_info, object, key list, then (count, data) per key.
fn legacy_file(object: &[u8], storages: &[(&str, i64, Vec<u8>)]) -> Vec<u8> {
    let mut magic = vec![0x80, 2, 0x8a, 10];
    magic.extend_from_slice(&0x1950a86a20f9469cfc6c_u128.to_le_bytes()[..10]);
    magic.push(b'.');
    let mut file = magic;
    file.extend_from_slice(&Pickle::new().op(b'M').op(0xe9).op(0x03).stop());
    file.extend_from_slice(&Pickle::new().op(b'}').stop());
    file.extend_from_slice(object);
    let keys = storages
        .iter()
        .fold(Pickle::new().op(b']').op(b'('), |p, (k, _, _)| p.text(k))
        .op(b'e');
    file.extend_from_slice(&keys.stop());
    for (_, count, data) in storages {
        file.extend_from_slice(&count.to_le_bytes());
        file.extend_from_slice(data);
    }
    file
}

/// A STORED zip archive, as torch.save writes it.
fn zip_file(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let crc = super::zip::crc32(data);
        let offset = out.len() as u32;
        let fixed = |sig: u32| {
            let mut h = sig.to_le_bytes().to_vec();
            h.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // versions, flags, method 0, time, date
            h.extend_from_slice(&crc.to_le_bytes());
            h.extend_from_slice(&(data.len() as u32).to_le_bytes());
            h.extend_from_slice(&(data.len() as u32).to_le_bytes());
            h.extend_from_slice(&(name.len() as u16).to_le_bytes());
            h.extend_from_slice(&[0, 0]); // extra length
            h
        };
        out.extend_from_slice(&fixed(0x0403_4b50));
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        // The central record has "version made by" in front of the local header's fields.
        let mut c = 0x0201_4b50_u32.to_le_bytes().to_vec();
        c.extend_from_slice(&[20, 0]);
        c.extend_from_slice(&fixed(0)[4..]);
        c.extend_from_slice(&[0; 8]); // comment length, disk, internal attributes, half of external
        c.extend_from_slice(&[0, 0]);
        c.extend_from_slice(&offset.to_le_bytes());
        c.extend_from_slice(name.as_bytes());
        central.extend_from_slice(&c);
    }
    let central_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50_u32.to_le_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&central_offset.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[test]
fn legacy_strided_tensors_and_views_are_made_contiguous() {
    let dir = TempDir::new("legacy-strided");
    // storage k0 = 0..6; "t" is its 2x3 transpose view (stride (1, 2)), "tail" = elements 4..6
    // via a legacy storage view (key, offset 4, size 2).
    let object = Pickle::new()
        .op(b'}')
        .op(b'(')
        .text("t")
        .tensor(("FloatStorage", "k0", 6, true), 0, &[2, 3], &[1, 2])
        .text("row1")
        .tensor(("FloatStorage", "k0", 6, true), 3, &[3], &[1])
        .text("tail")
        .global("torch._utils", "_rebuild_tensor")
        .op(b'(')
        .op(b'(')
        .text("storage")
        .global("torch", "FloatStorage")
        .text("k0")
        .text("cpu")
        .int(6)
        .op(b'(')
        .text("k0v")
        .int(4)
        .int(2)
        .op(b't')
        .op(b't')
        .op(b'Q')
        .int(0)
        .ints(&[2])
        .ints(&[1])
        .op(b't')
        .op(b'R')
        .op(b'u')
        .stop();
    let file = legacy_file(&object, &[("k0", 6, f32_bytes(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]))]);
    let dict = StateDict::load(&dir.write("strided.pt", &file)).unwrap();
    let t = dict.get("t").unwrap();
    assert_eq!(
        (t.shape.as_slice(), t.data.as_slice()),
        (&[2, 3][..], &[0.0, 2.0, 4.0, 1.0, 3.0, 5.0][..])
    );
    assert_eq!(dict.get("row1").unwrap().data, [3.0, 4.0, 5.0]);
    assert_eq!(dict.get("tail").unwrap().data, [4.0, 5.0]);
}

#[test]
fn zip_with_half_double_bfloat_long_and_big_endian() {
    let dir = TempDir::new("zip-dtypes");
    let pickle = Pickle::new()
        .op(b'}')
        .op(b'(')
        .text("h")
        .tensor(("HalfStorage", "0", 2, false), 0, &[2], &[1])
        .text("d")
        .tensor(("DoubleStorage", "1", 2, false), 0, &[2], &[1])
        .text("b")
        .tensor(("BFloat16Storage", "2", 1, false), 0, &[], &[])
        .text("n")
        .tensor(("LongStorage", "3", 1, false), 0, &[], &[])
        .op(b'u')
        .stop();
    let half: Vec<u8> = [0x3c00u16, 0xc100].iter().flat_map(|v| v.to_le_bytes()).collect(); // 1.0, -2.5
    let double: Vec<u8> = [0.5f64, -1e300].iter().flat_map(|v| v.to_le_bytes()).collect();
    let bf16 = 0x4049u16.to_le_bytes(); // 3.140625
    let long = 7i64.to_le_bytes();
    let entries = [
        ("ckpt/data.pkl", pickle.as_slice()),
        ("ckpt/byteorder", b"little".as_slice()),
        ("ckpt/data/0", &half),
        ("ckpt/data/1", &double),
        ("ckpt/data/2", &bf16),
        ("ckpt/data/3", &long),
    ];
    let dict = StateDict::load(&dir.write("dtypes.pt", &zip_file(&entries))).unwrap();
    assert_eq!(dict.get("h").unwrap().data, [1.0, -2.5]);
    assert_eq!(dict.get("d").unwrap().data, [0.5, f32::NEG_INFINITY]);
    assert_eq!(dict.get("b").unwrap().data, [3.140625]);
    assert_eq!(dict.int_tensor("n").unwrap().data, [7]);
    assert_eq!(dict.len(), 3);

    // The same archive written on a big-endian machine.
    let swapped: Vec<u8> = half.chunks(2).flat_map(|c| [c[1], c[0]]).collect();
    let big_entries = [
        ("ckpt/data.pkl", entries[0].1),
        ("ckpt/byteorder", b"big".as_slice()),
        ("ckpt/data/0", &swapped),
        (
            "ckpt/data/1",
            &double
                .chunks(8)
                .flat_map(|c| c.iter().rev().copied())
                .collect::<Vec<u8>>(),
        ),
        ("ckpt/data/2", &[bf16[1], bf16[0]]),
        ("ckpt/data/3", &long.iter().rev().copied().collect::<Vec<u8>>()),
    ];
    let dict = StateDict::load(&dir.write("big.pt", &zip_file(&big_entries))).unwrap();
    assert_eq!(dict.get("h").unwrap().data, [1.0, -2.5]);
    assert_eq!(dict.int_tensor("n").unwrap().data, [7]);
}

/// `os.system('echo pwned')` as a pickle would spell it.
fn os_system_pickle() -> Vec<u8> {
    Pickle::new()
        .global("os", "system")
        .text("echo pwned")
        .op(0x85)
        .op(b'R')
        .stop()
}

#[test]
fn forbidden_global_is_refused_by_name_in_legacy_and_zip_files() {
    let dir = TempDir::new("forbidden");
    let legacy = dir.write("evil_legacy.pt", &legacy_file(&os_system_pickle(), &[]));
    let zip = dir.write("evil_zip.pt", &zip_file(&[("archive/data.pkl", &os_system_pickle())]));
    for path in [legacy, zip] {
        let err = StateDict::load(&path).unwrap_err();
        assert!(
            matches!(&err, WeightsError::ForbiddenGlobal { global, .. } if global == "os.system"),
            "{err}"
        );
        let text = err.to_string();
        assert!(
            text.contains("os.system") && text.contains(path.to_str().unwrap()),
            "{text}"
        );
    }
}

#[test]
fn nested_pickle_loader_is_refused() {
    let dir = TempDir::new("load-from-bytes");
    let pickle = Pickle::new()
        .op(b'}')
        .text("w")
        .global("torch.storage", "_load_from_bytes")
        .op(b'C')
        .op(1)
        .op(b'.')
        .op(0x85)
        .op(b'R')
        .op(b's')
        .stop();
    let path = dir.write("nested.pt", &zip_file(&[("archive/data.pkl", &pickle)]));
    let err = StateDict::load(&path).unwrap_err();
    assert!(err.to_string().contains("torch.storage._load_from_bytes"), "{err}");
}

#[test]
fn non_tensor_entry_is_reported_by_name() {
    let dir = TempDir::new("non-tensor");
    let pickle = Pickle::new().op(b'}').text("epoch").int(3).op(b's').stop();
    let path = dir.write("epoch.pt", &zip_file(&[("archive/data.pkl", &pickle)]));
    let err = StateDict::load(&path).unwrap_err();
    assert!(
        matches!(&err, WeightsError::BadTensor { tensor, .. } if tensor == "epoch"),
        "{err}"
    );
}

/// Offsets past the storage, overflowing shapes, and zero-stride "expansions" that would turn
/// four stored floats into a terabyte are all refused, naming the tensor.
#[test]
fn tensor_reaching_past_its_storage_is_an_error_not_a_panic() {
    let dir = TempDir::new("oob");
    let storage = f32_bytes(&[1.0; 4]);
    let cases: [(i32, &[i32], &[i32], &str); 4] = [
        (2, &[3], &[1], "reaches past"),
        (0, &[2, 2], &[2, 3], "reaches past"),
        (0, &[1 << 30, 1 << 30, 1 << 30], &[0, 0, 0], "overflows"),
        (0, &[1 << 20, 1 << 20], &[0, 0], "more elements"),
    ];
    for (offset, size, stride, expected) in cases {
        let pickle = Pickle::new()
            .op(b'}')
            .text("w")
            .tensor(("FloatStorage", "0", 4, false), offset, size, stride)
            .op(b's')
            .stop();
        let zip = zip_file(&[("a/data.pkl", &pickle), ("a/data/0", &storage)]);
        let err = StateDict::load(&dir.write("oob.pt", &zip)).unwrap_err();
        assert!(
            matches!(&err, WeightsError::BadTensor { tensor, .. } if tensor == "w"),
            "{err}"
        );
        assert!(err.to_string().contains(expected), "{err}");
    }
}

// ---------------------------------------------------------------- broken files

#[test]
fn missing_file_names_the_path() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("no/such/weights.pth");
    let err = StateDict::load(&path).unwrap_err();
    assert!(matches!(err, WeightsError::Io { .. }));
    assert!(err.to_string().contains("no/such/weights.pth"), "{err}");
}

#[test]
fn garbage_and_empty_files_are_unrecognised() {
    let dir = TempDir::new("garbage");
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    for (name, bytes) in [("garbage.pth", garbage.as_slice()), ("empty.pth", &[])] {
        let path = dir.write(name, bytes);
        let err = StateDict::load(&path).unwrap_err();
        assert!(matches!(err, WeightsError::Format { .. }), "{err}");
        assert!(err.to_string().contains(name), "{err}");
    }
}

#[test]
fn truncated_checkpoints_are_errors() {
    let (Some(legacy), Some(zip)) = (akamaster("resnet20-12fca82f.th"), vgg_path()) else {
        return;
    };
    let dir = TempDir::new("truncated");
    let legacy = std::fs::read(legacy).unwrap();
    let zip = std::fs::read(zip).unwrap();
    // Inside the object pickle, inside the storages, one byte short; then zip cuts.
    let cuts = [
        ("legacy-pickle.th", &legacy[..5000]),
        ("legacy-data.th", &legacy[..legacy.len() / 2]),
        ("legacy-last-byte.th", &legacy[..legacy.len() - 1]),
        ("zip-tail.pth", &zip[..zip.len() - 10]),
        ("zip-half.pth", &zip[..zip.len() / 2]),
    ];
    for (name, bytes) in cuts {
        let err = StateDict::load(&dir.write(name, bytes)).unwrap_err();
        assert!(err.to_string().contains(name), "{err}");
    }
}

#[test]
fn flipped_byte_in_zip_storage_fails_the_crc() {
    let Some(vgg) = vgg_path() else { return };
    let dir = TempDir::new("crc");
    let mut zip = std::fs::read(vgg).unwrap();
    let middle = zip.len() / 2;
    zip[middle] ^= 0x40;
    let err = StateDict::load(&dir.write("flipped.pth", &zip)).unwrap_err();
    assert!(err.to_string().contains("CRC"), "{err}");
}

/// Mutates bytes of the legacy header and pickles many times: every outcome must be Ok or Err,
/// never a panic or a runaway allocation.
#[test]
fn mutated_pickles_never_panic() {
    let Some(path) = akamaster("resnet20-12fca82f.th") else {
        return;
    };
    let original = std::fs::read(path).unwrap();
    let pickle_region = 14063; // end of the five pickles in this file
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut errors = 0;
    for _ in 0..3000 {
        let mut bytes = original.clone();
        for _ in 0..1 + next() % 3 {
            let at = (next() % pickle_region) as usize;
            bytes[at] = next() as u8;
        }
        errors += usize::from(parse_any(&bytes).is_err());
    }
    assert!(errors > 0);
}
