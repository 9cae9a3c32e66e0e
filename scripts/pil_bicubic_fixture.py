#!/usr/bin/env python3
"""Write the PIL bicubic fixtures in tests/fixtures/pil/ that tests/data.rs compares against.

Run by hand from the repository root (needs only Pillow; CI does not run it, its small outputs are
committed):

    .venv/bin/python scripts/pil_bicubic_fixture.py

It starts from PNGs already committed by scripts/pil_fixture.py (PIL's own decodes), so no JPEG
decoder and no shared data are involved:

- `<stem>.window.bicubic_<w>x<h>.png`: `Image.resize((w, h), BICUBIC)` of each `<stem>.window.png`,
  one smaller (antialiased downscale) and one larger size;
- `n03825788_nipple.crop_bicubic_<r>_<c>.png`: torchvision's eval geometry with bicubic resampling,
  `Resize(r, interpolation=BICUBIC)` then `CenterCrop(c)`, on the whole decoded small image (an
  upscale) — torchvision's sizes computed as it does (shorter side r, the other `int(r * long /
  short)`; crop offsets `int(round((len - c) / 2))`).
"""

import json
from pathlib import Path

from PIL import Image

FIXTURES = Path("tests/fixtures/pil")
WINDOW_SIZES = [(27, 38), (87, 100)]
FULL_STEM = "n03825788_nipple"
FULL_GEOMETRY = [(256, 224), (232, 224)]


def resized_size(width, height, size):
    short, long = min(width, height), max(width, height)
    new_long = int(size * long / short)
    return (size, new_long) if width <= height else (new_long, size)


def center_crop(img, crop):
    left = int(round((img.width - crop) / 2.0))
    top = int(round((img.height - crop) / 2.0))
    return img.crop((left, top, left + crop, top + crop))


def main():
    stems = [e["file"] for e in json.loads((FIXTURES / "manifest.json").read_text())]
    for stem in stems:
        window = Image.open(FIXTURES / f"{stem}.window.png").convert("RGB")
        for w, h in WINDOW_SIZES:
            window.resize((w, h), Image.BICUBIC).save(FIXTURES / f"{stem}.window.bicubic_{w}x{h}.png")
    full = Image.open(FIXTURES / f"{FULL_STEM}.full.png").convert("RGB")
    for resize, crop in FULL_GEOMETRY:
        resized = full.resize(resized_size(full.width, full.height, resize), Image.BICUBIC)
        center_crop(resized, crop).save(FIXTURES / f"{FULL_STEM}.crop_bicubic_{resize}_{crop}.png")


if __name__ == "__main__":
    main()
