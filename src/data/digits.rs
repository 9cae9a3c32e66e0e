//! scikit-learn's 8x8 digits as shipped in `datasets/digits/digits_test.bin` (the offline
//! default job): `DIGITS01`, u32 LE count, rows, cols, then count·rows·cols pixel bytes (0..16),
//! then count label bytes. See datasets/digits/README.md.

use super::cifar::fnv1a;
use super::{DataError, Dataset, ImageU8};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"DIGITS01";

/// The digit images, one grayscale plane each.
#[derive(Clone, Debug)]
pub struct DigitsDataset {
    source: PathBuf,
    rows: usize,
    cols: usize,
    pixels: Vec<u8>,
    labels: Vec<usize>,
}

impl DigitsDataset {
    pub fn open(path: &Path) -> Result<DigitsDataset, DataError> {
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, "reading", e))?;
        let bad = |why: String| DataError::new(path, why);
        if bytes.len() < 20 || &bytes[..8] != MAGIC {
            return Err(bad("not a DIGITS01 file (bad magic or shorter than its header)".into()));
        }
        let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let (count, rows, cols) = (word(8), word(12), word(16));
        let pixels_len = count
            .checked_mul(rows * cols)
            .ok_or_else(|| bad("header sizes overflow".into()))?;
        if bytes.len() != 20 + pixels_len + count {
            return Err(bad(format!(
                "{} bytes, but {count} images of {rows}x{cols} need {}",
                bytes.len(),
                20 + pixels_len + count
            )));
        }
        let pixels = bytes[20..20 + pixels_len].to_vec();
        if let Some(v) = pixels.iter().find(|&&v| v > 16) {
            return Err(bad(format!("pixel value {v} outside 0..16")));
        }
        let labels: Vec<usize> = bytes[20 + pixels_len..].iter().map(|&l| l as usize).collect();
        if let Some(l) = labels.iter().find(|&&l| l > 9) {
            return Err(bad(format!("label {l} outside 0..9")));
        }
        Ok(DigitsDataset {
            source: path.to_path_buf(),
            rows,
            cols,
            pixels,
            labels,
        })
    }
}

impl Dataset for DigitsDataset {
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
        [1, self.rows, self.cols]
    }

    fn load_u8(&self, i: usize) -> Result<ImageU8, DataError> {
        let size = self.rows * self.cols;
        Ok(ImageU8 {
            channels: 1,
            height: self.rows,
            width: self.cols,
            data: self.pixels[i * size..(i + 1) * size].to_vec(),
        })
    }

    fn fingerprint(&self) -> String {
        format!("digits:{}:{:016x}", self.labels.len(), fnv1a(&self.pixels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("datasets/digits/digits_test.bin")
    }

    #[test]
    fn reads_the_shipped_test_split() {
        let d = DigitsDataset::open(&shipped()).unwrap();
        assert_eq!(d.len(), 500);
        assert_eq!(d.shape(), [1, 8, 8]);
        let per_class = (0..10)
            .map(|c| (0..d.len()).filter(|&i| d.label(i) == c).count())
            .collect::<Vec<_>>();
        assert_eq!(per_class, vec![42, 46, 50, 50, 44, 54, 57, 50, 56, 51]);
        let x = d
            .load(0, &crate::model::Arch::DigitsCnn.descriptor().preprocessing.normalize)
            .unwrap();
        assert_eq!(x.len(), 64);
    }

    #[test]
    fn rejects_damaged_files() {
        let dir = std::env::temp_dir().join(format!("polycnn-digits-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bytes = std::fs::read(shipped()).unwrap();
        let cut = dir.join("cut.bin");
        std::fs::write(&cut, &bytes[..bytes.len() - 7]).unwrap();
        let err = DigitsDataset::open(&cut).unwrap_err().to_string();
        assert!(err.contains("cut.bin") && err.contains("need"), "{err}");
        let magic = dir.join("magic.bin");
        std::fs::write(&magic, b"NOTDIGITS...........").unwrap();
        assert!(
            DigitsDataset::open(&magic)
                .unwrap_err()
                .to_string()
                .contains("DIGITS01")
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
