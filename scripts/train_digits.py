#!/usr/bin/env python3
"""Train the small digits CNN shipped in datasets/digits/ and write its files.

polycnn's default job must run end to end offline, so the repository ships a small real data set
and a small trained CNN (ReLUs, BatchNorm, 2x2 max-pools) in `datasets/digits/`. This script is
how those files were made. polycnn itself (the Rust tool, its tests, CI) NEVER runs it; it only
reads the files it wrote. Rerun it only to regenerate them.

What it does:
  1. Loads scikit-learn's bundled digits data set (`sklearn.datasets.load_digits`: 1,797 8x8
     images, integer pixels 0..16, labels 0..9; a copy of the UCI optdigits test set, shipped
     inside the scikit-learn package, so nothing is downloaded).
  2. Splits it with a seeded permutation (numpy RandomState(0)): 1,297 train / 500 test.
  3. Trains (seeded, CPU, one thread, deterministic algorithms; a few seconds) the CNN
         features.0  Conv2d(1, 16, 3, padding=1, bias=False)    1x8x8  -> 16x8x8
         features.1  BatchNorm2d(16, eps=1e-5)
         features.2  ReLU
         features.3  MaxPool2d(2, stride=2)                     16x8x8 -> 16x4x4
         features.4  Conv2d(16, 32, 3, padding=1, bias=False)   16x4x4 -> 32x4x4
         features.5  BatchNorm2d(32, eps=1e-5)
         features.6  ReLU
         features.7  MaxPool2d(2, stride=2)                     32x4x4 -> 32x2x2
         flatten                                                 -> 128 (C, H, W order)
         classifier  Linear(128, 10)
     on inputs (pixels / 16 - mean) / std, mean and std being the scalar statistics of
     pixels / 16 over the training split.
  4. Writes to datasets/digits/ (see datasets/digits/README.md for the formats):
       digits_cnn.safetensors      the trained state_dict (float32; num_batches_tracked as I64)
       digits_test.bin             the 500 test images and labels ("DIGITS01" format)
       digits_cnn_expected.json    architecture, normalisation, accuracies, and PyTorch's logits
                                   for the first 8 test images
  5. For the record, evaluates the test accuracy with every ReLU replaced by the paper's
     polynomial x * (1 + p(x / B)) / 2 (p the composite minimax sign approximation for alpha = 7
     and alpha = 14, read from ../shared/data/approxcnn_coeffs), B = 1.1 x the largest |x| that
     reaches any ReLU on the training split, max-pools kept exact. These numbers go into the JSON
     (and, by hand, into datasets/digits/README.md).

How to run it (from the repository root; needs torch, numpy and scikit-learn):
    .venv/bin/pip install torch numpy scikit-learn
    .venv/bin/python scripts/train_digits.py
Options: --out DIR (default datasets/digits), --coeffs DIR (default ../shared/data/approxcnn_coeffs;
the approximate-ReLU evaluation is skipped with a note when the directory is missing).

The output is deterministic for a given torch / numpy / scikit-learn version on the same CPU
(seeds, one thread, torch.use_deterministic_algorithms); a different version or CPU may change
the trained weights in the last bits, and then everything derived from them.
"""

import argparse
import json
import os
import struct
import sys

SEED = 0
N_TEST = 500
EPOCHS = 40
BATCH = 32
LR = 0.01
WEIGHT_DECAY = 5e-4
N_EXPECTED = 8
B_MARGIN = 1.1
ALPHAS = (7, 14)


def parse_args():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(root, "datasets", "digits"), help="output directory")
    parser.add_argument(
        "--coeffs",
        default=os.path.join(root, "..", "shared", "data", "approxcnn_coeffs"),
        help="directory with the paper's deg_A.txt / coeff_A.txt",
    )
    return parser.parse_args()


def build_model():
    import torch.nn as nn

    features = nn.Sequential(
        nn.Conv2d(1, 16, 3, stride=1, padding=1, bias=False),
        nn.BatchNorm2d(16, eps=1e-5),
        nn.ReLU(),
        nn.MaxPool2d(2, stride=2),
        nn.Conv2d(16, 32, 3, stride=1, padding=1, bias=False),
        nn.BatchNorm2d(32, eps=1e-5),
        nn.ReLU(),
        nn.MaxPool2d(2, stride=2),
    )

    class DigitsCnn(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = features
            self.classifier = nn.Linear(32 * 2 * 2, 10)

        def forward(self, x):
            return self.classifier(self.features(x).flatten(1))

    return DigitsCnn()


ARCHITECTURE = [
    {"name": "features.0", "op": "conv2d", "in_channels": 1, "out_channels": 16, "kernel": 3, "stride": 1,
     "padding": 1, "bias": False, "input_shape": [1, 8, 8], "output_shape": [16, 8, 8]},
    {"name": "features.1", "op": "batch_norm2d", "channels": 16, "eps": 1e-5},
    {"name": "features.2", "op": "relu"},
    {"name": "features.3", "op": "max_pool2d", "kernel": 2, "stride": 2, "padding": 0,
     "input_shape": [16, 8, 8], "output_shape": [16, 4, 4]},
    {"name": "features.4", "op": "conv2d", "in_channels": 16, "out_channels": 32, "kernel": 3, "stride": 1,
     "padding": 1, "bias": False, "input_shape": [16, 4, 4], "output_shape": [32, 4, 4]},
    {"name": "features.5", "op": "batch_norm2d", "channels": 32, "eps": 1e-5},
    {"name": "features.6", "op": "relu"},
    {"name": "features.7", "op": "max_pool2d", "kernel": 2, "stride": 2, "padding": 0,
     "input_shape": [32, 4, 4], "output_shape": [32, 2, 2]},
    {"name": "flatten", "op": "flatten", "input_shape": [32, 2, 2], "output_shape": [128]},
    {"name": "classifier", "op": "linear", "in_features": 128, "out_features": 10, "bias": True},
]
RELU_SITES = ["features.2", "features.6"]


def load_split():
    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.uint8)  # (1797, 8, 8), values 0..16 (stored as float64)
    assert np.array_equal(images, digits.images) and images.max() <= 16
    labels = digits.target.astype(np.uint8)
    perm = np.random.RandomState(SEED).permutation(len(labels))
    test_idx, train_idx = np.sort(perm[:N_TEST]), np.sort(perm[N_TEST:])
    return images, labels, train_idx, test_idx


def train(model, x, y):
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(SEED)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9, weight_decay=WEIGHT_DECAY, nesterov=True)
    steps_per_epoch = (len(y) + BATCH - 1) // BATCH
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR * 10, epochs=EPOCHS, steps_per_epoch=steps_per_epoch)
    model.train()
    for epoch in range(EPOCHS):
        order = torch.randperm(len(y), generator=gen)
        total = 0.0
        for s in range(steps_per_epoch):
            idx = order[s * BATCH:(s + 1) * BATCH]
            opt.zero_grad()
            loss = F.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        if epoch % 10 == 9 or epoch == EPOCHS - 1:
            print(f"  epoch {epoch + 1:3d}: train loss {total / len(y):.4f}")
    model.eval()


def accuracy(model, x, y):
    import torch

    with torch.no_grad():
        return int((model(x).argmax(1) == y).sum())


def relu_input_max(model, x):
    """The largest |input| of each ReLU site over batch x (eval mode)."""
    import torch

    maxima = {}
    hooks = []
    modules = dict(model.named_modules())
    for name in RELU_SITES:
        def hook(_m, inputs, _out, name=name):
            maxima[name] = max(maxima.get(name, 0.0), float(inputs[0].abs().max()))
        hooks.append(modules[name].register_forward_hook(hook))
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return maxima


def load_composite(coeffs_dir, alpha):
    """Stages of the paper's composite sign approximation: power-basis coefficients, lowest first."""
    with open(os.path.join(coeffs_dir, f"deg_{alpha}.txt")) as f:
        degrees = [int(t) for t in f.read().split()]
    with open(os.path.join(coeffs_dir, f"coeff_{alpha}.txt")) as f:
        values = [float(t) for t in f.read().split()]
    if sum(d + 1 for d in degrees) != len(values):
        raise ValueError(f"alpha={alpha}: degrees {degrees} need {sum(d + 1 for d in degrees)} coefficients, "
                         f"coeff_{alpha}.txt has {len(values)}")
    stages, at = [], 0
    for d in degrees:
        stages.append(values[at:at + d + 1])
        at += d + 1
    return degrees, stages


class PolyRelu:
    """x * (1 + p(x / B)) / 2 with p = p_k o ... o p_1 (p_1 applied first), in float64."""

    def __init__(self, stages, bound):
        self.stages, self.bound = stages, bound

    def __call__(self, _module, inputs, _output):
        x = inputs[0]
        v = x / self.bound
        for coeffs in self.stages:
            acc = v.new_full(v.shape, coeffs[-1])
            for c in reversed(coeffs[:-1]):
                acc = acc * v + c
            v = acc
        return x * (1 + v) / 2


def approx_accuracy(model, x, y, stages, bound):
    """Test accuracy (float64) with every ReLU replaced by PolyRelu(stages, bound)."""
    import copy

    import torch

    m = copy.deepcopy(model).double()
    modules = dict(m.named_modules())
    for name in RELU_SITES:
        modules[name].register_forward_hook(PolyRelu(stages, bound))
    with torch.no_grad():
        return int((m(x.double()).argmax(1) == y).sum())


def write_safetensors(path, state_dict):
    """safetensors by hand, byte-deterministic: u64 LE header length, JSON header (sorted keys, no
    spaces, space-padded to a multiple of 8), then the tensors' raw LE bytes in state_dict order.
    Floats as F32, BatchNorm's num_batches_tracked as I64 (shape [])."""
    import numpy as np
    import torch

    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, t in state_dict.items():
        t = t.detach().cpu().contiguous()
        if t.is_floating_point():
            arr, dtype = t.to(torch.float32).numpy().astype("<f4"), "F32"
        elif t.dtype == torch.int64:
            arr, dtype = t.numpy().astype("<i8"), "I64"
        else:
            raise TypeError(f"{name}: unexpected dtype {t.dtype}")
        data = np.ascontiguousarray(arr).tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for data in blobs:
            f.write(data)


def write_test_bin(path, images, labels):
    """magic "DIGITS01", u32 LE count, u32 LE rows, u32 LE cols, count*rows*cols u8 pixels
    (row-major, image after image, values 0..16), then count u8 labels."""
    count, rows, cols = images.shape
    with open(path, "wb") as f:
        f.write(b"DIGITS01")
        f.write(struct.pack("<III", count, rows, cols))
        f.write(images.astype("u1").tobytes(order="C"))
        f.write(labels.astype("u1").tobytes())


def main():
    args = parse_args()
    import numpy as np
    import sklearn
    import torch

    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    images, labels, train_idx, test_idx = load_split()
    scaled = images.astype(np.float32) / 16.0
    mean = float(scaled[train_idx].mean(dtype=np.float64))
    std = float(scaled[train_idx].std(dtype=np.float64))  # population std over all training pixels
    mean32, std32 = float(np.float32(mean)), float(np.float32(std))
    print(f"split: {len(train_idx)} train / {len(test_idx)} test; normalisation mean {mean32!r} std {std32!r}")

    def inputs(idx):
        x = torch.from_numpy(scaled[idx]).unsqueeze(1)
        return (x - mean32) / std32

    x_train, y_train = inputs(train_idx), torch.from_numpy(labels[train_idx].astype(np.int64))
    x_test, y_test = inputs(test_idx), torch.from_numpy(labels[test_idx].astype(np.int64))

    model = build_model()
    print(f"training {EPOCHS} epochs (SGD nesterov, one-cycle max lr {LR * 10}, batch {BATCH}) ...")
    train(model, x_train, y_train)
    train_correct, test_correct = accuracy(model, x_train, y_train), accuracy(model, x_test, y_test)
    print(f"train accuracy {train_correct}/{len(y_train)}; test accuracy {test_correct}/{len(y_test)} "
          f"= {100 * test_correct / len(y_test):.2f}%")

    # ReLU input ranges and the polynomial replacements.
    train_max = relu_input_max(model, x_train)
    test_max = relu_input_max(model, x_test)
    bound = B_MARGIN * max(train_max.values())
    print(f"max |ReLU input| on train {train_max}; on test {test_max}; B = {bound!r}")
    approx = []
    if os.path.isdir(args.coeffs):
        for alpha in ALPHAS:
            degrees, stages = load_composite(args.coeffs, alpha)
            correct = approx_accuracy(model, x_test, y_test, stages, bound)
            approx.append({"alpha": alpha, "stage_degrees": degrees, "correct": correct, "total": len(y_test),
                           "accuracy": correct / len(y_test)})
            print(f"alpha={alpha} (degrees {degrees}): test accuracy {correct}/{len(y_test)} "
                  f"= {100 * correct / len(y_test):.2f}%")
    else:
        print(f"note: {args.coeffs} not found; skipping the approximate-ReLU evaluation", file=sys.stderr)

    # Outputs.
    os.makedirs(args.out, exist_ok=True)
    state_dict = model.state_dict()
    write_safetensors(os.path.join(args.out, "digits_cnn.safetensors"), state_dict)
    write_test_bin(os.path.join(args.out, "digits_test.bin"), images[test_idx], labels[test_idx])

    with torch.no_grad():
        logits = model(x_test[:N_EXPECTED])
    expected = {
        "description": "polycnn's offline digits CNN (scripts/train_digits.py); see datasets/digits/README.md",
        "source": "sklearn.datasets.load_digits (copy of the UCI optdigits test set, DOI 10.24432/C50P49, CC BY 4.0)",
        "versions": {"torch": torch.__version__, "numpy": np.__version__, "scikit-learn": sklearn.__version__},
        "split": {"seed": SEED, "method": "numpy.random.RandomState(seed).permutation(1797); first 500 = test, "
                  "rest = train; each split kept in load_digits order", "train": len(train_idx),
                  "test": len(test_idx), "test_indices": [int(i) for i in test_idx]},
        "input_shape": [1, 8, 8],
        "preprocessing": "x = (pixel / 16 - mean) / std, pixel in 0..16; mean/std are float32 scalars "
                         "computed over all pixels of the training split",
        "normalisation": {"mean": mean32, "std": std32},
        "architecture": ARCHITECTURE,
        "state_dict": [{"name": k, "dtype": "I64" if v.dtype == torch.int64 else "F32", "shape": list(v.shape)}
                       for k, v in state_dict.items()],
        "relu_sites": RELU_SITES,
        "train_accuracy": {"correct": train_correct, "total": len(y_train), "accuracy": train_correct / len(y_train)},
        "test_accuracy": {"correct": test_correct, "total": len(y_test), "accuracy": test_correct / len(y_test)},
        "relu_input_max_abs": {"train": train_max, "test": test_max},
        "approx_relu": {
            "formula": "relu(x) ~ x * (1 + p(x / B)) / 2, p = p_k o ... o p_1 from approxcnn_coeffs "
                       "deg_A.txt/coeff_A.txt (power basis, lowest degree first, stage 1 first); "
                       "every ReLU replaced, max-pools exact, evaluated in float64",
            "B": bound, "B_rule": "1.1 * max |ReLU input| over all ReLU sites on the training split",
            "results": approx,
        },
        "expected": [
            {"index": i, "label": int(labels[test_idx[i]]), "logits": [float(v) for v in logits[i]],
             "predicted": int(logits[i].argmax())}
            for i in range(N_EXPECTED)
        ],
    }
    with open(os.path.join(args.out, "digits_cnn_expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")
    for name in sorted(os.listdir(args.out)):
        print(f"  {name}: {os.path.getsize(os.path.join(args.out, name))} bytes")


if __name__ == "__main__":
    main()
