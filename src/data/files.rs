//! Datasets of image files on disk: a list of (path, label) decoded on demand.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use super::{DataError, Dataset, Geometry, ImageU8, decode_file};

/// Extensions torchvision's ImageFolder accepts (compared case-insensitively).
const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "ppm", "bmp", "pgm", "tif", "tiff", "webp"];

/// Image files with labels, decoded and preprocessed by `load_u8`.
#[derive(Clone, Debug)]
pub struct FileDataset {
    files: Vec<PathBuf>,
    labels: Vec<usize>,
    geometry: Geometry,
}

impl FileDataset {
    /// `files` and `labels` are parallel; the order is the dataset's index order.
    pub fn new(files: Vec<PathBuf>, labels: Vec<usize>, geometry: Geometry) -> FileDataset {
        assert_eq!(files.len(), labels.len(), "FileDataset: one label per file");
        FileDataset {
            files,
            labels,
            geometry,
        }
    }

    pub fn path(&self, i: usize) -> &Path {
        &self.files[i]
    }

    pub fn geometry(&self) -> Geometry {
        self.geometry
    }
}

impl Dataset for FileDataset {
    fn len(&self) -> usize {
        self.files.len()
    }

    fn label(&self, i: usize) -> usize {
        self.labels[i]
    }

    fn describe(&self, i: usize) -> String {
        self.files[i].display().to_string()
    }

    fn shape(&self) -> [usize; 3] {
        self.geometry.shape()
    }

    fn load_u8(&self, i: usize) -> Result<ImageU8, DataError> {
        let path = &self.files[i];
        self.geometry.apply(&decode_file(path)?, path)
    }

    fn fingerprint(&self) -> String {
        // Path, size and mtime per file: cheap (one stat each) and catches replaced files.
        let mut key = format!("files:{}\n", self.geometry.key());
        for (path, label) in self.files.iter().zip(&self.labels) {
            let meta = std::fs::metadata(path).ok();
            let size = meta.as_ref().map_or(0, |m| m.len());
            let mtime = meta
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            key.push_str(&format!("{}\t{label}\t{size}\t{mtime}\n", path.display()));
        }
        key
    }
}

/// torchvision's ImageFolder: `root/<class>/**/<image>`, the classes numbered in sorted folder
/// order (for networks with no dataset family of their own).
pub fn image_folder(root: &Path, geometry: Geometry) -> Result<FileDataset, DataError> {
    let (files, labels) = class_folders(root, |_, position| Ok(position))?;
    Ok(FileDataset::new(files, labels, geometry))
}

pub(crate) fn is_image_file(path: &Path) -> bool {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    ext.is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.as_str())) && path.is_file()
}

/// Directory entries, sorted by name (ImageFolder sorts, so index order is reproducible).
pub(crate) fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let read = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, "listing directory", e))?;
    let mut entries = Vec::new();
    for entry in read {
        entries.push(entry.map_err(|e| DataError::io(dir, "listing directory", e))?.path());
    }
    entries.sort();
    Ok(entries)
}

/// Image files directly in `dir`, sorted.
pub(crate) fn image_files(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    Ok(sorted_entries(dir)?.into_iter().filter(|p| is_image_file(p)).collect())
}

/// Image files anywhere under `dir`, as ImageFolder's `sorted(os.walk(dir))` orders them: a folder's
/// own files (sorted) before its subfolders.
fn image_files_recursive(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), DataError> {
    let entries = sorted_entries(dir)?;
    out.extend(entries.iter().filter(|p| is_image_file(p)).cloned());
    for sub in entries.iter().filter(|p| p.is_dir()) {
        image_files_recursive(sub, out)?;
    }
    Ok(())
}

/// ImageFolder: `root/<class>/**/<image>`. Class folders are sorted by name; `class_of` maps a folder
/// name to its label (position in the sorted list when the caller has no fixed class list).
pub(crate) fn class_folders(
    root: &Path,
    class_of: impl Fn(&str, usize) -> Result<usize, String>,
) -> Result<(Vec<PathBuf>, Vec<usize>), DataError> {
    let classes: Vec<PathBuf> = sorted_entries(root)?.into_iter().filter(|p| p.is_dir()).collect();
    if classes.is_empty() {
        return Err(DataError::new(
            root,
            "no class folders (expected <root>/<class>/<image>)",
        ));
    }
    let (mut files, mut labels) = (Vec::new(), Vec::new());
    for (position, dir) in classes.iter().enumerate() {
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let label = class_of(name, position).map_err(|msg| DataError::new(dir, msg))?;
        let before = files.len();
        image_files_recursive(dir, &mut files)?;
        labels.resize(labels.len() + files.len() - before, label);
    }
    if files.is_empty() {
        return Err(DataError::new(root, "class folders contain no image files"));
    }
    Ok((files, labels))
}
