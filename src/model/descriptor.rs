//! What a network expects and how it is evaluated by default, apart from its graph: the one
//! place these per-network facts live. Every builder's network carries one ([`super::Network`]);
//! a model read from a file builds the same description from what the file says.

use super::graph::Shape;
use crate::data::{Geometry, Interpolation, Normalize};

/// The kind of data a network classifies: decides how a dataset path is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatasetFamily {
    /// ImageNet validation images (class folders, flat files + labels, synset-prefixed files).
    ImageNet,
    /// CIFAR-10 test images (binary or python batches, class folders, the PNG strip).
    Cifar10,
    /// The 8x8 digits shipped in datasets/digits.
    Digits,
    /// Anything else: no default dataset reader.
    Other,
}

/// How an image becomes the network's input: torchvision's eval transform.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Preprocessing {
    /// Resize (PIL antialiased bilinear) and center crop, or none (the images are already the
    /// input size).
    pub geometry: Geometry,
    /// Per-channel `(x / max_value − mean) / std`.
    pub normalize: Normalize,
}

/// Where the official code's B search starts and how it steps, per kind of activation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SearchGrid {
    /// (start, step) for ReLU sites.
    pub relu: (f64, f64),
    /// (start, step) for max-pool sites.
    pub maxpool: (f64, f64),
}

impl SearchGrid {
    /// The official code's CIFAR-10 grid: B_relu = B_max = 50, step 5.
    pub const CIFAR: SearchGrid = SearchGrid {
        relu: (50.0, 5.0),
        maxpool: (50.0, 5.0),
    };
    /// The official code's ImageNet grid: B_relu = 100, B_max = 10, step 10.
    pub const IMAGENET: SearchGrid = SearchGrid {
        relu: (100.0, 10.0),
        maxpool: (10.0, 10.0),
    };
}

/// Everything about a network besides its graph.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkDescriptor {
    /// The command-line name.
    pub name: String,
    /// Per-image input shape.
    pub input: Shape,
    pub family: DatasetFamily,
    pub preprocessing: Preprocessing,
    pub classes: usize,
    /// Default grid of `--bound search`.
    pub search_grid: SearchGrid,
}

/// 8-bit pixels with these channel statistics, or ImageNet's ([`Normalize::IMAGENET`]).
fn normalize(mean_std: Option<([f32; 3], [f32; 3])>) -> Normalize {
    mean_std.map_or(Normalize::IMAGENET, |(mean, std)| Normalize {
        mean,
        std,
        max_value: 255.0,
    })
}

impl NetworkDescriptor {
    /// A torchvision ImageNet classifier taking `crop`x`crop` images: Resize(256)/CenterCrop(224),
    /// or torchvision's Inception-v3 preset Resize(342)/CenterCrop(299) for 299.
    pub fn imagenet(name: &str, crop: usize, mean_std: Option<([f32; 3], [f32; 3])>) -> NetworkDescriptor {
        let resize = if crop == 299 { 342 } else { 256 };
        NetworkDescriptor {
            name: name.to_string(),
            input: Shape::new(3, crop, crop),
            family: DatasetFamily::ImageNet,
            preprocessing: Preprocessing {
                geometry: Geometry::ResizeCenterCrop {
                    resize,
                    crop,
                    interpolation: Interpolation::Bilinear,
                },
                normalize: normalize(mean_std),
            },
            classes: 1000,
            search_grid: SearchGrid::IMAGENET,
        }
    }

    /// A CIFAR-10 classifier on 32x32 images normalised with `mean_std` (ImageNet's when None,
    /// as akamaster trained the CIFAR ResNets).
    pub fn cifar10(name: &str, mean_std: Option<([f32; 3], [f32; 3])>) -> NetworkDescriptor {
        NetworkDescriptor {
            name: name.to_string(),
            input: Shape::new(3, 32, 32),
            family: DatasetFamily::Cifar10,
            preprocessing: Preprocessing {
                geometry: Geometry::CIFAR,
                normalize: normalize(mean_std),
            },
            classes: 10,
            search_grid: SearchGrid::CIFAR,
        }
    }

    /// The digits CNN of datasets/digits: pixels 0..16 scaled to [0, 1], then the training
    /// set's mean/std (scripts/train_digits.py; one grayscale plane, only the first entry is
    /// used). Not in the paper: its activations stay below ~8, so the search starts at 8, step 1.
    pub fn digits(name: &str) -> NetworkDescriptor {
        NetworkDescriptor {
            name: name.to_string(),
            input: Shape::new(1, 8, 8),
            family: DatasetFamily::Digits,
            preprocessing: Preprocessing {
                geometry: Geometry::Exact { width: 8, height: 8 },
                normalize: Normalize {
                    mean: [0.305_505_93; 3],
                    std: [0.376_510_2; 3],
                    max_value: 16.0,
                },
            },
            classes: 10,
            search_grid: SearchGrid {
                relu: (8.0, 1.0),
                maxpool: (8.0, 1.0),
            },
        }
    }
}
