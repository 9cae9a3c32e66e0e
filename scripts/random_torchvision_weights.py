#!/usr/bin/env python3
"""A torchvision ImageNet model with its default random initialisation, saved as a state_dict
.pth that `polycnn eval --weights` reads. Used by scripts/gpu_report.sh where no pretrained
weights can be downloaded: the timings are the point, not the accuracy.

BatchNorm running statistics are first measured on --calibrate batches of N(0, 1) inputs (what
normalised images look like), so every layer's activations stay O(1) and the approximate
network's inputs stay inside a fixed bound B, as with trained weights; the default statistics
(mean 0, variance 1) let a random ResNet-152's activations grow by orders of magnitude.

    python3 scripts/random_torchvision_weights.py --model resnet152 --out r152.pth --device cuda
"""

import argparse

import torch
import torchvision


def calibrate_batchnorm(model, batches, batch, size, device):
    """Running statistics = the exact averages over `batches` random batches (momentum None)."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model(torch.randn(batch, 3, size, size, device=device))
    model.eval()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet152", help="a torchvision.models constructor name")
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--calibrate", type=int, default=4, help="random batches for the BN statistics (0: none)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()

    torch.manual_seed(0)
    model = getattr(torchvision.models, args.model)(weights=None).to(args.device)
    if args.calibrate > 0:
        calibrate_batchnorm(model, args.calibrate, args.batch, args.size, args.device)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save(state, args.out)
    print(f"wrote {args.out}: {args.model}, random weights, BN statistics from {args.calibrate} "
          f"batches of {args.batch} N(0,1) images on {args.device}")


if __name__ == "__main__":
    main()
