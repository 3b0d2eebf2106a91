"""The report's measures: one name and one definition each, and where they do not apply.

Every table header, tile, caption and figure axis that shows one of these numbers
takes its name from :data:`MEASURES` (:func:`name`, :func:`header`), and the methods
section lists the definitions once (:func:`definitions`), so a measure is called the
same everywhere and defined in one place. Two different numbers never share a name:
the benchmark's ``|.|-AUC vs atrophy`` (the AUC of the raw map's magnitude) and the
ground-truth section's ``relevance-AUC vs atrophy`` (the AUC of the relevance as
analysed, e.g. the positive part of an LRP map) used to be both "voxel AUC".

Where a measure does not apply to a method, the report shows :data:`NOT_APPLICABLE`
with the reason (:func:`not_applicable`) instead of a number that looks like a result.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from brainlrp import catalog
from brainlrp.report.html import Safe, fmt
from brainlrp.report.style import method_label

#: What the report shows where a measure does not apply to a method.
NOT_APPLICABLE = "n/a"



@dataclass(frozen=True)
class Measure:
    """One number the report shows for each method.

    Attributes
    ----------
    key : str
        Identifier (anchor ``#measure-<key>`` in the methods section).
    name : str
        The one display name, in headers, tiles, captions and axes. ``{k}`` stands
        for the run's number of top areas.
    definition : str
        One or two sentences: what is computed, over what, and which way is better.
        ``{k}`` and ``{threshold}`` (the atrophy threshold, in %) are filled in.
    source : str
        The run file (and column) the number comes from.
    better : str
        ``higher``, ``lower``, ``more negative`` or ``""`` (no direction): which way a
        method scores better, used when the report compares methods with the floors.
    not_applicable : callable, optional
        ``not_applicable(method) -> reason or None``.
    """

    key: str
    name: str
    definition: str
    source: str
    better: str = "higher"
    not_applicable: Callable[[str], str | None] | None = None


def _hc_ad_not_applicable(method: str) -> str | None:
    """HC/AD needs a map of the controls that the method could have made non-zero."""
    ref = catalog.describe(method).reference
    if ref in catalog.SELF_REFERENCES:
        return ("a control is its own healthy twin, so this method explains the control "
                "against itself and its map is zero by construction: the ratio says nothing "
                "about the method")
    return None


MEASURES: dict[str, Measure] = {m.key: m for m in (
    Measure("mass", "mass in atrophy",
            "Share of a map's relevance (as analysed: the positive part for LRP and "
            "attributions, the magnitude for sensitivities) that lies in truly atrophied "
            "voxels (more tissue lost than {threshold}), mean over the AD test scans.",
            "analysis/ground_truth_summary.tsv: mass_accuracy_mean; "
            "method_benchmark.tsv: mass_accuracy"),
    Measure("chance", "chance mass",
            "The share of brain voxels that are truly atrophied: the mass in atrophy of a "
            "map that is the same everywhere.",
            "analysis/ground_truth_summary.tsv: chance_mass_accuracy", better=""),
    Measure("auc_abs", "|.|-AUC vs atrophy",
            "ROC AUC, over brain voxels, of the map's magnitude |map| (both signs, before "
            "any relevance mode) for telling truly atrophied from intact voxels, mean over "
            "the AD test scans; 0.5 is chance. The method benchmark ranks by it.",
            "analysis/ground_truth_summary.tsv: auc_abs_mean; method_benchmark.tsv: auc_abs"),
    Measure("auc_relevance", "relevance-AUC vs atrophy",
            "The same ROC AUC of the relevance as analysed (for LRP and attributions the "
            "positive part: every voxel with negative or zero relevance ties at 0, which "
            "pulls the AUC towards 0.5, so it is lower than the |.|-AUC when much of a map "
            "is negative or zero).",
            "analysis/ground_truth_summary.tsv: auc_mean, auc_sd"),
    Measure("area_rho", "area ρ vs atrophy",
            "Spearman ρ over the atlas areas between a scan's relevance density and its true "
            "relative volume loss, mean over the AD test scans.",
            "analysis/ground_truth_summary.tsv: spearman_regions_mean"),
    Measure("topk_recall", "top-{k} recall",
            "Share of a scan's {k} truly most atrophied areas found among its {k} areas of "
            "highest relevance density, mean over the AD test scans.",
            "analysis/ground_truth_summary.tsv: topk_recall_mean; "
            "method_benchmark.tsv: topk_recall"),
    Measure("group_topk", "group top-{k} overlap",
            "Share of the disease model's {k} most atrophied areas among the {k} areas of "
            "highest AD gain (group mean over the controls' mean).",
            "analysis/ground_truth_summary.tsv: group_topk_overlap"),
    Measure("rho_restoration", "ρ restoration",
            "Spearman ρ over areas between the relevance in each area and its restoration "
            "importance, the drop in p(AD) when the area (grown by a few voxels, so the CSF "
            "next to it counts) is restored from the patient's healthy twin: does the map "
            "rank areas as the model uses them?",
            "analysis/method_benchmark.tsv: spearman_restoration"),
    Measure("unused_change", "relevance on unused change",
            "Share of the positive relevance (over the restored areas) in areas where the "
            "scan differs from its healthy twin (mean |scan − twin| at least a quarter of "
            "the most changed area's) but restoring the area moves p(AD) by less than 0.01: "
            "an explanation is not an anomaly map, so lower is better.",
            "analysis/method_benchmark.tsv: unused_change_share", better="lower"),
    Measure("sanity_top", "ρ top-layer rand.",
            "Spearman ρ between the map of the trained network and the map after "
            "re-initialising its top (output) layer, mean over AD scans. Low means the map "
            "depends on the learned weights (Adebayo et al. 2018); a model-free map stays "
            "at 1.",
            "analysis/sanity.tsv; summary.json: sanity_spearman_top_layer", better="lower"),
    Measure("sanity_all", "ρ all-layers rand.",
            "The same after re-initialising every weight layer.",
            "analysis/sanity.tsv; summary.json: sanity_spearman_all_layers", better="lower"),
    Measure("aopc", "AOPC",
            "Area over the perturbation curve: the mean drop in p(AD) as a scan's areas are "
            "replaced by the controls' mean image, most relevant first (Samek et al. 2017).",
            "analysis/faithfulness_aopc.tsv: aopc_relevance"),
    Measure("aopc_random", "AOPC random",
            "The same in random area orders: what a map with no information scores.",
            "analysis/faithfulness_aopc.tsv: aopc_random", better=""),
    Measure("aopc_difference", "AOPC − random",
            "AOPC minus AOPC random: above 0, replacing the areas the map marks lowers "
            "p(AD) faster than chance.",
            "analysis/faithfulness_aopc.tsv: aopc_difference; "
            "method_benchmark.tsv: aopc_difference"),
    Measure("cost", "cost (× gradient)",
            "Seconds per scan while explaining, over the input gradient's in the same run.",
            "analysis/method_benchmark.tsv: cost_ratio", better="lower"),
    Measure("hc_ad", "HC/AD relevance",
            "Mean total (whole-map) relevance of the healthy controls over that of the AD "
            "patients, on the test scans. The paper found very little relevance in "
            "controls: well below 1.",
            "analysis/relevance_totals.tsv; summary.json: hc_ad_ratio", better="lower",
            not_applicable=_hc_ad_not_applicable),
    Measure("hippocampus_r", "hippocampus r",
            "Pearson r over the true positives between hippocampal relevance (sum over the "
            "merged Hippocampus area) and hippocampal volume, with a two-sided permutation "
            "p. Negative: smaller hippocampi get more relevance (the paper: −0.56 at β=0).",
            "analysis/hippocampus.tsv: r, p_value", better="more negative"),
    Measure("fingerprint", "fingerprint similarity",
            "Mean cosine similarity between the relevance-density fingerprints (the 25 "
            "areas of highest mean density) of every pair of confident patients (true "
            "positives with p(AD) > 0.9). Low means individual explanations.",
            "analysis/fingerprint_similarity.tsv; summary.json: fingerprint_mean_similarity",
            better=""),
    Measure("fingerprint_min", "lowest fingerprint similarity",
            "The least similar pair's cosine similarity (patients A and B).",
            "summary.json: fingerprint_min_similarity", better=""),
)}


def name(key: str, k: int = 10) -> str:
    """The display name of a measure (``{k}``: the run's number of top areas).

    Raises
    ------
    KeyError
        For a key that is not in :data:`MEASURES` (a typo must not pass silently).
    """
    return MEASURES[key].name.format(k=k)


def definition(key: str, k: int = 10, threshold: float | None = None) -> str:
    """The definition of a measure with the run's ``k`` and atrophy threshold (a fraction
    of tissue lost; ``None``: named, not given) filled in."""
    where = "the analysis' threshold" if threshold is None else f"{100 * threshold:g} %"
    return MEASURES[key].definition.format(k=k, threshold=where)


def header(key: str, k: int = 10, suffix: str = "") -> Safe:
    """A table header or tile label: the measure's name, linked to its definition in the
    methods section, with the definition as tooltip."""
    return fmt('<a class="measure" href="#measure-{}" title="{}">{}</a>{}', key,
               definition(key, k), name(key, k), suffix)


def not_applicable(key: str, method: str) -> str | None:
    """Why ``key`` does not apply to ``method`` (``None`` when it does)."""
    rule = MEASURES[key].not_applicable
    return rule(method) if rule is not None else None


def na_cell(reason: str) -> Safe:
    """:data:`NOT_APPLICABLE` with its reason as tooltip (for a table cell)."""
    return fmt('<span class="na" title="{}">{}</span>', reason, NOT_APPLICABLE)


def definitions(keys, k: int = 10, threshold: float | None = None) -> Safe:
    """The definitions list of ``keys`` (each an anchor ``measure-<key>``), for the page."""
    items = "".join(
        fmt('<dt id="measure-{}">{}</dt><dd>{} <span class="source">({})</span></dd>', key,
            name(key, k), definition(key, k, threshold), MEASURES[key].source)
        for key in keys)
    return Safe(f'<dl class="measures">{items}</dl>')


#: Why a model-free floor can win a measure (by the floor's catalog name).
FLOOR_REASONS = {
    catalog.EDGES_FLOOR:
        "edge magnitude is high where atrophy widens the CSF spaces and sharpens the "
        "boundary between dark CSF and tissue (a shrinking hippocampus included), so it "
        "finds atrophy that is visible in the image without any model: a model-free map "
        "that scores well shows what the measure rewards, not what the model uses. "
        "Whether a map follows the model is measured by ρ restoration, the "
        "randomisation check and AOPC",
    catalog.NOISE_FLOOR:
        "uniform noise has no structure, so on this run the measure cannot tell the "
        "methods apart",
    catalog.DIFFERENCE_FLOOR:
        "the reference minus the scan shows every place the scan is darker than its "
        "healthy reference, atrophy and anatomical mismatch alike, without asking the "
        "model; an explanation against that reference that scores no better on a measure "
        "adds nothing there that the reference did not already show",
}


def floor_notes(scores: Mapping[str, Mapping[str, float]], k: int = 10) -> list[str]:
    """Sentences naming each model-free floor (``edges``, ``noise``) that scores better
    than every method usable on real data on some measure, with the numbers and why.

    Parameters
    ----------
    scores : mapping of measure key -> (mapping of method -> value)
        The numbers the section shows (NaN or missing: not measured). Methods that need
        the healthy twin are upper bounds and are not compared; measures without a
        direction (:attr:`Measure.better` empty) are skipped.
    k : int

    Returns
    -------
    list of str
        One sentence per floor that wins at least one measure.
    """
    won: dict[str, list[str]] = {}
    for key, values in scores.items():
        better = MEASURES[key].better
        if not better:
            continue
        sign = 1.0 if better == "higher" else -1.0
        finite = {m: float(v) for m, v in values.items()
                  if v is not None and np.isfinite(float(v))}
        floors = {m: v for m, v in finite.items() if catalog.describe(m).family == "floor"}
        usable = {m: v for m, v in finite.items() if catalog.describe(m).family != "floor"
                  and not catalog.describe(m).needs_twin}
        if not floors or not usable:
            continue
        best = max(usable, key=lambda m: sign * usable[m])
        for floor, v in floors.items():
            if sign * v > sign * usable[best]:
                won.setdefault(floor, []).append(
                    f"{name(key, k)} ({v:.2f}; best method {method_label(best)}: "
                    f"{usable[best]:.2f})")
    notes = []
    for floor, parts in won.items():
        base = catalog.describe(floor).base_name
        why = FLOOR_REASONS.get(base, "it uses no model, so the measure rewards something "
                                      "other than what the model uses")
        notes.append(f"The model-free {method_label(floor)} scores better than every "
                     f"method that needs no healthy twin on {'; on '.join(parts)}. Why: "
                     f"{why}.")
    return notes


__all__ = ["MEASURES", "NOT_APPLICABLE", "Measure",
           "definition", "definitions", "floor_notes", "header", "na_cell", "name",
           "not_applicable"]
