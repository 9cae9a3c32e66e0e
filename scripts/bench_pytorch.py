#!/usr/bin/env python3
"""PyTorch's side of `polycnn bench`: the same models (random weights), batch, thread count and
convolution shapes, on the same machine, written as JSON for `polycnn bench --pytorch FILE`, which
prints polycnn's throughput over PyTorch's side by side.

polycnn never needs Python; this script is run by hand to produce the reference numbers.

    .venv/bin/python scripts/bench_pytorch.py --threads 2 --batch 8 --out bench_pytorch.json
    cargo run --release -- bench --pytorch bench_pytorch.json --json bench.json

What is timed: an eval-mode eager forward (BatchNorm as separate layers, as a user runs it) under
torch.inference_mode(), one untimed warm-up then --repeats timed batches; and F.conv2d (with bias)
at the ResNet shapes of the bench's convolution section, batch 1, after untimed calls for
WARM_UP_SECONDS as polycnn's section does. With --device cuda, TF32 is off
so the comparison is fp32 against fp32.

The peer baseline (--peer-models, α = --alpha): the official approxCNN code's approximate forward
(snu-ccl/approxCNN, models/utils_approx.py) reimplemented with its costs kept: on every ReLU and
max-pool call it reads the degree and coefficient files, checks the range (a device sync),
evaluates each stage by materialising x[..., None] ** arange(d + 1) in the power basis (float64
from the second stage on, as its type promotion does), empties the CUDA cache after each stage,
and builds the max-pool window masks in Python loops. Only the device is a parameter (the
original hard-codes .cuda()). Random weights get BatchNorm statistics measured on random inputs
and B = 1.5 x the largest exact activation, so no range exception stops the forward.
"""

import argparse
import itertools
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import AkaResNet  # noqa: E402  (the akamaster CIFAR ResNet, option-A shortcuts)
from random_torchvision_weights import calibrate_batchnorm  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

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


# Untimed warm-up calls last at least this long, as in `polycnn bench` (src/bench/kernels.rs):
# one call left the first convolution shape 20-30% slow (idle cores waking up).
WARM_UP_SECONDS = 0.2


def seconds_per_call(fn, repeats, device, warm_up_seconds=0.0):
    start = time.perf_counter()
    fn()  # warm-up: allocation, kernel selection
    synchronize(device)
    while time.perf_counter() - start < warm_up_seconds:
        fn()
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
            seconds = seconds_per_call(lambda: F.conv2d(x, w, b, padding=k // 2), repeats, device,
                                       WARM_UP_SECONDS)
        m, kk = hw * hw, c * k * k
        gflops = 2 * m * o * kk / seconds / 1e9
        print(f"  conv {k}x{k} {hw}x{hw} {c}->{o}  M={m} N={o} K={kk}: {seconds * 1e3:.2f} ms ({gflops:.1f} GFLOP/s)",
              flush=True)
        rows.append({"m": m, "n": o, "k": kk, "ms": seconds * 1e3})
    return rows


class Peer:
    """approxCNN's evaluation of sign, ReLU and max-pool (see the module docstring)."""

    def __init__(self, alpha, coeffs_dir, device):
        self.alpha, self.coeffs_dir, self.device = alpha, coeffs_dir, device

    def _read_polynomials(self):
        """The stage degrees and the concatenated power-basis coefficients, read per call."""
        with open(os.path.join(self.coeffs_dir, f"deg_{self.alpha}.txt")) as f:
            degrees = [int(line) for line in f if line.strip()]
        with open(os.path.join(self.coeffs_dir, f"coeff_{self.alpha}.txt")) as f:
            coeffs = [torch.tensor(float(line), dtype=torch.double) for line in f if line.strip()]
        return degrees, coeffs

    def _power_basis(self, x, coeffs):
        c = torch.tensor(coeffs).to(self.device)
        powers = x[..., None] ** torch.arange(c.size(0), device=self.device)
        return torch.sum(powers * c, dim=-1)

    def sign(self, x, bound):
        degrees, coeffs = self._read_polynomials()
        bound = torch.tensor(bound, device=self.device).double()
        if torch.sum(torch.abs(x) > bound) != 0:
            raise RuntimeError(f"approxCNN peer: input {torch.max(torch.abs(x)).item()} beyond B = {bound.item()}")
        x = torch.div(x, bound)  # float32: the original's x.double() result is discarded
        start = 0
        for d in degrees:
            x = self._power_basis(x, coeffs[start:start + d + 1])
            if self.device == "cuda":
                torch.cuda.empty_cache()
            start += d + 1
        return x.float()

    def relu(self, x, bound):
        return x * (1.0 + self.sign(x, bound)) / 2.0

    def _max(self, a, b):
        return (a + b + (a - b) * self.sign(a - b, 1.0)) / 2.0

    def maxpool(self, x, kernel, stride, padding, bound):
        """Zero padding, taps gathered through masks built position by position, the tree of
        approximate maxima on taps rescaled into [0, 1] (2x2: pairs; 3x3: two 4-trees, then the
        last tap)."""
        padded = torch.nn.functional.pad(x, (padding,) * 4)
        n, c, h, w = padded.size()
        rows, cols = (h - kernel) // stride + 1, (w - kernel) // stride + 1
        taps = []
        for i in range(kernel):
            for j in range(kernel):
                mask = torch.zeros(size=padded.size())
                for r, s in itertools.product(range(rows), range(cols)):
                    mask[:, :, i + stride * r, j + stride * s] = 1
                taps.append(torch.reshape(padded[mask.bool().to(padded.device)], (n, c, rows, cols)))
        levels = 2 if kernel == 2 else 3
        scale = (1.0 - 2.0 * levels * 0.5 ** self.alpha) / (bound * 2.0)
        for t in range(len(taps)):
            if torch.sum(torch.abs(taps[t]) > bound) != 0:
                raise RuntimeError(f"approxCNN peer: max-pool input beyond B = {bound}")
            taps[t] = taps[t] * scale + 0.5
        if kernel == 2:
            out = self._max(self._max(taps[0], taps[1]), self._max(taps[2], taps[3]))
        else:
            first = self._max(self._max(taps[0], taps[1]), self._max(taps[2], taps[3]))
            second = self._max(self._max(taps[4], taps[5]), self._max(taps[6], taps[7]))
            out = self._max(self._max(first, second), taps[8])
        return ((out - 0.5) / scale).float()


class PeerReLU(torch.nn.Module):
    def __init__(self, peer, bound):
        super().__init__()
        self.peer, self.bound = peer, bound

    def forward(self, x):
        return self.peer.relu(x, self.bound)


class PeerMaxPool(torch.nn.Module):
    def __init__(self, peer, pool, bound):
        super().__init__()
        self.peer, self.pool, self.bound = peer, pool, bound

    def forward(self, x):
        return self.peer.maxpool(x, self.pool.kernel_size, self.pool.stride, self.pool.padding, self.bound)


def largest_activations(model, x):
    """Largest |input| of the ReLUs and of the max-pools in one exact forward."""
    seen = {"relu": 0.0, "max": 0.0}

    def record(kind):
        return lambda _m, inputs: seen.__setitem__(kind, max(seen[kind], inputs[0].abs().max().item()))

    hooks = [m.register_forward_pre_hook(record("relu")) for m in model.modules() if isinstance(m, torch.nn.ReLU)]
    hooks += [m.register_forward_pre_hook(record("max")) for m in model.modules() if isinstance(m, torch.nn.MaxPool2d)]
    if isinstance(model, AkaResNet):
        inner = model.act
        model.act = lambda t: (seen.__setitem__("relu", max(seen["relu"], t.abs().max().item())), inner(t))[1]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    if isinstance(model, AkaResNet):
        model.act = inner
    return seen


def to_peer(model, peer, bounds):
    """Every ReLU and max-pool of `model` replaced by the peer's approximation."""
    if isinstance(model, AkaResNet):
        model.act = lambda t: peer.relu(t, bounds["relu"])
        return model
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, torch.nn.ReLU):
                setattr(module, name, PeerReLU(peer, bounds["relu"]))
            elif isinstance(child, torch.nn.MaxPool2d):
                setattr(module, name, PeerMaxPool(peer, child, bounds["max"]))
    return model


def bench_peer(names, batch, repeats, alpha, coeffs_dir, device):
    rows = []
    for name in names:
        model_name, model, shape = build(name)
        model = model.to(device)
        calibrate_batchnorm(model, 2, max(batch, 4), shape[1], device)
        x = torch.randn(batch, *shape, device=device)
        seen = largest_activations(model, x)
        bounds = {kind: math.ceil(1.5 * v) + 1.0 for kind, v in seen.items()}
        model = to_peer(model, Peer(alpha, coeffs_dir, device), bounds)
        with torch.no_grad():
            if device == "cuda":
                model(x)  # warm-up (kernel selection); on the CPU one call costs seconds
            synchronize(device)
            start = time.perf_counter()
            for _ in range(repeats):
                model(x)
            synchronize(device)
            seconds = (time.perf_counter() - start) / repeats
        row = {"model": model_name, "batch": batch, "alpha": alpha, "bound_relu": bounds["relu"],
               "approx_s_per_image": seconds / batch}
        print(f"  approxCNN {model_name:<20} batch {batch}, α={alpha}, B={bounds['relu']:.0f}: "
              f"{row['approx_s_per_image']:.4f} s/image", flush=True)
        rows.append(row)
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
    parser.add_argument("--peer-models", default="resnet20,resnet152",
                        help="approxCNN baseline networks ('' for none)")
    parser.add_argument("--peer-batch", type=int, default=2)
    parser.add_argument("--peer-repeats", type=int, default=1)
    parser.add_argument("--alpha", type=int, default=14, help="precision of the approxCNN baseline")
    parser.add_argument("--coeffs-dir", default=os.path.join(REPO, "..", "shared", "data", "approxcnn_coeffs"),
                        help="the paper's deg_A.txt / coeff_A.txt files")
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
    peers = [n.strip() for n in args.peer_models.split(",") if n.strip()]
    if peers:
        report["approxcnn"] = bench_peer(peers, args.peer_batch, args.peer_repeats, args.alpha,
                                         args.coeffs_dir, args.device)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
