"""Subject-level splits: disjoint, stratified, seeded."""

from __future__ import annotations

import pandas as pd
import pytest

from brainlrp.data.splits import make_splits
from brainlrp.errors import BrainLRPError


def _subjects(n_cn=40, n_ad=30):
    return pd.DataFrame({"participant_id": [f"s{i}" for i in range(n_cn + n_ad)],
                         "label": [0] * n_cn + [1] * n_ad})


def test_counts_per_class_and_disjoint():
    splits = make_splits(_subjects(), test=5, val=3, seed=1)
    assert splits["participant_id"].is_unique
    counts = splits.groupby(["split", "diagnosis"]).size()
    assert counts["test", "HC"] == 5 and counts["test", "AD"] == 5
    assert counts["val", "HC"] == 3 and counts["val", "AD"] == 3
    assert counts["train", "HC"] == 32 and counts["train", "AD"] == 22


def test_fractions():
    splits = make_splits(_subjects(), test=0.2, val=0.1, seed=0)
    counts = splits.groupby(["split", "diagnosis"]).size()
    assert counts["test", "HC"] == 8 and counts["test", "AD"] == 6
    assert counts["val", "HC"] == 4 and counts["val", "AD"] == 3


def test_same_seed_same_split_and_other_seed_differs():
    a = make_splits(_subjects(), test=5, val=3, seed=7)
    b = make_splits(_subjects(), test=5, val=3, seed=7)
    c = make_splits(_subjects(), test=5, val=3, seed=8)
    pd.testing.assert_frame_equal(a, b)
    assert not a["split"].equals(c["split"])


def test_paper_defaults_need_enough_subjects():
    with pytest.raises(BrainLRPError, match="too few HC subjects"):
        make_splits(_subjects(40, 60))  # 30 + 18 + 1 > 40


def test_ad_precedence_subject_counts_once(bids_cohort):
    from brainlrp.data.cohort import load_cohort

    cohort = load_cohort(bids_cohort)
    splits = make_splits(cohort.subjects, test=2, val=1, seed=0)
    assert set(splits["participant_id"]) == set(cohort.subjects["participant_id"])
