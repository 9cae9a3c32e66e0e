//! ImageNet validation sets in the layouts users actually have.
//!
//! - [`Layout::ClassFolders`]: `val/n01440764/*.JPEG` (torchvision ImageFolder after the usual
//!   `valprep.sh`). Without a class index, labels are positions in the sorted folder list (ImageFolder
//!   semantics, right only when all 1,000 folders exist); with one, labels come from the synset names.
//! - [`Layout::Flat`]: `ILSVRC2012_val_00000001.JPEG` files in one folder, labels from a file: Kaggle's
//!   `LOC_val_solution.csv` (`ImageId,PredictionString`; the first token is the synset, looked up in the
//!   class index, or without one among the CSV's own 1,000 synsets sorted) or `<file>[,] <index>` lines (caffe `val.txt`, `dataset.txt`). Files are matched by name
//!   without extension and directories, so `val.zip@/x.JPEG`, `./data/x.JPEG` and `x` all match `x.JPEG`.
//! - [`Layout::SynsetPrefixed`]: `<synset>_<anything>.JPEG` (e.g. the train_sample250 images), label =
//!   the synset's position in the class index.
//!
//! The class index is torchvision's order: `imagenet_class_index.json` or `synset_words.txt`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::files::{FileDataset, class_folders, image_files};
use super::{DataError, Geometry};

/// The 1,000 synsets in torchvision order, with human-readable names.
#[derive(Clone, Debug)]
pub struct ClassIndex {
    synsets: Vec<String>,
    names: Vec<String>,
    by_synset: HashMap<String, usize>,
}

impl ClassIndex {
    /// Reads `imagenet_class_index.json` (`{"0": ["n01440764", "tench"], ...}`) or a synset-words file
    /// (`n01440764 tench, Tinca tinca` per line, in order); the format is sniffed from the content.
    pub fn load(path: &Path) -> Result<ClassIndex, DataError> {
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, "reading class index", e))?;
        let pairs = if text.trim_start().starts_with('{') {
            parse_class_index_json(&text)
        } else {
            parse_synset_words(&text)
        };
        let pairs = pairs.map_err(|msg| DataError::new(path, msg))?;
        ClassIndex::from_pairs(pairs).map_err(|msg| DataError::new(path, msg))
    }

    /// From (synset, name) pairs in label order; synsets must be unique.
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Result<ClassIndex, String> {
        let mut by_synset = HashMap::new();
        for (i, (synset, _)) in pairs.iter().enumerate() {
            if by_synset.insert(synset.clone(), i).is_some() {
                return Err(format!("synset {synset} appears twice"));
            }
        }
        let (synsets, names) = pairs.into_iter().unzip();
        Ok(ClassIndex {
            synsets,
            names,
            by_synset,
        })
    }

    pub fn len(&self) -> usize {
        self.synsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.synsets.is_empty()
    }

    pub fn index_of(&self, synset: &str) -> Option<usize> {
        self.by_synset.get(synset).copied()
    }

    pub fn synset(&self, label: usize) -> &str {
        &self.synsets[label]
    }

    pub fn name(&self, label: usize) -> &str {
        &self.names[label]
    }

    fn require(&self, synset: &str) -> Result<usize, String> {
        self.index_of(synset)
            .ok_or_else(|| format!("synset {synset:?} is not in the class index"))
    }
}

fn parse_class_index_json(text: &str) -> Result<Vec<(String, String)>, String> {
    let map: HashMap<String, (String, String)> =
        serde_json::from_str(text).map_err(|e| format!("not a class index JSON ({{\"0\": [synset, name]}}): {e}"))?;
    (0..map.len())
        .map(|i| {
            map.get(&i.to_string())
                .cloned()
                .ok_or_else(|| format!("class {i} missing (keys must be 0..{})", map.len()))
        })
        .collect()
}

fn parse_synset_words(text: &str) -> Result<Vec<(String, String)>, String> {
    let lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    lines
        .map(|(n, line)| {
            let (synset, name) = line.trim().split_once(char::is_whitespace).unwrap_or((line.trim(), ""));
            if !looks_like_synset(synset) {
                return Err(format!("line {}: expected `<synset> <name>`, got {line:?}", n + 1));
            }
            Ok((synset.to_string(), name.trim().to_string()))
        })
        .collect()
}

/// `n` followed by 8 digits (WordNet noun offsets).
pub fn looks_like_synset(s: &str) -> bool {
    s.len() == 9 && s.starts_with('n') && s[1..].bytes().all(|b| b.is_ascii_digit())
}

/// How an ImageNet folder is organised.
#[derive(Clone, Debug, PartialEq)]
pub enum Layout {
    ClassFolders,
    Flat { labels: PathBuf },
    SynsetPrefixed,
}

impl Layout {
    /// Guesses the layout: subfolders → class folders; a labels file → flat; image names starting with a
    /// synset → synset-prefixed. Anything else is an error saying what was expected.
    pub fn detect(root: &Path, labels: Option<&Path>) -> Result<Layout, DataError> {
        if let Some(labels) = labels {
            return Ok(Layout::Flat {
                labels: labels.to_path_buf(),
            });
        }
        let entries = super::files::sorted_entries(root)?;
        if entries.iter().any(|p| p.is_dir()) {
            return Ok(Layout::ClassFolders);
        }
        let images = image_files(root)?;
        if !images.is_empty() && images.iter().all(|p| synset_prefix(p).is_some()) {
            return Ok(Layout::SynsetPrefixed);
        }
        Err(DataError::new(
            root,
            "unknown ImageNet layout: expected class folders (<root>/n01440764/*.JPEG), \
             <synset>_<name>.JPEG files, or flat files with a labels file (LOC_val_solution.csv or `<file> <index>` lines)",
        ))
    }
}

fn synset_prefix(path: &Path) -> Option<&str> {
    let name = path.file_name()?.to_str()?;
    let prefix = name.split('_').next()?;
    looks_like_synset(prefix).then_some(prefix)
}

/// Opens an ImageNet folder. `classes` is required for `SynsetPrefixed`, optional for class folders
/// and CSV labels (see the module docs), unused for `<file> <index>` labels.
pub fn open(
    root: &Path,
    layout: &Layout,
    classes: Option<&ClassIndex>,
    geometry: Geometry,
) -> Result<FileDataset, DataError> {
    let need = |what: &str| DataError::new(root, format!("{what} needs a class index (imagenet_class_index.json)"));
    let (files, labels) = match layout {
        Layout::ClassFolders => class_folders(root, |name, position| match classes {
            Some(c) => c.require(name),
            None => Ok(position),
        })?,
        Layout::Flat { labels } => flat(root, labels, classes)?,
        Layout::SynsetPrefixed => synset_prefixed(root, classes.ok_or_else(|| need("the synset-prefixed layout"))?)?,
    };
    Ok(FileDataset::new(files, labels, geometry))
}

fn synset_prefixed(root: &Path, classes: &ClassIndex) -> Result<(Vec<PathBuf>, Vec<usize>), DataError> {
    let files = non_empty(root, image_files(root)?)?;
    let labels = files
        .iter()
        .map(|path| {
            let synset = synset_prefix(path).ok_or("file name does not start with `<synset>_`".to_string());
            synset
                .and_then(|s| classes.require(s))
                .map_err(|msg| DataError::new(path, msg))
        })
        .collect::<Result<_, _>>()?;
    Ok((files, labels))
}

fn flat(
    root: &Path,
    labels_path: &Path,
    classes: Option<&ClassIndex>,
) -> Result<(Vec<PathBuf>, Vec<usize>), DataError> {
    let table = read_labels(labels_path, classes)?;
    let files = non_empty(root, image_files(root)?)?;
    let mut labels = Vec::with_capacity(files.len());
    for path in &files {
        let label = table
            .get(file_key(path))
            .copied()
            .ok_or_else(|| DataError::new(path, format!("no label for this image in {}", labels_path.display())))?;
        labels.push(label);
    }
    Ok((files, labels))
}

fn non_empty(root: &Path, files: Vec<PathBuf>) -> Result<Vec<PathBuf>, DataError> {
    if files.is_empty() {
        return Err(DataError::new(
            root,
            "no image files (.JPEG, .jpg, .png, ...) in this folder",
        ));
    }
    Ok(files)
}

/// File name without directories and extension: the join key between images and label lines.
fn file_key(path: &Path) -> &str {
    path.file_stem().and_then(|s| s.to_str()).unwrap_or_default()
}

/// Reads a validation labels file into `file key → label`.
pub fn read_labels(path: &Path, classes: Option<&ClassIndex>) -> Result<HashMap<String, usize>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, "reading labels", e))?;
    let parsed = if text.starts_with("ImageId,") {
        match classes {
            Some(classes) => parse_kaggle_csv(&text, classes),
            // torchvision's order is the sorted synsets; the full validation CSV names all 1,000.
            None => sorted_synsets_of_csv(&text).and_then(|classes| parse_kaggle_csv(&text, &classes)),
        }
    } else {
        parse_index_lines(&text, classes.map_or(usize::MAX, ClassIndex::len))
    };
    let table = parsed.map_err(|msg| DataError::new(path, msg))?;
    if table.is_empty() {
        return Err(DataError::new(path, "no labels in this file"));
    }
    Ok(table)
}

/// `ImageId,PredictionString` with `PredictionString = "<synset> x0 y0 x1 y1 <synset> ..."`.
fn parse_kaggle_csv(text: &str, classes: &ClassIndex) -> Result<HashMap<String, usize>, String> {
    let mut table = HashMap::new();
    for (n, line) in text.lines().enumerate().skip(1).filter(|(_, l)| !l.trim().is_empty()) {
        let at = |msg: String| format!("line {}: {msg}", n + 1);
        let (id, prediction) = line
            .split_once(',')
            .ok_or_else(|| at(format!("expected `ImageId,PredictionString`: {line:?}")))?;
        let synset = prediction
            .split_whitespace()
            .next()
            .ok_or_else(|| at("empty PredictionString".into()))?;
        table.insert(id.trim().to_string(), classes.require(synset).map_err(at)?);
    }
    Ok(table)
}

fn sorted_synsets_of_csv(text: &str) -> Result<ClassIndex, String> {
    let mut synsets: Vec<&str> = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(',')?.1.split_whitespace().next())
        .collect();
    synsets.sort_unstable();
    synsets.dedup();
    if synsets.len() != 1000 {
        return Err(format!(
            "names {} synsets, not 1,000: pass the class index (imagenet_class_index.json)",
            synsets.len()
        ));
    }
    ClassIndex::from_pairs(synsets.into_iter().map(|s| (s.to_string(), String::new())).collect())
}

/// `<file>[,] <index>` per line (caffe val.txt, VeriSilicon dataset.txt, `val.zip@/<file> <index>`).
fn parse_index_lines(text: &str, num_classes: usize) -> Result<HashMap<String, usize>, String> {
    let mut table = HashMap::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let bad = || format!("line {}: expected `<file> <class index>`, got {line:?}", n + 1);
        let (file, index) = line
            .trim()
            .rsplit_once(|c: char| c.is_whitespace() || c == ',')
            .ok_or_else(bad)?;
        let index: usize = index.trim().parse().map_err(|_| bad())?;
        if index >= num_classes {
            return Err(format!(
                "line {}: class index {index} out of range (0..{num_classes})",
                n + 1
            ));
        }
        let file = file.trim().trim_end_matches(',');
        table.insert(
            file_key(Path::new(file.rsplit(['/', '\\']).next().unwrap_or(file))).to_string(),
            index,
        );
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_lines_in_all_spellings() {
        let t = parse_index_lines(
            "val.zip@/ILSVRC2012_val_00000001.JPEG 65\n./data/ILSVRC2012_val_00000347.JPEG, 472\n",
            1000,
        )
        .unwrap();
        assert_eq!(t["ILSVRC2012_val_00000001"], 65);
        assert_eq!(t["ILSVRC2012_val_00000347"], 472);
        assert!(
            parse_index_lines("x.JPEG 1000\n", 1000)
                .unwrap_err()
                .contains("out of range")
        );
        assert!(parse_index_lines("x.JPEG cat\n", 1000).unwrap_err().contains("line 1"));
    }
}
