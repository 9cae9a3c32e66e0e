//! `--shard i/n`: one of n deterministic slices of a dataset, so that n machines (e.g. a Slurm
//! job array) evaluate disjoint images and `polycnn merge` adds their counts up.
//!
//! Rule: the images evaluated (the `--limit` ones, or all) are cut into n **contiguous**
//! ranges; shard i (0-based, as Slurm's `SLURM_ARRAY_TASK_ID`) takes `[i·N/n, (i+1)·N/n)` (integer
//! division), so sizes differ by at most one and the shards tile `[0, N)` in order. Contiguous
//! ranges keep each machine's reads sequential in the (sorted) dataset files and preprocessed cache.
//!
//! Bounds: a statistics pass for `--bound search` / `calibrate` always covers the same images
//! whatever the shard (all N for `search`, the first calibration images for `calibrate`), so every
//! shard derives the same B; `merge` still compares the bounds each report records and refuses
//! reports whose B differ.

use serde::{Deserialize, Serialize};
use std::ops::Range;

/// Shard `index` of `count` (0 ≤ index < count).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// "3/8": shard 3 of 8 (0-based).
    pub fn parse(s: &str) -> Result<Shard, String> {
        let bad = || format!("--shard '{s}': expected I/N with 0 ≤ I < N, e.g. 0/4 (shards are numbered from 0)");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index = i.trim().parse::<usize>().map_err(|_| bad())?;
        let count = n.trim().parse::<usize>().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// The image indices of this shard among `images` images.
    pub fn range(&self, images: usize) -> Range<usize> {
        let bound = |i: usize| (i as u128 * images as u128 / self.count as u128) as usize;
        bound(self.index)..bound(self.index + 1)
    }

    /// [`Shard::range`], refusing an empty one: like `--limit 0`, a run over no images is a
    /// mistake (more shards than images), not a report of zero images.
    pub fn nonempty_range(&self, images: usize) -> Result<Range<usize>, String> {
        let range = self.range(images);
        if range.is_empty() {
            return Err(format!(
                "--shard {}/{}: holds none of the {images} images (use at most {images} shards)",
                self.index, self.count
            ));
        }
        Ok(range)
    }

    /// What a report records about the shard it covers.
    pub fn info(&self, images: usize) -> ShardInfo {
        let range = self.range(images);
        ShardInfo {
            index: self.index,
            count: self.count,
            first: range.start,
            end: range.end,
            dataset_images: images,
        }
    }
}

/// The `shard` field of a shard's report: which slice `[first, end)` of `dataset_images` it saw.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    pub index: usize,
    pub count: usize,
    pub first: usize,
    pub end: usize,
    /// N: the images all shards together evaluate.
    pub dataset_images: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_tile_the_images_in_order() {
        for images in [0, 1, 7, 500, 1001] {
            for count in 1..=9 {
                let mut next = 0;
                for index in 0..count {
                    let r = Shard { index, count }.range(images);
                    assert_eq!(r.start, next, "{images} images, shard {index}/{count}");
                    assert!(r.len() <= images / count + 1 && r.len() >= images / count);
                    next = r.end;
                }
                assert_eq!(next, images);
            }
        }
    }

    #[test]
    fn parse_accepts_only_valid_shards() {
        assert_eq!(Shard::parse("2/5").unwrap(), Shard { index: 2, count: 5 });
        for bad in ["5/5", "1/0", "3", "-1/4", "a/b", "1/2/3"] {
            assert!(Shard::parse(bad).unwrap_err().contains("--shard"), "{bad}");
        }
    }
}
