#!/usr/bin/env python3
"""Write the small PyTorch reference fixtures in tests/fixtures/ that polycnn's Rust tests compare against.

polycnn itself never needs Python. This script is run BY HAND, once, by a developer; CI does NOT run it
(CI has no torch): its outputs are committed to tests/fixtures/ and the Rust tests read those files.
Rerun it only to regenerate them (e.g. after changing what a fixture holds), and update
tests/fixtures/README.md, which describes every file in detail.

How to run (from the repository root; needs the real data in ../shared/data, see its README.md):

    python3 -m venv .venv
    .venv/bin/pip install -r scripts/requirements.txt
    .venv/bin/python scripts/make_fixtures.py            # writes tests/fixtures/
    .venv/bin/python scripts/make_fixtures.py --data /path/to/shared/data --out /tmp/fixtures

What it writes (all arrays are safetensors files; float data F32 little-endian, integer data I64):

1. `<model>_state_dict.txt` for torchvision resnet18, resnet50, resnet152, vgg11_bn, vgg16_bn
   (architectures only, no weights are downloaded): one line per state_dict entry, in state_dict
   order, `name<TAB>[d0,d1,...]<TAB>dtype` with dtype `f32`, or `i64` for BatchNorm's
   `num_batches_tracked` (the marker for those bookkeeping entries).
2. `akamaster_resnet20_logits.safetensors`: the pretrained akamaster CIFAR-10 ResNet-20 (eval mode) on
   the first 16 LOSSLESS test images: `input` [16,3,32,32] (normalised), `logits` [16,10], `labels` [16].
   `cifar10_vgg11_bn_logits.safetensors`: the same for the trained CIFAR VGG-11-bn (its own normalisation).
   `cifar10_first1000_predictions.json`: exact top-1 predictions of akamaster ResNet-20/32/44/56 and
   the CIFAR VGG-11-bn on all 1,000 lossless images, with labels, accuracies and top-1/top-2 margins.
3. Random-weight, reduced-width nets built from torchvision's own classes (torchvision names; only
   the channel widths differ from resnet18 / resnet50-style / vgg11_bn, which would be 45-530 MB):
   `tv_<net>.safetensors` (the state_dict) and `tv_<net>_io.safetensors` (`input`, `logits`).
4. `akamaster_resnet20_approx_relu_a14_b50.safetensors`: ResNet-20 logits with every ReLU replaced by
   the approxCNN paper's composite-polynomial ReLU (alpha=14, B=50) on the same 16 images.
"""

import argparse
import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from PIL import Image
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
from torchvision.models.vgg import VGG, make_layers

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
CIFAR_MEAN = [0.4914, 0.4822, 0.4465]
CIFAR_STD = [0.2470, 0.2435, 0.2616]

N_LOGIT_IMAGES = 16
APPROX_ALPHA = 14
APPROX_B = 50.0


# --------------------------------------------------------------------------------------------------
# akamaster CIFAR ResNet (github.com/akamaster/pytorch_resnet_cifar10, resnet.py), option-A shortcuts.
# The activation is pluggable so the same module runs with the exact or the approximate ReLU.
# --------------------------------------------------------------------------------------------------


class LambdaLayer(nn.Module):
    def __init__(self, lambd):
        super().__init__()
        self.lambd = lambd

    def forward(self, x):
        return self.lambd(x)


class AkaBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, act, stride=1):
        super().__init__()
        self.act = act
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            # option A: subsample by 2, zero-pad planes//4 channels on each side
            self.shortcut = LambdaLayer(
                lambda x: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4), "constant", 0)
            )

    def forward(self, x):
        out = self.act(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        out = self.act(out)
        return out


class AkaResNet(nn.Module):
    def __init__(self, num_blocks, act=F.relu, num_classes=10):
        super().__init__()
        self.act = act
        self.in_planes = 16
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._make_layer(16, num_blocks[0], 1)
        self.layer2 = self._make_layer(32, num_blocks[1], 2)
        self.layer3 = self._make_layer(64, num_blocks[2], 2)
        self.linear = nn.Linear(64, num_classes)

    def _make_layer(self, planes, num_blocks, stride):
        layers = []
        for s in [stride] + [1] * (num_blocks - 1):
            layers.append(AkaBasicBlock(self.in_planes, planes, self._act, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def _act(self, x):  # indirection so that swapping self.act swaps every block's activation
        return self.act(x)

    def forward(self, x):
        out = self._act(self.bn1(self.conv1(x)))
        out = self.layer1(out)
        out = self.layer2(out)
        out = self.layer3(out)
        out = F.avg_pool2d(out, out.size()[3])
        out = out.view(out.size(0), -1)
        return self.linear(out)


AKAMASTER = {
    "resnet20": ("resnet20-12fca82f.th", 3),
    "resnet32": ("resnet32-d509ac18.th", 5),
    "resnet44": ("resnet44-014dd654.th", 7),
    "resnet56": ("resnet56-4bfd9763.th", 9),
}


def load_akamaster(data, name):
    fname, n = AKAMASTER[name]
    path = os.path.join(data, "cifar10", "weights_akamaster", fname)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # legacy (pre-1.6) serialisation on an older torch
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    sd = ckpt["state_dict"]
    sd = {k[len("module."):] if k.startswith("module.") else k: v.float() for k, v in sd.items()}
    model = AkaResNet([n, n, n])
    model.load_state_dict(sd, strict=True)
    return model.eval(), float(ckpt.get("best_prec1", float("nan")))


# --------------------------------------------------------------------------------------------------
# The project's trained CIFAR VGG-11-bn (shared/data/cifar10/weights_vgg/README): torchvision `features`
# (cfg "A", batch norm) then flatten of the 1x1x512 map into a single Linear(512, 10) `classifier`.
# --------------------------------------------------------------------------------------------------

VGG11_CFG = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]


class CifarVGG(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = make_layers(VGG11_CFG, batch_norm=True)
        self.classifier = nn.Linear(512, 10)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


def load_cifar_vgg(data):
    path = os.path.join(data, "cifar10", "weights_vgg", "vgg11_bn_cifar10.pth")
    sd = torch.load(path, map_location="cpu", weights_only=True)
    model = CifarVGG()
    model.load_state_dict(sd, strict=True)
    return model.eval()


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


def load_lossless(data):
    """uint8 [1000,3,32,32] images and int64 [1000] labels of the first 1,000 official test images."""
    d = os.path.join(data, "cifar10", "test_first1000_png")
    png = np.asarray(Image.open(os.path.join(d, "cifar10_batch_50.png")).convert("RGB"))
    assert png.shape == (1000, 1024, 3), png.shape
    imgs = png.reshape(1000, 32, 32, 3).transpose(0, 3, 1, 2).copy()
    text = open(os.path.join(d, "cifar10_labels.js")).read()
    allv = json.loads(text[text.index("["): text.rindex("]") + 1])
    assert len(allv) == 51000, len(allv)
    labels = np.array(allv[50000:51000], dtype=np.int64)
    # known facts from the data README
    assert tuple(png[0, 0]) == (158, 112, 49)
    assert labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    return torch.from_numpy(imgs), torch.from_numpy(labels)


def normalise(imgs_u8, mean, std):
    """pixels/255 then (x - mean) / std, in float32 (as torchvision ToTensor + Normalize)."""
    x = imgs_u8.float() / 255.0
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return ((x - m) / s).contiguous()


@torch.no_grad()
def predict_all(model, x, batch=250):
    return torch.cat([model(x[i: i + batch]) for i in range(0, x.shape[0], batch)])


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


ST_DTYPES = {torch.float32: ("F32", "<f4"), torch.int64: ("I64", "<i8")}


def save_st(out, fname, tensors, metadata=None):
    """Writes a safetensors file byte-for-byte deterministically (the `safetensors` package orders
    `__metadata__` randomly): header keys and data in the given order (so a state_dict keeps its
    state_dict order), header JSON padded with spaces to a multiple of 8 bytes. F32 and I64 only."""
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    for name, t in tensors.items():
        st_dtype, np_dtype = ST_DTYPES[t.dtype]
        blob = t.detach().cpu().contiguous().numpy().astype(np_dtype).tobytes()
        header[name] = {"dtype": st_dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    path = os.path.join(out, fname)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for blob in blobs:
            f.write(blob)
    # Imported here: scripts/bench_pytorch.py imports this module where safetensors may be absent.
    from safetensors.torch import load_file

    check = load_file(path)  # the reference reader must read back exactly what was written
    assert list(check) and all(torch.equal(check[k], tensors[k].detach().cpu()) for k in tensors), path
    return path


def shape_str(t):
    return "[" + ",".join(str(d) for d in t.shape) + "]"


def write_state_dict_listing(out, name, model):
    lines = []
    for k, v in model.state_dict().items():
        if v.dtype == torch.float32:
            dtype = "f32"
        elif v.dtype == torch.int64:
            assert k.endswith("num_batches_tracked"), k
            dtype = "i64"
        else:
            raise ValueError(f"{k}: unexpected dtype {v.dtype}")
        lines.append(f"{k}\t{shape_str(v)}\t{dtype}")
    path = os.path.join(out, f"{name}_state_dict.txt")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return len(lines)


# --------------------------------------------------------------------------------------------------
# Reduced-width torchvision nets. Built with torchvision's own ResNet / VGG classes (so forward passes,
# module names and state_dict names are torchvision's); only the channel widths are scaled, because
# full-width resnet18 / resnet50 / vgg11_bn weights are 45 / 95 / 530 MB.
# --------------------------------------------------------------------------------------------------


class NarrowResNet(ResNet):
    """torchvision ResNet whose widths are base, 2*base, 4*base, 8*base (torchvision: 64..512).

    torchvision hard-codes a 64-channel stem and fc = Linear(512 * expansion, num_classes); the stem is
    rebuilt with `base` channels just before layer1 is made (so torchvision's weight init covers it),
    and fc is rebuilt after construction. The forward pass is torchvision's unchanged:
    conv1 7x7/2 pad 3, bn1, relu, maxpool 3x3/2 pad 1, layer1..4, adaptive avgpool 1x1, flatten, fc.
    """

    def __init__(self, block, layers, base, num_classes=10):
        self._base = base
        self._stem_done = False
        super().__init__(block, layers, num_classes=num_classes)
        self.fc = nn.Linear(8 * base * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        if not self._stem_done:
            self.conv1 = nn.Conv2d(3, self._base, kernel_size=7, stride=2, padding=3, bias=False)
            self.bn1 = self._norm_layer(self._base)
            self.inplanes = self._base
            self._stem_done = True
        return super()._make_layer(block, planes * self._base // 64, blocks, stride, dilate)


def narrow_vgg11_bn(base, hidden, num_classes=10):
    """torchvision VGG with cfg "A" scaled by base/64, batch norm, and a classifier of the same shape
    as torchvision's (Linear(C*7*7, hidden), ReLU, Dropout, Linear(hidden, hidden), ReLU, Dropout,
    Linear(hidden, num_classes): indices 0, 3, 6) with hidden instead of 4096."""
    cfg = [v if v == "M" else v * base // 64 for v in VGG11_CFG]
    model = VGG(make_layers(cfg, batch_norm=True), num_classes=num_classes, init_weights=True)
    c = cfg[-2]
    model.classifier = nn.Sequential(
        nn.Linear(c * 7 * 7, hidden),
        nn.ReLU(True),
        nn.Dropout(p=0.5),
        nn.Linear(hidden, hidden),
        nn.ReLU(True),
        nn.Dropout(p=0.5),
        nn.Linear(hidden, num_classes),
    )
    return model, cfg


@torch.no_grad()
def randomise(model, gen, in_shape, calib_batches=4):
    """Deterministic non-trivial parameters and BatchNorm statistics.

    - BN weight ~ U(0.5, 1.5), BN bias ~ N(0, 0.2^2); conv/linear biases ~ N(0, 0.1^2).
    - BN running stats calibrated on `calib_batches` random N(0,1) batches in train mode (cumulative
      average, momentum=None), so activations stay O(1) in depth; then perturbed so they are NOT the
      batch statistics: mean += 0.3*sqrt(var)*N(0,1), var *= U(0.5, 2).
    - num_batches_tracked ends up = calib_batches.
    """
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
            m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=gen))
            m.reset_running_stats()
            m.momentum = None
        elif isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
            m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
    model.train()
    for _ in range(calib_batches):
        model(torch.randn((8,) + tuple(in_shape), generator=gen))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.1
            std = m.running_var.sqrt()
            m.running_mean.add_(0.3 * std * torch.randn(std.shape, generator=gen))
            m.running_var.mul_(torch.rand(std.shape, generator=gen) * 1.5 + 0.5)
    return model.eval()


# --------------------------------------------------------------------------------------------------
# approxCNN composite-polynomial ReLU (github.com/snu-ccl/approxCNN, models/utils_approx.py)
# --------------------------------------------------------------------------------------------------


def load_composite(data, alpha):
    d = os.path.join(data, "approxcnn_coeffs")
    degs = [int(s) for s in open(os.path.join(d, f"deg_{alpha}.txt")).read().split()]
    coeffs = [float(s) for s in open(os.path.join(d, f"coeff_{alpha}.txt")).read().split()]
    assert len(coeffs) == sum(dg + 1 for dg in degs), (len(coeffs), degs)
    stages, i = [], 0
    for dg in degs:
        stages.append(torch.tensor(coeffs[i: i + dg + 1], dtype=torch.float64))
        i += dg + 1
    return degs, stages


class ApproxReLU:
    """ReLU(x) ~= x * (1 + p(x/B)) / 2, p = p_k o ... o p_1 (power basis, lowest degree first).

    p is evaluated entirely in float64 as sum_k c_k t^k (the official code's power-sum form), its
    result cast to float32, then x * (1 + sgn) / 2 in float32, as the official ReLU_approx does.
    (The official sgn_approx calls `x.double()` without assigning it, so its first stage's powers are
    in fact float32; here every stage is float64.) Raises if any |x| > B, as the official code does.
    Records max |x| of every call in call order.
    """

    def __init__(self, stages, B):
        self.stages = stages
        self.B = B
        self.max_abs = []

    def sign(self, x):
        t = x.double() / self.B
        for c in self.stages:
            powers = t.unsqueeze(-1) ** torch.arange(c.numel(), dtype=torch.float64)
            t = (powers * c).sum(-1)
        return t.float()

    def __call__(self, x):
        m = x.abs().max().item()
        self.max_abs.append(m)
        if m > self.B:
            raise ValueError(f"approximate ReLU input |x| = {m} exceeds B = {self.B}")
        return x * (1.0 + self.sign(x)) / 2.0


# --------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.normpath(os.path.join(root, "..", "shared", "data")))
    ap.add_argument("--out", default=os.path.join(root, "tests", "fixtures"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, data {args.data}")

    # 1. state_dict listings -----------------------------------------------------------------------
    for name in ["resnet18", "resnet50", "resnet152", "vgg11_bn", "vgg16_bn"]:
        n = write_state_dict_listing(args.out, name, torchvision.models.get_model(name, weights=None))
        print(f"[1] {name}_state_dict.txt: {n} entries")

    # 2. real CIFAR-10 nets --------------------------------------------------------------------------
    imgs, labels = load_lossless(args.data)
    x_imnet = normalise(imgs, IMAGENET_MEAN, IMAGENET_STD)
    x_cifar = normalise(imgs, CIFAR_MEAN, CIFAR_STD)
    k = N_LOGIT_IMAGES

    preds = {
        "images": "first 1,000 official CIFAR-10 test images, test_first1000_png/cifar10_batch_50.png",
        "labels": labels.tolist(),
        "models": {},
    }

    def record(name, logits, weights, preprocessing, extra=None):
        top2 = logits.topk(2, dim=1)
        pred = top2.indices[:, 0]
        correct = int((pred == labels).sum())
        entry = {
            "weights": weights,
            "preprocessing": preprocessing,
            "pred": pred.tolist(),
            "margin": [round(float(v), 6) for v in (top2.values[:, 0] - top2.values[:, 1])],
            "correct": correct,
            "accuracy": correct / len(labels),
        }
        entry.update(extra or {})
        preds["models"][name] = entry
        print(f"[2] {name}: top-1 {correct}/1000 = {100 * correct / 1000:.1f}%  "
              f"(min margin {min(entry['margin']):.2e})")

    aka = {}
    for name in AKAMASTER:
        model, best = load_akamaster(args.data, name)
        aka[name] = model
        logits = predict_all(model, x_imnet)
        record(name, logits, "cifar10/weights_akamaster/" + AKAMASTER[name][0],
               "imagenet mean/std", {"best_prec1_in_file": best})
        if name == "resnet20":
            assert torch.allclose(logits[:k], model(x_imnet[:k]).detach(), atol=1e-5)
            exact20 = model(x_imnet[:k]).detach()
            save_st(args.out, "akamaster_resnet20_logits.safetensors",
                    {"input": x_imnet[:k], "logits": exact20, "labels": labels[:k]},
                    {"model": "akamaster resnet20 (resnet20-12fca82f.th), eval",
                     "images": f"first {k} of test_first1000_png", "preprocessing": "/255, imagenet mean/std"})

    vgg = load_cifar_vgg(args.data)
    vlogits = predict_all(vgg, x_cifar)
    record("vgg11_bn", vlogits, "cifar10/weights_vgg/vgg11_bn_cifar10.pth", "cifar mean/std")
    with torch.no_grad():
        save_st(args.out, "cifar10_vgg11_bn_logits.safetensors",
                {"input": x_cifar[:k], "logits": vgg(x_cifar[:k]), "labels": labels[:k]},
                {"model": "cifar10 vgg11_bn (vgg11_bn_cifar10.pth), eval",
                 "images": f"first {k} of test_first1000_png", "preprocessing": "/255, cifar mean/std"})
    with open(os.path.join(args.out, "cifar10_first1000_predictions.json"), "w") as f:
        json.dump(preds, f, separators=(",", ":"))
        f.write("\n")

    # 3. random reduced-width torchvision nets -------------------------------------------------------
    specs = [
        # file stem, constructor, input shape, description
        ("tv_resnet18_w6", lambda: NarrowResNet(BasicBlock, [2, 2, 2, 2], base=6), (3, 48, 48),
         "torchvision ResNet(BasicBlock,[2,2,2,2]) (resnet18 layout), widths 6/12/24/48, stem 6, fc 48->10"),
        ("tv_bottleneck_w6", lambda: NarrowResNet(Bottleneck, [1, 2, 1, 1], base=6), (3, 48, 48),
         "torchvision ResNet(Bottleneck,[1,2,1,1]), planes 6/12/24/48 (out 24/48/96/192), stem 6, "
         "fc 192->10, groups 1, width_per_group 64 (bottleneck width = planes)"),
        ("tv_vgg11_bn_w4", lambda: narrow_vgg11_bn(base=4, hidden=32)[0], (3, 80, 80),
         "torchvision VGG(make_layers(cfg A scaled by 1/16, batch_norm=True)) = "
         "[4,M,8,M,16,16,M,32,32,M,32,32,M], adaptive avgpool 7x7, classifier "
         "Linear(1568,32),ReLU,Dropout,Linear(32,32),ReLU,Dropout,Linear(32,10)"),
    ]
    for i, (stem, ctor, in_shape, desc) in enumerate(specs):
        torch.manual_seed(1000 + i)
        gen = torch.Generator().manual_seed(2000 + i)
        model = randomise(ctor(), gen, in_shape)
        x = torch.randn((2,) + in_shape, generator=gen)
        with torch.no_grad():
            logits = model(x)
        sd = model.state_dict()
        meta = {"description": desc, "seed": 2000 + i, "input_shape": list((2,) + in_shape)}
        save_st(args.out, f"{stem}.safetensors", dict(sd), meta)
        save_st(args.out, f"{stem}_io.safetensors", {"input": x, "logits": logits}, meta)
        nparam = sum(v.numel() for v in sd.values() if v.dtype == torch.float32)
        print(f"[3] {stem}: {len(sd)} entries, {nparam} floats, logits |max| {logits.abs().max():.3f}, "
              f"std {logits.std():.3f}")

    # 4. approximate ReLU ResNet-20 ------------------------------------------------------------------
    degs, stages = load_composite(args.data, APPROX_ALPHA)
    act = ApproxReLU(stages, APPROX_B)
    r20 = aka["resnet20"]
    r20.act = act
    with torch.no_grad():
        approx = r20(x_imnet[:k])
    r20.act = F.relu
    relu_max = torch.tensor(act.max_abs, dtype=torch.float32)
    assert relu_max.numel() == 19, relu_max.numel()
    diff = (approx - exact20).abs().max().item()
    same = int((approx.argmax(1) == exact20.argmax(1)).sum())
    save_st(args.out, f"akamaster_resnet20_approx_relu_a{APPROX_ALPHA}_b{int(APPROX_B)}.safetensors",
            {"logits": approx, "relu_max_abs": relu_max},
            {"model": "akamaster resnet20, every ReLU approximated", "alpha": APPROX_ALPHA, "B": APPROX_B,
             "degrees": degs, "input": "akamaster_resnet20_logits.safetensors:input"})
    print(f"[4] approx ReLU alpha={APPROX_ALPHA} B={APPROX_B}: degrees {degs}, max |x| over all ReLU inputs "
          f"{relu_max.max():.3f}, max |logit - exact| {diff:.3e}, same top-1 {same}/{k}")

    total = 0
    for f in sorted(os.listdir(args.out)):
        size = os.path.getsize(os.path.join(args.out, f))
        total += size
        print(f"  {size:>9}  {f}")
    print(f"  {total:>9}  total ({total / 2**20:.2f} MiB)")


if __name__ == "__main__":
    sys.exit(main())
