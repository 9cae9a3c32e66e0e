//! Datasets and preprocessing: ImageNet validation and CIFAR-10 test images → normalised f32 CHW tensors,
//! bit-compatible with torchvision's eval transforms on PIL images.
//!
//! - [`Dataset`]: `len`, `label`, `describe`, and `load_u8(i)` (the preprocessed uint8 CHW crop, what the
//!   cache stores and the parity tests compare) / `load(i)` (normalised f32 CHW).
//! - ImageNet layouts ([`imagenet`]): class folders (ImageFolder semantics), flat files + a labels file
//!   (Kaggle `LOC_val_solution.csv` or `<file> <index>` lines), synset-prefixed files (`n01440764_x.JPEG`).
//! - CIFAR-10 ([`cifar`]): binary batches, python-pickle batches, class folders, the lossless PNG strip.
//! - Decoding: baseline JPEGs bit-exact with libjpeg-turbo (PIL's decoder; `jpeg.rs`), other JPEGs via
//!   zune-jpeg, PNG via `image`; grey and CMYK converted to RGB as PIL's `convert("RGB")` does.
//! - [`Geometry`]: `Resize(256)` with PIL's antialiased bilinear filter ([`resample`]) + `CenterCrop(224)`,
//!   or an exact-size check (CIFAR). [`Normalize`]: `/255` then `(x - mean) / std`, as torchvision does it.
//!   Decode + geometry reproduce PIL + torchvision exactly on every real JPEG we have (250 full-size
//!   ImageNet, 1,300 ImageNet val, 5,000 CIFAR-10 test JPEGs: 0 differing pixels).
//! - [`loader::Loader`]: batches decoded in parallel with rayon, overlapping the consumer; a corrupt image is
//!   reported by path, counted and skipped. [`cache`]: preprocessed uint8 tensors on disk, keyed by source
//!   list + preprocessing so a stale cache is detected and rebuilt.
//!
//! Errors never panic: every failure is a [`DataError`] naming the file it concerns.

pub mod cache;
pub mod cifar;
mod decode;
pub mod digits;
mod files;
pub mod imagenet;
mod jpeg;
pub mod loader;
mod pickle;
pub mod resample;
pub mod select;
mod transform;

use std::fmt;
use std::path::{Path, PathBuf};

pub use decode::{RgbImage, decode_bytes, decode_file};
pub use files::{FileDataset, image_folder};
pub use imagenet::{ClassIndex, Layout};
pub use resample::Interpolation;
pub use transform::{Geometry, Normalize, center_crop_offsets, resized_size};

/// A failure tied to a file (an image, a labels file, a batch, a cache).
#[derive(Debug, Clone, PartialEq)]
pub struct DataError {
    pub path: PathBuf,
    pub message: String,
}

impl DataError {
    pub fn new(path: impl AsRef<Path>, message: impl Into<String>) -> DataError {
        DataError {
            path: path.as_ref().to_path_buf(),
            message: message.into(),
        }
    }

    /// Wraps an I/O error with what we were doing (`reading`, `listing`, ...).
    pub fn io(path: impl AsRef<Path>, doing: &str, err: std::io::Error) -> DataError {
        DataError::new(path, format!("{doing}: {err}"))
    }
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

impl std::error::Error for DataError {}

/// A preprocessed image: uint8, channel-major (CHW, RGB).
#[derive(Clone, Debug, PartialEq)]
pub struct ImageU8 {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub data: Vec<u8>,
}

impl ImageU8 {
    /// Pixel (x, y) as [r, g, b] (test and debugging helper).
    pub fn rgb(&self, x: usize, y: usize) -> [u8; 3] {
        let plane = self.height * self.width;
        let at = y * self.width + x;
        [self.data[at], self.data[plane + at], self.data[2 * plane + at]]
    }
}

/// An indexed, labelled collection of images with a fixed preprocessing.
///
/// `Sync` so a loader can decode several images of one dataset at once.
pub trait Dataset: Send + Sync {
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Class index of image `i` (0..num_classes, torchvision order).
    fn label(&self, i: usize) -> usize;

    /// Where image `i` comes from (a file path, or `batch file #k`), for error reports.
    fn describe(&self, i: usize) -> String;

    /// Output shape (C, H, W) of every image.
    fn shape(&self) -> [usize; 3];

    /// Decodes and preprocesses image `i` (geometry only, no normalisation).
    fn load_u8(&self, i: usize) -> Result<ImageU8, DataError>;

    /// A string identifying every source and the geometry, for cache keys: two datasets with equal
    /// fingerprints produce equal `load_u8` outputs (file contents are identified by size + mtime).
    fn fingerprint(&self) -> String;

    /// `load_u8` followed by `normalize`: the f32 CHW tensor a network consumes.
    fn load(&self, i: usize, normalize: &Normalize) -> Result<Vec<f32>, DataError> {
        Ok(normalize.apply(&self.load_u8(i)?))
    }
}
