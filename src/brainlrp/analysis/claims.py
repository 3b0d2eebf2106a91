"""What this run's numbers say about the paper's claims, and about the explanation itself.

One row per method and claim, with the evidence and a verdict a reader of the
paper would accept (``yes``, ``partly``, ``no``, or ``–`` when not judged):

``individual``
    LRP is specific to individuals (high inter-patient variability). The evidence
    is the fingerprints' similarity; there is no reference distribution to judge
    it against, so no verdict.
``hc_low``
    Very little AD relevance in healthy controls: yes when controls carry less than
    half the patients' mean total relevance (HC / AD < 0.5), partly below 1.
``temporal``
    Most gain in the temporal lobe and hippocampus: yes when the hippocampus is
    among the top-10 gain areas *and* at least half of them lie in the temporal
    lobe (medial temporal lobe included); partly when one of the two holds.
``plausible``
    The top-10 gain areas are plausible for AD: no when any lies where AD atrophy
    does not (cerebellum, brain stem, fourth ventricle), naming them.
``ground_truth``
    The relevance finds the atrophy the cohort really has (simulated cohorts): yes
    when the share of relevance in truly atrophied voxels is at least twice chance
    and the voxel AUC at least 0.7; partly when it is above 1.2x chance or the AUC
    above 0.6; no otherwise.
``randomisation``
    The map depends on what the model learned (cascading randomisation): yes when
    re-initialising the top layer leaves a rank correlation with the trained map
    below 0.5, partly below 0.9, no otherwise.

A model that classifies near chance (test balanced accuracy below 0.7) makes its
explanations meaningless: every verdict is then ``–`` and the evidence says why.
"""

from __future__ import annotations

import pandas as pd

from brainlrp.analysis.summary import MethodSummary

#: Columns of ``analysis/claims.tsv`` (one row per method and claim).
CLAIMS_COLUMNS = ("method", "claim", "statement", "evidence", "verdict")
#: Parts of Neuromorphometrics area names that lie in the temporal lobe.
TEMPORAL_KEYWORDS = ("temporal", "hippocampus", "amygdala", "ent_", "parahippocampal",
                     "fusiform", "tmp_", "planum", "ttg_")
#: Parts of area names where AD relevance is implausible (no AD atrophy there).
IMPLAUSIBLE_KEYWORDS = ("cerebellum", "cerebellar", "brain_stem", "brainstem",
                        "4th_ventricle", "fourth_ventricle")
STATEMENTS = {
    "individual": "LRP is specific to individuals (high inter-patient variability)",
    "hc_low": "very little AD relevance in healthy controls",
    "temporal": "most gain in the temporal lobe and hippocampus",
    "plausible": "the areas of highest gain are plausible for AD",
    "ground_truth": "the relevance finds the atrophy the patients really have",
    "randomisation": "the map depends on what the model learned (randomisation check)",
}
TOP_GAIN = 10
#: Below this test balanced accuracy no verdict is given.
MIN_BALANCED_ACCURACY = 0.7


def _number(value) -> str:
    if value is None or value != value:
        return "–"
    return f"{float(value):.3g}"


def _known(value) -> bool:
    return value is not None and value == value


def is_temporal(area: str) -> bool:
    """Whether a merged Neuromorphometrics area lies in the temporal lobe (MTL included)."""
    name = area.lower()
    return any(word in name for word in TEMPORAL_KEYWORDS)


def is_implausible(area: str) -> bool:
    """Whether AD relevance in this area is implausible (cerebellum, brain stem, 4th ventricle)."""
    name = area.lower().replace(" ", "_")
    return any(word in name for word in IMPLAUSIBLE_KEYWORDS)


def claims(method: str, summary: MethodSummary, gain_ranking: list[str],
           balanced_accuracy: float | None = None) -> pd.DataFrame:
    """This run's evidence for each claim, with a verdict.

    Parameters
    ----------
    method : str
    summary : MethodSummary
        The method's finished summary (fingerprints, HC / AD ratio, ground truth,
        sanity check).
    gain_ranking : list of str
        Areas by decreasing gain in the ranking group (empty without AD subjects).
    balanced_accuracy : float, optional
        The model's test balanced accuracy; below 0.7 no verdict is given.

    Returns
    -------
    pandas.DataFrame
        :data:`CLAIMS_COLUMNS`.
    """
    rows = [{"claim": "individual",
             "evidence": f"mean cosine similarity of patients' fingerprints "
                         f"{_number(summary.fingerprint_mean_similarity)}, lowest "
                         f"{_number(summary.fingerprint_min_similarity)} (patients A and B); "
                         "not judged: there is no reference for 'high variability'",
             "verdict": "–"}]
    ratio = summary.hc_ad_ratio
    rows.append({"claim": "hc_low",
                 "evidence": f"HC / AD mean total relevance = {_number(ratio)} "
                             "(yes below 0.5, partly below 1)",
                 "verdict": "–" if not _known(ratio) else
                 "yes" if ratio < 0.5 else "partly" if ratio < 1 else "no"})
    if gain_ranking:
        top = gain_ranking[:TOP_GAIN]
        hip = [i for i, a in enumerate(gain_ranking) if a.lower() == "hippocampus"]
        rank = hip[0] + 1 if hip else None
        temporal = sum(1 for a in top if is_temporal(a))
        in_top = rank is not None and rank <= TOP_GAIN
        mostly = temporal * 2 >= len(top)
        rows.append({"claim": "temporal",
                     "evidence": f"{temporal} of the top-{len(top)} gain areas lie in the "
                                 "temporal lobe (medial temporal lobe included); hippocampus "
                                 f"rank {rank or '–'} of {len(gain_ranking)}; top 3: "
                                 + ", ".join(gain_ranking[:3]),
                     "verdict": "yes" if in_top and mostly else
                     "partly" if in_top or mostly else "no"})
        odd = [a for a in top if is_implausible(a)]
        rows.append({"claim": "plausible",
                     "evidence": ("implausible for AD among the top-10 gain areas: "
                                  + ", ".join(odd)) if odd else
                     "no cerebellum, brain stem or fourth ventricle among the top-10 gain "
                     "areas",
                     "verdict": "no" if odd else "yes"})
    mass, chance, auc = (summary.gt_mass_accuracy, summary.gt_chance_mass_accuracy,
                         summary.gt_auc)
    if _known(mass) and _known(chance) and chance > 0:
        ratio_gt = mass / chance
        good = ratio_gt >= 2 and _known(auc) and auc >= 0.7
        some = ratio_gt > 1.2 or (_known(auc) and auc > 0.6)
        rows.append({"claim": "ground_truth",
                     "evidence": f"share of relevance in truly atrophied voxels "
                                 f"{_number(mass)} vs chance {_number(chance)} "
                                 f"({ratio_gt:.2f}x), voxel AUC {_number(auc)}",
                     "verdict": "yes" if good else "partly" if some else "no"})
    top_layer = summary.sanity_spearman_top_layer
    if _known(top_layer):
        rows.append({"claim": "randomisation",
                     "evidence": f"rank correlation with the trained map after "
                                 f"re-initialising the top layer {_number(top_layer)}, all "
                                 f"layers {_number(summary.sanity_spearman_all_layers)} "
                                 "(a faithful map changes: yes below 0.5)",
                     "verdict": "yes" if top_layer < 0.5 else
                     "partly" if top_layer < 0.9 else "no"})
    frame = pd.DataFrame(rows)
    if _known(balanced_accuracy) and balanced_accuracy < MIN_BALANCED_ACCURACY:
        frame["evidence"] = frame["evidence"] + (
            f"; not judged: the model is near chance (test balanced accuracy "
            f"{balanced_accuracy:.2f}), so its explanations say little")
        frame["verdict"] = "–"
    frame.insert(0, "method", method)
    frame.insert(2, "statement", frame["claim"].map(STATEMENTS))
    return frame[list(CLAIMS_COLUMNS)]
