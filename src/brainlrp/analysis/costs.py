"""What each explanation method costs, as a multiple of the input gradient.

The method benchmark's cost column (:mod:`~brainlrp.analysis.benchmark`) breaks ties and
sets the recommendation's budget, so it must not depend on what else the machine does.
Times taken while ``explain`` runs do: the first batch pays for kernel set-up, a
reference method's first call for fitting its reference model, and every other process
on the machine slows whatever runs beside it (a busy machine showed ``lrp-b0`` at 5.2x
the gradient, where it takes 0.6-0.8x). Here every method is timed in one process on
the same scan(s), back to back:

- one warm-up call per method first (kernels, allocator, lazy imports, one-time
  reference fits such as reading the training controls; a scan's own reference is
  built inside every call and counts);
- then ``repeats`` rounds over all methods, the input gradient (``gradient``, the
  unit of the ratios) always among them, in one order whatever the caller's, each
  round starting one method later (a load that drifts within a round does not always
  fall on the same methods); the median per method;
- on the process's CPU time (:func:`time.process_time`) with one thread, torch's and
  numpy's. CPU time does not advance while the process waits for a core, which is
  where another busy process costs wall time; and a single thread neither waits for
  a descheduled partner at a barrier (wall time) nor spins there (CPU time of several
  threads), which distorts the ratios of methods with many short parallel steps. With
  two threads on 2 shared cores the same loop's wall time put ``lrp-b0`` anywhere
  from 0.49x to 1.32x the gradient; one thread's CPU time kept it at 0.62-0.80x
  (README, Speed).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from time import process_time

from brainlrp import catalog

#: The unit of the cost ratios.
COST_REFERENCE = catalog.COST_UNIT
#: Rounds over all methods (the median of these is kept).
DEFAULT_REPEATS = 5


@dataclass(frozen=True)
class MethodCosts:
    """Seconds per scan of each method and their ratio to the input gradient.

    Attributes
    ----------
    seconds : dict of str to float
        Median CPU seconds per scan (one thread), per method.
    ratio : dict of str to float
        ``seconds[m] / seconds["gradient"]``.
    scan_ids : list of str
        The scans timed (set by the caller, which chose them).
    repeats : int
    clock : str
        What was measured, e.g. ``"process_time, 1 thread"``.
    skipped : dict of str to str
        Methods that could not run on the timed scans, with the reason.
    """

    seconds: dict[str, float]
    ratio: dict[str, float]
    scan_ids: list[str] = field(default_factory=list)
    repeats: int = DEFAULT_REPEATS
    clock: str = ""
    skipped: dict[str, str] = field(default_factory=dict)


@contextmanager
def _threads(n: int | None):
    """Torch's intra-op threads and the BLAS/OpenMP pools numpy uses (a reference's
    nearest controls) set to ``n`` for the block (``None``: unchanged)."""
    if n is None:
        yield
        return
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    with threadpool_limits(limits=n):
        torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(before)


def measure_costs(run_method: Callable[[str], object], methods: Iterable[str],
                  n_scans: int = 1, repeats: int = DEFAULT_REPEATS,
                  clock: Callable[[], float] | None = None, threads: int | None = 1,
                  skip: tuple[type[Exception], ...] = ()) -> MethodCosts:
    """Time each method back to back (see the module docstring).

    Parameters
    ----------
    run_method : callable
        ``run_method(method)`` explains the timed scan(s) with ``method`` (the caller
        binds model and scans).
    methods : iterable of str
        Methods to time; ``gradient`` is always timed as well.
    n_scans : int
        Scans ``run_method`` explains per call (the seconds are per scan).
    repeats : int
        Rounds over all methods.
    clock : callable, optional
        The clock (seconds); by default the process's CPU time
        (:func:`time.process_time`).
    threads : int, optional
        Torch's and numpy's threads while timing (``None``: leave as set).
    skip : tuple of exception types
        A method whose warm-up call raises one of these is left out (its message in
        :attr:`MethodCosts.skipped`); the gradient is never left out.

    Returns
    -------
    MethodCosts
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    clock = clock or process_time
    # One fixed order whatever the caller's: the timings never depend on how the
    # methods were listed.
    order = sorted({*methods, COST_REFERENCE})
    skipped: dict[str, str] = {}
    with _threads(threads):
        for method in order:
            try:
                run_method(method)
            except skip as exc:
                if method == COST_REFERENCE:
                    raise
                skipped[method] = str(exc)
        order = [m for m in order if m not in skipped]
        times: dict[str, list[float]] = {m: [] for m in order}
        for round_ in range(repeats):
            shift = round_ % len(order)
            for method in order[shift:] + order[:shift]:
                tick = clock()
                run_method(method)
                times[method].append((clock() - tick) / max(n_scans, 1))
    seconds = {m: statistics.median(v) for m, v in times.items()}
    unit = seconds[COST_REFERENCE]
    ratio = {m: s / unit if unit > 0 else float("nan") for m, s in seconds.items()}
    what = getattr(clock, "__name__", "clock") + (
        f", {threads} thread{'s' if threads != 1 else ''}" if threads is not None else "")
    return MethodCosts(seconds=seconds, ratio=ratio, repeats=repeats, clock=what,
                       skipped=skipped)


def run_costs(ctx, results, shape: tuple[int, ...], config, notices: list[str]
              ) -> MethodCosts | None:
    """Every method's cost on a seeded sample of AD test scans of ``analyze``
    (``config``: its :class:`~brainlrp.configs.AnalysisConfig`; ``ctx``: the run's
    :class:`~brainlrp.analysis.checks.ModelContext`); ``None`` without such a scan."""
    import copy
    import time
    from dataclasses import replace

    import torch

    from brainlrp.analysis.checks import check_sample, load_model_inputs
    from brainlrp.errors import BrainLRPError

    ids = check_sample(results, config.cost_subjects, config.seed)
    if not ids:
        notices.append("no AD scan was explained by every method: costs not measured")
        return None
    x = torch.from_numpy(load_model_inputs(ctx.inputs_fn, ids, shape))
    model = copy.deepcopy(ctx.model).eval()
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    x = x.to(device)
    explain_fn = (ctx.explain_fn.for_scans(ids) if hasattr(ctx.explain_fn, "for_scans")
                  else ctx.explain_fn)
    if device.type == "cuda":  # CPU time says nothing about a GPU's work: wall time
        def run_method(method):
            explain_fn(model, x, method)
            torch.cuda.synchronize(device)

        costs = measure_costs(run_method, results, n_scans=len(ids),
                              repeats=config.cost_repeats, clock=time.perf_counter,
                              threads=None, skip=(BrainLRPError,))
    else:  # one thread's CPU time: see brainlrp.analysis.costs
        costs = measure_costs(lambda method: explain_fn(model, x, method), results,
                              n_scans=len(ids), repeats=config.cost_repeats,
                              skip=(BrainLRPError,))
    for method, reason in costs.skipped.items():
        notices.append(f"{method}: cost not measured ({reason})")
    return replace(costs, scan_ids=list(ids))

__all__ = ["COST_REFERENCE", "DEFAULT_REPEATS", "MethodCosts", "measure_costs", "run_costs"]
