//! A minimal ZIP reader for PyTorch checkpoints (`torch.save` since 1.6).
//!
//! Why not the `zip` crate: torch's writer stores every entry uncompressed (STORED), so all we
//! need is the central directory (plus its ZIP64 extension, used for files over 4 GiB) and a CRC
//! check. That is ~150 lines here, versus a dependency tree built for deflate/bzip2/encryption we
//! would never use; reading straight from the file buffer also gives borrowed storage slices with
//! no copy. A compressed entry (an archive re-packed by another tool) is reported, not guessed at.

use std::collections::HashMap;

use super::error::{Parsed, corrupt};

pub(super) struct ZipEntry {
    pub name: String,
    method: u16,
    flags: u16,
    crc32: u32,
    compressed_size: u64,
    size: u64,
    local_header_offset: u64,
}

pub(super) struct ZipArchive<'a> {
    data: &'a [u8],
    pub entries: Vec<ZipEntry>,
    /// Entry index by name: checkpoints hold one entry per storage, often hundreds.
    by_name: HashMap<String, usize>,
}

const EOCD_SIGNATURE: u32 = 0x0605_4b50;
const ZIP64_LOCATOR_SIGNATURE: u32 = 0x0706_4b50;
const ZIP64_EOCD_SIGNATURE: u32 = 0x0606_4b50;
const CENTRAL_SIGNATURE: u32 = 0x0201_4b50;
const LOCAL_SIGNATURE: u32 = 0x0403_4b50;
const ZIP64_EXTRA_ID: u16 = 0x0001;
const STORED: u16 = 0;

/// Where the central directory is and how many entries it holds.
struct Directory {
    entries: u64,
    offset: u64,
}

impl<'a> ZipArchive<'a> {
    pub(super) fn parse(data: &'a [u8]) -> Parsed<Self> {
        let eocd = find_end_of_central_directory(data)?;
        let directory = read_directory_location(data, eocd)?;
        let entries = read_central_directory(data, &directory)?;
        let by_name = entries.iter().enumerate().map(|(i, e)| (e.name.clone(), i)).collect();
        Ok(ZipArchive { data, entries, by_name })
    }

    pub(super) fn find(&self, name: &str) -> Option<&ZipEntry> {
        self.by_name.get(name).map(|&i| &self.entries[i])
    }

    /// The bytes of a STORED entry, after checking its CRC (catches corrupted weight files).
    pub(super) fn read(&self, entry: &ZipEntry) -> Parsed<&'a [u8]> {
        let name = &entry.name;
        if entry.flags & 1 != 0 {
            return Err(corrupt(format!("zip entry {name} is encrypted")));
        }
        if entry.method != STORED || entry.compressed_size != entry.size {
            return Err(corrupt(format!(
                "zip entry {name} is compressed (method {}); torch.save writes uncompressed \
                 archives, re-save the checkpoint with torch.save",
                entry.method
            )));
        }
        let header = to_usize(entry.local_header_offset)?;
        if u32_at(self.data, header)? != LOCAL_SIGNATURE {
            return Err(corrupt(format!("zip entry {name}: bad local header")));
        }
        let name_len = usize::from(u16_at(self.data, header + 26)?);
        let extra_len = usize::from(u16_at(self.data, header + 28)?);
        let start = header + 30 + name_len + extra_len;
        let bytes = slice(self.data, start, to_usize(entry.size)?)
            .map_err(|_| corrupt(format!("zip entry {name} is truncated")))?;
        if crc32(bytes) != entry.crc32 {
            return Err(corrupt(format!(
                "zip entry {name} fails its CRC check (corrupted file)"
            )));
        }
        Ok(bytes)
    }
}

/// The end record sits in the last 22 bytes plus an optional comment of up to 64 KiB.
fn find_end_of_central_directory(data: &[u8]) -> Parsed<usize> {
    let last = data
        .len()
        .checked_sub(22)
        .ok_or_else(|| corrupt("zip archive is truncated"))?;
    let first = last.saturating_sub(u16::MAX as usize);
    (first..=last)
        .rev()
        .find(|&at| u32_at(data, at).is_ok_and(|sig| sig == EOCD_SIGNATURE))
        .ok_or_else(|| corrupt("zip end-of-central-directory record not found (truncated file?)"))
}

fn read_directory_location(data: &[u8], eocd: usize) -> Parsed<Directory> {
    if let Some(locator) = eocd
        .checked_sub(20)
        .filter(|&at| u32_at(data, at).is_ok_and(|s| s == ZIP64_LOCATOR_SIGNATURE))
    {
        let record = to_usize(u64_at(data, locator + 8)?)?;
        if u32_at(data, record)? != ZIP64_EOCD_SIGNATURE {
            return Err(corrupt("bad ZIP64 end-of-central-directory record"));
        }
        return Ok(Directory {
            entries: u64_at(data, record + 32)?,
            offset: u64_at(data, record + 48)?,
        });
    }
    if u16_at(data, eocd + 4)? != 0 || u16_at(data, eocd + 6)? != 0 {
        return Err(corrupt("multi-part zip archives are not supported"));
    }
    Ok(Directory {
        entries: u16_at(data, eocd + 10)?.into(),
        offset: u32_at(data, eocd + 16)?.into(),
    })
}

fn read_central_directory(data: &[u8], directory: &Directory) -> Parsed<Vec<ZipEntry>> {
    let mut at = to_usize(directory.offset)?;
    // Each record takes at least 46 bytes, which bounds a corrupt count before allocating.
    let count = to_usize(directory.entries)?;
    if count > data.len() / 46 {
        return Err(corrupt(
            "zip central directory claims more entries than fit in the file",
        ));
    }
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let (entry, next) = read_central_record(data, at)?;
        entries.push(entry);
        at = next;
    }
    Ok(entries)
}

/// One central-directory record; returns it and the offset of the next one.
fn read_central_record(data: &[u8], at: usize) -> Parsed<(ZipEntry, usize)> {
    if u32_at(data, at)? != CENTRAL_SIGNATURE {
        return Err(corrupt("bad zip central directory record"));
    }
    let name_len = usize::from(u16_at(data, at + 28)?);
    let extra_len = usize::from(u16_at(data, at + 30)?);
    let comment_len = usize::from(u16_at(data, at + 32)?);
    let name_bytes = slice(data, at + 46, name_len)?;
    let name = String::from_utf8(name_bytes.to_vec()).map_err(|_| corrupt("zip entry name is not UTF-8"))?;
    let extra = slice(data, at + 46 + name_len, extra_len)?;
    let mut entry = ZipEntry {
        name,
        flags: u16_at(data, at + 8)?,
        method: u16_at(data, at + 10)?,
        crc32: u32_at(data, at + 16)?,
        compressed_size: u32_at(data, at + 20)?.into(),
        size: u32_at(data, at + 24)?.into(),
        local_header_offset: u32_at(data, at + 42)?.into(),
    };
    apply_zip64_extra(&mut entry, extra)?;
    Ok((entry, at + 46 + name_len + extra_len + comment_len))
}

/// Sizes/offsets that overflow 32 bits read 0xFFFFFFFF and move, in this order, into the ZIP64 extra field.
fn apply_zip64_extra(entry: &mut ZipEntry, extra: &[u8]) -> Parsed<()> {
    let mut at = 0;
    while at + 4 <= extra.len() {
        let id = u16_at(extra, at)?;
        let len = usize::from(u16_at(extra, at + 2)?);
        let body = slice(extra, at + 4, len)?;
        if id == ZIP64_EXTRA_ID {
            let mut fields = body
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")));
            for value in [
                &mut entry.size,
                &mut entry.compressed_size,
                &mut entry.local_header_offset,
            ] {
                if *value == u64::from(u32::MAX) {
                    *value = fields.next().ok_or_else(|| corrupt("short ZIP64 extra field"))?;
                }
            }
        }
        at += 4 + len;
    }
    Ok(())
}

fn to_usize(value: u64) -> Parsed<usize> {
    usize::try_from(value).map_err(|_| corrupt("zip offset does not fit in memory"))
}

fn slice(data: &[u8], at: usize, len: usize) -> Parsed<&[u8]> {
    at.checked_add(len)
        .and_then(|end| data.get(at..end))
        .ok_or_else(|| corrupt("zip archive is truncated"))
}

fn u16_at(data: &[u8], at: usize) -> Parsed<u16> {
    Ok(u16::from_le_bytes(slice(data, at, 2)?.try_into().expect("2 bytes")))
}

fn u32_at(data: &[u8], at: usize) -> Parsed<u32> {
    Ok(u32::from_le_bytes(slice(data, at, 4)?.try_into().expect("4 bytes")))
}

fn u64_at(data: &[u8], at: usize) -> Parsed<u64> {
    Ok(u64::from_le_bytes(slice(data, at, 8)?.try_into().expect("8 bytes")))
}

/// CRC-32 (IEEE, reflected), table-driven; about 1 GB/s, negligible next to reading the file.
pub(super) fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = crc32_table();
    !bytes
        .iter()
        .fold(!0u32, |crc, &b| TABLE[usize::from((crc as u8) ^ b)] ^ (crc >> 8))
}

const fn crc32_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            bit += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}
