"""The paper's three claims, checked on a run's numbers for one method.

1. LRP is specific to individuals (high inter-patient variability): the evidence
   is the fingerprints' similarity (judged by the reader; no verdict).
2. Very little AD relevance in healthy controls: HC / AD mean total relevance
   below 1.
3. Most gain in the temporal lobe and hippocampus: the hippocampus among the
   top-10 gain areas of the ranking group; the evidence also counts the top-10
   areas that lie in the temporal lobe (medial temporal lobe included).
"""

from __future__ import annotations

import pandas as pd

from brainlrp.analysis.summary import MethodSummary

#: Columns of ``analysis/claims.tsv`` (one row per method and claim).
CLAIMS_COLUMNS = ("method", "claim", "statement", "evidence", "verdict")
#: Parts of Neuromorphometrics area names that lie in the temporal lobe.
TEMPORAL_KEYWORDS = ("temporal", "hippocampus", "amygdala", "ent_", "parahippocampal",
                     "fusiform", "tmp_", "planum", "ttg_")
STATEMENTS = {
    "individual": "LRP is specific to individuals (high inter-patient variability)",
    "hc_low": "very little AD relevance in healthy controls",
    "temporal": "most gain in the temporal lobe and hippocampus",
}
TOP_GAIN = 10


def _number(value) -> str:
    if value is None or value != value:
        return "–"
    return f"{float(value):.3g}"


def is_temporal(area: str) -> bool:
    """Whether a merged Neuromorphometrics area lies in the temporal lobe (MTL included)."""
    name = area.lower()
    return any(word in name for word in TEMPORAL_KEYWORDS)


def claims(method: str, summary: MethodSummary, gain_ranking: list[str]) -> pd.DataFrame:
    """This run's evidence for each of the paper's claims, with a verdict.

    Parameters
    ----------
    method : str
    summary : MethodSummary
        The method's summary (fingerprints, HC / AD ratio).
    gain_ranking : list of str
        Areas by decreasing gain in the ranking group (empty without AD subjects).

    Returns
    -------
    pandas.DataFrame
        :data:`CLAIMS_COLUMNS`; verdict ``yes``, ``no`` or ``–`` (not judged).
    """
    rows = [{"claim": "individual",
             "evidence": f"mean cosine similarity of patients' fingerprints "
                         f"{_number(summary.fingerprint_mean_similarity)}, lowest "
                         f"{_number(summary.fingerprint_min_similarity)} (patients A and B)",
             "verdict": "–"}]
    ratio = summary.hc_ad_ratio
    rows.append({"claim": "hc_low",
                 "evidence": f"HC / AD mean total relevance = {_number(ratio)}",
                 "verdict": "–" if ratio is None or ratio != ratio else
                 ("yes" if ratio < 1 else "no")})
    if gain_ranking:
        hip = [i for i, a in enumerate(gain_ranking) if a.lower() == "hippocampus"]
        rank = hip[0] + 1 if hip else None
        temporal = sum(1 for a in gain_ranking[:TOP_GAIN] if is_temporal(a))
        rows.append({"claim": "temporal",
                     "evidence": f"{temporal} of the top-{TOP_GAIN} gain areas lie in the "
                                 "temporal lobe (medial temporal lobe included); hippocampus "
                                 f"rank {rank or '–'} of {len(gain_ranking)}; top 3: "
                                 + ", ".join(gain_ranking[:3]),
                     "verdict": "yes" if rank and rank <= TOP_GAIN else "no"})
    frame = pd.DataFrame(rows)
    frame.insert(0, "method", method)
    frame.insert(2, "statement", frame["claim"].map(STATEMENTS))
    return frame[list(CLAIMS_COLUMNS)]
