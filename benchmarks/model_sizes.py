"""Size and CPU cost of each registered architecture at a grid (docs/models.md's table).

For each architecture, in its own process (so peak memory is its own): trainable
parameters (exact), seconds per scan for one training step (forward, backward, Adam;
channels-last as ``brainlrp train`` runs it) and for inference, and the process's
peak resident memory. Prints one TSV row per architecture.

    python benchmarks/model_sizes.py --resolution 2 --arch paper densenet121 resnet10
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys


def measure(arch: str, resolution: float, batch: int, steps: int) -> dict:
    import resource
    import time

    import torch

    from brainlrp.data.grid import Grid
    from brainlrp.models import count_parameters
    from brainlrp.training.module import ADClassifier

    torch.manual_seed(0)
    shape = Grid.from_resolution(resolution).shape
    module = ADClassifier(arch, shape)
    optimiser = module.configure_optimizers()
    x = torch.rand(batch, 1, *shape)
    y = torch.arange(batch) % 2

    def step():
        optimiser.zero_grad()
        module.loss(module(x), y).backward()
        optimiser.step()

    step()  # warm-up: oneDNN picks its kernels
    start = time.perf_counter()
    for _ in range(steps):
        step()
    train = (time.perf_counter() - start) / (steps * batch)
    module.eval()
    with torch.no_grad():
        module(x)
        start = time.perf_counter()
        for _ in range(steps):
            module(x)
        infer = (time.perf_counter() - start) / (steps * batch)
    return {"arch": arch, "grid": "x".join(map(str, shape)), "batch": batch,
            "threads": torch.get_num_threads(), "parameters": count_parameters(module.model),
            "train_s_per_scan": round(train, 2), "inference_s_per_scan": round(infer, 2),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=["paper", "densenet121", "resnet10",
                                                      "resnet18"])
    parser.add_argument("--resolution", type=float, default=2.0)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.resolution, args.batch, args.steps)))
        return
    keys = None
    for arch in args.arch:
        out = subprocess.run([sys.executable, __file__, "--one", arch, "--resolution",
                              str(args.resolution), "--batch", str(args.batch), "--steps",
                              str(args.steps)], capture_output=True, text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        if keys is None:
            keys = list(row)
            print("\t".join(keys))
        print("\t".join(str(row[k]) for k in keys), flush=True)


if __name__ == "__main__":
    main()
