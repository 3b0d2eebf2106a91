"""Subject-level train/validation/test splits, stratified by diagnosis and seeded."""

from __future__ import annotations

import numpy as np
import pandas as pd

from brainlrp.data.cohort import CLASS_NAMES
from brainlrp.errors import BrainLRPError

SPLITS = ("train", "val", "test")


def _n_for(spec: float, n_class: int) -> int:
    if spec >= 1:
        return int(spec)
    return max(1, int(round(spec * n_class))) if spec > 0 else 0


def make_splits(subjects: pd.DataFrame, test: float = 30, val: float = 18,
                seed: int = 0) -> pd.DataFrame:
    """Split subjects into train/val/test, stratified by label.

    Parameters
    ----------
    subjects : pandas.DataFrame
        ``participant_id`` and ``label`` (0 HC, 1 AD), one row per subject.
    test, val : float
        Subjects per class when >= 1 (the paper: 30 test and 18 validation per
        class), or the fraction of each class when in (0, 1).
    seed : int
        Seed of the shuffle; the same seed gives the same split.

    Returns
    -------
    pandas.DataFrame
        ``participant_id``, ``split``, ``diagnosis``, ordered as ``subjects``.
    """
    for name, value in (("test", test), ("val", val)):
        if value < 0 or (1 <= value and value != int(value)):
            raise BrainLRPError(f"--{name} {value} is neither a count nor a fraction",
                                "give a whole number of subjects per class or a fraction "
                                "between 0 and 1")
    if subjects["participant_id"].duplicated().any():
        raise ValueError("subjects must have one row per participant")
    rng = np.random.default_rng(seed)
    split = pd.Series("train", index=subjects.index, dtype=object)
    for label, name in enumerate(CLASS_NAMES):
        idx = subjects.index[subjects["label"].astype(int) == label].to_numpy()
        if len(idx) == 0:
            raise BrainLRPError(f"the cohort has no {name} subjects",
                                "a classifier needs both HC and AD subjects")
        n_test, n_val = _n_for(test, len(idx)), _n_for(val, len(idx))
        if n_test + n_val + 1 > len(idx):
            raise BrainLRPError(
                f"too few {name} subjects for the split: {len(idx)} available, "
                f"{n_test} test + {n_val} validation + at least 1 training needed",
                "lower --test/--val (counts per class or fractions such as 0.2) "
                "or add subjects")
        order = rng.permutation(idx)
        split.loc[order[:n_test]] = "test"
        split.loc[order[n_test:n_test + n_val]] = "val"
    return pd.DataFrame({"participant_id": subjects["participant_id"].to_numpy(),
                         "split": split.to_numpy(),
                         "diagnosis": [CLASS_NAMES[int(v)] for v in subjects["label"]]})


def read_splits(path) -> pd.DataFrame:
    """Read ``splits.tsv`` and check it."""
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    if not {"participant_id", "split"} <= set(frame.columns):
        raise BrainLRPError(f"{path} lacks participant_id/split columns",
                            "delete it and run `brainlrp train` again")
    unknown = set(frame["split"]) - set(SPLITS)
    if unknown:
        raise BrainLRPError(f"{path} has unknown split names {sorted(unknown)}",
                            "use train, val and test")
    if frame["participant_id"].duplicated().any():
        raise BrainLRPError(f"{path} lists a participant twice",
                            "each subject belongs to exactly one split")
    return frame
