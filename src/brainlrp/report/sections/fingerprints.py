"""Individual fingerprints: similarity matrix, patients A and B, numbers per method."""

from __future__ import annotations

import pandas as pd

from brainlrp.report import figures as figs
from brainlrp.report import glossary
from brainlrp.report.html import Section, table
from brainlrp.report.sections.context import Context
from brainlrp.report.sections.spec import SectionSpec
from brainlrp.report.style import method_html, method_label


def build(ctx: Context, sec: Section) -> None:
    """The main method's similarity matrix and profiles; the summary of every method."""
    data, main = ctx.data, ctx.main
    fp, sim = ctx.table("fingerprints"), ctx.table("fingerprint_similarity")
    f = fp[fp["method"] == main]
    s = sim[sim["method"] == main]
    summary = data.summary.method(main)
    if len(f) and len(s):
        matrix = s.pivot(index="participant_a", columns="participant_b",
                         values="cosine_similarity")
        order = list(dict.fromkeys(f["participant_id"]))
        matrix = matrix.reindex(index=order, columns=order)
        profiles = f.pivot(index="participant_id", columns="area", values="relevance_density")
        areas = f.drop_duplicates("area").sort_values("area_rank")["area"].tolist()
        profiles = profiles.reindex(index=order, columns=areas)
        pats = {k: str(v) for k, v in (("A", summary.patient_a), ("B", summary.patient_b))
                if v is not None}
        fig = figs.fingerprint_figure(matrix, profiles, pats)
        sec.add(ctx.fig(fig, "fingerprint similarity and patients A and B",
                        f"{method_label(main)}: cosine similarity between every pair of "
                        "confident patients (left; the least similar pair, A and B, is boxed) "
                        "and the two patients' density over the fingerprint areas (right).",
                        "fig-fingerprints"))
    rows = []
    for m in data.methods:
        v = data.summary.method(m)
        rows.append({"method": method_html(m), "patients": v.fingerprint_n_patients,
                     "mean": v.fingerprint_mean_similarity,
                     "lowest": v.fingerprint_min_similarity,
                     "patient A": v.patient_a, "patient B": v.patient_b})
    sec.add(table(pd.DataFrame(rows),
                  {"method": "method", "patients": "patients",
                   "mean": glossary.header("fingerprint"),
                   "lowest": glossary.header("fingerprint_min"), "patient A": "patient A",
                   "patient B": "patient B"},
                  numeric=["patients", "mean", "lowest"],
                  caption="Mean and lowest pairwise cosine similarity of the fingerprints, "
                          "per method.",
                  table_id="fingerprint-table"))


SPEC = SectionSpec(
    "fingerprints", "Individual fingerprints",
    "Is LRP specific to individuals? For the confidently detected patients (true positives "
    "with p(AD) > 0.9), the relevance density over the 25 areas of highest mean density "
    "forms a fingerprint; low cosine similarity means individual explanations (the paper's "
    "Fig. 7).",
    build, requires=("analysis/fingerprints.tsv", "analysis/fingerprint_similarity.tsv"),
    why="fingerprints need true positives with p(AD) > 0.9",
    data=("analysis/fingerprints.tsv", "analysis/fingerprint_similarity.tsv"))
