#!/usr/bin/env python3
"""Write tests/fixtures/onnx/: ONNX exports of small networks, from both PyTorch exporters, and
nets.json with what tests/onnx.rs compares them against.

Run by hand from the repository root (CI does not; it has no torch):

    python3 -m venv .venv && .venv/bin/pip install -r scripts/requirements.txt onnx onnxscript
    cargo build --release && ./target/release/polycnn poly --alpha 14 --no-gpu --json /tmp/poly14.json
    .venv/bin/python scripts/make_onnx_fixtures.py --poly /tmp/poly14.json

Weights are counter-based (scripts/make_net_fixtures.py's generator, polycnn's
`model::CounterParams`), so most files are committed WITHOUT them: every initializer that is a
state_dict tensor points into `<file>.data` (external data), laid out as the state_dict's float
tensors in order, contiguous, float32 (float16 for the `-f16` file) little-endian; the test
regenerates that file in a temporary folder. Those exports keep BatchNorm as its own node
(TorchScript `do_constant_folding=False`, dynamo `optimize=False`) so that the initializers are
the state_dict's tensors. Two tiny files are exported with the exporters' defaults (BatchNorm folded
by the exporter, weights inline).

The same holds for the two networks with real weights in ../shared/data (akamaster ResNet-20 and
the CIFAR VGG-11-bn): the test writes the `.data` file from the checkpoint, read by polycnn's own
state-dict reader, and compares polycnn's reports for the ONNX and the built-in network.

nets.json, per network: seed, input shape, the state_dict's float tensors (name, shape, kind,
fan-in), PyTorch's float32 logits (exact), and a float64 PyTorch evaluation of the approximate
network — every ReLU x(1 + p(x/B))/2 and every max-pool the paper's tree of
max(a, b) = ((a + b) + (a − b)p(a − b))/2 on zero-padded windows rescaled by x·s + 1/2 — with p
the composite of `polycnn poly --json` (Chebyshev coefficients) at α = 14 and one B for every site
(1.2 × the largest site input of the exact float64 network).
"""

import argparse
import contextlib
import json
import os
import sys
import tempfile
import warnings

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

sys.path.insert(0, os.path.dirname(__file__))
from make_fixtures import AkaResNet, CifarVGG  # noqa: E402
from make_net_fixtures import counter_input, fill_counter_weights, tensor_kinds  # noqa: E402

ALPHA = 14


# --------------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------------


class Block(nn.Module):
    """The popular CIFAR ResNet-18 BasicBlock (kuangliu/pytorch-cifar): 1x1 projection shortcut."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet18(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        layers, cin = [], width
        for i, stride in enumerate([1, 2, 2, 2]):
            cout = width << i
            layers.append(nn.Sequential(Block(cin, cout, stride), Block(cout, cout, 1)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.linear = nn.Linear(cin, 10)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.avg_pool2d(out, 4)
        return self.linear(out.view(out.size(0), -1))


def tv_resnet18():
    return torchvision.models.resnet18(weights=None, num_classes=10)


def mobilenet_v2():
    return torchvision.models.mobilenet_v2(weights=None, width_mult=0.25, num_classes=10)


def googlenet():
    return torchvision.models.googlenet(weights=None, aux_logits=False, transform_input=False,
                                        init_weights=False, num_classes=10)


# name, constructor, input shape, seed, exports: (exporter: torchscript | dynamo | dynamo_nbatch, opset, weights)
#   weights: "external" (state_dict tensors in <file>.data, float32), "external-f16", "inline"
#   (the exporter's defaults: BatchNorm folded by the exporter, weights in the file)
NETS = [
    ("cifar_resnet18_w8", lambda: CifarResNet18(8), [2, 3, 32, 32], 21,
     [("torchscript", 11, "external"), ("torchscript", 17, "external-f16"), ("dynamo", 18, "external")]),
    ("cifar_resnet18_w2", lambda: CifarResNet18(2), [2, 3, 32, 32], 22,
     [("torchscript", 17, "inline"), ("dynamo", 18, "inline"), ("dynamo_nbatch", 20, "external")]),
    ("tv_resnet18", tv_resnet18, [1, 3, 64, 64], 23, [("torchscript", 17, "external"), ("dynamo", 21, "external")]),
    ("mobilenet_v2_w025", mobilenet_v2, [2, 3, 32, 32], 24, [("torchscript", 13, "external"), ("dynamo", 18, "external")]),
    ("googlenet", googlenet, [1, 3, 64, 64], 25, [("torchscript", 17, "external"), ("dynamo", 18, "external")]),
]

# Real weights from ../shared/data: name, constructor, polycnn architecture, checkpoint, exports.
REAL = [
    ("resnet20_akamaster", lambda: AkaResNet([3, 3, 3]), "resnet20",
     "cifar10/weights_akamaster/resnet20-12fca82f.th", [("torchscript", 17, "external"), ("dynamo", 18, "external")]),
    ("vgg11_bn_cifar10", CifarVGG, "vgg11_bn_cifar10", "cifar10/weights_vgg/vgg11_bn_cifar10.pth",
     [("torchscript", 17, "external"), ("dynamo", 18, "external")]),
]


# --------------------------------------------------------------------------------------------------
# The approximate network in float64
# --------------------------------------------------------------------------------------------------


def load_sign(poly_json):
    """The composite p = p_k o ... o p_1 of `polycnn poly --json` at α = 14: per stage the odd
    Chebyshev coefficients c_j of T_{2j+1}(t / half_width) (double-double pairs, summed)."""
    rows = [r for r in json.load(open(poly_json))["rows"] if r["alpha"] == ALPHA]
    stages = [([hi + lo for hi, lo in s["chebyshev"]], s["half_width"]) for s in rows[0]["stages"]]

    def sign(x):
        for coeffs, half_width in stages:
            t = x / half_width
            t_prev, t_cur = torch.ones_like(t), t  # T_0, T_1
            acc = coeffs[0] * t_cur
            for c in coeffs[1:]:
                t_prev, t_cur = t_cur, 2 * t * t_cur - t_prev  # T_{2j}
                t_prev, t_cur = t_cur, 2 * t * t_cur - t_prev  # T_{2j+1}
                acc = acc + c * t_cur
            x = acc
        return x

    return sign


class Sites:
    """Replaces F.relu, F.hardtanh(0, 6) (= ReLU(x) - ReLU(x - 6)) and F.max_pool2d while active:
    exactly, recording the largest |input|, or approximately with bound B."""

    def __init__(self, sign=None, bound=None):
        self.sign, self.bound, self.max_abs = sign, bound, 0.0

    def site(self, x):
        self.max_abs = max(self.max_abs, x.abs().max().item())
        if self.bound is not None and self.max_abs > self.bound:
            raise ValueError(f"site input {self.max_abs} exceeds B = {self.bound}")

    def relu(self, x, inplace=False):
        self.site(x)
        return torch.clamp(x, min=0) if self.sign is None else x * (1 + self.sign(x / self.bound)) / 2

    def hardtanh(self, x, min_val=-1.0, max_val=1.0, inplace=False):
        assert (min_val, max_val) == (0.0, 6.0), "only ReLU6"
        return self.relu(x) - self.relu(x - 6)

    def max_pool2d(self, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
        self.site(x)
        k, s, p = kernel_size, stride or kernel_size, padding
        k, s, p = (v[0] if isinstance(v, (tuple, list)) else v for v in (k, s, p))
        if self.sign is None:
            return EXACT_MAX_POOL(x, k, s, p, 1, ceil_mode)
        out = [pooled_length(n, k, s, p, ceil_mode) for n in x.shape[2:]]
        scale = (1 - {4: 4, 9: 6}[k * k] * 2.0**-ALPHA) / (2 * self.bound)
        xp = F.pad(x, (p, p + k, p, p + k))  # zeros wherever a window leaves the input
        level = [xp[:, :, i:i + s * (out[0] - 1) + 1:s, j:j + s * (out[1] - 1) + 1:s] * scale + 0.5
                 for i in range(k) for j in range(k)]
        while len(level) > 1:
            level = [self.max(level[i], level[i + 1]) if i + 1 < len(level) else level[i]
                     for i in range(0, len(level), 2)]
        return (level[0] - 0.5) / scale

    def max(self, a, b):
        d = a - b
        return ((a + b) + d * self.sign(d)) / 2

    @contextlib.contextmanager
    def active(self):
        saved = F.relu, F.hardtanh, F.max_pool2d
        F.relu, F.hardtanh, F.max_pool2d = self.relu, self.hardtanh, self.max_pool2d
        try:
            yield self
        finally:
            F.relu, F.hardtanh, F.max_pool2d = saved


EXACT_MAX_POOL = F.max_pool2d


def pooled_length(n, k, s, p, ceil_mode):
    """PyTorch's output length (in ceil mode the last window must start inside input or left pad)."""
    span = n + 2 * p - k
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


@torch.no_grad()
def approximate_logits(model, x, sign):
    model64, x64 = model.double(), x.double()
    with Sites().active() as exact:
        model64(x64)
    bound = 1.2 * exact.max_abs
    with Sites(sign, bound).active():
        logits = model64(x64)
    model.float()
    return bound, logits


# --------------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------------


def export(model, x, path, exporter, opset, fold):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "torchscript":
            torch.onnx.export(model, (x,), path, dynamo=False, opset_version=opset, do_constant_folding=fold,
                              input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
        else:
            # "dynamo_nbatch": a symbolic batch dimension (the default export fixes it).
            dynamic = ({0: torch.export.Dim("N", min=1, max=1024)},) if exporter == "dynamo_nbatch" else None
            program = torch.onnx.export(model, (x,), dynamo=True, opset_version=opset, optimize=fold,
                                        dynamic_shapes=dynamic, input_names=["input"], output_names=["logits"],
                                        verbose=False)
            program.save(path)


def strip(model):
    """Drops what exporters record about the exporting machine (stack traces with its paths,
    module paths, doc strings): the graph is what the fixture is."""
    for holder in [model, model.graph, *model.graph.node, *model.graph.input, *model.graph.output,
                   *model.graph.value_info, *model.graph.initializer]:
        for field in ("metadata_props", "doc_string"):
            if field in [f.name for f in holder.DESCRIPTOR.fields]:
                holder.ClearField(field)
    return model


def externalise(path, out, state, dtype):
    """Moves every state_dict initializer of `path` to `<out>.data` at the offset the state_dict
    order gives (checking its values are the state_dict's), and saves the graph alone as `out`."""
    model = onnx.load(path)
    offsets, offset = {}, 0
    for name, tensor in state:
        offsets[name] = offset
        offset += tensor.numel() * (2 if dtype == "float16" else 4)
    found = set()
    for init in model.graph.initializer:
        if init.name not in offsets:
            assert init.ByteSize() < 4096, f"{init.name}: a large initializer outside the state_dict"
            continue
        value = onnx.numpy_helper.to_array(init)
        want = dict(state)[init.name].numpy()
        assert value.shape == want.shape and np.array_equal(value, want.astype(value.dtype)), init.name
        found.add(init.name)
        location = os.path.basename(out) + ".data"
        init.ClearField("raw_data")
        init.ClearField("float_data")
        init.data_location = onnx.TensorProto.EXTERNAL
        del init.external_data[:]
        for key, v in [("location", location), ("offset", offsets[init.name]), ("length", value.nbytes)]:
            entry = init.external_data.add()
            entry.key, entry.value = key, str(v)
    missing = [n for n, _ in state if n not in found]
    assert not missing, f"state_dict tensors not initializers: {missing[:5]}"
    onnx.save(strip(model), out)


def float_state(model):
    return [(n, t) for n, t in model.state_dict().items() if not n.endswith("num_batches_tracked")]


def tensor_list(model):
    kinds = tensor_kinds(model)
    out = []
    for name, t in float_state(model):
        kind = kinds[name]
        out.append([name, list(t.shape), kind[0] if isinstance(kind, tuple) else kind,
                    kind[1] if isinstance(kind, tuple) else 0])
    return out


def export_files(model, x, name, exports, out_dir, tmp):
    files = []
    for exporter, opset, weights in exports:
        suffix = {"external": "", "external-f16": "_f16", "inline": ""}[weights]
        fname = f"{name}_{exporter}{opset}{suffix}.onnx"
        raw = os.path.join(tmp, fname)
        if weights == "external-f16":
            half = model.half()
            export(half, x.half(), raw, exporter, opset, fold=False)
            externalise(raw, os.path.join(out_dir, fname), float_state(half), "float16")
            model.float()
        elif weights == "external":
            export(model, x, raw, exporter, opset, fold=False)
            externalise(raw, os.path.join(out_dir, fname), float_state(model), "float32")
        else:
            export(model, x, raw, exporter, opset, fold=True)
            onnx.save(strip(onnx.load(raw)), os.path.join(out_dir, fname))
        files.append({"file": fname, "exporter": exporter, "opset": opset, "weights": weights})
        print(f"  {fname}: {os.path.getsize(os.path.join(out_dir, fname))} bytes")
    return files


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--poly", required=True, help="`polycnn poly --alpha 14 --json` output")
    parser.add_argument("--out", default="tests/fixtures/onnx")
    args = parser.parse_args()
    torch.set_num_threads(2)
    os.makedirs(args.out, exist_ok=True)
    sign = load_sign(args.poly)
    nets, real = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name, make, shape, seed, exports in NETS:
            print(name)
            model = make().eval()
            fill_counter_weights(model, seed)
            x = counter_input(seed, shape)
            with torch.no_grad():
                logits = model(x)
            bound, approx = approximate_logits(model, x, sign)
            entry = {"name": name, "seed": seed, "input_shape": shape, "tensors": tensor_list(model),
                     "logits": logits.flatten().tolist(), "approx": {"alpha": ALPHA, "bound": bound,
                                                                    "logits": approx.flatten().tolist()}}
            if any(w == "external-f16" for _, _, w in exports):
                with torch.no_grad():
                    entry["logits_f16_weights"] = model.half().float()(x).flatten().tolist()
                fill_counter_weights(model, seed)
            entry["files"] = export_files(model, x, name, exports, args.out, tmp)
            nets.append(entry)
        for name, make, arch, checkpoint, exports in REAL:
            print(name)
            model = make().eval()
            fill_counter_weights(model, 1)  # any distinct values: the exporter must not merge tensors
            x = counter_input(1, [1, 3, 32, 32])
            real.append({"name": name, "arch": arch, "checkpoint": checkpoint,
                         "tensors": [[n, list(t.shape)] for n, t in float_state(model)],
                         "files": export_files(model, x, name, exports, args.out, tmp)})
    with open(os.path.join(args.out, "nets.json"), "w") as f:
        json.dump({"generator": "scripts/make_onnx_fixtures.py", "torch": torch.__version__,
                   "onnx": onnx.__version__, "nets": nets, "real": real}, f)
    print("wrote", os.path.join(args.out, "nets.json"))


if __name__ == "__main__":
    main()
