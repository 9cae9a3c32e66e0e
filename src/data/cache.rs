//! A preprocessed cache: every image of a dataset as uint8 CHW, in one file, so repeated runs (α sweeps)
//! decode and resize once. Reading an image back is one positioned read of C*H*W bytes.
//!
//! File layout (little-endian):
//! ```text
//! magic "PCNNU8DS" | version u32 | count u64 | C u32 | H u32 | W u32 | key u64 (FNV-1a of the
//! dataset fingerprint: sources + preprocessing) | meta sum u64 | labels u32 x count | status u8 x
//! count (1 = ok) | image sums u64 x count | pixels (count x C*H*W, zero for failed images)
//! | failures: n u32, then (index u64, len u32, utf-8)
//! ```
//! Checksums (FNV-1a): the meta sum covers labels, status, image sums and failures and is checked
//! when the cache is opened; each image's sum is checked when it is read, so a damaged byte is an
//! error, never a silently different image or label.
//! A cache whose key, shape or size does not match is stale or damaged and is rebuilt; images that failed
//! when the cache was built keep failing, with their original message, when read from it.
//!
//! The cache path is only ever written through a unique temporary file renamed over it, and only
//! when nothing is there or what is there is a regular file starting with the cache magic: a
//! mistyped `--cache` never replaces a checkpoint, a device node or a directory.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use super::cifar::fnv1a;
use super::{DataError, Dataset, ImageU8};

const MAGIC: &[u8; 8] = b"PCNNU8DS";
const VERSION: u32 = 2;
const HEADER: usize = 8 + 4 + 8 + 4 * 3 + 8 + 8;
/// Bytes of per-image metadata: label u32, status u8, image sum u64.
const META_PER_IMAGE: usize = 4 + 1 + 8;
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
    /// FNV-1a of each image's pixels.
    sums: Vec<u64>,
    /// Index → (source as `describe` gave it, the error).
    failures: HashMap<usize, (String, DataError)>,
    pixels_at: u64,
}

impl CachedDataset {
    /// Opens `path` if it is a valid cache of `dataset` (same fingerprint and shape), otherwise
    /// (re)builds it from `dataset` first. A failed image is recorded, not fatal.
    pub fn open_or_build(dataset: &dyn Dataset, path: &Path) -> Result<(CachedDataset, CacheStatus), DataError> {
        check_replaceable(path)?;
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
        // Opening a FIFO or a device would block or read forever.
        let kind = std::fs::metadata(path).map_err(|e| DataError::io(path, "opening cache", e))?;
        if !kind.is_file() {
            return Err(bad("not a regular file"));
        }
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
        let meta_sum = r.u64();
        let image_bytes = shape
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d as u64))
            .filter(|&b| b > 0);
        let image_bytes = image_bytes.ok_or_else(|| bad("bad shape"))?;
        // Checked arithmetic: a damaged header must not make us allocate or seek absurdly.
        let pixels_at = (count as u64)
            .checked_mul(META_PER_IMAGE as u64)
            .and_then(|m| m.checked_add(HEADER as u64));
        let failures_at = (count as u64)
            .checked_mul(image_bytes)
            .zip(pixels_at)
            .and_then(|(p, at)| p.checked_add(at));
        let failures_at = failures_at
            .filter(|&f| f.saturating_add(4) <= size)
            .ok_or_else(|| bad("truncated"))?;
        let pixels_at = (HEADER + count * META_PER_IMAGE) as u64;

        let mut meta = vec![0u8; count * META_PER_IMAGE];
        read_at(&file, HEADER as u64, &mut meta).map_err(|_| bad("truncated labels"))?;
        let mut tail = vec![0u8; (size - failures_at) as usize];
        read_at(&file, failures_at, &mut tail).map_err(|_| bad("truncated failures"))?;
        if meta_checksum(&meta, &tail) != meta_sum {
            return Err(bad("labels, status or failure records damaged (checksum mismatch)"));
        }
        let (label_bytes, rest) = meta.split_at(count * 4);
        let (status, sum_bytes) = rest.split_at(count);
        let labels = label_bytes
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize)
            .collect();
        let ok = status.iter().map(|&s| s == 1).collect();
        let sums = sum_bytes
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let failures = parse_failures(&tail, count).map_err(|msg| bad(&msg))?;
        Ok(CachedDataset {
            path: path.to_path_buf(),
            file,
            key,
            shape,
            labels,
            ok,
            sums,
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
        if fnv1a(&data) != self.sums[i] {
            return Err(DataError::new(
                &self.path,
                format!("image {i} of the cache is damaged (checksum mismatch): delete the cache to rebuild it"),
            ));
        }
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
    let (tmp, file) = create_temporary(path)?;
    let written = write_cache(dataset, key, file, &tmp);
    let installed =
        written.and_then(|()| std::fs::rename(&tmp, path).map_err(|e| DataError::io(path, "installing cache", e)));
    if installed.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    installed
}

/// Whether the cache may be (re)written at `path`: nothing there, or a regular file that is a
/// polycnn cache (possibly stale or damaged). Anything else is refused, naming what it is.
fn check_replaceable(path: &Path) -> Result<(), DataError> {
    let refuse = |what: &str| {
        DataError::new(
            path,
            format!("{what}: refusing to replace it with a cache (choose another --cache path)"),
        )
    };
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(DataError::io(path, "checking the cache path", e)),
    };
    if meta.file_type().is_symlink() {
        return Err(refuse("is a symbolic link"));
    }
    if !meta.is_file() {
        return Err(refuse("exists and is not a regular file"));
    }
    let mut magic = [0u8; 8];
    let file = File::open(path).map_err(|e| DataError::io(path, "checking the cache path", e))?;
    match read_at(&file, 0, &mut magic) {
        Ok(()) if &magic == MAGIC => Ok(()),
        _ => Err(refuse("exists and is not a polycnn cache")),
    }
}

/// A new file beside `path`, named uniquely (process id and a counter) and created exclusively,
/// so concurrent builds and other files never collide.
fn create_temporary(path: &Path) -> Result<(PathBuf, File), DataError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()));
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(DataError::io(&tmp, "creating the cache", e)),
        }
    }
}

/// FNV-1a over the per-image metadata and the failure records, as stored.
fn meta_checksum(meta: &[u8], failures: &[u8]) -> u64 {
    fnv1a(&[meta, failures].concat())
}

fn write_cache(dataset: &dyn Dataset, key: u64, file: File, tmp: &Path) -> Result<(), DataError> {
    let shape = dataset.shape();
    let count = dataset.len();
    let io = |e| DataError::io(tmp, "writing cache", e);
    let mut out = BufWriter::new(file);
    out.write_all(MAGIC).map_err(io)?;
    out.write_all(&VERSION.to_le_bytes()).map_err(io)?;
    out.write_all(&(count as u64).to_le_bytes()).map_err(io)?;
    for d in shape {
        out.write_all(&(d as u32).to_le_bytes()).map_err(io)?;
    }
    out.write_all(&key.to_le_bytes()).map_err(io)?;
    // The meta sum, status bytes and image sums precede the pixels but are known only after
    // decoding: reserve their places, fill them in at the end.
    let meta_sum_at = (HEADER - 8) as u64;
    out.write_all(&0u64.to_le_bytes()).map_err(io)?;
    let mut meta: Vec<u8> = (0..count)
        .flat_map(|i| (dataset.label(i) as u32).to_le_bytes())
        .collect();
    out.write_all(&meta).map_err(io)?;
    out.write_all(&vec![0u8; count * (META_PER_IMAGE - 4)]).map_err(io)?;
    let image_bytes: usize = shape.iter().product();
    let (mut status, mut sums, mut failures) = (Vec::with_capacity(count), Vec::with_capacity(count), Vec::new());
    let zeros = vec![0u8; image_bytes];
    for start in (0..count).step_by(BUILD_CHUNK) {
        let end = (start + BUILD_CHUNK).min(count);
        let decoded: Vec<_> = (start..end).into_par_iter().map(|i| dataset.load_u8(i)).collect();
        for (i, result) in (start..end).zip(decoded) {
            match result {
                Ok(image) if image.data.len() == image_bytes => {
                    out.write_all(&image.data).map_err(io)?;
                    status.push(1u8);
                    sums.push(fnv1a(&image.data));
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
                    sums.push(fnv1a(&zeros));
                }
            }
        }
    }
    let mut tail = (failures.len() as u32).to_le_bytes().to_vec();
    for (i, text) in &failures {
        tail.extend((*i as u64).to_le_bytes());
        tail.extend((text.len() as u32).to_le_bytes());
        tail.extend(text.as_bytes());
    }
    out.write_all(&tail).map_err(io)?;
    let file = out.into_inner().map_err(|e| io(e.into_error()))?;
    let after_labels = meta.len();
    meta.extend(&status);
    meta.extend(sums.iter().flat_map(|s| s.to_le_bytes()));
    write_at(&file, (HEADER + after_labels) as u64, &meta[after_labels..]).map_err(io)?;
    write_at(&file, meta_sum_at, &meta_checksum(&meta, &tail).to_le_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
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
