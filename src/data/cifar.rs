//! CIFAR-10 test sets in the four forms users have them.
//!
//! - binary batches (`test_batch.bin`): records of 1 label byte + 3072 pixel bytes (R, G, B planes, 32x32);
//! - the python batch (`test_batch`): a pickle of `{b'data': uint8 ndarray N x 3072, b'labels': [...]}`, read
//!   by the restricted reader in `pickle.rs`;
//! - class folders (`test/airplane/0000.jpg`, ...), folder names mapped to [`CLASSES`];
//! - the lossless PNG strip: 1024 x N RGB, row i = image i in row-major pixel order, labels from
//!   `cifar10_labels.js` (`var labels=[...]`, 50,000 training labels then the test labels).
//!
//! The first two and the strip are decoded once into memory ([`MemoryDataset`], 3 KB per image).

use std::path::{Path, PathBuf};

use super::files::{FileDataset, class_folders};
use super::pickle::{Object, Pickled, Value, unpickle};
use super::{DataError, Dataset, Geometry, ImageU8, decode_file};

/// Class names in label order (torchvision's `CIFAR10.classes`).
pub const CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

const SIDE: usize = 32;
const PIXELS: usize = SIDE * SIDE * 3;
/// In `cifar10_labels.js`, test image i has label `labels[STRIP_LABEL_OFFSET + i]`.
const STRIP_LABEL_OFFSET: usize = 50_000;

/// Decoded CIFAR images held in memory, CHW uint8 (the batches' own layout).
#[derive(Clone, Debug)]
pub struct MemoryDataset {
    source: PathBuf,
    pixels: Vec<u8>,
    labels: Vec<usize>,
}

impl MemoryDataset {
    /// `pixels`: N x 3 x 32 x 32; `source` names the file(s) in errors and descriptions.
    pub fn new(source: PathBuf, pixels: Vec<u8>, labels: Vec<usize>) -> Result<MemoryDataset, DataError> {
        if pixels.len() != labels.len() * PIXELS {
            let msg = format!(
                "{} pixel bytes for {} labels (expected {} per image)",
                pixels.len(),
                labels.len(),
                PIXELS
            );
            return Err(DataError::new(&source, msg));
        }
        if let Some((i, l)) = labels.iter().enumerate().find(|(_, l)| **l >= CLASSES.len()) {
            return Err(DataError::new(
                &source,
                format!("image {i} has label {l}, CIFAR-10 has 10 classes"),
            ));
        }
        Ok(MemoryDataset { source, pixels, labels })
    }
}

impl Dataset for MemoryDataset {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn label(&self, i: usize) -> usize {
        self.labels[i]
    }

    fn describe(&self, i: usize) -> String {
        format!("{} #{i}", self.source.display())
    }

    fn shape(&self) -> [usize; 3] {
        [3, SIDE, SIDE]
    }

    fn load_u8(&self, i: usize) -> Result<ImageU8, DataError> {
        let data = self.pixels[i * PIXELS..(i + 1) * PIXELS].to_vec();
        Ok(ImageU8 {
            channels: 3,
            height: SIDE,
            width: SIDE,
            data,
        })
    }

    fn fingerprint(&self) -> String {
        // Content hash: the data is in memory already, and hashing 30 MB takes milliseconds.
        let labels: Vec<u8> = self.labels.iter().map(|&l| l as u8).collect();
        format!(
            "cifar-memory:{}:{:016x}:{:016x}",
            self.labels.len(),
            fnv1a(&self.pixels),
            fnv1a(&labels)
        )
    }
}

/// 64-bit FNV-1a: a dependency-free content hash for cache keys (not cryptographic; it only has to
/// notice changed inputs).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn read(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|e| DataError::io(path, "reading", e))
}

/// Official binary batches (`data_batch_*.bin`, `test_batch.bin`), concatenated in the given order.
pub fn binary_batches(paths: &[PathBuf]) -> Result<MemoryDataset, DataError> {
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for path in paths {
        let bytes = read(path)?;
        if bytes.is_empty() || bytes.len() % (PIXELS + 1) != 0 {
            let msg = format!(
                "{} bytes is not a whole number of 3073-byte CIFAR-10 records",
                bytes.len()
            );
            return Err(DataError::new(path, msg));
        }
        for record in bytes.chunks_exact(PIXELS + 1) {
            labels.push(usize::from(record[0]));
            pixels.extend_from_slice(&record[1..]);
        }
    }
    let source = paths.first().cloned().unwrap_or_default();
    MemoryDataset::new(source, pixels, labels)
}

/// The official python batch (`test_batch` from cifar-10-python.tar.gz).
pub fn python_batch(path: &Path) -> Result<MemoryDataset, DataError> {
    let bytes = read(path)?;
    let pickled = unpickle(&bytes).map_err(|msg| DataError::new(path, format!("not a readable pickle: {msg}")))?;
    let (pixels, labels) = batch_contents(&pickled).map_err(|msg| DataError::new(path, msg))?;
    MemoryDataset::new(path.to_path_buf(), pixels, labels)
}

fn batch_contents(pickled: &Pickled) -> Result<(Vec<u8>, Vec<usize>), String> {
    let get = |key: &str| pickled.heap.get(&pickled.root, key);
    let data = get("data").ok_or("no 'data' entry (expected a CIFAR-10 python batch dict)")?;
    let Value::Object(Object::Array(array)) = data else {
        return Err(format!("'data' is {}, expected a numpy array", data.describe()));
    };
    if !matches!(array.dtype.as_str(), "u1" | "|u1" | "uint8") || array.shape.len() != 2 || array.shape[1] != PIXELS {
        return Err(format!(
            "'data' is {} {:?}, expected uint8 N x {PIXELS}",
            array.dtype, array.shape
        ));
    }
    if array.data.len() != array.shape[0] * PIXELS {
        return Err(format!(
            "'data' holds {} bytes for shape {:?}",
            array.data.len(),
            array.shape
        ));
    }
    let labels = get("labels").ok_or("no 'labels' entry")?;
    let labels = match (labels, pickled.heap.items(labels)) {
        (Value::List(_), Some(items)) => items
            .iter()
            .map(|v| match v {
                Value::Int(l) => usize::try_from(*l).map_err(|_| format!("a label is {l}")),
                other => Err(format!("a label is {}", other.describe())),
            })
            .collect::<Result<Vec<_>, _>>()?,
        (other, _) => return Err(format!("'labels' is {}, expected a list", other.describe())),
    };
    Ok((array.data.to_vec(), labels))
}

/// `root/<class name>/*.jpg|png`, 32x32 images; folder names must be CIFAR-10 class names.
pub fn class_folder_dataset(root: &Path) -> Result<FileDataset, DataError> {
    let class_of = |name: &str, _: usize| {
        CLASSES
            .iter()
            .position(|c| *c == name)
            .ok_or_else(|| format!("folder {name:?} is not a CIFAR-10 class"))
    };
    let (files, labels) = class_folders(root, class_of)?;
    Ok(FileDataset::new(files, labels, Geometry::CIFAR))
}

/// The lossless strip: `png` (1024 x N) and `labels_js` (`var labels=[...]`).
pub fn png_strip(png: &Path, labels_js: &Path) -> Result<MemoryDataset, DataError> {
    let image = decode_file(png)?;
    if image.width != SIDE * SIDE {
        return Err(DataError::new(
            png,
            format!("strip is {} wide, expected 1024 (one 32x32 image per row)", image.width),
        ));
    }
    let text = std::fs::read_to_string(labels_js).map_err(|e| DataError::io(labels_js, "reading labels", e))?;
    let all = parse_js_labels(&text).map_err(|msg| DataError::new(labels_js, msg))?;
    let n = image.height;
    let labels = all.get(STRIP_LABEL_OFFSET..STRIP_LABEL_OFFSET + n).ok_or_else(|| {
        DataError::new(
            labels_js,
            format!(
                "{} labels; need {} (50,000 training + {n} test)",
                all.len(),
                STRIP_LABEL_OFFSET + n
            ),
        )
    })?;
    // Each row is one image in HWC order; regroup into CHW planes.
    let mut pixels = Vec::with_capacity(n * PIXELS);
    for row in image.data.chunks_exact(PIXELS) {
        for c in 0..3 {
            pixels.extend(row.iter().skip(c).step_by(3));
        }
    }
    MemoryDataset::new(png.to_path_buf(), pixels, labels.to_vec())
}

/// `var labels=[3,8,...]` → the integers between the brackets.
fn parse_js_labels(text: &str) -> Result<Vec<usize>, String> {
    let start = text.find('[').ok_or("no '[' (expected `var labels=[...]`)")?;
    let end = text.rfind(']').filter(|&e| e > start).ok_or("no closing ']'")?;
    text[start + 1..end]
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .enumerate()
        .map(|(i, t)| t.parse().map_err(|_| format!("label #{i} is {t:?}, not an integer")))
        .collect()
}

/// Folders the official archives unpack to (cifar-10-binary.tar.gz, cifar-10-python.tar.gz):
/// a root holding one of them is read from it.
const ARCHIVE_FOLDERS: [&str; 2] = ["cifar-10-batches-bin", "cifar-10-batches-py"];

/// Opens CIFAR-10 test data from a path, sniffing the form: a folder of class folders, a folder with
/// `test_batch.bin` / `test_batch` / `cifar10_batch_50.png`, a root holding an unpacked official
/// archive (`cifar-10-batches-bin/`, `cifar-10-batches-py/`), a PNG strip (labels file beside it),
/// a pickle (first byte 0x80) or a binary batch.
pub fn open(path: &Path) -> Result<Box<dyn Dataset>, DataError> {
    if path.is_dir() {
        for name in ["test_batch.bin", "test_batch", "cifar10_batch_50.png"] {
            if path.join(name).is_file() {
                return open(&path.join(name));
            }
        }
        if let Some(archive) = ARCHIVE_FOLDERS.iter().map(|f| path.join(f)).find(|p| p.is_dir()) {
            let batch = ["test_batch.bin", "test_batch"]
                .map(|n| archive.join(n))
                .into_iter()
                .find(|p| p.is_file());
            return match batch {
                Some(batch) => open(&batch),
                None => Err(DataError::new(
                    &archive,
                    "no test_batch.bin or test_batch in this CIFAR-10 folder",
                )),
            };
        }
        let inner = path.join("test");
        let root = if inner.is_dir() { inner } else { path.to_path_buf() };
        return Ok(Box::new(class_folder_dataset(&root)?));
    }
    let head = {
        use std::io::Read;
        let mut head = [0u8; 8];
        let mut file = std::fs::File::open(path).map_err(|e| DataError::io(path, "opening", e))?;
        let n = file.read(&mut head).map_err(|e| DataError::io(path, "reading", e))?;
        head[..n].to_vec()
    };
    if head.starts_with(b"\x89PNG") {
        let labels = path.with_file_name("cifar10_labels.js");
        return Ok(Box::new(png_strip(path, &labels)?));
    }
    if head.first() == Some(&0x80) {
        return Ok(Box::new(python_batch(path)?));
    }
    Ok(Box::new(binary_batches(&[path.to_path_buf()])?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn js_labels() {
        assert_eq!(parse_js_labels("var labels=[3, 8,0]\n").unwrap(), vec![3, 8, 0]);
        assert!(parse_js_labels("var labels=[3,x]").unwrap_err().contains("#1"));
    }
}
