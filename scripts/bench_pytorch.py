#!/usr/bin/env python3
"""PyTorch's side of `polycnn bench`: the same models (random weights), batch, thread count and
convolution shapes, on the same machine, written as JSON for `polycnn bench --pytorch FILE`, which
prints polycnn's throughput over PyTorch's side by side.

polycnn never needs Python; this script is run by hand to produce the reference numbers.

    /work/main/.venv/bin/python scripts/bench_pytorch.py --threads 2 --batch 8 --out bench_pytorch.json
    cargo run --release -- bench --pytorch bench_pytorch.json --json bench.json

What is timed: an eval-mode eager forward (BatchNorm as separate layers, as a user runs it) under
torch.inference_mode(), one untimed warm-up then --repeats timed batches; and F.conv2d (with bias)
at the ResNet shapes of the bench's convolution section, batch 1. With --device cuda, TF32 is off
so the comparison is fp32 against fp32.
"""

import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import AkaResNet  # noqa: E402  (the akamaster CIFAR ResNet, option-A shortcuts)

CIFAR_BLOCKS = {"resnet20": 3, "resnet32": 5, "resnet44": 7, "resnet56": 9, "resnet110": 18}
IMAGENET = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")

# (in channels, height = width, out channels, kernel): src/bench/kernels.rs resnet_conv_shapes().
CONV_SHAPES = [
    (64, 56, 64, 3),
    (128, 28, 128, 3),
    (256, 14, 256, 3),
    (512, 7, 512, 3),
    (64, 56, 256, 1),
    (256, 56, 64, 1),
    (512, 28, 128, 1),
    (1024, 14, 256, 1),
    (2048, 7, 512, 1),
]


def build(name):
    """(polycnn's model name, eval-mode module, per-image input shape)."""
    if name in CIFAR_BLOCKS:
        n = CIFAR_BLOCKS[name]
        return name, AkaResNet([n, n, n]).eval(), (3, 32, 32)
    if name in IMAGENET:
        return f"{name}_imagenet", getattr(torchvision.models, name)(weights=None).eval(), (3, 224, 224)
    sys.exit(f"unknown model '{name}': expected one of {sorted(CIFAR_BLOCKS) + list(IMAGENET)}")


def synchronize(device):
    if device == "cuda":
        torch.cuda.synchronize()


def seconds_per_call(fn, repeats, device):
    fn()  # warm-up: allocation, kernel selection
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    synchronize(device)
    return (time.perf_counter() - start) / repeats


def bench_networks(names, batch, repeats, device):
    rows = []
    for name in names:
        model_name, model, shape = build(name)
        model = model.to(device)
        x = torch.randn(batch, *shape, device=device)
        with torch.inference_mode():
            seconds = seconds_per_call(lambda: model(x), repeats, device)
        row = {"model": model_name, "batch": batch, "exact_s_per_image": seconds / batch}
        print(f"  {model_name:<20} batch {batch}: {row['exact_s_per_image']:.4f} s/image "
              f"({1 / row['exact_s_per_image']:.1f} images/s)", flush=True)
        rows.append(row)
    return rows


def bench_conv(repeats, device):
    rows = []
    for c, hw, o, k in CONV_SHAPES:
        x = torch.randn(1, c, hw, hw, device=device)
        w = torch.randn(o, c, k, k, device=device)
        b = torch.randn(o, device=device)
        with torch.inference_mode():
            seconds = seconds_per_call(lambda: F.conv2d(x, w, b, padding=k // 2), repeats, device)
        m, kk = hw * hw, c * k * k
        gflops = 2 * m * o * kk / seconds / 1e9
        print(f"  conv {k}x{k} {hw}x{hw} {c}->{o}  M={m} N={o} K={kk}: {seconds * 1e3:.2f} ms ({gflops:.1f} GFLOP/s)",
              flush=True)
        rows.append({"m": m, "n": o, "k": kk, "ms": seconds * 1e3})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet20,resnet56,resnet50,resnet152")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=2, help="timed batches per model")
    parser.add_argument("--conv-repeats", type=int, default=10)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--out", default="bench_pytorch.json")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    load = open("/proc/loadavg").read().strip() if os.path.exists("/proc/loadavg") else None
    print(f"PyTorch {torch.__version__} on {args.device}, {torch.get_num_threads()} threads, load {load}")
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    report = {
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": args.device,
        "load_average": load,
        "networks": bench_networks(names, args.batch, args.repeats, args.device),
        "conv": bench_conv(args.conv_repeats, args.device),
    }
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
