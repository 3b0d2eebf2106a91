"""Run summary: headline numbers, the paper's claims on this run, cohort, grid, timings."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from brainlrp import catalog
from brainlrp.report import glossary, paper, style
from brainlrp.report.html import (
    Safe,
    Section,
    esc,
    fmt,
    heading,
    key_values,
    paragraph,
    table,
    tiles,
)
from brainlrp.report.inputs import RunData
from brainlrp.report.sections.context import Context, fixed
from brainlrp.report.sections.spec import SectionSpec
from brainlrp.report.style import fmt_number, fmt_p, fmt_seconds, method_html, method_label

#: The section showing each claim's evidence, linked where the analysis gave no verdict.
CLAIM_SECTIONS = {"individual": "fingerprints", "hc_low": "regions", "temporal": "regions",
                  "plausible": "regions", "ground_truth": "ground-truth",
                  "randomisation": "sanity"}
VERDICTS = ("yes", "partly", "no")
#: Phrases of ``analysis/claims.tsv``'s evidence that name a measure, in the order they
#: are replaced by the measure's one name (:mod:`brainlrp.report.glossary`): the file
#: says "voxel AUC" for the relevance-AUC, which readers took for the benchmark's |.|-AUC.
EVIDENCE_TERMS = (
    ("mean cosine similarity of patients' fingerprints", "fingerprint", "{}"),
    ("HC / AD mean total relevance =", "hc_ad", "{} ="),
    ("share of relevance in truly atrophied voxels", "mass", "{}"),
    ("voxel AUC", "auc_relevance", "{}"),
    ("rank correlation with the trained map after re-initialising the top layer",
     "sanity_top", "{}"),
    (", all layers", "sanity_all", ", {}"),
)
#: The measure each claim judges by (a claim whose measure does not apply is not judged).
CLAIM_MEASURES = {"hc_low": "hc_ad"}


def build(ctx: Context, sec: Section) -> None:
    """Headline tiles, the claims, the run's description, the split and the timings."""
    data, main = ctx.data, ctx.main
    test = data.test_scans()
    m_test = (data.metrics or {}).get("test", {})
    items = []
    if m_test:
        items.append(("balanced accuracy (test)", fixed(m_test.get("balanced_accuracy")),
                      f"sensitivity {fixed(m_test.get('sensitivity'))}, specificity "
                      f"{fixed(m_test.get('specificity'))}"))
        items.append(("ROC AUC (test)", fixed(m_test.get("roc_auc")),
                      f"n = {m_test.get('n', len(test))} scans"))
    items += method_tiles(data, main)
    from brainlrp.report.sections import section_number

    if main == data.summary.recommended_method:
        chosen = f", recommended by the method benchmark (§{section_number('benchmark')})"
    elif data.summary.recommended_method is None:
        chosen = (", the catalog's default: nothing in this run is scored against a ground "
                  "truth, so the choice is the one measured on the default simulated cohort "
                  f"(README), not on these scans; `brainlrp benchmark {data.rd.root}` plants "
                  "known atrophy into the run's held-out controls and chooses on them")
        if not catalog.describe(main).name == catalog.DEFAULT_METHODS[0]:
            chosen = (f", the paper's LRP: nothing in this run is scored against a ground "
                      f"truth and the catalog's default {catalog.DEFAULT_METHODS[0]} was not "
                      f"analysed; `brainlrp benchmark {data.rd.root}` ranks the methods on "
                      "planted atrophy")
    else:
        chosen = ""
    sec.add(paragraph(fmt("The model's test classification, then the method shown in depth, "
                          "{}{}; each measure's name links to its definition.",
                          method_html(main), chosen)),
            tiles(items))
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
    if card.source is not None:
        rows.insert(-1, ("imported from", card.source.describe()))
    sec.add(heading("Run"), key_values(rows))
    split_counts = split_table(data)
    if split_counts is not None:
        sec.add(heading("Split (subjects)"), table(split_counts))
    timing_rows = timings(data.run, ctx.timings)
    if timing_rows:
        sec.add(heading("Timings"),
                table(pd.DataFrame(timing_rows, columns=["stage", "time", "details"])))


def method_tiles(data: RunData, main: str) -> list[tuple[str, str, str]]:
    """Tiles of the method shown in depth, each named (and linked to its definition) by
    the glossary, the method's id in each; the paper's hippocampus r beside the same
    method of this run (:func:`paper_match`); a floor that beats the method is named."""
    s = data.summary.method(main)
    who = fmt('<code class="method-id">{}</code>', main)
    items = []
    reason = glossary.not_applicable("hc_ad", main)
    items.append((glossary.header("hc_ad"),
                  glossary.NOT_APPLICABLE if reason else fmt_number(s.hc_ad_ratio),
                  fmt("{}: {}", who, reason or "mean total relevance of controls over "
                                               "patients")))
    items.append((glossary.header("fingerprint"), fmt_number(s.fingerprint_mean_similarity),
                  fmt("{}: mean cosine over {} confident patients", who,
                      s.fingerprint_n_patients or 0)))
    match = paper_match(data)
    if match is None or match[0] != main:
        items.append((glossary.header("hippocampus_r"), style.fmt_r(s.hippocampus_r),
                      fmt("{}: {}, n = {}; the paper did not test this method{}", who,
                          fmt_p(s.hippocampus_p), s.hippocampus_n or 0,
                          floor_remark(data, main, "hippocampus_r", "hippocampus"))))
    if match is not None:
        method, beta, r, paper_value = match
        m = data.summary.method(method)
        items.append((glossary.header("hippocampus_r", suffix=f" at β={beta:g} (the paper's "
                                                              "LRP)"),
                      style.fmt_r(r),
                      fmt('<code class="method-id">{}</code> on this run ({}, n = {}{}); the '
                          "paper: {} (Böhle et al. 2019)", method, fmt_p(m.hippocampus_p),
                          m.hippocampus_n or 0,
                          "" if _finite(r) else ": too few true positives for r",
                          style.fmt_r(paper_value).replace("-", "−"))))
    if s.gt_mass_accuracy is not None:
        items.append((glossary.header("mass"), fmt_number(s.gt_mass_accuracy),
                      fmt("{}: chance {} (simulated ground truth){}", who,
                          fmt_number(s.gt_chance_mass_accuracy),
                          floor_remark(data, main, "mass", "benchmark"))))
    if s.gt_auc_abs is not None:
        items.append((glossary.header("auc_abs"), fmt_number(s.gt_auc_abs),
                      fmt("{}: 0.5 is chance (simulated ground truth){}", who,
                          floor_remark(data, main, "auc_abs", "benchmark"))))
    return items


def _finite(value) -> bool:
    return value is not None and bool(np.isfinite(float(value)))


#: The summary field of each measure a tile compares with the floors.
_SUMMARY_FIELDS = {"mass": "gt_mass_accuracy", "auc_abs": "gt_auc_abs",
                   "hippocampus_r": "hippocampus_r"}


def floor_remark(data: RunData, method: str, key: str, section: str) -> str:
    """``; the model-free Edges (floor) [edges] scores 0.75 (§2 says why)`` when a floor
    of this run scores better than ``method`` on ``key``; empty otherwise."""
    from brainlrp.report.sections import section_number

    field = _SUMMARY_FIELDS[key]
    sign = 1.0 if glossary.MEASURES[key].better == "higher" else -1.0
    mine = getattr(data.summary.method(method), field)
    if mine is None or not np.isfinite(mine):
        return ""
    parts = []
    for floor in data.methods:
        v = getattr(data.summary.method(floor), field)
        if (catalog.describe(floor).family == "floor" and v is not None and np.isfinite(v)
                and sign * v > sign * mine):
            parts.append(f"{method_label(floor)} scores {v:.2f}")
    if not parts:
        return ""
    return (f"; the model-free {' and '.join(parts)} (§{section_number(section)} says "
            "why)")


def paper_match(data: RunData) -> tuple[str, float, float | None, float] | None:
    """The paper's hippocampus r and the same method's r on this run: ``(method, beta,
    r on this run or None, the paper's r)`` for the lowest of the paper's betas analysed
    (β = 0, ``lrp-b0``, when it was); ``None`` when none was.

    The paper reports r only for its beta rule, so only an ``lrp-b<beta>`` of this run
    compares like with like; the recommended method is shown on its own.
    """
    ranked = sorted((b, m) for m, b in catalog.paper_betas(data.methods)
                    if b in paper.HIPPOCAMPUS_R)
    if not ranked:
        return None
    beta, method = ranked[0]
    r = data.summary.method(method).hippocampus_r
    return method, beta, r if _finite(r) else None, paper.HIPPOCAMPUS_R[beta]


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

    claims = claims.copy()
    for i, row in claims.iterrows():
        key = CLAIM_MEASURES.get(str(row["claim"]))
        reason = glossary.not_applicable(key, method) if key else None
        if reason:
            claims.loc[i, ["verdict", "evidence"]] = [glossary.NOT_APPLICABLE,
                                                      f"{row['evidence']}; not judged: {reason}"]
    frame = claims.assign(agrees=[verdict(r) for _, r in claims.iterrows()],
                          evidence=[measure_names(short_area_names(str(e), areas))
                                    for e in claims["evidence"]])
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


def measure_names(text: str) -> str:
    """``text`` with the phrases of :data:`EVIDENCE_TERMS` replaced by the measures' names."""
    for phrase, key, template in EVIDENCE_TERMS:
        text = text.replace(phrase, template.format(glossary.name(key)))
    return text


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
