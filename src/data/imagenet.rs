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
//! The class index is torchvision's order: `imagenet_class_index.json` or `synset_words.txt`, or
//! the built-in list ([`ClassIndex::torchvision`]). [`open_validation`] is what an ImageNet model is
//! pointed at: it finds the validation split of a dataset root and refuses class folders it cannot
//! label in torchvision's order.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::files::{FileDataset, class_folders, image_files};
use super::{DataError, Geometry};

/// torchvision's ImageNet-1k label order: the 1,000 synsets sorted (generated from its
/// `imagenet_class_index.json`; the synset ids only, one per line).
const TORCHVISION_SYNSETS: &str = include_str!("imagenet_synsets.txt");

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

    /// torchvision's order built in (no names): what an ImageNet model's outputs mean.
    pub fn torchvision() -> ClassIndex {
        let pairs = TORCHVISION_SYNSETS.lines().map(|s| (s.to_string(), String::new()));
        ClassIndex::from_pairs(pairs.collect()).expect("the built-in synset list has no duplicates (tested)")
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

/// Subfolders of an ImageNet download root that hold its validation split, in order of preference.
const VALIDATION_SPLITS: [&str; 2] = ["val", "validation"];

/// The validation split of a dataset root (`<root>/val` or `<root>/validation`, as downloads hold
/// `train/` beside it), or `None` when `root` is the image folder itself.
pub fn validation_split(root: &Path) -> Option<PathBuf> {
    VALIDATION_SPLITS.iter().map(|s| root.join(s)).find(|p| p.is_dir())
}

/// An ImageNet dataset as an ImageNet model sees it, and what was decided on the way.
#[derive(Debug)]
pub struct Validation {
    pub dataset: FileDataset,
    /// The folder the images come from: `root` or its validation split.
    pub folder: PathBuf,
    pub layout: Layout,
    /// `Some` when `root` held a validation split that is used instead (say so to the user).
    pub note: Option<String>,
}

/// Opens the ImageNet images at `root` for an ImageNet model: its validation split if it holds
/// one; labels in torchvision's order from `classes`, else the built-in order. Without `classes`,
/// class folders must be exactly the 1,000 synsets: other folders (a root with `train/` and
/// `test/`, a 10-class subset) would silently be read as other classes, so that is an error
/// naming the folder.
pub fn open_validation(
    root: &Path,
    labels: Option<&Path>,
    classes: Option<&ClassIndex>,
    geometry: Geometry,
) -> Result<Validation, DataError> {
    let split = if labels.is_none() { validation_split(root) } else { None };
    let note = split.as_ref().map(|s| {
        format!(
            "{} holds a validation split: evaluating {}",
            root.display(),
            s.display()
        )
    });
    let folder = split.unwrap_or_else(|| root.to_path_buf());
    let layout = Layout::detect(&folder, labels)?;
    let builtin;
    let classes = match classes {
        Some(c) => c,
        None => {
            builtin = ClassIndex::torchvision();
            if layout == Layout::ClassFolders {
                check_synset_folders(&folder, &builtin)?;
            }
            &builtin
        }
    };
    let dataset = open(&folder, &layout, Some(classes), geometry)?;
    Ok(Validation {
        dataset,
        folder,
        layout,
        note,
    })
}

/// Class folders labelled by the built-in order must be its 1,000 synsets.
fn check_synset_folders(root: &Path, classes: &ClassIndex) -> Result<(), DataError> {
    let folders: Vec<PathBuf> = super::files::sorted_entries(root)?
        .into_iter()
        .filter(|p| p.is_dir())
        .collect();
    let name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    if let Some(odd) = folders.iter().find(|p| classes.index_of(&name(p)).is_none()) {
        return Err(DataError::new(
            odd,
            format!(
                "class folder {:?} is not an ImageNet-1k synset (n01440764, ...): an ImageNet model needs the \
                 1,000 synset folders of the validation set; pass a class index (--class-index) to label other folders",
                name(odd)
            ),
        ));
    }
    if folders.len() != classes.len() {
        return Err(DataError::new(
            root,
            format!(
                "{} synset folders, not all {}: pass a class index (--class-index, e.g. imagenet_class_index.json) \
                 to evaluate a subset of the classes",
                folders.len(),
                classes.len()
            ),
        ));
    }
    Ok(())
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
        insert_once(&mut table, id.trim(), classes.require(synset).map_err(at)?).map_err(at)?;
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
        let key = file_key(Path::new(file.rsplit(['/', '\\']).next().unwrap_or(file)));
        insert_once(&mut table, key, index).map_err(|msg| format!("line {}: {msg}", n + 1))?;
    }
    Ok(table)
}

/// A labels file names each image once: a repeated name (two labels for one image, or a file
/// concatenated twice) is an error rather than the last line winning.
fn insert_once(table: &mut HashMap<String, usize>, key: &str, label: usize) -> Result<(), String> {
    if table.insert(key.to_string(), label).is_some() {
        return Err(format!("image {key:?} is labelled twice"));
    }
    Ok(())
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
