#!/usr/bin/env python3
"""Write tests/fixtures/cifar10_vgg11_bn_approx_f64.json: the trained CIFAR-10 VGG-11-bn
(../shared/data/cifar10/weights_vgg) on the 1,000 lossless test images, evaluated entirely in
float64 exactly and with every ReLU and max-pool approximated as the paper's official code does
(snu-ccl/approxCNN models/utils_approx.py), at α = 7..14 with its published polynomials
(../shared/data/approxcnn_coeffs):

- ReLU(x) ≈ x(1 + p(x/B_relu))/2, p the composite (power basis, lowest degree first per stage;
  evaluated in float64 as t·q(t²) by Horner instead of the official power sums, dropping the files'
  even coefficients, all below 1e-40: the same numbers to ~1e-12).
- 2x2 max-pool: the window's values x0..x3 (row-major) rescaled by x·s + 1/2 with
  s = (1 − 4·2^-α)/(2·B_max), max(max(x0, x1), max(x2, x3)) with max(a, b) ≈ ((a + b) + (a − b)p(a − b))/2,
  then (m − 1/2)/s.
- B as the official search finds it: B_relu = B_max = 50; whenever an input of a ReLU (max-pool)
  exceeds its B the whole set is evaluated again with that B raised by 5.

Per α it stores the B found, every (B_relu, B_max) tried, top-1 and the 1,000 predictions; and
the float64 exact predictions. Run by hand from the repository root (a few minutes on 2 cores):

    /work/main/.venv/bin/python scripts/make_vgg_approx_fixture.py
"""

import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import CIFAR_MEAN, CIFAR_STD, load_cifar_vgg, load_composite, load_lossless, normalise  # noqa: E402

ALPHAS = [10, 11, 12, 13, 14, 7, 8, 9]  # the tested ones first; the file is rewritten after each
B_START, B_STEP = 50.0, 5.0


class OutOfRange(Exception):
    def __init__(self, kind):
        self.kind = kind


def odd_coefficients(stages):
    """Each stage's odd-power coefficients c1, c3, ...; the files' even ones are noise (< 1e-40)."""
    for c in stages:
        assert c[0::2].abs().max() < 1e-20, "a stage with real even coefficients"
    return [[float(v) for v in c[1::2]] for c in stages]


def sign(stages, t):
    """p(t) = t·q(t²) per stage, q by Horner in place (float64)."""
    for odd in stages:
        t2 = t * t
        acc = torch.full_like(t, odd[-1])
        for c in reversed(odd[:-1]):
            acc.mul_(t2).add_(c)
        t = acc.mul_(t)
    return t


class Approx:
    def __init__(self, stages, alpha, b_relu, b_max):
        self.stages, self.alpha, self.b_relu, self.b_max = stages, alpha, b_relu, b_max

    def relu(self, x):
        if x.abs().max().item() > self.b_relu:
            raise OutOfRange("relu")
        return x * (1.0 + sign(self.stages, x / self.b_relu)) / 2.0

    def max_pool2(self, x):
        if x.abs().max().item() > self.b_max:
            raise OutOfRange("max")
        s = (1.0 - 4.0 * 0.5**self.alpha) / (2.0 * self.b_max)
        v = [x[:, :, i::2, j::2] * s + 0.5 for i in (0, 1) for j in (0, 1)]

        def amax(a, b):
            return (a + b + (a - b) * sign(self.stages, a - b)) / 2.0

        return (amax(amax(v[0], v[1]), amax(v[2], v[3])) - 0.5) / s


@torch.no_grad()
def run(model, x, approx=None, batch=100):
    """Logits of model (float64) with its ReLUs / max-pools replaced by approx's."""
    out = []
    for i in range(0, x.shape[0], batch):
        h = x[i: i + batch]
        for layer in model.features:
            if isinstance(layer, nn.ReLU):
                h = approx.relu(h) if approx else torch.relu(h)
            elif isinstance(layer, nn.MaxPool2d):
                h = approx.max_pool2(h) if approx else nn.functional.max_pool2d(h, 2)
            else:
                h = layer(h)
        out.append(model.classifier(torch.flatten(h, 1)))
    return torch.cat(out)


def main():
    data = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")
    data = os.environ.get("POLYCNN_DATA", data)
    torch.set_num_threads(2)
    model = load_cifar_vgg(data).double()
    imgs, labels = load_lossless(data)
    x = normalise(imgs, CIFAR_MEAN, CIFAR_STD).double()
    exact = run(model, x).argmax(1)
    result = {"generator": "scripts/make_vgg_approx_fixture.py", "labels": labels.tolist(),
              "exact": {"top1": int((exact == labels).sum()), "predictions": exact.tolist()}, "approx": {}}
    print(f"exact f64: {result['exact']['top1']}/1000")
    for alpha in ALPHAS:
        stages = odd_coefficients(load_composite(data, alpha)[1])
        b_relu, b_max, tried = B_START, B_START, []
        while True:
            tried.append([b_relu, b_max])
            try:
                pred = run(model, x, Approx(stages, alpha, b_relu, b_max)).argmax(1)
                break
            except OutOfRange as e:
                if e.kind == "relu":
                    b_relu += B_STEP
                else:
                    b_max += B_STEP
        top1 = int((pred == labels).sum())
        result["approx"][str(alpha)] = {"b_relu": b_relu, "b_max": b_max, "tried": tried, "top1": top1,
                                        "predictions": pred.tolist()}
        print(f"alpha={alpha}: B_relu={b_relu} B_max={b_max} tried={tried} top-1 {top1}/1000", flush=True)
        out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                           "cifar10_vgg11_bn_approx_f64.json")
        with open(out, "w") as f:
            json.dump(result, f)


if __name__ == "__main__":
    main()
