#!/usr/bin/env python3
"""Write tests/fixtures/nets_counter_logits.json: PyTorch logits of GoogLeNet, Inception-v3, the
CIFAR-10 VGG-bn layouts and the official code's ResNet-110 on counter-based random weights, which polycnn regenerates bit for bit
(`model::CounterParams`), so the fixture holds no weights: for each network its state_dict names and
shapes (float tensors, in order), the seed, the input shape and the logits.

Run by hand from the repository root (CI does not; it has no torch):

    .venv/bin/python scripts/make_net_fixtures.py [--check-dir /tmp/nets_check]

With --check-dir it also saves real `torch.save(model.state_dict())` files (torchvision's own
classes, auxiliary heads included, as in the pretrained files) for checking by hand that
`model::load` reads them (tests/nets.rs, `real_state_dicts_load`, ignored by default).

The generator (mirrors src/model/params.rs): element e of the t-th float tensor of the state_dict
(t from 1; BatchNorm's num_batches_tracked skipped) is u = SplitMix64((seed << 16 + t) << 40 | e)
as a double in [0, 1); conv/linear weights (2u - 1)·sqrt(6/fan_in), biases, BatchNorm bias and
running mean 0.1·(2u - 1), BatchNorm weight 0.5 + 0.5u, running var 0.5 + u; the input images
are 4u - 2 with t = 0. Everything is computed in float64 and rounded to float32 once.
"""

import argparse
import json
import os

import numpy as np
import torch
import torch.nn as nn
import torchvision

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)


def counter_uniform(stream, count):
    """SplitMix64 of (stream << 40) | index for index in 0..count, as doubles in [0, 1)."""
    z = (np.uint64(stream) << np.uint64(40)) | np.arange(count, dtype=np.uint64)
    z = z + GOLDEN
    z = (z ^ (z >> np.uint64(30))) * MIX1
    z = (z ^ (z >> np.uint64(27))) * MIX2
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def tensor_kinds(model):
    """state_dict name -> ('weight', fan_in) | 'bias' | 'bn_weight' | 'bn_bias' | 'bn_mean' | 'bn_var'."""
    kinds = {}
    for prefix, module in model.named_modules():
        p = prefix + "." if prefix else ""
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            kinds[p + "weight"] = ("weight", module.weight[0].numel())
            if module.bias is not None:
                kinds[p + "bias"] = "bias"
        elif isinstance(module, nn.BatchNorm2d):
            kinds.update({p + "weight": "bn_weight", p + "bias": "bn_bias",
                          p + "running_mean": "bn_mean", p + "running_var": "bn_var"})
    return kinds


def fill_counter_weights(model, seed):
    """Overwrites every float tensor of model's state_dict; returns [(name, shape)] in order."""
    kinds = tensor_kinds(model)
    state = model.state_dict()
    listed, t = [], 0
    for name, tensor in state.items():
        if name.endswith("num_batches_tracked"):
            continue
        t += 1
        u = counter_uniform((seed << 16) + t, tensor.numel())
        kind = kinds[name]
        if isinstance(kind, tuple):
            values = (2.0 * u - 1.0) * np.sqrt(6.0 / kind[1])
        elif kind in ("bias", "bn_bias", "bn_mean"):
            values = 0.1 * (2.0 * u - 1.0)
        elif kind == "bn_weight":
            values = 0.5 + 0.5 * u
        else:
            values = 0.5 + u
        state[name] = torch.from_numpy(values.astype(np.float32)).reshape(tensor.shape)
        listed.append((name, list(tensor.shape)))
    model.load_state_dict(state)
    return listed


def counter_input(seed, shape):
    n = int(np.prod(shape))
    return torch.from_numpy((4.0 * counter_uniform(seed << 16, n) - 2.0).astype(np.float32)).reshape(shape)


CIFAR_CFG = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512, "M"],
}


class CifarVgg(nn.Module):
    """features (torchvision's make_layers with BN), then either a single `classifier` Linear or
    the paper's linear1 / ReLU / linear2 / ReLU / linear3 (snu-ccl/approxCNN vgg_cifar10.py)."""

    def __init__(self, depth, paper):
        super().__init__()
        self.features = torchvision.models.vgg.make_layers(CIFAR_CFG[depth], batch_norm=True)
        self.paper = paper
        if paper:
            self.linear1, self.linear2, self.linear3 = nn.Linear(512, 512), nn.Linear(512, 512), nn.Linear(512, 10)
        else:
            self.classifier = nn.Linear(512, 10)

    def forward(self, x):
        x = torch.flatten(self.features(x), 1)
        if self.paper:
            return self.linear3(torch.relu(self.linear2(torch.relu(self.linear1(x)))))
        return self.classifier(x)


class OptionABlock(nn.Module):
    """BasicBlock of the official CIFAR ResNets (snu-ccl/approxCNN resnet_cifar10.py, akamaster's):
    conv3x3-bn-relu-conv3x3-bn, + option-A shortcut (subsample, zero channel padding), relu."""

    def __init__(self, in_planes, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.pad = planes // 4 if (stride != 1 or in_planes != planes) else None

    def forward(self, x):
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.pad is None else nn.functional.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))
        return torch.relu(out + shortcut)


class CifarResNet(nn.Module):
    def __init__(self, depth):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        in_planes, layers = 16, []
        for planes, stride in [(16, 1), (32, 2), (64, 2)]:
            blocks = []
            for i in range(n):
                blocks.append(OptionABlock(in_planes, planes, stride if i == 0 else 1))
                in_planes = planes
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.linear = nn.Linear(64, 10)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(torch.relu(self.bn1(self.conv1(x))))))
        return self.linear(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def googlenet(aux):
    # transform_input=False: polycnn's GoogLeNet input is what torchvision's layers see after
    # transform_input, which composes with the ImageNet normalisation into (x - 0.5)/0.5.
    return torchvision.models.googlenet(weights=None, aux_logits=aux, transform_input=False, init_weights=False)


def inception_v3(aux):
    return torchvision.models.inception_v3(weights=None, aux_logits=aux, transform_input=False, init_weights=False)


# (polycnn architecture name, constructor, input shape [n, c, h, w], seed)
NETS = [
    ("googlenet", lambda: googlenet(False), [2, 3, 64, 64], 7),
    ("inception_v3", lambda: inception_v3(False), [1, 3, 75, 75], 8),
    ("vgg11_bn_cifar10_paper", lambda: CifarVgg(11, True), [2, 3, 32, 32], 9),
    ("vgg16_bn_cifar10_paper", lambda: CifarVgg(16, True), [2, 3, 32, 32], 10),
    ("vgg19_bn_cifar10", lambda: CifarVgg(19, False), [2, 3, 32, 32], 11),
    ("resnet110", lambda: CifarResNet(110), [2, 3, 32, 32], 12),
]


def check_transform_input_is_half_normalisation():
    """torchvision's transform_input after Normalize(ImageNet) equals Normalize(0.5, 0.5)."""
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    pixels = np.linspace(0.0, 1.0, 256)[:, None]
    x = (pixels - mean) / std
    transformed = x * (std / 0.5) + (mean - 0.5) / 0.5
    assert np.abs(transformed - (pixels - 0.5) / 0.5).max() < 1e-12


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="tests/fixtures/nets_counter_logits.json")
    parser.add_argument("--check-dir", default=None)
    args = parser.parse_args()
    torch.set_num_threads(2)
    check_transform_input_is_half_normalisation()
    entries = []
    for name, make, shape, seed in NETS:
        model = make().eval()
        tensors = fill_counter_weights(model, seed)
        with torch.no_grad():
            logits = model(counter_input(seed, shape))
        entries.append({"arch": name, "seed": seed, "input_shape": shape, "tensors": tensors,
                        "logits": [float(v) for v in logits.flatten()]})
        print(f"{name}: {len(tensors)} tensors, logits[0][:3] = {logits[0, :3].tolist()}")
    with open(args.out, "w") as f:
        json.dump({"generator": "scripts/make_net_fixtures.py", "nets": entries}, f)
    if args.check_dir:
        os.makedirs(args.check_dir, exist_ok=True)
        for name, model in [("googlenet", googlenet(True)), ("inception_v3", inception_v3(True)),
                            ("vgg16_bn_cifar10_paper", CifarVgg(16, True)), ("resnet110", CifarResNet(110))]:
            torch.save(model.eval().state_dict(), os.path.join(args.check_dir, name + ".pth"))
        print(f"real state_dict files in {args.check_dir}")


if __name__ == "__main__":
    main()
