"""Disease models: AD atrophy patterns as data (JSON), validated against the atlas.

A disease model is a small JSON document::

    {
      "name": "default",
      "description": "...",
      "severity": [0.3, 0.9],
      "region_jitter": 0.2,
      "subtypes": {
        "typical": {"weight": 0.5, "regions": {"Hippocampus": 0.4, "Left_TMP_temporal_pole": 0.2}},
        ...
      },
      "references": ["..."]
    }

* ``subtypes``: name -> ``weight`` (prevalence; normalised over subtypes) and
  ``regions``: Neuromorphometrics region -> relative volume loss at severity 1, in
  [0, 1]. A region is a label name (``Left_Hippocampus``) or a merged area name
  (``Hippocampus``, meaning the left and the right label). CSF spaces (ventricles,
  ``CSF``) cannot atrophy; they grow by themselves when the tissue next to them
  shrinks.
* ``severity``: ``[low, high]`` with ``0 <= low <= high < 1``; each patient draws
  a severity uniformly from it.
* ``region_jitter`` (optional, default 0.2): standard deviation of a log-normal
  factor (mean 1) drawn per patient and per label, so patients of one subtype
  still differ.

A patient's relative volume loss of label ``k`` is
``severity * weight_k * jitter_k``, capped at :data:`MAX_LOSS`.
"""

from __future__ import annotations

import copy
import difflib
import functools
import json
import math
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from brainlrp.errors import BrainLRPError

#: Largest relative volume loss of one label (keeps the deformation invertible).
MAX_LOSS = 0.6
#: Default per-label jitter (sd of the log-normal factor).
DEFAULT_JITTER = 0.2
#: Areas that hold CSF: they enlarge, they cannot be atrophied.
CSF_AREAS = frozenset({"3rd_Ventricle", "4th_Ventricle", "CSF", "Lateral Ventricles"})
#: Neuromorphometrics label names of CSF spaces (used as sinks for lost volume).
CSF_LABELS = frozenset({"3rd_Ventricle", "4th_Ventricle", "CSF", "Left_Inf_Lat_Vent",
                        "Right_Inf_Lat_Vent", "Left_Lateral_Ventricle",
                        "Right_Lateral_Ventricle"})


@dataclass(frozen=True)
class Subtype:
    """One atrophy subtype: its prevalence and its per-label losses at severity 1."""

    name: str
    weight: float
    #: label name -> relative volume loss at severity 1 (areas already expanded)
    labels: dict[str, float]


@dataclass(frozen=True)
class DiseaseModel:
    """A validated disease model (see the module docstring for the JSON format).

    Attributes
    ----------
    name : str
    severity : tuple of float
        ``(low, high)``, ``0 <= low <= high < 1``.
    subtypes : tuple of Subtype
        Prevalence weights normalised to sum to 1.
    region_jitter : float
    source : dict
        The JSON document as given (written next to the cohort).
    """

    name: str
    severity: tuple[float, float]
    subtypes: tuple[Subtype, ...]
    region_jitter: float = DEFAULT_JITTER
    source: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def label_names(self) -> list[str]:
        """Every label some subtype atrophies, in first-seen order."""
        return list(dict.fromkeys(n for s in self.subtypes for n in s.labels))

    def subtype(self, name: str) -> Subtype:
        """The subtype called ``name``."""
        for s in self.subtypes:
            if s.name == name:
                return s
        raise KeyError(name)

    def draw(self, rng: np.random.Generator) -> tuple[str, float, dict[str, float]]:
        """Draw a patient: subtype name, severity and relative loss per label.

        The number of random draws does not depend on the outcome, so a patient's
        other random choices stay the same whatever the model says.
        """
        u_subtype, u_severity = rng.random(2)
        labels = self.label_names
        z = rng.standard_normal(len(labels))
        weights = np.array([s.weight for s in self.subtypes])
        k = int(np.searchsorted(np.cumsum(weights), u_subtype * weights.sum(), side="right"))
        subtype = self.subtypes[min(k, len(self.subtypes) - 1)]
        lo, hi = self.severity
        severity = float(lo + (hi - lo) * u_severity)
        sd = self.region_jitter
        losses = {}
        for name, zi in zip(labels, z, strict=True):
            w = subtype.labels.get(name, 0.0)
            if w > 0:
                jitter = math.exp(sd * zi - sd * sd / 2)  # log-normal with mean 1
                losses[name] = float(min(MAX_LOSS, severity * w * jitter))
        return subtype.name, severity, losses

    def expected_loss(self, labels: str | list[str], n_draws: int = 200_000,
                      seed: int = 0) -> float:
        """Expected relative volume loss of a label (or the mean over several labels)
        over the model's patients: Monte Carlo over the same distribution as
        :meth:`draw`, vectorised (the cap at ``MAX_LOSS`` makes it non-linear)."""
        names = [labels] if isinstance(labels, str) else list(labels)
        rng = np.random.default_rng(seed)
        weights = np.array([s.weight for s in self.subtypes])
        subtype = rng.choice(len(self.subtypes), size=n_draws, p=weights / weights.sum())
        lo, hi = self.severity
        severity = rng.uniform(lo, hi, size=n_draws)
        sd = self.region_jitter
        total = np.zeros(n_draws)
        for name in names:
            w = np.array([s.labels.get(name, 0.0) for s in self.subtypes])[subtype]
            jitter = np.exp(sd * rng.standard_normal(n_draws) - sd * sd / 2)
            total += np.minimum(MAX_LOSS, severity * w * jitter)
        return float(total.mean() / len(names))

    def to_json(self) -> dict:
        """The model as given, plus the resolved labels of each subtype."""
        doc = copy.deepcopy(self.source) if self.source else {"name": self.name}
        doc["resolved_labels"] = {s.name: s.labels for s in self.subtypes}
        return doc


def shipped_models() -> dict[str, Path]:
    """Disease models shipped with brainlrp: name -> JSON path."""
    folder = resources.files("brainlrp.simulate") / "models"
    return {Path(str(p)).stem: Path(str(p)) for p in folder.iterdir()
            if str(p).endswith(".json")}


def load_disease_model(model: str | os.PathLike | dict | DiseaseModel = "default"
                       ) -> DiseaseModel:
    """Load and validate a disease model.

    Parameters
    ----------
    model : str, path-like, dict or DiseaseModel
        A shipped model's name (see :func:`shipped_models`), a JSON file, or the
        JSON document itself.

    Raises
    ------
    BrainLRPError
        Unknown name, unreadable JSON, unknown region (with close matches),
        negative or too large weight, no subtypes, severity outside [0, 1).
    """
    if isinstance(model, DiseaseModel):
        return model
    if isinstance(model, dict):
        return parse_disease_model(model, "<disease model>")
    text = str(model)
    shipped = shipped_models()
    if text in shipped and not Path(text).suffix:
        path = shipped[text]
    else:
        path = Path(text)
        if not path.is_file():
            hint = difflib.get_close_matches(text, list(shipped), n=1)
            raise BrainLRPError(
                f"unknown disease model {text!r}" + (f" (did you mean {hint[0]!r}?)"
                                                     if hint else ""),
                f"use a shipped model ({', '.join(sorted(shipped))}) or a JSON file")
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise BrainLRPError(f"cannot read the disease model {path} ({exc})",
                            "pass a readable JSON file") from None
    except json.JSONDecodeError as exc:
        raise BrainLRPError(f"the disease model {path} is not valid JSON (line {exc.lineno}: "
                            f"{exc.msg})", "fix the JSON syntax") from None
    return parse_disease_model(doc, str(path))


def parse_disease_model(doc: dict, where: str) -> DiseaseModel:
    """Validate a disease model document (see the module docstring)."""
    fix = "see docs/simulation.md for the disease model format"
    if not isinstance(doc, dict):
        raise BrainLRPError(f"{where}: a disease model is a JSON object, got "
                            f"{type(doc).__name__}", fix)
    known = {"name", "description", "severity", "region_jitter", "subtypes", "references",
             "atlas", "resolved_labels"}
    extra = sorted(set(doc) - known)
    if extra:
        raise BrainLRPError(f"{where}: unknown key(s) {', '.join(map(repr, extra))}",
                            f"use only {', '.join(sorted(known - {'resolved_labels'}))}")
    atlas = doc.get("atlas", "neuromorphometrics")
    if str(atlas).lower() != "neuromorphometrics":
        raise BrainLRPError(f"{where}: atlas {atlas!r} is not supported",
                            "disease models name Neuromorphometrics regions")
    severity = doc.get("severity")
    if (not isinstance(severity, list | tuple) or len(severity) != 2
            or not all(_is_number(v) for v in severity)):
        raise BrainLRPError(f"{where}: 'severity' must be a range [low, high], got {severity!r}",
                            "e.g. \"severity\": [0.3, 0.9]")
    lo, hi = (float(v) for v in severity)
    if not (0 <= lo <= hi < 1):
        raise BrainLRPError(f"{where}: severity range [{lo:g}, {hi:g}] is outside [0, 1) "
                            "or reversed", "use 0 <= low <= high < 1, e.g. [0.3, 0.9]")
    jitter = doc.get("region_jitter", DEFAULT_JITTER)
    if not _is_number(jitter) or not 0 <= float(jitter) < 1:
        raise BrainLRPError(f"{where}: region_jitter must be a number in [0, 1), got "
                            f"{jitter!r}", "e.g. \"region_jitter\": 0.2")
    raw = doc.get("subtypes")
    if not isinstance(raw, dict) or not raw:
        raise BrainLRPError(f"{where}: the model has no subtypes",
                            "add \"subtypes\": {\"typical\": {\"weight\": 1, \"regions\": "
                            "{\"Hippocampus\": 0.4}}}")
    resolver = _region_resolver()
    subtypes = []
    for name, spec in raw.items():
        what = f"{where}: subtype {name!r}"
        if not isinstance(spec, dict) or not isinstance(spec.get("regions"), dict):
            raise BrainLRPError(f"{what} needs a 'regions' map of region name to weight",
                                fix)
        weight = spec.get("weight", 1.0)
        if not _is_number(weight) or float(weight) < 0:
            raise BrainLRPError(f"{what} has weight {weight!r}; a subtype weight is its "
                                "prevalence, a number >= 0", "e.g. \"weight\": 0.5")
        if not spec["regions"]:
            raise BrainLRPError(f"{what} atrophies no region", "add at least one region")
        labels: dict[str, float] = {}
        for region, w in spec["regions"].items():
            if not _is_number(w) or not 0 <= float(w) <= 1:
                raise BrainLRPError(
                    f"{what}: region {region!r} has weight {w!r}; a region weight is the "
                    "relative volume loss at severity 1, in [0, 1]",
                    "use a number between 0 and 1, e.g. 0.4")
            for label in resolver(region, what):
                labels[label] = max(labels.get(label, 0.0), float(w))
        subtypes.append(Subtype(name=str(name), weight=float(weight), labels=labels))
    total = sum(s.weight for s in subtypes)
    if total <= 0:
        raise BrainLRPError(f"{where}: every subtype has weight 0",
                            "give at least one subtype a positive weight (its prevalence)")
    subtypes = tuple(Subtype(s.name, s.weight / total, s.labels) for s in subtypes)
    source = {k: v for k, v in doc.items() if k != "resolved_labels"}
    return DiseaseModel(name=str(doc.get("name", Path(where).stem)), severity=(lo, hi),
                        subtypes=subtypes, region_jitter=float(jitter), source=source)


def _is_number(value) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


@functools.lru_cache(maxsize=1)
def _region_tables() -> tuple[dict[str, str], dict[str, list[str]]]:
    """Neuromorphometrics label names -> area, and area -> label names."""
    from brainlrp.atlas import load_atlas

    table = load_atlas("neuromorphometrics").labels
    label_area = dict(zip(table["name"], table["area"], strict=True))
    area_labels: dict[str, list[str]] = {}
    for name, area in label_area.items():
        area_labels.setdefault(area, []).append(name)
    return label_area, area_labels


def _region_resolver():
    label_area, area_labels = _region_tables()

    def resolve(region: str, what: str) -> list[str]:
        region = str(region)
        if region in label_area:
            names = [region]
        elif region in area_labels:
            names = area_labels[region]
        else:
            choices = list(label_area) + list(area_labels)
            close = difflib.get_close_matches(region, choices, n=3, cutoff=0.5)
            lower = {c.lower(): c for c in choices}
            if region.lower() in lower:
                close = [lower[region.lower()]]
            raise BrainLRPError(
                f"{what}: unknown region {region!r}"
                + (f"; close matches: {', '.join(close)}" if close else ""),
                "use a Neuromorphometrics label (e.g. Left_Hippocampus) or area "
                "(e.g. Hippocampus); docs/simulation.md lists them")
        csf = [n for n in names if n in CSF_LABELS or label_area[n] in CSF_AREAS]
        if csf:
            raise BrainLRPError(f"{what}: {region!r} is a CSF space and cannot atrophy",
                                "name tissue regions; ventricles enlarge by themselves next "
                                "to shrinking tissue")
        return names

    return resolve


def region_names() -> list[str]:
    """Every region name a disease model may use: areas, then labels."""
    label_area, area_labels = _region_tables()
    areas = [a for a in area_labels if a not in CSF_AREAS]
    labels = [n for n in label_area if n not in CSF_LABELS and label_area[n] not in CSF_AREAS]
    return areas + labels
