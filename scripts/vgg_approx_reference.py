#!/usr/bin/env python3
"""Float64 reference of the approximate CIFAR-10 VGG-11-bn for tests/vgg_approx.rs.

Runs the project's trained VGG-11-bn (../shared/data/cifar10/weights_vgg) on the 1,000 lossless
test images entirely in float64, with every ReLU replaced by x(1 + p(x/B_relu))/2 and every 2x2
max-pool by the paper's tree of max(a, b) = ((a+b) + (a-b)p(a-b))/2 on inputs rescaled by
x*s + 1/2, s = (1 - 4*2^-alpha)/(2*B_max), p the paper's published composite (approxcnn_coeffs,
power basis). B is found by the official code's search (main_cifar10.py): start at 50/50, run the
test set in batches of 128 from the first image, and at the first site (forward order) of the
first batch whose input leaves [-B, B] raise that kind's B by 5 and start over.

Writes tests/fixtures/cifar10_vgg11_bn_approx_f64.json: per alpha the B found, every B tried, the
top-1 count and the 1,000 predictions. Independent of the Rust code: PyTorch layers, the official
coefficient files, the official search loop.

    .venv/bin/python scripts/vgg_approx_reference.py --alphas 10 11 12 13 14
    .venv/bin/python scripts/vgg_approx_reference.py --alphas 10 14 --start 4 4 --step 1 \
        --section tight_grid
"""

import argparse
import json
import os
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(__file__))
from make_fixtures import load_cifar_vgg, load_composite, load_lossless, normalise  # noqa: E402

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


class Overflow(Exception):
    def __init__(self, kind, value):
        self.kind, self.value = kind, value


def sign(stages, t):
    """p_k o ... o p_1 (t), each stage by Horner in float64."""
    for c in stages:
        coeffs = c.tolist()
        acc = torch.full_like(t, coeffs[-1])
        for coeff in reversed(coeffs[:-1]):
            acc.mul_(t).add_(coeff)
        t = acc
    return t


def approx_relu(x, stages, bound):
    m = x.abs().max().item()
    if m > bound:
        raise Overflow("relu", m)
    return x * (1.0 + sign(stages, x / bound)) / 2.0


def approx_max(a, b, stages):
    d = a - b
    return ((a + b) + d * sign(stages, d)) / 2.0


def approx_max_pool_2x2(x, stages, alpha, bound):
    m = x.abs().max().item()
    if m > bound:
        raise Overflow("max", m)
    s = (1.0 - 4.0 * 0.5**alpha) / (2.0 * bound)
    # window values in row-major order, as the official extraction loop visits them
    w = [x[:, :, i::2, j::2] * s + 0.5 for i in (0, 1) for j in (0, 1)]
    top = approx_max(approx_max(w[0], w[1], stages), approx_max(w[2], w[3], stages), stages)
    return (top - 0.5) / s


@torch.no_grad()
def approx_forward(model, x, stages, alpha, b_relu, b_max):
    for layer in model.features:
        if isinstance(layer, nn.ReLU):
            x = approx_relu(x, stages, b_relu)
        elif isinstance(layer, nn.MaxPool2d):
            x = approx_max_pool_2x2(x, stages, alpha, b_max)
        else:
            x = layer(x)
    return model.classifier(torch.flatten(x, 1))


def official_search(model, x, stages, alpha, start, step, batch):
    b_relu, b_max = start
    tries = []
    while True:
        try:
            preds = []
            for i in range(0, x.shape[0], batch):
                preds.append(approx_forward(model, x[i : i + batch], stages, alpha, b_relu, b_max).argmax(1))
            tries.append({"relu_bound": b_relu, "maxpool_bound": b_max, "overflow": None})
            return b_relu, b_max, tries, torch.cat(preds)
        except Overflow as e:
            tries.append({"relu_bound": b_relu, "maxpool_bound": b_max, "overflow": e.kind, "max_abs": e.value})
            print(f"  alpha={alpha}: B_relu={b_relu} B_max={b_max}: {e.kind} input {e.value:.3f}", flush=True)
            if e.kind == "relu":
                b_relu += step
            else:
                b_max += step


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures"))
    ap.add_argument("--alphas", type=int, nargs="+", default=[10, 11, 12, 13, 14])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--start", type=float, nargs=2, default=[50.0, 50.0], help="B_relu B_max to start from")
    ap.add_argument("--step", type=float, default=5.0)
    ap.add_argument("--section", default=None, help="store under this key (default: top level, the official grid)")
    args = ap.parse_args()
    torch.set_num_threads(1)  # the development machine is shared
    model = load_cifar_vgg(args.data).double()
    imgs, labels = load_lossless(args.data)
    x = normalise(imgs, CIFAR_MEAN, CIFAR_STD).double()
    path = os.path.join(args.out, "cifar10_vgg11_bn_approx_f64.json")
    result = json.load(open(path)) if os.path.exists(path) else {}
    top = result
    if args.section:
        result = top.setdefault(args.section, {})
    result.update(
        {
            "what": "CIFAR-10 VGG-11-bn (vgg11_bn_cifar10.pth) on the 1,000 lossless test images, float64, "
            "ReLU and 2x2 max-pool approximated with approxcnn_coeffs (official), B from the official "
            "search (grid below, batches of 128); written by scripts/vgg_approx_reference.py",
            "batch": args.batch,
            "grid": {"start": args.start, "step": args.step},
        }
    )
    result.setdefault("alphas", {})
    for alpha in args.alphas:
        t0 = time.time()
        _, stages = load_composite(args.data, alpha)
        b_relu, b_max, tries, preds = official_search(model, x, stages, alpha, tuple(args.start), args.step, args.batch)
        top1 = int((preds == labels).sum())
        print(f"alpha={alpha}: B_relu={b_relu} B_max={b_max} top-1 {top1}/1000 ({time.time() - t0:.0f} s)", flush=True)
        result["alphas"][str(alpha)] = {
            "relu_bound": b_relu,
            "maxpool_bound": b_max,
            "tries": tries,
            "top1": top1,
            "pred": preds.tolist(),
        }
        with open(path, "w") as f:
            json.dump(top, f, separators=(",", ":"))
    print("wrote", path)


if __name__ == "__main__":
    main()
