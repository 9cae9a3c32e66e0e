//! Opening the images a network expects: its descriptor says which reader, geometry and
//! normalisation; the request says where (and whether through the preprocessed cache).

use super::request::EvalRequest;
use crate::data::cache::{CacheStatus, CachedDataset};
use crate::data::digits::DigitsDataset;
use crate::data::imagenet::{self, ClassIndex, Layout};
use crate::data::{Dataset, Geometry, Normalize, cifar};
use crate::model::{DatasetFamily, NetworkDescriptor};
use std::sync::Arc;

type AnyError = Box<dyn std::error::Error>;

/// Opens `req.data` as `network` expects it (through the cache when asked), with its
/// normalisation.
pub fn open_dataset(
    req: &EvalRequest,
    network: &NetworkDescriptor,
) -> Result<(Arc<dyn Dataset>, Normalize), AnyError> {
    let preprocessing = req.preprocessing.apply(network)?;
    let dataset = open_source_dataset(req, network, preprocessing.geometry)?;
    let normalize = preprocessing.normalize;
    let Some(path) = &req.cache else {
        return Ok((dataset, normalize));
    };
    let (cached, status) = CachedDataset::open_or_build(dataset.as_ref(), path)?;
    match status {
        CacheStatus::Reused => log::info!("using the preprocessed cache {}", path.display()),
        CacheStatus::Built { reason } => log::info!("built the preprocessed cache {} ({reason})", path.display()),
    }
    Ok((Arc::new(cached), normalize))
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
            let layout = Layout::detect(&req.data, req.labels.as_deref())?;
            Arc::new(imagenet::open(&req.data, &layout, classes.as_ref(), geometry)?)
        }
        DatasetFamily::Other => {
            return Err(format!(
                "{}: no dataset reader for {} (its data family is unknown)",
                req.data.display(),
                network.name
            )
            .into());
        }
    })
}
