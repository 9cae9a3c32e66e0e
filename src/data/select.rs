//! Which images of a dataset a run evaluates: `--limit N` takes N images spread evenly over the
//! dataset, not its first N (class-folder datasets list their images class by class, so a prefix
//! would be a few classes), and says how they were chosen for the report.

use std::sync::Arc;

use super::{DataError, Dataset, ImageU8, cifar::fnv1a};

/// The images a run evaluates, as positions in the dataset, and how they were chosen.
#[derive(Clone, Debug, PartialEq)]
pub struct Selection {
    pub indices: Vec<usize>,
    pub description: String,
}

/// `limit` of `len` images spread evenly (image ⌊i·len/limit⌋ for i < limit), or all of them
/// without a limit or when it is not below `len`.
pub fn spread(len: usize, limit: Option<usize>) -> Selection {
    match limit {
        Some(n) if n < len => Selection {
            indices: (0..n).map(|i| i * len / n).collect(),
            description: format!("{n} of {len} images, spread evenly (image ⌊i·{len}/{n}⌋ for i < {n})"),
        },
        _ => Selection {
            indices: (0..len).collect(),
            description: format!("all {len} images"),
        },
    }
}

/// `n` of `0..len` spread evenly (as [`spread`] picks them) and the rest, in order: a calibration
/// split and its held-out images.
pub fn spread_and_rest(len: usize, n: usize) -> (Vec<usize>, Vec<usize>) {
    let chosen = spread(len, Some(n)).indices;
    let mut is_chosen = vec![false; len];
    chosen.iter().for_each(|&i| is_chosen[i] = true);
    let rest = (0..len).filter(|&i| !is_chosen[i]).collect();
    (chosen, rest)
}

/// The images of `selection` as a dataset of their own (index i = the selection's i-th image).
pub struct Subset {
    inner: Arc<dyn Dataset>,
    indices: Vec<usize>,
}

impl Subset {
    /// `indices` must be positions in `inner`.
    pub fn new(inner: Arc<dyn Dataset>, indices: Vec<usize>) -> Result<Subset, String> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= inner.len()) {
            return Err(format!("image {bad} selected from a dataset of {}", inner.len()));
        }
        Ok(Subset { inner, indices })
    }
}

impl Dataset for Subset {
    fn len(&self) -> usize {
        self.indices.len()
    }

    fn label(&self, i: usize) -> usize {
        self.inner.label(self.indices[i])
    }

    fn describe(&self, i: usize) -> String {
        self.inner.describe(self.indices[i])
    }

    fn shape(&self) -> [usize; 3] {
        self.inner.shape()
    }

    fn load_u8(&self, i: usize) -> Result<ImageU8, DataError> {
        self.inner.load_u8(self.indices[i])
    }

    fn fingerprint(&self) -> String {
        let positions: Vec<u8> = self.indices.iter().flat_map(|i| (*i as u64).to_le_bytes()).collect();
        format!(
            "subset:{}:{:016x}\n{}",
            self.indices.len(),
            fnv1a(&positions),
            self.inner.fingerprint()
        )
    }
}

/// The run's images: all of `dataset`, or the selection of `limit` as a [`Subset`].
pub fn limit(dataset: Arc<dyn Dataset>, limit: Option<usize>) -> (Arc<dyn Dataset>, String) {
    let selection = spread(dataset.len(), limit);
    if selection.indices.len() == dataset.len() {
        return (dataset, selection.description);
    }
    let subset = Subset::new(dataset, selection.indices).expect("spread selects positions below the length");
    (Arc::new(subset), selection.description)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::cifar::MemoryDataset;

    #[test]
    fn a_calibration_split_spreads_over_the_dataset_and_partitions_it() {
        let (calibration, held_out) = spread_and_rest(10, 4);
        assert_eq!(calibration, [0, 2, 5, 7]);
        assert_eq!(held_out, [1, 3, 4, 6, 8, 9]);
        // class-sorted data (10 classes of 100): every class is calibrated on
        let (calibration, held_out) = spread_and_rest(1000, 200);
        assert!((0..10).all(|c| calibration.iter().filter(|&&i| i / 100 == c).count() == 20));
        let mut all: Vec<usize> = calibration.into_iter().chain(held_out).collect();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn a_limit_spreads_over_class_ordered_images() {
        assert_eq!(spread(10, Some(4)).indices, [0, 2, 5, 7]);
        // 10 classes of 100 images listed class by class: 20 images take 2 from each class
        let picked = spread(1000, Some(20)).indices;
        for class in 0..10 {
            assert_eq!(picked.iter().filter(|&&i| i / 100 == class).count(), 2);
        }
        assert_eq!(spread(5, Some(5)).indices, [0, 1, 2, 3, 4]);
        assert_eq!(spread(5, None).description, "all 5 images");
        assert!(
            spread(50_000, Some(1000))
                .description
                .starts_with("1000 of 50000 images, spread evenly")
        );
        assert_eq!(spread(7, Some(0)).indices, Vec::<usize>::new());
    }

    #[test]
    fn a_subset_maps_its_images_and_changes_the_fingerprint() {
        let pixels: Vec<u8> = (0..4 * 3072).map(|i| (i / 3072) as u8).collect();
        let all: Arc<dyn Dataset> = Arc::new(MemoryDataset::new("four".into(), pixels, vec![0, 1, 2, 3]).unwrap());
        let (subset, description) = limit(all.clone(), Some(2));
        assert_eq!(description, "2 of 4 images, spread evenly (image ⌊i·4/2⌋ for i < 2)");
        assert_eq!((subset.len(), subset.label(1)), (2, 2));
        assert_eq!(subset.load_u8(1).unwrap(), all.load_u8(2).unwrap());
        assert_eq!(subset.describe(1), all.describe(2));
        assert_ne!(subset.fingerprint(), all.fingerprint());
        assert!(Subset::new(all, vec![4]).is_err());
    }
}
