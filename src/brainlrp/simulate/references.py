"""The reference kinds only a simulated cohort has, registered into
:mod:`brainlrp.data.reference` when this module is imported (importing
:mod:`brainlrp.simulate` imports it):

``twin``
    The same person rendered without the disease
    (``derivatives/ground_truth/<pid>_desc-healthy_T1w.nii.gz``; a control is its own
    twin); the benchmark's upper bound, not for real data.
``rescan``
    The twin **scanned again** (same person, scanner and noise level, fresh noise;
    :func:`brainlrp.simulate.stage.healthy_rescan`): a perfectly registered healthy
    baseline scan, the best reference real data could ever give. The twin shares the
    scan's noise image, which no real reference can; the benchmark's ceiling for
    references a real patient could have.

``data`` builds references but never imports ``simulate``; the registry turns the
dependency around: this module registers its estimators with
:func:`~brainlrp.data.reference.register_reference`, and whatever explains against a
reference imports it first (:class:`brainlrp.explain.call.MethodCalls`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from brainlrp.data.preprocess import preprocess_image
from brainlrp.data.reference import Controls, Reference, register_reference
from brainlrp.errors import BrainLRPError
from brainlrp.simulate.ground_truth import config_path, healthy_twin_path
from brainlrp.simulate.stage import healthy_rescan

#: Re-scans kept in memory (rendering one takes seconds; every method reuses it).
RESCAN_CACHE = 16


class TwinReference(Reference):
    """``twin``: the simulated healthy twin of each scan's participant, preprocessed.

    A simulated control is its own healthy twin (rendering it without the disease
    renders the same scan): its twin is the preprocessed scan, so a twin reference
    explains nothing there instead of stopping the run.
    """

    def build_one(self, scan_id: str, x: np.ndarray | None = None) -> np.ndarray:
        """The twin of one scan (``x``: the preprocessed scan, a control's own twin)."""
        row, root = self.controls_.cohort_row(scan_id)
        path = healthy_twin_path(root, str(row["participant_id"]))
        if path.is_file():
            return self.controls_.file(path)
        if path.parent.is_dir() and int(row["label"]) == 0:
            return self.controls_.file(row["path"]) if x is None else np.asarray(
                x, dtype=np.float32)
        raise BrainLRPError(f"no healthy twin for scan {scan_id} ({path})",
                            "twins exist only in simulated cohorts, for AD subjects: use "
                            "--reference mean, knn or pca")


class RescanReference(Reference):
    """``rescan``: the simulated healthy twin of each scan's participant scanned again,
    preprocessed (a control: the control scanned again). The last ``cache_size``
    re-scans are kept (rendering one takes seconds; every method reuses it).

    Parameters
    ----------
    cache_size : int
    """

    def __init__(self, cache_size: int = RESCAN_CACHE):
        self.cache_size = cache_size

    def fit(self, controls: Controls) -> RescanReference:
        super().fit(controls)
        self.rescans_: dict[str, np.ndarray] = {}
        return self

    def build(self, scan_ids: Sequence[str], x: np.ndarray) -> np.ndarray:
        return np.stack([self.build_one(s) for s in scan_ids])

    def build_one(self, scan_id: str, x: np.ndarray | None = None) -> np.ndarray:
        """The re-scan of one scan's participant (``x`` is not needed)."""
        if scan_id in self.rescans_:
            return self.rescans_[scan_id]
        row, root = self.controls_.cohort_row(scan_id)
        if not config_path(root).is_file():
            raise BrainLRPError(f"no healthy re-scan for scan {scan_id}: {root} is not a "
                                "cohort made by brainlrp simulate",
                                "re-scans exist only in simulated cohorts: use --reference "
                                "mean, knn or pca")
        out = preprocess_image(healthy_rescan(root, str(row["participant_id"])),
                               self.controls_.prep)
        if len(self.rescans_) >= self.cache_size:
            self.rescans_.pop(next(iter(self.rescans_)))
        self.rescans_[scan_id] = out
        return out


register_reference("twin", TwinReference)
register_reference("rescan", RescanReference)

__all__ = ["RESCAN_CACHE", "RescanReference", "TwinReference"]
