//! Parallel batch loading: a producer thread decodes each batch with rayon while the consumer works on
//! the previous one; a bounded channel (`prefetch` batches) keeps memory flat.
//!
//! A failed image (missing, truncated, wrong size...) does not stop the run: it is left out of its
//! batch and reported in [`LoadedBatch::failures`] with its source and error, so the caller can count it.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;

use rayon::prelude::*;

use super::{DataError, Dataset, ImageU8, Normalize};

/// An image that could not be loaded.
#[derive(Clone, Debug)]
pub struct Failure {
    pub index: usize,
    /// `Dataset::describe(index)`: usually the file path.
    pub source: String,
    pub error: DataError,
}

/// Up to `batch_size` images, normalised, NCHW f32; failed images are absent from `data`.
#[derive(Clone, Debug)]
pub struct LoadedBatch {
    /// `indices.len()` images of `shape` (C, H, W), contiguous.
    pub data: Vec<f32>,
    pub shape: [usize; 3],
    pub labels: Vec<usize>,
    /// Dataset index of each image in `data`.
    pub indices: Vec<usize>,
    pub failures: Vec<Failure>,
}

impl LoadedBatch {
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
}

/// How to cut a dataset into batches.
#[derive(Clone, Debug)]
pub struct LoaderConfig {
    pub batch_size: usize,
    pub normalize: Normalize,
    /// Batches decoded ahead of the consumer (channel bound); 1-2 suffices to hide decoding.
    pub prefetch: usize,
}

/// An iterator over batches, decoded on a background thread.
pub struct Loader {
    receiver: Option<Receiver<LoadedBatch>>,
    worker: Option<JoinHandle<()>>,
}

impl Loader {
    /// Loads `indices` of `dataset` in order (use `(0..dataset.len()).collect()` for all).
    pub fn new(dataset: Arc<dyn Dataset>, indices: Vec<usize>, config: LoaderConfig) -> Loader {
        let batch_size = config.batch_size.max(1);
        let (sender, receiver) = sync_channel(config.prefetch.max(1));
        let worker = std::thread::spawn(move || {
            for chunk in indices.chunks(batch_size) {
                let batch = load_batch(dataset.as_ref(), chunk, &config.normalize);
                // A send error means the consumer dropped the loader: stop decoding.
                if sender.send(batch).is_err() {
                    return;
                }
            }
        });
        Loader {
            receiver: Some(receiver),
            worker: Some(worker),
        }
    }
}

impl Iterator for Loader {
    type Item = LoadedBatch;

    fn next(&mut self) -> Option<LoadedBatch> {
        self.receiver.as_ref()?.recv().ok()
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Close the channel first so a producer blocked on `send` wakes up and exits, then join it.
        drop(self.receiver.take());
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// Decodes one batch in parallel (order preserved) and assembles it.
pub fn load_batch(dataset: &dyn Dataset, indices: &[usize], normalize: &Normalize) -> LoadedBatch {
    let shape = dataset.shape();
    let decoded: Vec<Result<ImageU8, DataError>> = indices.par_iter().map(|&i| dataset.load_u8(i)).collect();
    let mut batch = LoadedBatch {
        data: Vec::with_capacity(indices.len() * shape.iter().product::<usize>()),
        shape,
        labels: Vec::with_capacity(indices.len()),
        indices: Vec::with_capacity(indices.len()),
        failures: Vec::new(),
    };
    for (&index, result) in indices.iter().zip(decoded) {
        match result {
            Ok(image) => {
                normalize.apply_into(&image, &mut batch.data);
                batch.labels.push(dataset.label(index));
                batch.indices.push(index);
            }
            Err(error) => batch.failures.push(Failure {
                index,
                source: dataset.describe(index),
                error,
            }),
        }
    }
    batch
}
