#!/usr/bin/env python3
"""Export a torchvision model's weights to safetensors, keeping torchvision's tensor names.

Optional convenience for users: polycnn reads PyTorch checkpoints (.pth/.pt/.th) directly, so this
script is never needed by the tool, its tests or CI. It needs `torch`, `torchvision` and
`safetensors` (pip install torch torchvision safetensors).

Examples:
    # a checkpoint you already have (e.g. torchvision's resnet152-b121ed2d.pth)
    python scripts/export_safetensors.py resnet152 --weights resnet152-b121ed2d.pth -o resnet152.safetensors
    # a torchvision weights enum (downloads through torchvision's cache)
    python scripts/export_safetensors.py resnet152 --weights IMAGENET1K_V1 -o resnet152.safetensors

The state dict is checked against torchvision's architecture for that model name (strict
load_state_dict), so the names are exactly torchvision's. Floating tensors are written in
their dtype; int64 buffers such as BatchNorm's num_batches_tracked are kept as I64 (polycnn
keeps those apart from the f32 weights).
"""

import argparse
import os
import sys


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="torchvision model name, e.g. resnet152, vgg16_bn")
    parser.add_argument(
        "--weights",
        required=True,
        help="path to a .pth state dict, or a torchvision weights enum name (IMAGENET1K_V1, DEFAULT, ...)",
    )
    parser.add_argument("-o", "--out", required=True, help="output .safetensors path")
    return parser.parse_args()


def load_state_dict(model_name, weights):
    """The state dict from a file (loaded without executing pickled code) or a torchvision enum."""
    import torch
    import torchvision

    if os.path.exists(weights):
        checkpoint = torch.load(weights, map_location="cpu", weights_only=True)
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
                checkpoint = checkpoint[key]
                break
        if all(name.startswith("module.") for name in checkpoint):
            checkpoint = {name[len("module."):]: t for name, t in checkpoint.items()}
        return checkpoint
    enum = torchvision.models.get_model_weights(model_name)[weights]
    return torchvision.models.get_model(model_name, weights=enum).state_dict()


def check_against_torchvision(model_name, state_dict):
    """Fails loudly if a name or shape differs from torchvision's architecture."""
    import torchvision

    model = torchvision.models.get_model(model_name, weights=None)
    model.load_state_dict(state_dict, strict=True)


def main():
    args = parse_args()
    from safetensors.torch import save_file

    state_dict = load_state_dict(args.model, args.weights)
    check_against_torchvision(args.model, state_dict)
    # safetensors refuses shared or non-contiguous storage; each tensor gets its own copy.
    tensors = {name: t.detach().contiguous().clone() for name, t in state_dict.items()}
    metadata = {"model": args.model, "source": os.path.basename(args.weights), "format": "pt"}
    save_file(tensors, args.out, metadata=metadata)
    numel = sum(t.numel() for t in tensors.values())
    print(f"wrote {len(tensors)} tensors ({numel:,} values) to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
