"""The analysis summary (``analysis/summary.json`` and ``summary.tsv``) as dataclasses.

Each analysis returns its part of a method's summary as a small dataclass whose
fields are fields of :class:`MethodSummary`; the stage merges them with
:meth:`MethodSummary.update`. Readers (the report) load the file back with
:func:`read_summary` and use attributes, never string keys.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from brainlrp._io import read_json, write_json


@dataclass(frozen=True)
class MethodSummary:
    """One method's headline numbers (``None`` where an analysis did not run).

    Attributes
    ----------
    relevance : str
        How heatmaps became relevance (positive, signed, absolute).
    n_scans, n_ad, n_hc : int
        Scans analysed; AD and HC subjects among them.
    hc_ad_ratio : float
        Mean total relevance of controls over that of patients.
    fingerprint_n_patients, fingerprint_mean_similarity, fingerprint_min_similarity
        Confident true positives (p(AD) > 0.9) and the cosine similarity of their
        density fingerprints (mean over pairs, lowest pair).
    patient_a, patient_b : str
        The least similar pair.
    hippocampus_n, hippocampus_r, hippocampus_p
        Pearson r of hippocampal relevance with hippocampal volume (TPs), permutation p.
    gt_n_subjects, gt_mass_accuracy, gt_chance_mass_accuracy, gt_auc, gt_auc_abs,
    gt_spearman_regions, gt_topk_recall, gt_group_topk_overlap
        Recovery of the simulated atrophy (:mod:`brainlrp.analysis.groundtruth`).
    gt_spearman_restoration
        Mean Spearman over areas of the relevance in each restored (grown) area with
        the restoration importance (:mod:`brainlrp.analysis.twins`).
    gt_unused_change_share
        Mean share of the positive relevance in areas the scan changed in but the model
        does not use (:func:`brainlrp.analysis.twins.unused_change_share`; lower is
        better).
    aopc_relevance, aopc_random, aopc_difference
        Region perturbation (:mod:`brainlrp.analysis.faithfulness`).
    sanity_spearman_top_layer, sanity_spearman_all_layers
        Cascading randomisation (:mod:`brainlrp.analysis.sanity`).
    """

    relevance: str | None = None
    n_scans: int | None = None
    n_ad: int | None = None
    n_hc: int | None = None
    hc_ad_ratio: float | None = None
    fingerprint_n_patients: int | None = None
    fingerprint_mean_similarity: float | None = None
    fingerprint_min_similarity: float | None = None
    patient_a: str | None = None
    patient_b: str | None = None
    hippocampus_n: int | None = None
    hippocampus_r: float | None = None
    hippocampus_p: float | None = None
    gt_n_subjects: int | None = None
    gt_mass_accuracy: float | None = None
    gt_chance_mass_accuracy: float | None = None
    gt_auc: float | None = None
    gt_auc_abs: float | None = None
    gt_spearman_regions: float | None = None
    gt_spearman_restoration: float | None = None
    gt_unused_change_share: float | None = None
    gt_topk_recall: float | None = None
    gt_group_topk_overlap: float | None = None
    aopc_relevance: float | None = None
    aopc_random: float | None = None
    aopc_difference: float | None = None
    sanity_spearman_top_layer: float | None = None
    sanity_spearman_all_layers: float | None = None

    def update(self, *parts: Any) -> MethodSummary:
        """A copy with the fields of each part (a dataclass or dict) set."""
        out = self
        for part in parts:
            values = part if isinstance(part, dict) else asdict(part)
            out = replace(out, **values)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MethodSummary:
        """Rebuild from JSON (unknown keys are ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


#: Keys of every method in ``summary.json`` (and columns of ``summary.tsv`` after ``method``).
SUMMARY_KEYS = tuple(f.name for f in fields(MethodSummary))


@dataclass
class AnalysisSummary:
    """``analysis/summary.json``: the analysis settings and every method's summary."""

    atlas: str
    n_labels: int
    n_areas: int
    relevance: dict[str, str]
    top_k: int
    threshold: float | None
    seed: int
    disease_model_top_areas: list[str] | None
    methods: dict[str, MethodSummary] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    #: The method benchmark's recommendation (None without ground truth).
    recommended_method: str | None = None

    def method(self, name: str) -> MethodSummary:
        """The summary of ``name`` (all ``None`` for a method that was not analysed)."""
        return self.methods.get(name) or MethodSummary()

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        d = asdict(self)
        d["methods"] = {m: asdict(s) for m, s in self.methods.items()}
        # The contract's key order: notices last.
        d["notices"] = d.pop("notices")
        if self.recommended_method is None:
            d.pop("recommended_method")
        else:
            d = {"recommended_method": d.pop("recommended_method"), **d}
        return d

    def write(self, path: str | os.PathLike) -> Path:
        """Write ``summary.json`` atomically."""
        write_json(path, self.to_dict())
        return Path(path)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnalysisSummary:
        """Rebuild from JSON."""
        return cls(atlas=data.get("atlas", "?"), n_labels=data.get("n_labels", 0),
                   n_areas=data.get("n_areas", 0), relevance=dict(data.get("relevance") or {}),
                   top_k=data.get("top_k", 10), threshold=data.get("threshold"),
                   seed=data.get("seed", 0),
                   disease_model_top_areas=data.get("disease_model_top_areas"),
                   methods={m: MethodSummary.from_dict(v or {})
                            for m, v in (data.get("methods") or {}).items()},
                   notices=list(data.get("notices") or []),
                   recommended_method=data.get("recommended_method"))


def read_summary(path: str | os.PathLike) -> AnalysisSummary:
    """Read ``analysis/summary.json``."""
    return AnalysisSummary.from_dict(read_json(path))


__all__ = ["SUMMARY_KEYS", "AnalysisSummary", "MethodSummary", "read_summary"]
