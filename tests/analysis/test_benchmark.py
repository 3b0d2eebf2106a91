"""How planted and simulated benchmark rows merge, and whose recommendation a run takes."""

from __future__ import annotations

import pandas as pd

from brainlrp.analysis.benchmark import BENCHMARK_COLUMNS, run_recommendation, with_planted


def _rows(truth: str, methods: list[str], pick: str | None) -> pd.DataFrame:
    frame = pd.DataFrame({"rank": range(1, len(methods) + 1), "method": methods,
                          "recommended": [m == pick for m in methods], "truth": truth,
                          "mass_accuracy": 0.5})
    return frame.reindex(columns=list(BENCHMARK_COLUMNS))


def test_planted_rows_follow_the_simulated_ones_and_replace_unscored_rows():
    own = _rows("simulated", ["a", "b"], "a")
    planted = _rows("planted", ["b", "a"], "b").drop(columns=["truth"])
    merged = with_planted(own, planted)
    assert merged["truth"].tolist() == ["simulated", "simulated", "planted", "planted"]
    assert list(merged.columns) == list(BENCHMARK_COLUMNS)
    # A real cohort's own rows (no truth) give way to the planted ones.
    unscored = _rows("none", ["a", "b"], None)
    assert set(with_planted(unscored, planted)["truth"]) == {"planted"}
    assert with_planted(own, None) is own


def test_the_run_takes_the_recommendation_chosen_without_peeking():
    own = _rows("simulated", ["a", "b"], "a")
    planted = _rows("planted", ["b", "a"], "b")
    # The planted pick was chosen on validation plants; the simulated one on the test
    # patients it is scored on: the run takes the planted one.
    assert run_recommendation(with_planted(own, planted)) == "b"
    assert run_recommendation(own) == "a"
    # A planted benchmark that ranked nothing (the model did not respond) leaves the
    # simulated pick; no truth at all leaves none.
    assert run_recommendation(with_planted(own, _rows("planted", ["a", "b"], None))) == "a"
    assert run_recommendation(_rows("none", ["a", "b"], None)) is None
