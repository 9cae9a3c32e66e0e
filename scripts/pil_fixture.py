#!/usr/bin/env python3
"""Write the PIL/torchvision preprocessing fixtures in tests/fixtures/pil/ that tests/data.rs compares against.

polycnn never needs Python: this script is run BY HAND by a developer (CI does not run it) and its
small outputs are committed. Run from the repository root (needs the real data in ../shared/data):

    .venv/bin/python scripts/pil_fixture.py                       # writes tests/fixtures/pil/
    .venv/bin/python scripts/pil_fixture.py --all /tmp/pil_all    # every train_sample250 image (not committed)

What it writes to tests/fixtures/pil/:

- `<stem>.crop.png`: the uint8 224x224 RGB crop that torchvision's ImageNet eval transform produces on the
  PIL image: `Image.open(f).convert("RGB")`, `Resize(256)` (PIL bilinear, antialiased), `CenterCrop(224)`.
  The images are chosen to cover every JPEG layout among the 250 full-resolution ImageNet images:
  4:4:4, 4:2:0 and 4:2:2 chroma, grayscale (mode L), portrait/landscape, and a small image that Resize(256)
  must UPsample.
- `<stem>.window.png`: a 64x64 window (top-left at `window` in the JSON) of the full decoded image
  (`convert("RGB")`, before any resizing): the decode-only reference, to measure JPEG decoder differences
  separately from the resize.
- `<stem>.window.resize_<w>x<h>.png`: PIL's bilinear resize of that window to a smaller and a larger size:
  with the window PNG as input (exactly PIL's decode), our resize must be bit-exact.
- `n03825788_nipple.full.png`: the whole PIL decode of the small (106x150) image, so the full
  Resize(256)+CenterCrop(224) geometry can be checked bit-exactly against `n03825788_nipple.crop.png`.
- `progressive.jpg` + `progressive.rgb.png`: a window of a real image re-encoded as a progressive 4:2:0
  JPEG, and PIL's decode of it. polycnn's libjpeg-exact decoder covers baseline files only; progressive
  ones go to zune-jpeg, whose (small) differences this fixture measures.
- `restart.jpg` + `restart.rgb.png`: the same window as a baseline 4:2:0 JPEG with a restart marker after
  every MCU row (exercises restart handling of the libjpeg-exact decoder), and PIL's decode of it.
- `cmyk.jpg` + `cmyk.rgb.png`: a small synthetic CMYK JPEG as PIL writes it (Adobe APP14 marker, inverted
  samples) and PIL's `convert("RGB")` of it. None of the 250 real images is CMYK, hence the synthetic one.
- `cifar_py_batch_p2.pkl`, `cifar_py_batch_p5.pkl`: tiny CIFAR-10 python batches (4 images) pickled by
  Python 3 with protocol 2 and protocol 5 (numpy arrays go through `_reconstruct` / `_frombuffer`);
  `cifar_py_batch.json` holds their labels and the pixel sum for the test.
- `manifest.json`: one entry per image: file, source path (relative to shared/data), PIL mode, JPEG
  sampling factors, original size, resized size, crop offsets, window.

With `--all DIR`, it also writes, for every image matching `--all-glob` (default: the 250 images), `DIR/<stem>.crop.rgb` and
`DIR/<stem>.full.rgb` (raw interleaved RGB) and `DIR/manifest.json`, for the ignored full-parity test
(`POLYCNN_PIL_ALL=DIR cargo test --release --test data -- --ignored`).
"""

import argparse
import json
import pickle
from pathlib import Path

import numpy as np
from PIL import Image
from torchvision import transforms

FIXTURES = [
    "n01440764_tench.JPEG",  # 4:4:4, 500x375 landscape
    "n01494475_hammerhead.JPEG",  # 4:4:4, 333x500 portrait
    "n03109150_corkscrew.JPEG",  # largest (1200x1600): strong downscale
    "n01644900_tailed_frog.JPEG",  # 4:2:0
    "n01667778_terrapin.JPEG",  # 4:2:0
    "n03770679_minivan.JPEG",  # 4:2:2, the only one
    "n03825788_nipple.JPEG",  # 106x150: Resize(256) upsamples
    "n04008634_projectile.JPEG",  # grayscale (mode L)
]
WINDOW = 64
WINDOW_RESIZES = [(27, 38), (87, 100)]
FULL_DECODE = "n03825788_nipple.JPEG"


def eval_transform():
    return transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224)])


def describe(path, data_root):
    im = Image.open(path)
    sampling = [list(layer[1:3]) for layer in getattr(im, "layer", [])]
    return {"source": str(path.relative_to(data_root)), "mode": im.mode, "sampling": sampling, "size": list(im.size)}


def crop_and_full(path):
    rgb = Image.open(path).convert("RGB")
    resized = transforms.Resize(256)(rgb)
    crop = transforms.CenterCrop(224)(resized)
    return rgb, resized, crop


def write_fixtures(data_root, out):
    out.mkdir(parents=True, exist_ok=True)
    manifest = []
    for name in FIXTURES:
        path = data_root / "imagenet/train_sample250" / name
        entry = describe(path, data_root)
        rgb, resized, crop = crop_and_full(path)
        stem = name.rsplit(".", 1)[0]
        crop.save(out / f"{stem}.crop.png", optimize=True)
        w, h = rgb.size
        win = [max(0, (w - WINDOW) // 2), max(0, (h - WINDOW) // 2)]
        window = rgb.crop((win[0], win[1], win[0] + WINDOW, win[1] + WINDOW))
        window.save(out / f"{stem}.window.png", optimize=True)
        for w, h in WINDOW_RESIZES:
            window.resize((w, h), Image.BILINEAR).save(out / f"{stem}.window.resize_{w}x{h}.png", optimize=True)
        if name == FULL_DECODE:
            rgb.save(out / f"{stem}.full.png", optimize=True)
        entry.update({"file": stem, "resized": list(resized.size), "window": win + [WINDOW, WINDOW]})
        manifest.append(entry)
    write_cmyk(out)
    write_reencoded(data_root, out)
    write_cifar_pickles(out)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


def write_cmyk(out):
    # A smooth gradient with texture so both chroma and the K channel vary; PIL writes CMYK JPEGs with an
    # Adobe APP14 marker and inverted samples, which is what real CMYK files from Photoshop look like.
    y, x = np.mgrid[0:40, 0:56]
    cmyk = np.stack([x * 4, y * 6, (x + y) * 2 % 256, (x * y) % 97], axis=-1).astype(np.uint8)
    Image.fromarray(cmyk, mode="CMYK").save(out / "cmyk.jpg", quality=90)
    Image.open(out / "cmyk.jpg").convert("RGB").save(out / "cmyk.rgb.png")


def write_reencoded(data_root, out):
    rgb = Image.open(data_root / "imagenet/train_sample250" / FIXTURES[0]).convert("RGB").crop((100, 80, 196, 152))
    rgb.save(out / "progressive.jpg", quality=85, progressive=True, subsampling=2)
    Image.open(out / "progressive.jpg").convert("RGB").save(out / "progressive.rgb.png")
    rgb.save(out / "restart.jpg", quality=85, subsampling=2, restart_marker_rows=1)
    Image.open(out / "restart.jpg").convert("RGB").save(out / "restart.rgb.png")


def write_cifar_pickles(out):
    rng = np.random.default_rng(7)
    data = rng.integers(0, 256, size=(4, 3072), dtype=np.uint8)
    labels = [3, 8, 0, 9]
    batch = {b"batch_label": b"testing batch 1 of 1", b"labels": labels, b"data": data,
             b"filenames": [b"a.png", b"b.png", b"c.png", b"d.png"]}
    for proto in (2, 5):
        (out / f"cifar_py_batch_p{proto}.pkl").write_bytes(pickle.dumps(batch, protocol=proto))
    meta = {"labels": labels, "pixel_sum": int(data.astype(np.int64).sum()), "first_pixel_rgb":
            [int(data[0, 0]), int(data[0, 1024]), int(data[0, 2048])]}
    (out / "cifar_py_batch.json").write_text(json.dumps(meta) + "\n")


def write_all(data_root, out, pattern):
    out.mkdir(parents=True, exist_ok=True)
    manifest = []
    for path in sorted(data_root.glob(pattern)):
        entry = describe(path, data_root)
        rgb, resized, crop = crop_and_full(path)
        # Unique across folders (CIFAR's class folders all hold 0000.jpg ...).
        stem = str(path.relative_to(data_root).with_suffix("")).replace("/", "__")
        (out / f"{stem}.crop.rgb").write_bytes(np.asarray(crop).tobytes())
        (out / f"{stem}.full.rgb").write_bytes(np.asarray(rgb).tobytes())
        entry.update({"file": stem, "resized": list(resized.size)})
        manifest.append(entry)
    (out / "manifest.json").write_text(json.dumps(manifest) + "\n")


def main():
    root = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=root.parent / "shared/data")
    parser.add_argument("--out", type=Path, default=root / "tests/fixtures/pil")
    parser.add_argument("--all", type=Path, help="also dump every --all-glob image here (raw RGB)")
    parser.add_argument("--all-glob", default="imagenet/train_sample250/*.JPEG", help="relative to --data")
    args = parser.parse_args()
    write_fixtures(args.data.resolve(), args.out)
    if args.all:
        write_all(args.data.resolve(), args.all, args.all_glob)


if __name__ == "__main__":
    main()
