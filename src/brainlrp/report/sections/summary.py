"""Run summary: headline numbers, the paper's claims on this run, cohort, grid, timings."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from brainlrp import catalog
from brainlrp.report import figures as figs
from brainlrp.report import style
from brainlrp.report.html import Safe, Section, esc, heading, key_values, table, tiles
from brainlrp.report.inputs import RunData
from brainlrp.report.sections.context import Context, fixed
from brainlrp.report.sections.spec import SectionSpec
from brainlrp.report.style import fmt_number, fmt_p, fmt_seconds, method_label

#: The section showing each claim's evidence, linked where the analysis gave no verdict.
CLAIM_SECTIONS = {"individual": "fingerprints", "hc_low": "regions", "temporal": "regions",
                  "plausible": "regions", "ground_truth": "ground-truth",
                  "randomisation": "sanity"}
VERDICTS = ("yes", "partly", "no")


def build(ctx: Context, sec: Section) -> None:
    """Headline tiles, the claims, the run's description, the split and the timings."""
    data, main = ctx.data, ctx.main
    s = data.summary.method(main)
    test = data.test_scans()
    m_test = (data.metrics or {}).get("test", {})
    items = []
    if m_test:
        items.append(("balanced accuracy (test)", fixed(m_test.get("balanced_accuracy")),
                      f"sensitivity {fixed(m_test.get('sensitivity'))}, specificity "
                      f"{fixed(m_test.get('specificity'))}"))
        items.append(("ROC AUC (test)", fixed(m_test.get("roc_auc")),
                      f"n = {m_test.get('n', len(test))} scans"))
    items.append(("HC / AD relevance", fmt_number(s.hc_ad_ratio),
                  f"{method_label(main)}: mean total relevance of controls over patients"))
    items.append(("fingerprint similarity", fmt_number(s.fingerprint_mean_similarity),
                  f"mean cosine over {s.fingerprint_n_patients or 0} confident patients"))
    items.append(("hippocampus r", style.fmt_r(s.hippocampus_r),
                  f"{fmt_p(s.hippocampus_p)}; {_paper_r(main)}"))
    if s.gt_mass_accuracy is not None:
        items.append(("relevance in true atrophy", fmt_number(s.gt_mass_accuracy),
                      f"chance {fmt_number(s.gt_chance_mass_accuracy)} (simulated ground "
                      "truth)"))
    sec.add(tiles(items))
    claims = ctx.table("claims")
    if len(claims):
        sec.add(claims_table(claims[claims["method"] == main], main, data.area_order(main)))

    cohort = data.run.get("cohort", {}) or {}
    pred = data.predictions
    subjects = pred.drop_duplicates("participant_id")
    n_ad = int((subjects["label"] == 1).sum())
    n_cn = int((subjects["label"] == 0).sum())
    card, summary = data.card, data.summary
    rows = [("cohort", f"{cohort.get('source') or 'not recorded'}"),
            ("subjects", f"{len(subjects)} ({n_ad} AD, {n_cn} HC); {len(pred)} scans"),
            ("test scans explained", f"{len(test)} (methods: "
                                     f"{', '.join(method_label(m) for m in data.methods)})"),
            ("grid", f"{data.grid.describe()} ({data.grid.to_dict()['space']})"),
            ("model", f"{card.architecture or 'unknown'}; classes {', '.join(card.classes)}"),
            ("atlas", f"{summary.atlas}: {summary.n_areas} areas (left and right merged) "
                      f"from {summary.n_labels} labels")]
    sec.add(heading("Run"), key_values(rows))
    split_counts = split_table(data)
    if split_counts is not None:
        sec.add(heading("Split (subjects)"), table(split_counts))
    timing_rows = timings(data.run, ctx.timings)
    if timing_rows:
        sec.add(heading("Timings"),
                table(pd.DataFrame(timing_rows, columns=["stage", "time", "details"])))


def _paper_r(method: str) -> str:
    """The paper's hippocampus r at the method's beta (at beta = 0 for other methods)."""
    beta = catalog.describe(method).paper_beta
    if beta is None or beta not in figs.PAPER_HIPPOCAMPUS_R:
        beta = 0.0
    return f"paper {style.fmt_r(figs.PAPER_HIPPOCAMPUS_R[beta]).replace('-', '−')} at β={beta:g}"


def claims_table(claims: pd.DataFrame, method: str, areas: Sequence[str] = ()) -> Safe:
    """``analysis/claims.tsv`` rows of one method as the claims table (verdicts
    coloured, rows tinted by verdict; a claim without one links to the section showing
    its evidence; raw atlas names in the evidence shortened by :func:`style.area_label`)."""
    from brainlrp.report.sections import section_number

    def verdict(row: pd.Series):
        v = str(row["verdict"])
        if v in VERDICTS:
            return Safe(f'<span class="{esc(v)}">{esc(v)}</span>')
        target = CLAIM_SECTIONS.get(str(row["claim"]))
        if target:
            return Safe(f'{esc(v)} <a href="#{esc(target)}">see §{section_number(target)}'
                        '</a>')
        return v

    frame = claims.assign(agrees=[verdict(r) for _, r in claims.iterrows()],
                          evidence=[short_area_names(str(e), areas) for e in claims["evidence"]])
    return table(frame, {"statement": "claim (Böhle et al. 2019, and checks of the maps)",
                         "evidence": f"this run ({method_label(method)})",
                         "agrees": "agrees?"},
                 row_class=lambda r: f"verdict-{r['verdict']}"
                 if str(r["verdict"]) in VERDICTS else "",
                 caption="The paper's claims and checks of the explanation on this run, as "
                         "judged by `brainlrp analyze` (analysis/claims.tsv; its thresholds "
                         "are in the documentation of brainlrp.analysis.claims). Without a "
                         "verdict the link leads to the evidence.",
                 table_id="claims")


def short_area_names(text: str, areas: Sequence[str]) -> str:
    """``text`` with each raw atlas area name (``MSFG_superior_frontal_gyrus_medial_segment``)
    replaced by its display label (:func:`style.area_label`); other words untouched."""
    names = sorted((a for a in areas if a and a in text), key=len, reverse=True)
    if not names:
        return text
    pattern = re.compile(r"(?<![\w])(" + "|".join(map(re.escape, names)) + r")(?![\w])")
    return pattern.sub(lambda m: style.area_label(m.group(1), 48), text)


def split_table(data: RunData) -> pd.DataFrame | None:
    """Subjects per split and diagnosis (``splits.tsv``, else the predictions' split)."""
    splits = data.splits
    pred = data.predictions.drop_duplicates("participant_id")
    if splits is not None and {"participant_id", "split"} <= set(splits.columns):
        s = splits.drop_duplicates("participant_id").set_index("participant_id")["split"]
        frame = pred.assign(split=pred["participant_id"].map(s).fillna(pred["split"]))
    else:
        frame = pred
    if "split" not in frame or frame["split"].eq("").all():
        return None
    frame = frame.assign(diagnosis=np.where(frame["label"] == 1, "AD", "HC"))
    counts = frame.groupby(["split", "diagnosis"]).size().unstack(fill_value=0)
    order = [s for s in ("train", "val", "test") if s in counts.index] + \
        [s for s in counts.index if s not in ("train", "val", "test")]
    counts = counts.reindex(order)
    counts["total"] = counts.sum(axis=1)
    return counts.reset_index()


def timings(run: dict, report_seconds: dict[str, float] | None) -> list[tuple[str, str, str]]:
    """One row per recorded stage of ``run.json``, then this report's."""
    rows = []
    for stage, info in (run.get("stages") or {}).items():
        if not isinstance(info, dict) or stage == "report":  # this run's is added below
            continue
        seconds = info.get("seconds")
        detail = []
        if stage == "train":
            if info.get("preprocess_seconds") is not None:
                detail.append(f"preprocessing {fmt_seconds(info['preprocess_seconds'])}")
            trials = info.get("trials") or []
            if trials:
                detail.append(f"{len(trials)} trial(s), epochs "
                              + ", ".join(str(t.get("epochs", "?")) for t in trials))
        elif stage == "explain":
            if info.get("n_scans"):
                detail.append(f"{info['n_scans']} scans x {len(info.get('methods', []))} "
                              "methods")
        elif stage == "analyze":
            t = info.get("timings") or {}
            detail += [f"{k} {fmt_seconds(v)}" for k, v in t.items()
                       if k in ("faithfulness", "sanity")]
        rows.append((stage, fmt_seconds(seconds) if seconds is not None else "–",
                     "; ".join(detail)))
    if report_seconds:
        rows.append(("report", fmt_seconds(sum(report_seconds.values())),
                     "this page and the cards"))
    return rows


SPEC = SectionSpec(
    "summary", "Run summary",
    "What was run on which data, and the headline results; the sections below show each "
    "in detail.",
    build, requires=("analysis/summary.json",),
    optional=(("analysis/claims.tsv", "the paper's claims checked on this run"),),
    last=True, data=("analysis/claims.tsv", "analysis/summary.json", "analysis/summary.tsv"))
