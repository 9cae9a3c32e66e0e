//! torchvision's eval geometry and normalisation, with its exact rounding rules.

use super::resample::{Interpolation, Window, resize_window};
use super::{DataError, ImageU8, RgbImage};

/// What happens to a decoded image before normalisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Geometry {
    /// `Resize(resize, interpolation)` (shorter side → `resize`, PIL antialiased) then
    /// `CenterCrop(crop)`: the ImageNet eval transform with (256, 224, bilinear).
    ResizeCenterCrop {
        resize: usize,
        crop: usize,
        interpolation: Interpolation,
    },
    /// No resampling: the image must already be `width` x `height` (CIFAR-10: 32x32).
    Exact { width: usize, height: usize },
}

impl Geometry {
    pub const IMAGENET: Geometry = Geometry::ResizeCenterCrop {
        resize: 256,
        crop: 224,
        interpolation: Interpolation::Bilinear,
    };
    pub const CIFAR: Geometry = Geometry::Exact { width: 32, height: 32 };
    /// torchvision's Inception-v3 preset: `Resize(342)`, `CenterCrop(299)`.
    pub const INCEPTION: Geometry = Geometry::ResizeCenterCrop {
        resize: 342,
        crop: 299,
        interpolation: Interpolation::Bilinear,
    };

    /// Output (C, H, W).
    pub fn shape(&self) -> [usize; 3] {
        match *self {
            Geometry::ResizeCenterCrop { crop, .. } => [3, crop, crop],
            Geometry::Exact { width, height } => [3, height, width],
        }
    }

    /// A stable description for cache keys; bump the version when the algorithm changes.
    pub fn key(&self) -> String {
        match *self {
            Geometry::ResizeCenterCrop {
                resize,
                crop,
                interpolation,
            } => format!("pil-{}-v1:resize{resize}:crop{crop}", interpolation.name()),
            Geometry::Exact { width, height } => format!("exact:{width}x{height}"),
        }
    }

    /// Applies the geometry to a decoded image; `what` names it in errors.
    pub fn apply(&self, image: &RgbImage, what: &std::path::Path) -> Result<ImageU8, DataError> {
        if image.width == 0 || image.height == 0 || image.data.len() != image.width * image.height * 3 {
            return Err(DataError::new(
                what,
                format!("invalid decoded image {}x{}", image.width, image.height),
            ));
        }
        match *self {
            Geometry::ResizeCenterCrop {
                resize,
                crop,
                interpolation,
            } => {
                let (w, h) = resized_size(image.width, image.height, resize);
                if w < crop || h < crop {
                    // Unreachable with resize >= crop; torchvision would pad, we refuse.
                    return Err(DataError::new(
                        what,
                        format!("resized to {w}x{h}, smaller than the {crop} crop"),
                    ));
                }
                // Only the crop is resampled: memory follows the output, not the aspect ratio.
                let window = Window {
                    left: center_crop_offsets(w, crop),
                    top: center_crop_offsets(h, crop),
                    width: crop,
                    height: crop,
                };
                let cropped = resize_window(&image.data, image.width, image.height, 3, (w, h), window, interpolation);
                Ok(to_chw(&cropped, crop, 0, 0, crop, crop))
            }
            Geometry::Exact { width, height } => {
                if (image.width, image.height) != (width, height) {
                    let got = format!("{}x{}", image.width, image.height);
                    return Err(DataError::new(
                        what,
                        format!("image is {got}, expected {width}x{height}"),
                    ));
                }
                Ok(to_chw(&image.data, width, 0, 0, width, height))
            }
        }
    }
}

/// torchvision `Resize(size)` with an int size: the shorter side becomes `size`, the longer
/// `int(size * long / short)` (truncated, computed as Python's true division).
pub fn resized_size(width: usize, height: usize, size: usize) -> (usize, usize) {
    let (short, long) = if width <= height {
        (width, height)
    } else {
        (height, width)
    };
    let new_long = ((size * long) as f64 / short as f64) as usize;
    if width <= height {
        (size, new_long)
    } else {
        (new_long, size)
    }
}

/// torchvision `CenterCrop`: offset `int(round((len - crop) / 2))` with Python's round-half-to-even,
/// so an odd margin of 2k+1 gives offset k or k+1, whichever is even.
pub fn center_crop_offsets(len: usize, crop: usize) -> usize {
    let margin = len.saturating_sub(crop);
    let half = margin / 2;
    if margin % 2 == 1 && half % 2 == 1 {
        half + 1
    } else {
        half
    }
}

/// Copies a `w` x `h` window at (left, top) of an interleaved RGB image of row length `stride_w`
/// into channel-major planes.
fn to_chw(rgb: &[u8], stride_w: usize, left: usize, top: usize, w: usize, h: usize) -> ImageU8 {
    let mut data = vec![0u8; 3 * w * h];
    let (r, rest) = data.split_at_mut(w * h);
    let (g, b) = rest.split_at_mut(w * h);
    for y in 0..h {
        let row = &rgb[((top + y) * stride_w + left) * 3..][..w * 3];
        for (x, px) in row.chunks_exact(3).enumerate() {
            r[y * w + x] = px[0];
            g[y * w + x] = px[1];
            b[y * w + x] = px[2];
        }
    }
    ImageU8 {
        channels: 3,
        height: h,
        width: w,
        data,
    }
}

/// torchvision `ToTensor` + `Normalize(mean, std)` on a CHW uint8 image.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normalize {
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// The pixel value that maps to 1.0 (255 for 8-bit images; 16 for scikit-learn's digits).
    pub max_value: f32,
}

impl Normalize {
    /// ImageNet statistics: torchvision models and the akamaster CIFAR ResNets.
    pub const IMAGENET: Normalize = Normalize {
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
        max_value: 255.0,
    };
    /// CIFAR-10 statistics used by the project's CIFAR VGG-11-bn.
    pub const CIFAR_VGG: Normalize = Normalize {
        mean: [0.4914, 0.4822, 0.4465],
        std: [0.2470, 0.2435, 0.2616],
        max_value: 255.0,
    };

    /// `(x / max - mean) / std` per channel, in f32 and in torch's operation order (divide,
    /// subtract, divide), so results match torchvision bit for bit.
    pub fn apply(&self, image: &ImageU8) -> Vec<f32> {
        let mut out = Vec::with_capacity(image.data.len());
        self.apply_into(image, &mut out);
        out
    }

    /// Appends the normalised image to `out` (batch assembly without extra copies).
    pub fn apply_into(&self, image: &ImageU8, out: &mut Vec<f32>) {
        let plane = image.height * image.width;
        for (c, channel) in image
            .data
            .chunks_exact(plane.max(1))
            .enumerate()
            .take(image.channels.min(3))
        {
            let (mean, std) = (self.mean[c], self.std[c]);
            out.extend(channel.iter().map(|&v| (f32::from(v) / self.max_value - mean) / std));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torchvision_sizes() {
        assert_eq!(resized_size(500, 375, 256), (341, 256));
        assert_eq!(resized_size(333, 500, 256), (256, 384));
        assert_eq!(resized_size(256, 256, 256), (256, 256));
        // round-half-even: margins 117 (58.5 -> 58), 119 (59.5 -> 60), 160 (80)
        assert_eq!(center_crop_offsets(341, 224), 58);
        assert_eq!(center_crop_offsets(343, 224), 60);
        assert_eq!(center_crop_offsets(384, 224), 80);
        assert_eq!(center_crop_offsets(224, 224), 0);
    }

    #[test]
    fn cache_keys_name_every_preprocessing_choice() {
        // the bilinear key predates the other filters: unchanged, so existing caches stay valid
        assert_eq!(Geometry::IMAGENET.key(), "pil-bilinear-v1:resize256:crop224");
        let bicubic = Geometry::ResizeCenterCrop {
            resize: 256,
            crop: 224,
            interpolation: Interpolation::Bicubic,
        };
        assert_eq!(bicubic.key(), "pil-bicubic-v1:resize256:crop224");
    }
}
