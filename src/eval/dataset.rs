//! Opening the images a network expects: its descriptor says which reader, geometry and
//! normalisation; the request says where (and whether through the preprocessed cache).

use super::request::EvalRequest;
use crate::data::cache::{CacheStatus, CachedDataset};
use crate::data::digits::DigitsDataset;
use crate::data::imagenet::{self, ClassIndex};
use crate::data::{Dataset, FileDataset, Geometry, Normalize, cifar, image_folder, select};
use crate::model::{DatasetFamily, NetworkDescriptor};
use std::sync::Arc;

type AnyError = Box<dyn std::error::Error>;

/// Opens `req.data` as `network` expects it (the images `--limit` selects, through the cache
/// when asked), with its normalisation.
pub fn open_dataset(req: &EvalRequest, network: &NetworkDescriptor) -> Result<(Arc<dyn Dataset>, Normalize), AnyError> {
    open_selected(req, network).map(|(dataset, normalize, _)| (dataset, normalize))
}

/// [`open_dataset`] and how its images were selected from the data (for the report).
pub fn open_selected(
    req: &EvalRequest,
    network: &NetworkDescriptor,
) -> Result<(Arc<dyn Dataset>, Normalize, String), AnyError> {
    let preprocessing = req.preprocessing.apply(network)?;
    let (dataset, selection) = select::limit(open_source_dataset(req, network, preprocessing.geometry)?, req.limit);
    let dataset = cached(req, dataset)?;
    Ok((dataset, preprocessing.normalize, selection))
}

/// The dataset through the preprocessed cache when asked (it holds the uint8 images before
/// normalisation: its key is the geometry's, see `Geometry::key`).
fn cached(req: &EvalRequest, dataset: Arc<dyn Dataset>) -> Result<Arc<dyn Dataset>, AnyError> {
    let Some(path) = &req.cache else {
        return Ok(dataset);
    };
    let (cached, status) = CachedDataset::open_or_build(dataset.as_ref(), path)?;
    match status {
        CacheStatus::Reused => log::info!("using the preprocessed cache {}", path.display()),
        CacheStatus::Built { reason } => log::info!("built the preprocessed cache {} ({reason})", path.display()),
    }
    Ok(Arc::new(cached))
}

fn open_source_dataset(
    req: &EvalRequest,
    network: &NetworkDescriptor,
    geometry: Geometry,
) -> Result<Arc<dyn Dataset>, AnyError> {
    Ok(match network.family {
        DatasetFamily::Digits => Arc::new(DigitsDataset::open(&req.data)?),
        DatasetFamily::Cifar10 => Arc::from(cifar::open(&req.data)?),
        DatasetFamily::ImageNet => {
            let classes = req.class_index.as_deref().map(ClassIndex::load).transpose()?;
            let opened = imagenet::open_validation(&req.data, req.labels.as_deref(), classes.as_ref(), geometry)?;
            if let Some(note) = &opened.note {
                log::info!("{note}");
            }
            Arc::new(opened.dataset)
        }
        DatasetFamily::Other => Arc::new(other_image_folder(req, network, geometry)?),
    })
}

/// A network of no known data family (an ONNX file with an input size other than 224 or 32):
/// RGB images in class folders, as torchvision's ImageFolder numbers them, at the input size.
fn other_image_folder(
    req: &EvalRequest,
    network: &NetworkDescriptor,
    geometry: Geometry,
) -> Result<FileDataset, AnyError> {
    let unknown = |why: String| {
        format!(
            "{}: {why} ({} has no dataset family of its own)",
            req.data.display(),
            network.name
        )
    };
    if network.input.c != 3 || !req.data.is_dir() {
        return Err(unknown(format!(
            "expected a folder of class folders of RGB images for a {} input",
            network.input
        ))
        .into());
    }
    let dataset = image_folder(&req.data, geometry)?;
    let classes = (0..dataset.len()).map(|i| dataset.label(i) + 1).max().unwrap_or(0);
    if classes > network.classes {
        return Err(unknown(format!(
            "{classes} class folders, but the network scores {} classes",
            network.classes
        ))
        .into());
    }
    Ok(dataset)
}
