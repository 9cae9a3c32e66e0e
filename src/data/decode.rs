//! Image files → 8-bit interleaved RGB, converting colour the way PIL's `Image.convert("RGB")` does.
//!
//! JPEG: baseline files (almost all of ImageNet and CIFAR) go through `jpeg.rs`, which reproduces
//! libjpeg-turbo (PIL's decoder) bit for bit; the rest (progressive, CMYK, unusual sampling) through
//! zune-jpeg, used directly rather than via the `image` crate because we need raw CMYK samples to apply
//! PIL's CMYK→RGB formula; those differ from PIL by up to ~2 levels. Other formats (PNG) go through `image`.

use std::path::Path;

use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

use super::DataError;

/// An 8-bit RGB image, row-major, interleaved (r, g, b per pixel).
#[derive(Clone, Debug, PartialEq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

/// Reads and decodes an image file; the error names the file.
pub fn decode_file(path: &Path) -> Result<RgbImage, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, "reading image", e))?;
    decode_bytes(&bytes).map_err(|msg| DataError::new(path, msg))
}

/// Decodes JPEG (sniffed from the SOI marker, not the name) or any format the `image` crate has.
pub fn decode_bytes(bytes: &[u8]) -> Result<RgbImage, String> {
    if bytes.starts_with(&[0xFF, 0xD8]) {
        // libjpeg-exact for the common kinds; zune-jpeg for the rest (progressive, CMYK, ...).
        match super::jpeg::decode(bytes)? {
            Some(image) => Ok(image),
            None => decode_jpeg(bytes),
        }
    } else {
        decode_other(bytes)
    }
}

fn decode_jpeg(bytes: &[u8]) -> Result<RgbImage, String> {
    // Strict: PIL refuses truncated or malformed JPEGs ("image file is truncated"); without it zune
    // pads missing data with grey and the corrupt image would silently be classified.
    let options = DecoderOptions::default()
        .set_strict_mode(true)
        .set_max_width(usize::from(u16::MAX))
        .set_max_height(usize::from(u16::MAX));
    let mut decoder = JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    decoder.decode_headers().map_err(|e| format!("invalid JPEG: {e:?}"))?;
    let input = decoder.input_colorspace().ok_or("JPEG without a colour space")?;
    let (width, height) = decoder.dimensions().ok_or("JPEG without dimensions")?;
    // zune limits each side, not their product: the bomb limit is checked before decoding.
    super::jpeg::check_pixel_limit(width, height)?;
    // Ask zune for samples we can convert exactly as PIL does: luma as is, CMYK raw.
    let out = match input {
        ColorSpace::Luma => ColorSpace::Luma,
        ColorSpace::CMYK => ColorSpace::CMYK,
        _ => ColorSpace::RGB,
    };
    decoder.set_options(options.jpeg_set_out_colorspace(out));
    let pixels = decoder.decode().map_err(|e| format!("corrupt JPEG: {e:?}"))?;
    let expected = width * height * out.num_components();
    if pixels.len() != expected {
        return Err(format!("JPEG decoded to {} bytes, expected {expected}", pixels.len()));
    }
    let data = match out {
        ColorSpace::Luma => gray_to_rgb(&pixels),
        ColorSpace::CMYK => adobe_cmyk_to_rgb(&pixels),
        _ => pixels,
    };
    Ok(RgbImage { width, height, data })
}

fn decode_other(bytes: &[u8]) -> Result<RgbImage, String> {
    // The `image` crate's default limits (512 MiB of allocation) keep bombs out.
    let image = image::load_from_memory(bytes).map_err(|e| format!("cannot decode image: {e}"))?;
    // `to_rgb8` replicates grey and drops alpha, as PIL's convert("RGB") does for L, LA and RGBA.
    let rgb = image.to_rgb8();
    Ok(RgbImage {
        width: rgb.width() as usize,
        height: rgb.height() as usize,
        data: rgb.into_raw(),
    })
}

/// PIL's L → RGB: the grey value in all three channels.
fn gray_to_rgb(gray: &[u8]) -> Vec<u8> {
    gray.iter().flat_map(|&g| [g, g, g]).collect()
}

/// CMYK JPEGs in the wild (Photoshop, and PIL's own encoder) carry an Adobe APP14 marker and store
/// inverted samples; PIL reads them as "CMYK;I" (un-inverting) and then converts with
/// `nk = 255 - k; out = nk - round(c * nk / 255)` (its MULDIV255 rounding). zune hands us the stored,
/// inverted samples, so c = 255 - c' and nk = k'.
/// Non-Adobe CMYK files (not inverted) are rare; they would come out as their negative here.
fn adobe_cmyk_to_rgb(cmyk: &[u8]) -> Vec<u8> {
    cmyk.chunks_exact(4)
        .flat_map(|p| {
            let nk = i32::from(p[3]);
            let channel = |stored: u8| (nk - muldiv255(255 - i32::from(stored), nk)).clamp(0, 255) as u8;
            [channel(p[0]), channel(p[1]), channel(p[2])]
        })
        .collect()
}

/// a * b / 255 rounded to nearest, in PIL's integer form.
fn muldiv255(a: i32, b: i32) -> i32 {
    let t = a * b + 128;
    ((t >> 8) + t) >> 8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn muldiv255_rounds_like_division() {
        for a in 0..256 {
            for b in [0, 1, 127, 128, 254, 255] {
                assert_eq!(muldiv255(a, b), ((a * b) as f64 / 255.0).round() as i32, "{a} {b}");
            }
        }
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode_bytes(b"not an image").is_err());
        assert!(decode_bytes(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 16, b'J']).is_err());
    }
}
