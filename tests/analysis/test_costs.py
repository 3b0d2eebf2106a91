"""Method costs: timed back to back against the gradient, on a clock the tests control."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from brainlrp.analysis import analyze, costs
from brainlrp.analysis.costs import measure_costs
from brainlrp.run import RunDir


class FakeWork:
    """A clock that advances only when a method runs, by that method's cost."""

    def __init__(self, cost: dict[str, float], first_call: float = 0.0):
        self.cost, self.first_call = cost, first_call
        self.now = 0.0
        self.calls: list[str] = []

    def clock(self) -> float:
        return self.now

    def run(self, method: str) -> None:
        # The first call of a method (kernels, a reference fit) costs extra.
        self.now += self.cost[method] + (self.first_call if method not in self.calls else 0)
        self.calls.append(method)


def test_ratios_are_to_the_gradient_and_skip_the_warm_up():
    work = FakeWork({"gradient": 2.0, "lrp-b0": 1.5, "slow": 6.0}, first_call=100.0)
    result = measure_costs(work.run, ["slow", "lrp-b0"], repeats=3, clock=work.clock)
    assert result.seconds == {"gradient": 2.0, "lrp-b0": 1.5, "slow": 6.0}
    assert result.ratio == {"gradient": 1.0, "lrp-b0": 0.75, "slow": 3.0}
    # One warm-up call per method, then three timed rounds over all of them.
    assert [work.calls.count(m) for m in ("gradient", "lrp-b0", "slow")] == [4, 4, 4]


def test_seconds_are_per_scan():
    work = FakeWork({"gradient": 2.0, "lrp-b0": 3.0})
    result = measure_costs(work.run, ["lrp-b0"], n_scans=2, repeats=1, clock=work.clock)
    assert result.seconds == {"gradient": 1.0, "lrp-b0": 1.5}


def test_the_median_ignores_a_burst_of_load():
    work = FakeWork({"gradient": 1.0, "lrp-b0": 1.0})
    calls = {"n": 0}

    def run(method):
        calls["n"] += 1
        work.run(method)
        if calls["n"] == 5:  # another process steals a core during one call
            work.now += 50.0

    result = measure_costs(run, ["lrp-b0"], repeats=5, clock=work.clock)
    assert result.ratio["lrp-b0"] == 1.0


def test_the_order_of_methods_changes_nothing():
    sequences = []
    for methods in (["a", "b", "c"], ["c", "a", "b"], ("b", "c", "a", "a")):
        work = FakeWork({"gradient": 1.0, "a": 2.0, "b": 3.0, "c": 4.0})
        result = measure_costs(work.run, methods, repeats=3, clock=work.clock)
        sequences.append((work.calls, result.ratio))
    assert sequences[0] == sequences[1] == sequences[2]
    # Rounds rotate the order: each method is timed at different positions.
    timed = sequences[0][0][4:]
    assert timed[:4] != timed[4:8]


def test_one_thread_while_timing_then_as_before():
    before = torch.get_num_threads()
    seen = []
    measure_costs(lambda m: seen.append(torch.get_num_threads()), ["lrp-b0"], repeats=1)
    assert set(seen) == {1}
    assert torch.get_num_threads() == before


def test_repeats_must_be_positive():
    with pytest.raises(ValueError, match="repeats must be at least 1, got 0"):
        measure_costs(lambda m: None, ["lrp-b0"], repeats=0)


def test_analyze_ranks_costs_measured_in_its_process(fake_run, monkeypatch):
    """The benchmark's cost column comes from timing every method with the gradient on the
    same scans in analyze (here on a clock that counts a method's work), not from the
    seconds explain recorded; which scans are timed does not depend on the methods'
    order."""
    RunDir(fake_run.root).record("explain", {"seconds_per_scan": {
        "gradient": 1.0, "lrp-b0": 50.0, "lrp-b1": 50.0, "gb": 50.0}})
    work = FakeWork({"gradient": 2.0, "lrp-b0": 1.5, "lrp-b1": 6.0, "gb": 2.0})
    timed: list[tuple[str, tuple]] = []

    def explain_fn(model, x, method):
        work.run(method)
        timed.append((method, tuple(x.shape)))
        return fake_run.explain_fn(model, x, method)

    monkeypatch.setattr(costs, "process_time", work.clock)
    records = []
    for methods in (None, ["gb", "lrp-b1", "lrp-b0"]):
        timed.clear()
        analyze(fake_run.root, model=fake_run.model, inputs_fn=fake_run.inputs_fn,
                explain_fn=explain_fn, methods=methods, faithfulness=False, sanity=False,
                n_permutations=50, progress=False)
        record = RunDir(fake_run.root).stage_record("analyze")["costs"]
        records.append((record, list(timed)))
        table = pd.read_csv(fake_run.root / "analysis" / "method_benchmark.tsv", sep="\t")
        ratio = dict(zip(table["method"], table["cost_ratio"], strict=True))
        assert ratio == {"lrp-b0": 0.75, "lrp-b1": 3.0, "gb": 1.0}
    assert records[0] == records[1]
    assert len(records[0][0]["scans"]) == 1


def test_a_method_that_cannot_run_is_left_out_but_never_the_gradient():
    work = FakeWork({"gradient": 1.0, "lrp-b0": 1.0})

    def run(method):
        if method == "lrp-ref@twin":
            raise LookupError("no twin")
        work.run(method)

    result = measure_costs(run, ["lrp-b0", "lrp-ref@twin"], repeats=2, clock=work.clock,
                           skip=(LookupError,))
    assert result.skipped == {"lrp-ref@twin": "no twin"}
    assert set(result.ratio) == {"gradient", "lrp-b0"}

    def broken(method):
        raise LookupError("no gradient")

    with pytest.raises(LookupError):
        measure_costs(broken, ["lrp-b0"], skip=(LookupError,))
