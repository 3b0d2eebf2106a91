"""Every explanation method on a GPU against the same method on the CPU.

The paper's network at the 2 mm grid (random weights, non-trivial BatchNorm
statistics), a batch of smooth random volumes in [0, 1]; for each method the
heatmap on ``--device`` is compared with the CPU one (Pearson correlation, max
error relative to the CPU map's largest magnitude), and for the LRP methods that
conserve relevance the input relevance sum is compared with the AD probability.

Usage::

    PYTHONPATH=src python benchmarks/device_check.py --device cuda
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from lrp_speed import make_model  # noqa: E402

from brainlrp.explain import explain  # noqa: E402

METHODS = ("lrp-b0", "lrp-b0.5", "lrp-b1", "lrp-bn-merged-b0", "lrp-eps", "lrp-epsilon-plus",
           "gb", "gradient", "gxi", "ig")  # SmoothGrad's noise differs between devices
CONSERVING = ("lrp-b0", "lrp-b0.5", "lrp-b1", "lrp-bn-merged-b0")


def smooth_volumes(n: int, shape, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, *(s // 4 + 1 for s in shape), generator=gen)
    x = torch.nn.functional.interpolate(x, size=shape, mode="trilinear", align_corners=False)
    return (0.05 + 0.9 * x).clamp(0, 1)  # no zero voxels: conservation is exact


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    shape = (97, 115, 97)
    cpu = make_model(shape, torch.device("cpu"), args.seed).eval()
    dev = make_model(shape, torch.device(args.device), args.seed).eval()
    x = smooth_volumes(args.batch, shape, args.seed)
    with torch.no_grad():
        p_ad = torch.softmax(cpu(x), 1)[:, 1]
    print(f"device {torch.cuda.get_device_name() if args.device == 'cuda' else args.device}, "
          f"grid {shape}, batch {args.batch}")
    print(f"{'method':18s} {'corr':>12s} {'max rel err':>12s} {'sum/p_ad-1':>12s} {'s':>7s}")
    worst = {}
    for method in METHODS:
        opts = {"steps": 8} if method == "ig" else {}
        ref = explain(cpu, x, method, target=1, **opts).double()
        if args.device == "cuda":
            torch.cuda.synchronize()
        tick = time.perf_counter()
        got = explain(dev, x.to(args.device), method, target=1, **opts)
        if args.device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - tick
        got = got.double().cpu()
        corr = torch.corrcoef(torch.stack([ref.flatten(), got.flatten()]))[0, 1].item()
        rel = ((got - ref).abs().max() / ref.abs().max()).item()
        cons = ""
        if method in CONSERVING:
            sums = got.flatten(1).sum(1)
            cons = f"{(sums / p_ad.double() - 1).abs().max().item():12.2e}"
        worst[method] = (corr, rel)
        print(f"{method:18s} {corr:12.9f} {rel:12.2e} {cons:>12s} {seconds:7.3f}")
    bad = [m for m, (c, r) in worst.items() if not c > 0.9999]
    print("all methods agree (corr > 0.9999)" if not bad else f"disagree: {bad}")


if __name__ == "__main__":
    main()
