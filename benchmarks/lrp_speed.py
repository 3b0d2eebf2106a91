"""Speed and memory of brainlrp's LRP against an input gradient and zennit, in one run.

At the paper's 193 x 229 x 193 grid, for each batch size, times in one process
(interleaved rounds, median of ``--repeats`` after a warm-up):

- ``forward``: the model's forward pass without autograd;
- ``gradient``: the input gradient of the AD probability (parameters frozen, so
  only the input gradient is computed);
- ``lrp-b0`` / ``lrp-b1``: brainlrp's paper composite with beta = 0 and 1;
- ``zennit-b0``: zennit's AlphaBeta(alpha=1, beta=0) composite with the same
  settings (biases zeroed, BatchNorm and ReLU passing relevance).

Peak memory of each phase is measured in a fresh subprocess (the process's peak
resident set, VmHWM, on CPU; ``torch.cuda.max_memory_allocated`` on CUDA), next
to the memory after setting up model and input. ``--check`` adds the exactness
checks at the full grid: brainlrp against zennit (beta = 0) and against the
layer-by-layer float64 reference of the test suite for all five betas, with
conservation of relevance on a scan without zero voxels.

With ``--model densenet121`` (or ``resnet10``, ``resnet18``) the network is
MONAI's 3-D version (1 input channel, 2 classes) and the phases are
``forward``, ``gradient``, ``lrp-b0``, ``lrp-epsilon-plus`` and zennit's
counterparts ``zennit-b0``, ``zennit-epsilon-plus`` (zennit's ``EpsilonPlus``
composite, BatchNorm passing relevance; residual blocks canonized with zennit's
``Sum`` layer, concatenations by their gradient, which is zennit's way) and
``zennit-epsilon-plus-box``: the same with zennit's ``ZBox(0, 1)`` on the first
layer, i.e. the rules of brainlrp's ``epsilon-plus`` preset (zennit's
``EpsilonPlus`` has no box rule, so it does less work than brainlrp's preset; the
ratio of the preset to zennit is given against both).

``--methods lrp-ref ig-ref occlusion-ref ...`` adds catalog methods, run through
``brainlrp.explain.explain`` with their default options; the reference methods get
a second random scan as reference (occlusion-ref needs a template grid, e.g.
``--grid 97 115 97``, for its atlas areas).

Usage::

    python benchmarks/lrp_speed.py --threads 2 --batch 1 4 --check
    python benchmarks/lrp_speed.py --model densenet121 --grid 97 115 97 --batch 1 \
        --repeats 2 --no-memory
    python benchmarks/lrp_speed.py --grid 97 115 97 --batch 1 --repeats 1 --no-memory \
        --no-zennit --methods lrp-ref ig-ref occlusion-ref lrp-epsilon-gamma-box \
        lrp-epsilon-plus-flat edges noise
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))  # for tests.explain.reference in --check

from brainlrp.explain import explain, get_method  # noqa: E402
from brainlrp.explain.lrp import lrp  # noqa: E402
from brainlrp.models import build_model  # noqa: E402

PHASES = ("forward", "gradient", "lrp-b0", "lrp-b1", "zennit-b0")
MONAI_PHASES = ("forward", "gradient", "lrp-b0", "lrp-epsilon-plus", "zennit-b0",
                "zennit-epsilon-plus", "zennit-epsilon-plus-box")
MONAI_MODELS = ("densenet121", "resnet10", "resnet18")
BETAS = (0.0, 0.25, 0.5, 0.75, 1.0)


def build(name: str, grid: tuple[int, int, int]) -> torch.nn.Module:
    """The paper's network, or one of MONAI's 3-D networks for 1 channel and 2 classes."""
    if name == "paper":
        return build_model("paper", grid)
    from monai.networks import nets

    if name == "densenet121":
        return nets.DenseNet121(spatial_dims=3, in_channels=1, out_channels=2)
    return getattr(nets, name)(spatial_dims=3, n_input_channels=1, num_classes=2)


def make_model(grid: tuple[int, int, int], device: torch.device, seed: int,
               name: str = "paper") -> torch.nn.Module:
    """The network with random weights and non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    model = build(name, grid)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm3d):
                n = module.num_features
                module.running_mean.copy_(0.2 * torch.randn(n, generator=gen))
                module.running_var.copy_(0.5 + torch.rand(n, generator=gen))
                module.weight.copy_(0.5 + torch.rand(n, generator=gen))
                module.bias.copy_(0.1 * torch.randn(n, generator=gen))
    return model.eval().to(device)


def make_scans(grid: tuple[int, int, int], batch: int, device: torch.device, seed: int,
               background: bool = True) -> torch.Tensor:
    """Scan-like volumes in [0, 1]: noise inside an ellipsoid, exact zeros outside."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 1, *grid, generator=gen)
    if background:
        axes = torch.meshgrid(*[torch.linspace(-1, 1, n) for n in grid], indexing="ij")
        x = x * (sum(a ** 2 for a in axes) < 0.8)
    else:
        x = 0.05 + 0.95 * x
    return x.to(device)


def zennit_block_canonizers() -> list:
    """zennit's way for MONAI's residual blocks: a forward that adds through ``Sum``."""
    from zennit.canonizers import AttributeCanonizer
    from zennit.layer import Sum

    try:
        from monai.networks.nets.resnet import ResNetBlock, ResNetBottleneck
    except ImportError:
        return []

    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))
        if isinstance(self, ResNetBottleneck):
            out = self.bn3(self.conv3(self.act(out)))
        return self.act(self.canonizer_sum(torch.stack([residual, out], dim=-1)))

    def attributes(name, module):
        if isinstance(module, (ResNetBlock, ResNetBottleneck)):
            return {"forward": forward.__get__(module), "canonizer_sum": Sum()}
        return None

    return [AttributeCanonizer(attributes)]


def zennit_composite(kind: str = "b0"):
    from zennit.composites import (
        EpsilonPlus,
        LayerMapComposite,
        SpecialFirstLayerMapComposite,
        layer_map_base,
    )
    from zennit.layer import Sum
    from zennit.rules import AlphaBeta, Epsilon, Norm, Pass, ZBox, ZPlus
    from zennit.types import Activation, AvgPool, BatchNorm, Convolution

    if kind == "epsilon-plus":
        return EpsilonPlus(canonizers=zennit_block_canonizers())
    if kind == "epsilon-plus-box":  # EpsilonPlus's layer map, ZBox on the first layer
        layer_map = layer_map_base(1e-6) + [(Convolution, ZPlus(stabilizer=1e-6)),
                                            (torch.nn.Linear, Epsilon(epsilon=1e-6))]
        return SpecialFirstLayerMapComposite(
            layer_map, [(Convolution, ZBox(low=0.0, high=1.0, stabilizer=1e-6))],
            canonizers=zennit_block_canonizers())
    rule = AlphaBeta(alpha=1.0, beta=0.0, zero_params="bias")
    return LayerMapComposite([(Activation, Pass()), (BatchNorm, Pass()), (Sum, Norm()),
                              (AvgPool, Norm()), (Convolution, rule), (torch.nn.Linear, rule)],
                             canonizers=zennit_block_canonizers())


def zennit_lrp(model: torch.nn.Module, x: torch.Tensor, target: int = 1,
               kind: str = "b0") -> torch.Tensor:
    from zennit.attribution import Gradient

    def start(out: torch.Tensor) -> torch.Tensor:
        onehot = torch.nn.functional.one_hot(torch.full((out.shape[0],), target), out.shape[1])
        return onehot.to(out) * torch.softmax(out, dim=1).detach()

    params = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in params:
        p.requires_grad_(False)
    try:
        with Gradient(model, zennit_composite(kind)) as attributor:
            _, relevance = attributor(x, start)
    finally:
        for p, flag in params:
            p.requires_grad_(flag)
    return relevance


def phase_function(name: str, model: torch.nn.Module, x: torch.Tensor) -> Callable[[], object]:
    if name == "forward":
        def run():
            with torch.no_grad():
                return model(x)
    elif name == "gradient":
        def run():
            params = [(p, p.requires_grad) for p in model.parameters()]
            for p, _ in params:
                p.requires_grad_(False)
            try:
                xx = x.detach().requires_grad_(True)
                p_ad = torch.softmax(model(xx), dim=1)[:, 1].sum()
                return torch.autograd.grad(p_ad, xx)[0]
            finally:
                for p, flag in params:
                    p.requires_grad_(flag)
    elif name == "lrp-epsilon-plus":
        def run():
            return lrp(model, x, "epsilon-plus").relevance
    elif name.startswith("lrp-b"):
        beta = float(name[len("lrp-b"):])

        def run():
            return lrp(model, x, "paper", beta=beta).relevance
    elif name.startswith("zennit-"):
        def run():
            return zennit_lrp(model, x, kind=name[len("zennit-"):])
    elif get_method(name).needs_reference:
        reference = make_scans(tuple(x.shape[2:]), 1, x.device, seed=12345)

        def run():
            return explain(model, x, name, reference=reference)
    else:
        def run():
            return explain(model, x, name)
    return run


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_phases(phases: list[str], model, x, repeats: int, zennit_repeats: int,
                device: torch.device) -> dict[str, float]:
    """Median seconds per phase; rounds interleave the phases so load drift hits all."""
    functions = {name: phase_function(name, model, x) for name in phases}
    times: dict[str, list[float]] = {name: [] for name in phases}
    for function in functions.values():  # warm-up: kernels, allocator, lazy imports
        function()
        synchronize(device)
    for round_ in range(max(repeats, zennit_repeats)):
        for name, function in functions.items():
            wanted = zennit_repeats if name.startswith("zennit") else repeats
            if round_ >= wanted:
                continue
            synchronize(device)
            start = time.perf_counter()
            function()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def measure_memory(args: argparse.Namespace, phase: str, batch: int) -> dict[str, float]:
    """Peak memory of one phase, run once in a fresh subprocess."""
    command = [sys.executable, __file__, "--memory-phase", phase, "--batch", str(batch),
               "--model", args.model,
               "--grid", *map(str, args.grid), "--threads", str(args.threads),
               "--device", args.device, "--seed", str(args.seed)]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def memory_worker(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    model = make_model(tuple(args.grid), device, args.seed, args.model)
    x = make_scans(tuple(args.grid), args.batch[0], device, args.seed)
    run = phase_function(args.memory_phase, model, x)
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        setup = torch.cuda.memory_allocated(device)
        run()
        synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
    else:
        setup = _peak_rss()
        run()
        peak = _peak_rss()
    print(json.dumps({"setup_mb": setup / 2**20, "peak_mb": peak / 2**20}))


def _peak_rss() -> int:
    """Peak resident memory of this process in bytes.

    Linux carries ru_maxrss across fork/exec, so a child would report its parent's
    peak; VmHWM belongs to the process's own address space and starts fresh.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    stacked = torch.stack([a.double().flatten().cpu(), b.double().flatten().cpu()])
    return float(torch.corrcoef(stacked)[0, 1])


def max_relative_error(ours: torch.Tensor, ref: torch.Tensor) -> float:
    ours, ref = ours.double().cpu(), ref.double().cpu()
    return float((ours - ref).abs().max() / ref.abs().max())


def run_checks(args: argparse.Namespace, device: torch.device) -> bool:
    """Exactness at the full grid; returns whether every check passed."""
    from tests.explain.reference import PaperReference

    grid = tuple(args.grid)
    model = make_model(grid, device, args.seed)
    x = make_scans(grid, 1, device, args.seed)
    ok = True

    def report(name: str, value: float, passed: bool) -> None:
        nonlocal ok
        ok &= passed
        print(f"  {name:<46s} {value:>12.8g}  {'ok' if passed else 'FAIL'}")

    print(f"\nexactness at {' x '.join(map(str, grid))} (batch 1, {device})")
    ours0 = lrp(model, x, "paper", beta=0.0).relevance
    theirs = zennit_lrp(model, x)
    report("lrp-b0 vs zennit: correlation", correlation(ours0, theirs),
           correlation(ours0, theirs) >= 0.99999)
    report("lrp-b0 vs zennit: max relative error", max_relative_error(ours0, theirs),
           max_relative_error(ours0, theirs) <= 1e-4)
    start = time.perf_counter()
    # The pass/fail reference takes the activations of a float32 forward pass (what
    # the model computes) and propagates relevance in float64. A float64 forward
    # pass can pick other max-pooling winners where activations tie to float32
    # precision; it is compared by correlation, its max error shown for information.
    positive = make_scans(grid, 1, device, args.seed + 1, background=False)
    results = {beta: lrp(model, x, "paper", beta=beta).relevance.cpu() for beta in BETAS}
    model.cpu()
    reference = PaperReference(model, x.cpu(), forward_dtype=torch.float32)
    for beta in BETAS:
        ref = reference.relevance(beta)
        corr, err = correlation(results[beta], ref), max_relative_error(results[beta], ref)
        report(f"lrp-b{beta:g} vs reference: correlation", corr, corr >= 0.99999)
        report(f"lrp-b{beta:g} vs reference: max relative error", err, err <= 1e-4)
    del reference
    reference = PaperReference(model, x.cpu(), forward_dtype=torch.float64)
    for beta in BETAS:
        ref = reference.relevance(beta)
        corr = correlation(results[beta], ref)
        report(f"lrp-b{beta:g} vs float64-forward reference: corr.", corr, corr >= 0.99999)
        print(f"  {'  (max relative error, for information)':<46s} "
              f"{max_relative_error(results[beta], ref):>12.8g}")
    del reference
    print(f"  (references took {time.perf_counter() - start:.0f} s)")
    model.to(device)
    for beta in BETAS:
        full = lrp(model, positive, "paper", beta=beta)
        gap = abs(float(full.relevance.sum()) - float(full.probabilities[0, 1]))
        report(f"lrp-b{beta:g} |sum(R) - p(AD)| (no zero voxels)", gap, gap <= 1e-4)
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="paper", choices=["paper", *MONAI_MODELS])
    parser.add_argument("--grid", type=int, nargs=3, default=[193, 229, 193])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--zennit-repeats", type=int, default=None,
                        help="repeats for zennit (default: --repeats); it is the slow one")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-zennit", action="store_true", help="skip zennit")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument("--check", action="store_true", help="full-grid exactness checks")
    parser.add_argument("--check-only", action="store_true", help="the checks, no timing")
    parser.add_argument("--methods", nargs="+", default=[],
                        help="catalog methods to time as well (through explain)")
    parser.add_argument("--memory-phase", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_phase:
        memory_worker(args)
        return 0
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda needs a CUDA device")
    if args.model != "paper" and (args.check or args.check_only):
        parser.error("--check compares against the paper network's reference: use --model paper")
    phases = [p for p in (PHASES if args.model == "paper" else MONAI_PHASES)
              if not (args.no_zennit and p.startswith("zennit"))]
    phases += [m for m in args.methods if m not in phases]
    zennit_repeats = args.zennit_repeats or args.repeats
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    timing = "" if args.check_only else (
        f", median of {args.repeats} (zennit {zennit_repeats}) after a warm-up")
    print(f"brainlrp LRP speed: {args.model}, grid {' x '.join(map(str, args.grid))}, {name}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}{timing}")
    for batch in [] if args.check_only else args.batch:
        model = make_model(tuple(args.grid), device, args.seed, args.model)
        x = make_scans(tuple(args.grid), batch, device, args.seed)
        seconds = time_phases(phases, model, x, args.repeats, zennit_repeats, device)
        del model, x
        memory = {} if args.no_memory else {p: measure_memory(args, p, batch) for p in phases}
        print(f"\nbatch {batch}")
        print(f"  {'phase':<24s} {'seconds':>9s} {'x gradient':>11s} {'peak MB':>9s} "
              f"{'(setup MB)':>11s}")
        for phase in phases:
            mem = memory.get(phase)
            mem_text = (f"{mem['peak_mb']:>9.0f} {mem['setup_mb']:>11.0f}" if mem else "")
            print(f"  {phase:<24s} {seconds[phase]:>9.3f} "
                  f"{seconds[phase] / seconds['gradient']:>11.2f} {mem_text}")
        if args.model == "paper":
            print(f"  ratios: lrp-b0 / gradient = {seconds['lrp-b0'] / seconds['gradient']:.2f} "
                  f"(target <= 1.3), lrp-b1 / gradient = "
                  f"{seconds['lrp-b1'] / seconds['gradient']:.2f} (target <= 1.3)", end="")
            if "zennit-b0" in seconds:
                print(f", zennit-b0 / lrp-b0 = {seconds['zennit-b0'] / seconds['lrp-b0']:.2f} "
                      "(target >= 4)")
            else:
                print()
        else:
            pairs = {"lrp-b0": ("zennit-b0",),
                     "lrp-epsilon-plus": ("zennit-epsilon-plus-box", "zennit-epsilon-plus")}
            for ours, counterparts in pairs.items():
                text = "".join(f", {theirs} / {ours} = {seconds[theirs] / seconds[ours]:.2f}"
                               for theirs in counterparts if theirs in seconds)
                text += " (target >= 3)" if text else ""
                print(f"  ratios: {ours} / gradient = "
                      f"{seconds[ours] / seconds['gradient']:.2f} (target <= 1.5){text}")
    if args.check or args.check_only:
        return 0 if run_checks(args, device) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
