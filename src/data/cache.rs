//! A preprocessed cache: every image of a dataset as uint8 CHW, in one file, so repeated runs (α sweeps)
//! decode and resize once. Reading an image back is one positioned read of C*H*W bytes.
//!
//! File layout (little-endian):
//! ```text
//! magic "PCNNU8DS" | version u32 | count u64 | C u32 | H u32 | W u32 | key u64 (FNV-1a of the
//! dataset fingerprint: sources + preprocessing) | labels u32 x count | status u8 x count (1 = ok)
//! | pixels (count x C*H*W, zero for failed images) | failures: n u32, then (index u64, len u32, utf-8)
//! ```
//! A cache whose key, shape or size does not match is stale or damaged and is rebuilt; images that failed
//! when the cache was built keep failing, with their original message, when read from it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::cifar::fnv1a;
use super::{DataError, Dataset, ImageU8};

const MAGIC: &[u8; 8] = b"PCNNU8DS";
const VERSION: u32 = 1;
const HEADER: usize = 8 + 4 + 8 + 4 * 3 + 8;
/// Images decoded per parallel chunk while building (bounds memory, not speed).
const BUILD_CHUNK: usize = 512;

/// Why `open_or_build` (re)built the cache, or that it reused it.
#[derive(Clone, Debug, PartialEq)]
pub enum CacheStatus {
    Reused,
    Built { reason: String },
}

/// A dataset served from a cache file.
#[derive(Debug)]
pub struct CachedDataset {
    path: PathBuf,
    file: File,
    key: u64,
    shape: [usize; 3],
    labels: Vec<usize>,
    ok: Vec<bool>,
    /// Index → (source as `describe` gave it, the error).
    failures: HashMap<usize, (String, DataError)>,
    pixels_at: u64,
}

impl CachedDataset {
    /// Opens `path` if it is a valid cache of `dataset` (same fingerprint and shape), otherwise
    /// (re)builds it from `dataset` first. A failed image is recorded, not fatal.
    pub fn open_or_build(dataset: &dyn Dataset, path: &Path) -> Result<(CachedDataset, CacheStatus), DataError> {
        let key = fnv1a(dataset.fingerprint().as_bytes());
        let reason = match CachedDataset::open(path) {
            Ok(cache) if cache.key == key && cache.shape == dataset.shape() && cache.len() == dataset.len() => {
                return Ok((cache, CacheStatus::Reused));
            }
            Ok(_) => "stale: dataset or preprocessing changed".to_string(),
            Err(e) if !path.exists() => format!("absent ({})", e.message),
            Err(e) => format!("unreadable: {}", e.message),
        };
        build(dataset, key, path)?;
        Ok((CachedDataset::open(path)?, CacheStatus::Built { reason }))
    }

    /// Opens an existing cache, checking its header and size.
    pub fn open(path: &Path) -> Result<CachedDataset, DataError> {
        let bad = |msg: &str| DataError::new(path, format!("not a valid polycnn cache: {msg}"));
        let file = File::open(path).map_err(|e| DataError::io(path, "opening cache", e))?;
        let size = file
            .metadata()
            .map_err(|e| DataError::io(path, "reading cache", e))?
            .len();
        let mut header = [0u8; HEADER];
        read_at(&file, 0, &mut header).map_err(|_| bad("shorter than its header"))?;
        let mut r = Reader(&header);
        if r.bytes(8) != MAGIC {
            return Err(bad("wrong magic"));
        }
        if r.u32() != VERSION {
            return Err(bad("unsupported version"));
        }
        let count = r.u64() as usize;
        let shape = [r.u32() as usize, r.u32() as usize, r.u32() as usize];
        let key = r.u64();
        let image_bytes = shape
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d as u64))
            .filter(|&b| b > 0);
        let image_bytes = image_bytes.ok_or_else(|| bad("bad shape"))?;
        // Checked arithmetic: a damaged header must not make us allocate or seek absurdly.
        let pixels_at = (count as u64).checked_mul(5).and_then(|m| m.checked_add(HEADER as u64));
        let failures_at = (count as u64)
            .checked_mul(image_bytes)
            .zip(pixels_at)
            .and_then(|(p, at)| p.checked_add(at));
        let failures_at = failures_at
            .filter(|&f| f.saturating_add(4) <= size)
            .ok_or_else(|| bad("truncated"))?;
        let pixels_at = HEADER as u64 + count as u64 * 5;

        let mut meta = vec![0u8; count * 5];
        read_at(&file, HEADER as u64, &mut meta).map_err(|_| bad("truncated labels"))?;
        let (label_bytes, status) = meta.split_at(count * 4);
        let labels = label_bytes
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize)
            .collect();
        let ok = status.iter().map(|&s| s == 1).collect();

        let mut tail = vec![0u8; (size - failures_at) as usize];
        read_at(&file, failures_at, &mut tail).map_err(|_| bad("truncated failures"))?;
        let failures = parse_failures(&tail, count).map_err(|msg| bad(&msg))?;
        Ok(CachedDataset {
            path: path.to_path_buf(),
            file,
            key,
            shape,
            labels,
            ok,
            failures,
            pixels_at,
        })
    }

    /// Images that failed when the cache was built: (index, source, error), in index order.
    pub fn failures(&self) -> Vec<(usize, &str, &DataError)> {
        let mut all: Vec<_> = self
            .failures
            .iter()
            .map(|(&i, (source, error))| (i, source.as_str(), error))
            .collect();
        all.sort_by_key(|f| f.0);
        all
    }
}

/// Failure records: the text is "source\terror path\terror message".
fn parse_failures(tail: &[u8], count: usize) -> Result<HashMap<usize, (String, DataError)>, String> {
    let mut r = Reader(tail);
    let n = r.try_u32().ok_or("truncated failure count")? as usize;
    let mut failures = HashMap::new();
    for _ in 0..n {
        let index = r.try_u64().ok_or("truncated failure record")? as usize;
        let len = r.try_u32().ok_or("truncated failure record")? as usize;
        let text = r.try_bytes(len).ok_or("truncated failure message")?;
        let text = String::from_utf8_lossy(text);
        let mut fields = text.splitn(3, '\t');
        let (Some(source), Some(path), Some(message)) = (fields.next(), fields.next(), fields.next()) else {
            return Err("malformed failure record".into());
        };
        if index >= count {
            return Err(format!("failure record for image {index} of {count}"));
        }
        failures.insert(index, (source.to_string(), DataError::new(path, message)));
    }
    Ok(failures)
}

impl Dataset for CachedDataset {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn label(&self, i: usize) -> usize {
        self.labels[i]
    }

    fn describe(&self, i: usize) -> String {
        match self.failures.get(&i) {
            Some((source, _)) => source.clone(),
            None => format!("{} #{i}", self.path.display()),
        }
    }

    fn shape(&self) -> [usize; 3] {
        self.shape
    }

    fn load_u8(&self, i: usize) -> Result<ImageU8, DataError> {
        if !self.ok[i] {
            return Err(match self.failures.get(&i) {
                Some((_, error)) => error.clone(),
                None => DataError::new(&self.path, format!("image {i} failed when the cache was built")),
            });
        }
        let [channels, height, width] = self.shape;
        let mut data = vec![0u8; channels * height * width];
        let at = self.pixels_at + (i * data.len()) as u64;
        read_at(&self.file, at, &mut data).map_err(|e| DataError::io(&self.path, "reading cache", e))?;
        Ok(ImageU8 {
            channels,
            height,
            width,
            data,
        })
    }

    fn fingerprint(&self) -> String {
        format!("cache:{:016x}", self.key)
    }
}

/// Decodes every image (in parallel chunks) and writes the cache atomically (temp file + rename), so an
/// interrupted build never leaves a file that looks valid.
fn build(dataset: &dyn Dataset, key: u64, path: &Path) -> Result<(), DataError> {
    let shape = dataset.shape();
    let count = dataset.len();
    let tmp = path.with_extension("tmp");
    let io = |e| DataError::io(&tmp, "writing cache", e);
    let mut out = BufWriter::new(File::create(&tmp).map_err(io)?);
    out.write_all(MAGIC).map_err(io)?;
    out.write_all(&VERSION.to_le_bytes()).map_err(io)?;
    out.write_all(&(count as u64).to_le_bytes()).map_err(io)?;
    for d in shape {
        out.write_all(&(d as u32).to_le_bytes()).map_err(io)?;
    }
    out.write_all(&key.to_le_bytes()).map_err(io)?;
    for i in 0..count {
        out.write_all(&(dataset.label(i) as u32).to_le_bytes()).map_err(io)?;
    }
    // Status bytes precede the pixels but are known only after decoding: reserve, fill in later.
    let status_at = (HEADER + count * 4) as u64;
    out.write_all(&vec![0u8; count]).map_err(io)?;
    let image_bytes: usize = shape.iter().product();
    let (mut status, mut failures) = (Vec::with_capacity(count), Vec::new());
    let zeros = vec![0u8; image_bytes];
    for start in (0..count).step_by(BUILD_CHUNK) {
        let end = (start + BUILD_CHUNK).min(count);
        let decoded: Vec<_> = (start..end).into_par_iter().map(|i| dataset.load_u8(i)).collect();
        for (i, result) in (start..end).zip(decoded) {
            match result {
                Ok(image) if image.data.len() == image_bytes => {
                    out.write_all(&image.data).map_err(io)?;
                    status.push(1u8);
                }
                other => {
                    let source = dataset.describe(i);
                    let error = match other {
                        Err(e) => e,
                        Ok(image) => {
                            let got = image.data.len();
                            DataError::new(&source, format!("image has {got} bytes, expected {image_bytes}"))
                        }
                    };
                    // Tab-separated fields; tabs never occur in real paths or messages, but stay safe.
                    let fields = [source, error.path.display().to_string(), error.message];
                    failures.push((i, fields.map(|f| f.replace('\t', " ")).join("\t")));
                    out.write_all(&zeros).map_err(io)?;
                    status.push(0u8);
                }
            }
        }
    }
    out.write_all(&(failures.len() as u32).to_le_bytes()).map_err(io)?;
    for (i, text) in &failures {
        out.write_all(&(*i as u64).to_le_bytes()).map_err(io)?;
        out.write_all(&(text.len() as u32).to_le_bytes()).map_err(io)?;
        out.write_all(text.as_bytes()).map_err(io)?;
    }
    let file = out.into_inner().map_err(|e| io(e.into_error()))?;
    write_at(&file, status_at, &status).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| DataError::io(path, "installing cache", e))
}

/// Bounds-checked little-endian reads over a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn try_bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn try_u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.try_bytes(4)?.try_into().ok()?))
    }

    fn try_u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.try_bytes(8)?.try_into().ok()?))
    }

    /// Header fields: the header buffer has a fixed size, so these cannot run out.
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        self.try_bytes(n).expect("fixed-size header")
    }

    fn u32(&mut self) -> u32 {
        self.try_u32().expect("fixed-size header")
    }

    fn u64(&mut self) -> u64 {
        self.try_u64().expect("fixed-size header")
    }
}

#[cfg(unix)]
fn read_at(file: &File, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(unix)]
fn write_at(file: &File, offset: u64, buf: &[u8]) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, buf, offset)
}

#[cfg(windows)]
fn read_at(file: &File, mut offset: u64, mut buf: &mut [u8]) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, offset)? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

#[cfg(windows)]
fn write_at(file: &File, mut offset: u64, mut buf: &[u8]) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        let n = file.seek_write(buf, offset)?;
        buf = &buf[n..];
        offset += n as u64;
    }
    Ok(())
}
