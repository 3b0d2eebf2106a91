"""Intensity quality control: does a preprocessed scan look like the training scans?

A model only knows the intensities it was trained on. A new scan whose brain is much
darker or brighter after preprocessing (skull left in, another contrast, a failed bias
correction, a scan scaled by a stray bright voxel) is explained, but its p(AD) means
little. The training stage stores the **intensity profile** of its training scans: for
each of :data:`LEVELS` (percentiles of the intensities inside the template brain mask)
the median over the training scans and a robust spread. A new scan is flagged when one
of its percentiles lies more than :data:`MAX_ROBUST_Z` robust standard deviations from
the training median.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Percentiles of the brain's intensities that make up a profile.
LEVELS = (5.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0)
#: A scan this many robust standard deviations from the training median is flagged.
MAX_ROBUST_Z = 5.0
#: Smallest robust standard deviation used (on the [0, 1] scale): training scans that are
#: nearly identical (a simulation) must not turn a 1 % difference into an alarm.
MIN_SPREAD = 0.02


def brain_percentiles(array: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The :data:`LEVELS` percentiles of ``array`` inside ``mask``."""
    values = np.asarray(array, dtype=np.float32)[np.asarray(mask, dtype=bool)]
    return np.percentile(values, LEVELS) if values.size else np.full(len(LEVELS), np.nan)


@dataclass(frozen=True)
class IntensityCheck:
    """How a scan's brain intensities compare with the training scans'."""

    z: float
    level: float
    value: float
    expected: float
    flagged: bool

    @property
    def reason(self) -> str:
        """One line for a notice (empty when not flagged)."""
        if not self.flagged:
            return ""
        side = "darker" if self.value < self.expected else "brighter"
        return (f"its brain is {side} than the training scans' after preprocessing: the "
                f"{self.level:g}th intensity percentile is {self.value:.3f}, the training "
                f"median {self.expected:.3f} ({abs(self.z):.1f} robust SD)")

    def to_dict(self) -> dict:
        """JSON form for prediction.json."""
        return {"robust_z": round(self.z, 2), "percentile": self.level,
                "value": round(self.value, 4), "training_median": round(self.expected, 4),
                "flagged": self.flagged, "reason": self.reason}


@dataclass(frozen=True)
class IntensityProfile:
    """Median and robust spread of the training scans' brain intensity percentiles.

    Attributes
    ----------
    median, spread : tuple of float
        One value per :data:`LEVELS` percentile; ``spread`` is 1.4826 x MAD.
    n_scans : int
    """

    median: tuple[float, ...]
    spread: tuple[float, ...]
    n_scans: int

    @classmethod
    def fit(cls, arrays: Sequence[str | os.PathLike | np.ndarray],
            mask: np.ndarray) -> IntensityProfile:
        """The profile of preprocessed scans (arrays or cached ``.npy`` paths)."""
        rows = np.stack([brain_percentiles(np.load(a, mmap_mode="r") if not isinstance(
            a, np.ndarray) else a, mask) for a in arrays])
        median = np.median(rows, axis=0)
        spread = 1.4826 * np.median(np.abs(rows - median), axis=0)
        return cls(median=tuple(float(v) for v in median),
                   spread=tuple(float(v) for v in spread), n_scans=len(rows))

    def check(self, array: np.ndarray, mask: np.ndarray) -> IntensityCheck:
        """Compare one preprocessed scan with the profile."""
        values = brain_percentiles(array, mask)
        median = np.asarray(self.median)
        z = (values - median) / np.maximum(np.asarray(self.spread), MIN_SPREAD)
        i = int(np.nanargmax(np.abs(z)))
        return IntensityCheck(z=float(z[i]), level=LEVELS[i], value=float(values[i]),
                              expected=float(median[i]), flagged=bool(abs(z[i]) > MAX_ROBUST_Z))

    def to_dict(self) -> dict:
        """JSON form (the model card's ``preprocessing.intensity_profile``)."""
        return {"levels": list(LEVELS), "median": [round(v, 5) for v in self.median],
                "spread": [round(v, 5) for v in self.spread], "n_scans": self.n_scans}

    @classmethod
    def from_dict(cls, data: dict | None) -> IntensityProfile | None:
        """Rebuild from :meth:`to_dict` (``None`` when absent or made with other levels)."""
        if not data or tuple(data.get("levels", ())) != LEVELS:
            return None
        return cls(median=tuple(data["median"]), spread=tuple(data["spread"]),
                   n_scans=int(data["n_scans"]))


__all__ = ["LEVELS", "MAX_ROBUST_Z", "IntensityCheck", "IntensityProfile",
           "brain_percentiles"]
