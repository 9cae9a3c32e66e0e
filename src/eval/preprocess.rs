//! The preprocessing a run uses: the network descriptor's (torchvision's eval transform for
//! its weights) unless `--resize`, `--crop`, `--interpolation`, `--mean`, `--std` say otherwise,
//! and the warnings about known checkpoints evaluated with a preprocessing they were not
//! published with.

use crate::data::{Geometry, Interpolation, Normalize};
use crate::model::{NetworkDescriptor, Preprocessing};
use serde::Serialize;

/// What the command line changes in the network's preprocessing (None: the descriptor's).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PreprocessingOverrides {
    /// Shorter side after resizing.
    pub resize: Option<usize>,
    /// Center crop size: the network's input size (checked; a graph has a fixed input).
    pub crop: Option<usize>,
    pub interpolation: Option<Interpolation>,
    pub mean: Option<[f32; 3]>,
    pub std: Option<[f32; 3]>,
}

impl PreprocessingOverrides {
    /// The preprocessing of a run of `network` with these overrides.
    pub fn apply(&self, network: &NetworkDescriptor) -> Result<Preprocessing, String> {
        let base = network.preprocessing;
        let geometry = match base.geometry {
            Geometry::ResizeCenterCrop {
                resize,
                crop,
                interpolation,
            } => {
                let (resize, interpolation) = (
                    self.resize.unwrap_or(resize),
                    self.interpolation.unwrap_or(interpolation),
                );
                if let Some(c) = self.crop.filter(|&c| c != crop) {
                    return Err(format!(
                        "--crop {c}: {} takes {crop}x{crop} images (its graph is built for that input size)",
                        network.name
                    ));
                }
                if resize < crop {
                    return Err(format!(
                        "--resize {resize} is smaller than the {crop}x{crop} crop {} takes",
                        network.name
                    ));
                }
                Geometry::ResizeCenterCrop {
                    resize,
                    crop,
                    interpolation,
                }
            }
            Geometry::Exact { width, height } => {
                if self.resize.is_some()
                    || self.interpolation.is_some()
                    || self.crop.is_some_and(|c| (c, c) != (width, height))
                {
                    return Err(format!(
                        "{} reads its {width}x{height} images as they are: --resize, --crop and --interpolation do not apply",
                        network.name
                    ));
                }
                base.geometry
            }
        };
        for (flag, values) in [("--mean", self.mean), ("--std", self.std)] {
            if let Some(v) = values.filter(|v| v.iter().any(|x| !x.is_finite() || (flag == "--std" && *x <= 0.0))) {
                return Err(format!(
                    "{flag} {v:?}: expected finite values (and positive standard deviations)"
                ));
            }
        }
        let normalize = Normalize {
            mean: self.mean.unwrap_or(base.normalize.mean),
            std: self.std.unwrap_or(base.normalize.std),
            max_value: base.normalize.max_value,
        };
        Ok(Preprocessing { geometry, normalize })
    }
}

/// `--mean 0.485,0.456,0.406`: three numbers (one per RGB channel), or one for all three.
pub fn parse_channels(flag: &str, s: &str) -> Result<[f32; 3], String> {
    let values: Vec<f32> = s
        .split(',')
        .map(|t| {
            t.trim()
                .parse::<f32>()
                .map_err(|_| format!("{flag} '{s}': '{t}' is not a number"))
        })
        .collect::<Result<_, _>>()?;
    match values.as_slice() {
        [v] => Ok([*v; 3]),
        [r, g, b] => Ok([*r, *g, *b]),
        _ => Err(format!("{flag} '{s}': expected one or three comma-separated numbers")),
    }
}

/// The preprocessing as the report records it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PreprocessingInfo {
    /// None: the images are used at their size (CIFAR-10, digits).
    pub resize: Option<usize>,
    pub crop: [usize; 2],
    pub interpolation: Option<Interpolation>,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// The pixel value that maps to 1.0 before mean/std.
    pub max_value: f32,
}

impl PreprocessingInfo {
    pub fn of(p: &Preprocessing) -> PreprocessingInfo {
        let (resize, crop, interpolation) = match p.geometry {
            Geometry::ResizeCenterCrop {
                resize,
                crop,
                interpolation,
            } => (Some(resize), [crop, crop], Some(interpolation)),
            Geometry::Exact { width, height } => (None, [width, height], None),
        };
        PreprocessingInfo {
            resize,
            crop,
            interpolation,
            mean: p.normalize.mean,
            std: p.normalize.std,
            max_value: p.normalize.max_value,
        }
    }
}

/// torchvision checkpoints published with another eval transform than the V1 default
/// (`IMAGENET1K_V2`: Resize(232), CenterCrop(224), bilinear): the 8 hex digits their file names
/// end in, which are the start of their SHA-256.
const KNOWN_CHECKPOINTS: &[(&str, &str, usize, Interpolation)] = &[
    ("resnet50 IMAGENET1K_V2", "11ad3fa6", 232, Interpolation::Bilinear),
    ("resnet101 IMAGENET1K_V2", "cd907fc2", 232, Interpolation::Bilinear),
    ("resnet152 IMAGENET1K_V2", "f82ba261", 232, Interpolation::Bilinear),
];

/// Warnings for a known checkpoint (by the hash in its file name, or its SHA-256) evaluated
/// with another resize or filter than it was published with: its exact accuracy then comes out
/// lower than torchvision's figure.
pub fn checkpoint_warnings(weights_file: &str, sha256_hex: &str, preprocessing: &Preprocessing) -> Vec<String> {
    let Geometry::ResizeCenterCrop {
        resize, interpolation, ..
    } = preprocessing.geometry
    else {
        return Vec::new();
    };
    KNOWN_CHECKPOINTS
        .iter()
        .filter(|(_, hash, ..)| sha256_hex.starts_with(hash) || weights_file.contains(&format!("-{hash}.")))
        .filter(|(_, _, want_resize, want_filter)| (resize, interpolation) != (*want_resize, *want_filter))
        .map(|(name, _, want_resize, want_filter)| {
            format!(
                "{weights_file} is torchvision's {name} checkpoint, published with Resize({want_resize}, {}) \
                 but evaluated with Resize({resize}, {}): its exact accuracy will be lower than torchvision's; \
                 pass --resize {want_resize}",
                want_filter.name(),
                interpolation.name()
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Arch;

    fn descriptor(name: &str) -> NetworkDescriptor {
        name.parse::<Arch>().unwrap().descriptor()
    }

    #[test]
    fn overrides_apply_to_the_descriptor() {
        let resnet50 = descriptor("resnet50");
        let same = PreprocessingOverrides::default().apply(&resnet50).unwrap();
        assert_eq!(same, resnet50.preprocessing);
        let v2 = PreprocessingOverrides {
            resize: Some(232),
            interpolation: Some(Interpolation::Bicubic),
            mean: Some([0.5; 3]),
            ..Default::default()
        }
        .apply(&resnet50)
        .unwrap();
        assert_eq!(
            v2.geometry,
            Geometry::ResizeCenterCrop {
                resize: 232,
                crop: 224,
                interpolation: Interpolation::Bicubic
            }
        );
        assert_eq!(
            (v2.normalize.mean, v2.normalize.std),
            ([0.5; 3], Normalize::IMAGENET.std)
        );
        let crop = PreprocessingOverrides {
            crop: Some(256),
            ..Default::default()
        };
        assert!(crop.apply(&resnet50).unwrap_err().contains("224x224"));
        let small = PreprocessingOverrides {
            resize: Some(200),
            ..Default::default()
        };
        assert!(small.apply(&resnet50).unwrap_err().contains("smaller"));
        let cifar = PreprocessingOverrides {
            resize: Some(40),
            ..Default::default()
        };
        assert!(
            cifar
                .apply(&descriptor("resnet20"))
                .unwrap_err()
                .contains("do not apply")
        );
        let bad_std = PreprocessingOverrides {
            std: Some([0.2, 0.0, 0.2]),
            ..Default::default()
        };
        assert!(bad_std.apply(&resnet50).unwrap_err().contains("--std"));
    }

    #[test]
    fn channel_lists() {
        assert_eq!(parse_channels("--mean", "0.5").unwrap(), [0.5; 3]);
        assert_eq!(parse_channels("--std", "0.1, 0.2,0.3").unwrap(), [0.1, 0.2, 0.3]);
        assert!(parse_channels("--std", "0.1,0.2").is_err());
        assert!(parse_channels("--std", "a").unwrap_err().contains("'a'"));
    }

    #[test]
    fn v2_checkpoints_at_the_v1_resize_are_flagged() {
        let v1 = descriptor("resnet50").preprocessing;
        let warned = checkpoint_warnings("weights/resnet50-11ad3fa6.pth", "", &v1);
        assert_eq!(warned.len(), 1);
        assert!(
            warned[0].contains("IMAGENET1K_V2") && warned[0].contains("--resize 232"),
            "{}",
            warned[0]
        );
        // by content, whatever the file is called
        assert_eq!(checkpoint_warnings("mine.pth", "f82ba261aa", &v1).len(), 1);
        // evaluated as published: nothing to say; V1 checkpoints never warn
        let v2 = PreprocessingOverrides {
            resize: Some(232),
            ..Default::default()
        }
        .apply(&descriptor("resnet50"))
        .unwrap();
        assert!(checkpoint_warnings("resnet50-11ad3fa6.pth", "", &v2).is_empty());
        assert!(checkpoint_warnings("resnet50-0676ba61.pth", "0676ba61", &v1).is_empty());
    }
}
