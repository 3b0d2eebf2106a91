"""The report's sections, in pipeline order: data in, :class:`~brainlrp.report.html.Section` out.

Each ``*_section`` function takes the :class:`Context` (the run's data plus what is
shared: template, atlas, the subjects' scans) and returns one section. A missing
optional input never raises: the section says what is missing and which command
produces it.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from brainlrp.analysis.metrics import beta_of
from brainlrp.errors import BrainLRPError
from brainlrp.report import figures as figs
from brainlrp.report import style
from brainlrp.report.html import (
    Safe,
    Section,
    details,
    esc,
    fmt,
    heading,
    key_values,
    note,
    table,
    tiles,
)
from brainlrp.report.html import figure as html_figure
from brainlrp.report.inputs import RunData, per_participant
from brainlrp.report.niivue import example_viewer
from brainlrp.report.style import area_label, fmt_number, fmt_p, fmt_seconds, method_label

#: Axial cuts (z, mm) of the group-mean slices: temporal lobe and hippocampus to vertex.
AXIAL_CUTS = (-36, -24, -14, -4, 8, 20, 34, 50)
TOP_AREAS = 25
PAPER = ("Böhle M, Eitel F, Weygandt M, Ritter K (2019). Layer-wise relevance propagation "
         "for explaining deep neural network decisions in MRI-based Alzheimer's disease "
         "classification. Front. Aging Neurosci. 11:194. doi:10.3389/fnagi.2019.00194 "
         "(arXiv:1903.07317)")

InputsFn = Callable[[list[str]], np.ndarray]


@dataclass(eq=False)
class Context:
    """What every section shares.

    Attributes
    ----------
    data : RunData
    main : str
        The method shown in depth (the first LRP method, the paper's beta = 0 when present).
    compare : str or None
        The method shown beside it (guided backprop, the paper's comparison).
    inputs_fn : callable or None
        ``inputs_fn(scan_ids) -> (n, 1, X, Y, Z)``: the subjects' preprocessed scans.
    notes : list of str
        Notes collected while building (shown in the methods section).
    timings : dict
        Seconds per section.
    """

    data: RunData
    main: str
    compare: str | None
    inputs_fn: InputsFn | None
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    #: Per scan: the top-10 area with the largest z-score against the controls (cards).
    raised: dict[str, tuple[str, float]] = field(default_factory=dict)
    _atlas: object = None
    _atlas_failed: bool = False
    _inputs_failed: str = ""

    @property
    def grid(self):
        """The model grid."""
        return self.data.grid

    @property
    def affine(self) -> np.ndarray:
        """The model grid's affine."""
        return self.data.grid.affine_array

    def template(self) -> np.ndarray:
        """The ICBM 2009c template on the model grid."""
        from brainlrp.data.grid import template

        return np.asarray(template(self.grid))

    def mask(self) -> np.ndarray:
        """The template brain mask on the model grid."""
        from brainlrp.data.grid import brain_mask

        return np.asarray(brain_mask(self.grid))

    def atlas(self):
        """The analysis atlas fitted to the grid (``None``, with a note, if unavailable)."""
        if self._atlas is None and not self._atlas_failed:
            from brainlrp.analysis.regions import AtlasRegions

            name = self.data.summary.get("atlas") or "neuromorphometrics"
            try:
                self._atlas = AtlasRegions.fit(name, self.grid)
            except (BrainLRPError, OSError, ValueError) as exc:
                self._atlas_failed = True
                self.notes.append(f"the atlas {name} could not be loaded ({exc}); region "
                                  "outlines and viewer labels are left out")
        return self._atlas

    def scans(self, scan_ids: list[str]) -> tuple[list[np.ndarray], str]:
        """The subjects' own preprocessed scans, or the template with a note on why."""
        if self.inputs_fn is not None and not self._inputs_failed:
            try:
                x = np.asarray(self.inputs_fn(list(scan_ids)), dtype=np.float32)
                if x.ndim == 5:
                    x = x[:, 0]
                if x.shape == (len(scan_ids), *self.grid.shape):
                    return list(x), ""
                self._inputs_failed = f"the scans have shape {x.shape[1:]}, not the grid's"
            except (BrainLRPError, OSError, KeyError, ValueError) as exc:
                self._inputs_failed = " ".join(str(exc).split())[:160]
            self.notes.append("the subjects' own scans are not available "
                              f"({self._inputs_failed}); the template is shown beneath "
                              "individual heatmaps instead - keep the cohort and the "
                              "preprocessing cache of the run to see them")
        reason = "ICBM 2009c template (own scan unavailable)"
        return [self.template()] * len(scan_ids), reason

    def fig(self, fig, alt: str, caption=None, fig_id: str | None = None) -> Safe:
        """Embed a figure, then empty it so that its memory goes at once (a figure's
        artists form reference cycles that only the cyclic collector would free)."""
        html = html_figure(fig, alt, caption, fig_id)
        fig.clear()
        return html


# =========================================================================== helpers


def method_unit(data: RunData, method: str) -> str:
    """Colour-bar label of ``method`` with its relevance mode, e.g. ``relevance (a.u.)``."""
    return style.unit_label(method, data.mode(method))


def _counts(data: RunData, method: str) -> dict[str, int]:
    g = data.groups(method)
    area = g[g["level"] == "area"]
    return {k: int(v) for k, v in area.groupby("group")["n_subjects"].max().items()}


def _diagnosis(data: RunData) -> pd.Series:
    """AD or HC per participant."""
    p = data.predictions.drop_duplicates("participant_id").set_index("participant_id")
    return p["label"].map({1: "AD", 0: "HC"})


def _summary_value(data: RunData, method: str, key: str):
    return (data.summary.get("methods", {}).get(method) or {}).get(key)


def _example_scans(data: RunData) -> dict[str, pd.Series | None]:
    """One test scan per outcome: the most confident TP/TN and the most confident errors."""
    scans = data.test_scans()
    out = {}
    for outcome, ascending in (("TP", False), ("FP", False), ("TN", True), ("FN", True)):
        part = scans[scans["outcome"] == outcome].sort_values(["p_ad", "scan_id"],
                                                             ascending=[ascending, True])
        out[outcome] = part.iloc[0] if len(part) else None
    return out


def hc_density(data: RunData, method: str) -> pd.DataFrame:
    """Healthy controls' area densities (rows: participants, scans averaged; columns:
    areas): the reference distribution of the cards' z-scores."""
    dens = data.area_density(method)
    sub = data.subjects(method).drop_duplicates("scan_id")[["scan_id", "participant_id",
                                                            "diagnosis"]]
    per = per_participant(dens, sub)
    dx = _diagnosis(data).reindex(per.index)
    return per[dx == "HC"]


# =========================================================================== sections


def summary_section(ctx: Context, report_seconds: dict[str, float] | None = None) -> Section:
    """Run summary: headline numbers, the paper's claims on this run, cohort, grid, timings.

    Parameters
    ----------
    ctx : Context
    report_seconds : dict, optional
        Seconds spent on the report so far (its row of the timings table).

    Returns
    -------
    Section
    """
    data = ctx.data
    sec = Section("summary", "Run summary",
                  "What was run on which data, and the headline results; the sections below "
                  "show each in detail.")
    main = ctx.main
    test = data.test_scans()
    m_test = (data.metrics or {}).get("test", {})
    items = []
    if m_test:
        items.append(("balanced accuracy (test)", _fixed(m_test.get("balanced_accuracy")),
                      f"sensitivity {_fixed(m_test.get('sensitivity'))}, specificity "
                      f"{_fixed(m_test.get('specificity'))}"))
        items.append(("ROC AUC (test)", _fixed(m_test.get("roc_auc")),
                      f"n = {m_test.get('n', len(test))} scans"))
    ratio = _summary_value(data, main, "hc_ad_ratio")
    items.append(("HC / AD relevance", fmt_number(ratio),
                  f"{method_label(main)}: mean total relevance of controls over patients"))
    sim = _summary_value(data, main, "fingerprint_mean_similarity")
    items.append(("fingerprint similarity", fmt_number(sim),
                  f"mean cosine over {_summary_value(data, main, 'fingerprint_n_patients') or 0}"
                  " confident patients"))
    r = _summary_value(data, main, "hippocampus_r")
    items.append(("hippocampus r", style.fmt_r(r),
                  f"{fmt_p(_summary_value(data, main, 'hippocampus_p'))}; paper −0.56 at β=0"))
    mass = _summary_value(data, main, "gt_mass_accuracy")
    if mass is not None:
        items.append(("relevance in true atrophy", fmt_number(mass),
                      f"chance {fmt_number(_summary_value(data, main, 'gt_chance_mass_accuracy'))}"
                      " (simulated ground truth)"))
    sec.add(tiles(items))
    sec.add(_claims(ctx))

    run = data.run
    cohort = run.get("cohort", {}) or {}
    src = cohort.get("source") or "not recorded"
    pred = data.predictions
    subjects = pred.drop_duplicates("participant_id")
    n_ad = int((subjects["label"] == 1).sum())
    n_cn = int((subjects["label"] == 0).sum())
    card = data.card
    arch = card.get("architecture")
    arch = arch.get("name") if isinstance(arch, dict) else arch
    rows = [("cohort", f"{src}"),
            ("subjects", f"{len(subjects)} ({n_ad} AD, {n_cn} CN); {len(pred)} scans"),
            ("test scans explained", f"{len(test)} (methods: "
                                     f"{', '.join(method_label(m) for m in data.methods)})"),
            ("grid", f"{data.grid.describe()} ({card.get('grid', {}).get('space', 'MNI')})"),
            ("model", f"{arch or 'unknown'}; classes "
                      f"{', '.join(card.get('classes', ['CN', 'AD']))}"),
            ("atlas", f"{data.summary.get('atlas', '?')}: {data.summary.get('n_areas', '?')} "
                      f"areas (left and right merged) from {data.summary.get('n_labels', '?')} "
                      "labels")]
    sec.add(heading("Run"), key_values(rows))
    split_counts = _split_table(data)
    if split_counts is not None:
        sec.add(heading("Split (subjects)"), table(split_counts))
    timing_rows = _timings(run, report_seconds)
    if timing_rows:
        sec.add(heading("Timings"),
                table(pd.DataFrame(timing_rows, columns=["stage", "time", "details"])))
    return sec


def _claims(ctx: Context) -> Safe:
    """The paper's three claims, with this run's evidence."""
    data, main = ctx.data, ctx.main
    rows = []
    sim = _summary_value(data, main, "fingerprint_mean_similarity")
    low = _summary_value(data, main, "fingerprint_min_similarity")
    rows.append({"claim": "LRP is specific to individuals (high inter-patient variability)",
                 "evidence": f"mean cosine similarity of patients' fingerprints "
                             f"{fmt_number(sim)}, lowest {fmt_number(low)} (patients A and B)",
                 "agrees": Safe('<a href="#fingerprints">see §6</a>')})
    ratio = _summary_value(data, main, "hc_ad_ratio")
    agrees = "–" if ratio is None else ("yes" if ratio < 1 else "no")
    rows.append({"claim": "very little AD relevance in healthy controls",
                 "evidence": f"HC / AD mean total relevance = {fmt_number(ratio)}",
                 "agrees": agrees})
    tp = data.group_areas(main, "TP")
    if len(tp):
        top = tp.sort_values("gain", ascending=False)["region"].tolist()
        hip = [i for i, a in enumerate(top) if a.lower() == "hippocampus"]
        temporal = sum(1 for a in top[:10] if any(w in a.lower() for w in (
            "temporal", "hippocampus", "amygdala", "ent_", "parahippocampal", "fusiform",
            "tmp_", "planum", "ttg_")))
        rank = hip[0] + 1 if hip else None
        rows.append({"claim": "most gain in the temporal lobe and hippocampus",
                     "evidence": f"{temporal} of the top-10 gain areas (TP/HC) lie in the "
                             "temporal lobe (medial temporal lobe included); "
                                 f"hippocampus rank {rank if rank else '–'} of {len(top)}; top 3: "
                                 + ", ".join(area_label(a, 40) for a in top[:3]),
                     "agrees": "yes" if rank and rank <= 10 else "no"})
    frame = pd.DataFrame(rows)
    return table(frame, {"claim": "claim (Böhle et al. 2019)",
                         "evidence": f"this run ({method_label(main)})",
                         "agrees": "agrees?"},
                 formats={"agrees": lambda v: Safe(f'<span class="{esc(v)}">{esc(v)}</span>')
                          if v in ("yes", "no") else v},
                 caption="The paper's claims, checked on this run. Hippocampus in the top "
                         "10 gain areas counts as agreement; HC/AD below 1 likewise.",
                 table_id="claims")


def _fixed(value, digits: int = 3) -> str:
    """A metric with fixed decimals (``0.975``, ``1.000``); ``–`` when missing."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "–"
    return "–" if v != v else f"{v:.{digits}f}"


def _split_table(data: RunData) -> pd.DataFrame | None:
    splits = data.splits
    pred = data.predictions.drop_duplicates("participant_id")
    if splits is not None and {"participant_id", "split"} <= set(splits.columns):
        s = splits.drop_duplicates("participant_id").set_index("participant_id")["split"]
        frame = pred.assign(split=pred["participant_id"].map(s).fillna(pred["split"]))
    else:
        frame = pred
    if "split" not in frame or frame["split"].eq("").all():
        return None
    frame = frame.assign(diagnosis=np.where(frame["label"] == 1, "AD", "CN"))
    counts = frame.groupby(["split", "diagnosis"]).size().unstack(fill_value=0)
    order = [s for s in ("train", "val", "test") if s in counts.index] + \
        [s for s in counts.index if s not in ("train", "val", "test")]
    counts = counts.reindex(order)
    counts["total"] = counts.sum(axis=1)
    return counts.reset_index()


def _timings(run: dict, report_seconds: dict[str, float] | None) -> list[tuple[str, str, str]]:
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


def training_section(ctx: Context) -> Section:
    """Training: metrics (trials mean ± SD), curves, confusion matrix, ROC, p(AD).

    Parameters
    ----------
    ctx : Context

    Returns
    -------
    Section
    """
    data = ctx.data
    sec = Section("training", "Training and classification",
                  "How well the network tells AD from controls on the held-out test "
                  "subjects (the paper reports balanced accuracy, sensitivity and "
                  "specificity over four trials).")
    metrics = data.metrics
    if metrics is None:
        sec.add(note("metrics.json is missing - run `brainlrp train` to evaluate the model; "
                     "the figures below use predictions.tsv only"))
    else:
        test = metrics.get("test", {})
        names = {"balanced_accuracy": "balanced accuracy", "sensitivity": "sensitivity",
                 "specificity": "specificity", "roc_auc": "ROC AUC", "accuracy": "accuracy"}
        rows = [{"metric": name, "test": test.get(k)} for k, name in names.items()]
        frame = pd.DataFrame(rows)
        summ = metrics.get("trials_summary")
        cols = {"metric": "metric", "test": "kept model (test)"}
        if summ:
            frame["trials"] = [f"{summ[k]['mean']:.3f} ± {summ[k]['sd']:.3f}"
                               if k in summ else "–"
                               for k in ("balanced_accuracy", "sensitivity", "specificity",
                                         "roc_auc", "accuracy")]
            cols["trials"] = f"{len(metrics.get('trials', []))} trials, mean ± SD"
        sec.add(table(frame, cols, formats={"test": _fixed},
                      caption=f"Test split, n = {test.get('n', '?')} scans. The kept model is "
                              f"the trial with the best validation balanced accuracy "
                              f"(trial {metrics.get('selected_trial', '?')}).",
                      table_id="metrics"))
        trials = metrics.get("trials") or []
        if len(trials) > 1:
            t = pd.DataFrame([{"trial": x.get("trial"), "seed": x.get("seed"),
                               "epochs": x.get("epochs"),
                               "best val bacc": x.get("best_val_bacc"),
                               "val bacc": (x.get("val") or {}).get("balanced_accuracy"),
                               "test bacc": (x.get("test") or {}).get("balanced_accuracy")}
                              for x in trials])
            sec.add(details("Trials", table(t)))
    log = data.training_log
    train_cfg = data.card.get("training") or {}
    if log is None or log.empty or "epoch" not in log:
        sec.add(note("training_log.csv is missing, so there are no training curves - it is "
                     "written per epoch by `brainlrp train`"))
    else:
        if "trial" not in log:
            log = log.assign(trial=0)
        selected = (metrics or {}).get("selected_trial")
        fig = figs.training_curves(log, selected, train_cfg.get("early_stopping_start"))
        sec.add(ctx.fig(fig, "training curves", "Loss and balanced accuracy per epoch "
                        "(solid: training, dashed: validation). The star marks the kept "
                        "checkpoint (best validation balanced accuracy); the shaded epochs are "
                        "ignored by early stopping.", "fig-training-curves"))
    test = data.predictions[data.predictions["split"] == "test"]
    if test.empty:
        test = data.test_scans()
    if len(test):
        fig = figs.classification_figure(test)
        sec.add(ctx.fig(fig, "confusion matrix, ROC curve and AD probabilities",
                        f"Test split ({len(test)} scans): confusion matrix, ROC curve, and each "
                        "scan's AD probability coloured by outcome.", "fig-classification"))
    if train_cfg:
        keys = ("arch", "epochs", "batch_size", "lr", "weight_decay", "patience",
                "early_stopping_start", "trials", "flip", "shift", "seed")
        sec.add(details("Training configuration",
                        key_values([(k, train_cfg[k]) for k in keys if k in train_cfg])))
    return sec


def individual_section(ctx: Context) -> Section:
    """Individual explanations: a TP, FP, TN and FN example, LRP beside the comparison.

    Parameters
    ----------
    ctx : Context

    Returns
    -------
    Section
    """
    data = ctx.data
    sec = Section("individual", "Individual explanations",
                  "One test subject per outcome - the most confident true positive, false "
                  "positive, true negative and false negative - explained by "
                  f"{method_label(ctx.main)}"
                  + (f" beside {method_label(ctx.compare)}" if ctx.compare else "")
                  + f". Slices meet at the peak of the {method_label(ctx.main)} map; the "
                  "three areas of highest relevance density in this subject (same method) "
                  "are outlined.")
    if ctx.compare is None:
        sec.add(note("only one method was analysed - run `brainlrp explain --methods "
                     "lrp-b0,gb` and `brainlrp analyze` to compare LRP with guided "
                     "backpropagation"))
    examples = _example_scans(data)
    chosen = {k: v for k, v in examples.items() if v is not None}
    if not chosen:
        return sec.add(note("no test scans to show"))
    ids = [str(v["scan_id"]) for v in chosen.values()]
    backgrounds, reason = ctx.scans(ids)
    if reason:
        sec.add(note(f"background: {reason}", "info"))
    atlas = ctx.atlas()
    dens = data.area_density(ctx.main)
    methods = [ctx.main] + ([ctx.compare] if ctx.compare else [])
    heat = {(o, m): data.heatmap(m, str(row["scan_id"])) for o, row in chosen.items()
            for m in methods}
    # LRP conserves relevance from p(AD) down: one colour scale per LRP method across the
    # examples shows a control's weak map as weak. Gradient-based maps are not on a
    # common footing between scans, so each keeps its own scale.
    vmax = {m: max((figs.robust_max(h) for (_, mm), h in heat.items()
                    if mm == m and h is not None), default=1.0)
            for m in methods if style.is_lrp(m)}
    for (outcome, row), bg in zip(chosen.items(), backgrounds, strict=True):
        sid = str(row["scan_id"])
        maps = [figs.BrainMap(heat[outcome, m], method_label(m), method_unit(data, m),
                              data.mode(m), vmax=vmax.get(m))
                for m in methods if heat[outcome, m] is not None]
        if not maps:
            sec.add(note(f"{outcome}: no heatmap file for {sid}"))
            continue
        cut = figs.peak_coords(maps[0].data, ctx.affine)
        contours = []
        if atlas is not None and sid in dens.index:
            top = dens.loc[sid].dropna().sort_values(ascending=False).head(3)
            for area in top.index:
                k = atlas.area_index(area)
                if k is not None:
                    contours.append((atlas.area_codes == k + 1, area))
        verdict = {"TP": "AD, detected", "FP": "control, called AD", "TN": "control, detected",
                   "FN": "AD, missed"}[outcome]
        title = (f"{outcome} · {row['participant_id']} ({verdict}) · p(AD) = "
                 f"{float(row['p_ad']):.3f}")
        fig = figs.explanation_figure(bg, ctx.affine, maps, cut, contours, title)
        caption = fmt("{} example: {}, scan {}, p(AD) = {}. Slices at MNI ({}, {}, {}) mm. "
                      "LRP: one colour scale for all four examples (the largest 99.5th "
                      "percentile among them); other methods: each map's own 99.5th "
                      "percentile. Values below 20% of the scale are transparent; maps are "
                      "shown inside the template brain mask.",
                      outcome, row["participant_id"], sid,
                      f"{float(row['p_ad']):.3f}", *(f"{c:.0f}" for c in cut))
        sec.add(heading(f"{outcome} - {style.GROUP_NAMES[outcome]}"),
                ctx.fig(fig, f"{outcome} example heatmaps", caption, f"fig-example-{outcome}"),
                Safe(example_viewer(ctx, f"viewer-{outcome}", sid, bg, vmax, cut,
                                    "template" if reason else "scan")))
    missing = [k for k, v in examples.items() if v is None]
    if missing:
        sec.add(note(f"no {', '.join(missing)} in the test set, so no example for "
                     f"{'it' if len(missing) == 1 else 'them'}", "info"))
    return sec


def group_section(ctx: Context) -> tuple[Section, dict]:
    """Group means: slices and glass brains per group, AD means per method, the viewer.

    Parameters
    ----------
    ctx : Context

    Returns
    -------
    Section
    dict
        ``{"maps": [...]}``: the names of the viewer's maps (empty without mean images).
    """
    from brainlrp.report.niivue import Overlay, group_viewer

    data = ctx.data
    sec = Section("group-means", "Group mean heatmaps",
                  "Mean relevance over the subjects of each group, as in the paper: "
                  "patients (AD), controls (HC) and the four outcomes, on one colour scale "
                  "so that groups compare directly.")
    main = ctx.main
    unit = method_unit(data, main)
    mode = data.mode(main)
    counts = _counts(data, main)
    maps = {g: data.mean_map(main, g) for g in style.GROUPS}
    if all(v is None for v in maps.values()):
        sec.add(note(f"no mean images in means/{main}/ - run `brainlrp analyze` again"))
        return sec, {}
    ref = maps.get("AD") if maps.get("AD") is not None else next(
        v for v in maps.values() if v is not None)
    vmax = figs.robust_max(ref)
    template = ctx.template()
    fig = figs.group_slices(template, ctx.affine, maps, counts, unit, mode, AXIAL_CUTS, vmax,
                            method_label(main))
    sec.add(heading("Axial slices"),
            ctx.fig(fig, "group mean heatmaps, axial slices",
                    f"{method_label(main)} mean maps over the ICBM 2009c template, "
                    f"neurological convention (left on the left). One colour scale "
                    f"(0 to the AD mean's 99.5th percentile, {fmt_number(vmax)}); values "
                    "below 20% of it are transparent. FP and FN means rest on few subjects.",
                    "fig-group-slices"))
    glass = [figs.BrainMap(v, f"{g} (n = {counts.get(g, 0)})", unit, mode, vmax=vmax)
             for g, v in maps.items() if v is not None]
    fig = figs.glass_brains(glass, ctx.affine, ncols=2, display_mode="lyrz")
    sec.add(heading("Glass brains"),
            ctx.fig(fig, "group mean heatmaps, glass brains",
                    "Maximum-intensity projections of the same maps (left, front, right and "
                    "top views), on the same colour scale.", "fig-group-glass"))
    per_method = []
    for m in data.methods:
        ad = data.mean_map(m, "AD")
        if ad is not None:
            per_method.append(figs.BrainMap(ad, method_label(m), method_unit(data, m),
                                            data.mode(m)))
    if len(per_method) > 1:
        fig = figs.glass_brains(per_method, ctx.affine, ncols=2, display_mode="ortho",
                                row_height=2.3)
        sec.add(heading("AD mean per method"),
                ctx.fig(fig, "AD mean heatmap per method",
                        "Mean map of the AD group for every method, each on its own scale "
                        "(99.5th percentile); projections: sagittal, coronal, axial.",
                        "fig-method-glass"))
    layers = []
    for m in data.methods:
        groups = style.GROUPS if m == main else ("AD",)
        for g in groups:
            v = maps[g] if m == main else data.mean_map(m, g)
            if v is None:
                continue
            scale = vmax if m == main else figs.robust_max(v)
            n = _counts(data, m).get(g, 0)
            layers.append(Overlay(f"{method_label(m)} · {g} mean (n = {n})", v,
                                  method_unit(data, m), data.mode(m) == "signed", scale))
    sec.add(heading("Interactive viewer", ident="viewer-heading"),
            fmt("<p>NiiVue: click or drag in a view to move the crosshair, or type MNI "
                "coordinates; the readout gives them, the map's value and the atlas area "
                "({}) under the crosshair. Other maps (every group of {}, the AD mean of every "
                "method) are in the menu; the threshold hides smaller magnitudes. Works "
                "offline.</p>", data.summary.get("atlas", "atlas"), method_label(main)),
            Safe(group_viewer(ctx, "viewer", layers)))
    return sec, {"maps": [lay.name for lay in layers]}


def regions_section(ctx: Context) -> Section:
    """Region metrics: sum, density, gain (top 25), violins AD vs HC, patients A and B.

    Parameters
    ----------
    ctx : Context

    Returns
    -------
    Section
    """
    data = ctx.data
    main = ctx.main
    unit = method_unit(data, main)
    sec = Section("regions", "Relevance per brain area",
                  "Relevance summed over each of the atlas's areas (left and right merged), "
                  "per voxel (density) and relative to the controls (gain = group mean / HC "
                  "mean), for the 25 areas ranked highest in the true positives, as in the "
                  "paper.")
    groups = {g: data.group_areas(main, g) for g in style.GROUPS}
    rank_group = "TP" if len(groups["TP"]) else "AD"
    if not len(groups[rank_group]):
        return sec.add(note("no AD subjects were analysed, so there is nothing to rank"))
    fig = figs.region_bars(groups, unit, TOP_AREAS, rank_group)
    sec.add(ctx.fig(fig, "relevance sum, density and gain of the top areas",
                    f"{method_label(main)}: group means of the 25 top areas for each measure, "
                    f"ranked by the {rank_group} group. Gain above 1 (dotted) means more "
                    "relevance than in the controls.", "fig-region-bars"))
    dens = data.area_density(main)
    sub = data.subjects(main).drop_duplicates("scan_id")[["scan_id", "participant_id"]]
    per = per_participant(dens, sub)
    top = groups[rank_group].sort_values("mean_density", ascending=False)["region"]
    areas = list(top.head(TOP_AREAS))
    patients = {}
    for letter in ("A", "B"):
        pid = _summary_value(data, main, f"patient_{letter.lower()}")
        if pid is not None and str(pid) in per.index:
            patients[letter] = (str(pid), per.loc[str(pid)])
    fig = figs.density_violins(per, _diagnosis(data), areas, unit, patients)
    caption = (f"{method_label(main)}: relevance density of each subject in the 25 areas of "
               f"highest mean density ({rank_group}); AD above, HC below each line.")
    if patients:
        caption += (" Patients A and B are the two confident patients (p(AD) > 0.9) whose "
                    "fingerprints differ most (§6).")
    sec.add(ctx.fig(fig, "density violins AD vs HC", caption, "fig-density-violins"))
    if len(patients) < 2:
        sec.add(note("patients A and B need at least two true positives with p(AD) > 0.9", "info"))
    rows = {}
    for m in data.methods:
        tp = data.group_areas(m, rank_group if len(data.group_areas(m, rank_group)) else "AD")
        if len(tp):
            rows[method_label(m)] = [area_label(a, 30) for a in
                                     tp.sort_values("gain", ascending=False)["region"].head(10)]
    if rows:
        frame = pd.DataFrame(rows)
        frame.insert(0, "rank", np.arange(1, len(frame) + 1))
        sec.add(heading("Top-10 areas by gain, per method"),
                table(frame, caption=f"Areas with the highest gain ({rank_group} / HC) for each "
                                     "method.", table_id="gain-by-method"))
    totals = data.tables.get("relevance_totals")
    if totals is not None and len(totals):
        pivot = totals.pivot_table(index="method", columns="group",
                                   values="mean_total_relevance", aggfunc="first")
        pivot = pivot.reindex([m for m in data.methods if m in pivot.index])
        pivot = pivot[[g for g in style.GROUPS if g in pivot.columns]]
        pivot["HC / AD"] = pivot.get("HC") / pivot.get("AD") if {"HC", "AD"} <= set(pivot) \
            else np.nan
        pivot.index = [method_label(m) for m in pivot.index]
        frame = pivot.reset_index(names="method")
        sec.add(heading("Total relevance per group"),
                table(frame, caption="Mean total (whole-brain) relevance per subject; the "
                                     "paper found very little relevance in controls.",
                      table_id="relevance-totals"))
    return sec


def fingerprint_section(ctx: Context) -> Section:
    """Individual fingerprints: similarity matrix, patients A and B, numbers per method.

    Parameters
    ----------
    ctx : Context

    Returns
    -------
    Section
    """
    data = ctx.data
    main = ctx.main
    sec = Section("fingerprints", "Individual fingerprints",
                  "Is LRP specific to individuals? For the confidently detected patients "
                  "(true positives with p(AD) > 0.9), the relevance density over the 25 areas "
                  "of highest mean density forms a fingerprint; low cosine similarity means "
                  "individual explanations (the paper's Fig. 7).")
    fp = data.tables.get("fingerprints")
    sim = data.tables.get("fingerprint_similarity")
    if fp is None or sim is None or fp.empty:
        return sec.add(note("no fingerprints: they need true positives with p(AD) > 0.9 "
                            "(analysis/fingerprints.tsv is empty or missing)"))
    f = fp[fp["method"] == main]
    s = sim[sim["method"] == main]
    if len(f) and len(s):
        matrix = s.pivot(index="participant_a", columns="participant_b",
                         values="cosine_similarity")
        order = list(dict.fromkeys(f["participant_id"]))
        matrix = matrix.reindex(index=order, columns=order)
        profiles = f.pivot(index="participant_id", columns="area", values="relevance_density")
        areas = f.drop_duplicates("area").sort_values("area_rank")["area"].tolist()
        profiles = profiles.reindex(index=order, columns=areas)
        pats = {k: str(v) for k, v in (
            ("A", _summary_value(data, main, "patient_a")),
            ("B", _summary_value(data, main, "patient_b"))) if v is not None}
        fig = figs.fingerprint_figure(matrix, profiles, pats)
        sec.add(ctx.fig(fig, "fingerprint similarity and patients A and B",
                        f"{method_label(main)}: cosine similarity between every pair of "
                        "confident patients (left; the least similar pair, A and B, is boxed) "
                        "and the two patients' density over the fingerprint areas (right).",
                        "fig-fingerprints"))
    rows = []
    for m in data.methods:
        v = data.summary.get("methods", {}).get(m) or {}
        rows.append({"method": method_label(m), "patients": v.get("fingerprint_n_patients"),
                     "mean similarity": v.get("fingerprint_mean_similarity"),
                     "lowest similarity": v.get("fingerprint_min_similarity"),
                     "patient A": v.get("patient_a"), "patient B": v.get("patient_b")})
    sec.add(table(pd.DataFrame(rows), caption="Mean and lowest pairwise cosine similarity of "
                                              "the fingerprints, per method.",
                  table_id="fingerprint-table"))
    return sec


def beta_section(ctx: Context) -> Section:
    """Beta sensitivity: overlap of the top-10 areas between every pair of betas.

    Parameters
    ----------
    ctx : Context

    Returns
    -------
    Section
    """
    data = ctx.data
    sec = Section("beta", "Sensitivity to β",
                  "How much do the most relevant areas depend on the LRP rule's β? Overlap of "
                  "the top-10 areas between every pair of betas, for sum, density and gain "
                  "(the paper's beta sensitivity analysis).")
    overlap = data.tables.get("beta_overlap")
    betas = [m for m in data.methods if beta_of(m) is not None]
    if overlap is None or overlap.empty or len(betas) < 2:
        return sec.add(note(f"this run has {len(betas)} LRP β ({', '.join(betas) or 'none'}); "
                            "the comparison needs two or more - run `brainlrp explain "
                            "--methods lrp-b0,lrp-b0.25,lrp-b0.5,lrp-b0.75,lrp-b1` and "
                            "`brainlrp analyze`"))
    fig = figs.beta_overlap_figure(overlap)
    sec.add(ctx.fig(fig, "beta overlap matrices",
                    f"Shared areas among the top {int(overlap['k'].iloc[0])} "
                    f"({overlap['group'].iloc[0]} group means) for every pair of betas.",
                    "fig-beta-overlap"))
    frame = overlap.assign(pair=[f"β={a:g} vs β={b:g}" for a, b in
                                 zip(overlap["beta_a"], overlap["beta_b"], strict=True)],
                           shared=[", ".join(area_label(x, 30) for x in str(s).split(";") if x
                                             and x != "nan")
                                   for s in overlap["shared_areas"]])
    sec.add(details("Shared areas per pair",
                    table(frame, {"pair": "pair", "measure": "measure", "n_shared": "shared",
                                  "shared": "areas"})))
    return sec


def hippocampus_section(ctx: Context) -> Section:
    """Hippocampal relevance against hippocampal volume, r and p per method.

    Parameters
    ----------
    ctx : Context

    Returns
    -------
    Section
    """
    data = ctx.data
    sec = Section("hippocampus", "Hippocampus: relevance and volume",
                  "If relevance reflects atrophy, patients with smaller hippocampi should "
                  "have more hippocampal relevance: Pearson r over the true positives with a "
                  "permutation test (the paper: r = −0.56 at β = 0, weakening with β).")
    stats = data.tables.get("hippocampus")
    subj = data.tables.get("hippocampus_subjects")
    if stats is None or subj is None or stats.empty:
        notices = " ".join(n for n in data.summary.get("notices", []) if "hippocampus" in n)
        return sec.add(note("no hippocampus analysis: it needs a hippocampus_volume column in "
                            "the cohort's participants.tsv and a Hippocampus area in the atlas"
                            + (f" ({notices})" if notices else "")))
    fig = figs.hippocampus_figure(subj, stats, data.methods)
    sec.add(ctx.fig(fig, "hippocampus scatter plots",
                    "Each point is a true positive: hippocampal relevance (sum over the merged "
                    "Hippocampus area) against hippocampal volume, with the least-squares "
                    "line; r and two-sided permutation p per method.", "fig-hippocampus"))
    frame = stats.copy()
    frame["paper r"] = [figs.PAPER_HIPPOCAMPUS_R.get(beta_of(m)) if beta_of(m) is not None
                        else None for m in frame["method"]]
    frame["method"] = [method_label(m) for m in frame["method"]]
    sec.add(table(frame, {"method": "method", "n_subjects": "n", "r": "r", "p_value": "p",
                          "n_permutations": "permutations", "paper r": "paper r"},
                  formats={"p_value": lambda v: fmt_p(v).replace("p = ", "").replace("p ", ""),
                           "r": style.fmt_r, "paper r": style.fmt_r},
                  table_id="hippocampus-table"))
    return sec


def ground_truth_section(ctx: Context) -> Section:
    """Ground truth: how well each method recovers the simulated atrophy.

    Parameters
    ----------
    ctx : Context

    Returns
    -------
    Section
    """
    data = ctx.data
    sec = Section("ground-truth", "Ground truth: recovery of the simulated atrophy",
                  "On a simulated cohort the atrophy of every patient is known. How much of "
                  "each method's relevance falls into truly atrophied tissue, how well it "
                  "separates atrophied from intact voxels, and whether it finds the right "
                  "areas.")
    gt = data.tables.get("ground_truth")
    summ = data.tables.get("ground_truth_summary")
    if gt is None or summ is None or summ.empty:
        return sec.add(note("no ground truth: the cohort has no derivatives/ground_truth/ - "
                            "cohorts made by `brainlrp simulate` have it; real cohorts "
                            "skip this section"))
    frame = summ.copy()
    frame["mass accuracy"] = [f"{fmt_number(a)} ± {fmt_number(b, 2)}" for a, b in
                              zip(frame["mass_accuracy_mean"], frame["mass_accuracy_sd"],
                                  strict=True)]
    frame["AUC"] = [f"{fmt_number(a)} ± {fmt_number(b, 2)}" for a, b in
                    zip(frame["auc_mean"], frame["auc_sd"], strict=True)]
    frame["method"] = [method_label(m) for m in frame["method"]]
    k = int(frame["k"].iloc[0]) if "k" in frame and len(frame) else 10
    sec.add(table(frame, {"method": "method", "relevance": "relevance", "n_subjects": "n AD",
                          "mass accuracy": "relevance in atrophy (mean ± SD)",
                          "chance_mass_accuracy": "chance",
                          "AUC": "voxel AUC (mean ± SD)",
                          "spearman_regions_mean": "area rank ρ",
                          "topk_recall_mean": f"top-{k} recall",
                          "group_topk_overlap": f"group top-{k} overlap"},
                  numeric=["n_subjects", "chance_mass_accuracy", "spearman_regions_mean",
                           "topk_recall_mean", "group_topk_overlap"],
                  caption="Relevance in atrophy: fraction of a scan's relevance inside truly "
                          "atrophied voxels (chance = atrophied fraction of the brain). Area "
                          "rank ρ: Spearman correlation of area density with true area loss. "
                          "Recall: true top areas found among the method's top areas.",
                  table_id="ground-truth-table"))
    fig = figs.ground_truth_figure(gt, summ, data.methods)
    sec.add(ctx.fig(fig, "ground truth recovery per method",
                    "Per AD scan and method: relevance mass inside atrophy (dashed: chance), "
                    "voxel-wise ROC AUC (dashed: 0.5) and recall of the truly most atrophied "
                    "areas.", "fig-ground-truth"))
    disease = data.summary.get("disease_model_top_areas")
    if disease:
        sec.add(fmt("<p><b>Most atrophied areas (truth):</b> {}</p>",
                    ", ".join(area_label(a, 40) for a in disease)))
    return sec


def faithfulness_section(ctx: Context) -> Section:
    """Faithfulness: region perturbation curves and AOPC per method.

    Parameters
    ----------
    ctx : Context

    Returns
    -------
    Section
    """
    data = ctx.data
    sec = Section("faithfulness", "Faithfulness: region perturbation",
                  "Does the model rely on what the map marks? The most relevant areas of AD "
                  "scans are replaced one by one by the controls' mean image and p(AD) is "
                  "recomputed; a faithful map makes p(AD) fall faster than random area "
                  "orders (AOPC: area over the perturbation curve).")
    curves = data.tables.get("faithfulness")
    aopc = data.tables.get("faithfulness_aopc")
    if curves is None or aopc is None or aopc.empty:
        return sec.add(note("no faithfulness check in this run - run `brainlrp analyze` "
                            "with the model checkpoint present (and without "
                            "--no-faithfulness)"))
    fig = figs.faithfulness_figure(curves, data.methods)
    n = int(aopc["n_subjects"].max())
    sec.add(ctx.fig(fig, "perturbation curves",
                    f"Mean over {n} AD scan(s): p(AD) and its drop as areas are replaced, "
                    "most relevant first (dashed: random orders).", "fig-faithfulness"))
    frame = aopc.copy()
    frame["method"] = [method_label(m) for m in frame["method"]]
    sec.add(table(frame, {"method": "method", "n_subjects": "scans", "steps": "steps",
                          "aopc_relevance": "AOPC (relevance order)",
                          "aopc_random": "AOPC (random)",
                          "aopc_difference": "difference"}, table_id="aopc-table"))
    if n < 10:
        sec.add(note(f"based on {n} scan(s): use `brainlrp analyze --faithfulness-subjects "
                     "20` for a firmer comparison", "info"))
    return sec


def sanity_section(ctx: Context) -> Section:
    """Sanity check: cascading randomisation of the model's layers.

    Parameters
    ----------
    ctx : Context

    Returns
    -------
    Section
    """
    data = ctx.data
    sec = Section("sanity", "Sanity check: model randomisation",
                  "Adebayo et al. (2018): re-initialise the network's layers one by one "
                  "from the output; a map that explains the model must change (rank "
                  "correlation with the trained model's map falls towards 0), a map that "
                  "mostly shows the image will not.")
    sanity = data.tables.get("sanity")
    if sanity is None or sanity.empty:
        return sec.add(note("no sanity check in this run - run `brainlrp analyze` with the "
                            "model checkpoint present (and without --no-sanity)"))
    fig = figs.sanity_figure(sanity, data.methods)
    sec.add(ctx.fig(fig, "cascading randomisation",
                    f"Spearman correlation over {sanity['scan_id'].nunique()} AD scan(s) "
                    "between each method's map from the trained and the progressively "
                    "randomised network.", "fig-sanity"))
    rows = []
    for m in data.methods:
        v = data.summary.get("methods", {}).get(m) or {}
        rows.append({"method": method_label(m), "top layer": v.get("sanity_spearman_top_layer"),
                     "all layers": v.get("sanity_spearman_all_layers")})
    sec.add(table(pd.DataFrame(rows), caption="Spearman ρ after randomising the top layer "
                                              "and after randomising all layers.",
                  table_id="sanity-table"))
    return sec


def cards_section(ctx: Context, cards: dict[str, str]) -> Section:
    """The list of per-subject cards, linked relatively.

    Parameters
    ----------
    ctx : Context
    cards : dict
        Relative link (``cards/<scan_id>.png``) per scan id; empty when no cards
        were written.

    Returns
    -------
    Section
    """
    data = ctx.data
    sec = Section("cards", "Per-subject explanation cards",
                  f"One card per test scan ({method_label(ctx.main)}): AD probability, "
                  "three slices through the relevance peak and the ten areas of highest "
                  "relevance density with their z-score against the healthy controls. Click "
                  "a row's card to open it.")
    scans = data.test_scans()
    order = {o: i for i, o in enumerate(style.OUTCOMES)}
    scans = scans.assign(_order=scans["outcome"].map(order)).sort_values(
        ["_order", "p_ad", "scan_id"], ascending=[True, False, True])
    if not cards:
        return sec.add(note("cards were not written (`brainlrp report --no-cards`)"))
    dens = data.area_density(ctx.main)
    tops = []
    for sid in scans["scan_id"]:
        if sid in dens.index:
            row = dens.loc[sid].dropna()
            tops.append(area_label(row.idxmax(), 34) if len(row) else "–")
        else:
            tops.append("–")
    frame = scans.assign(top=tops)
    frame["raised"] = [
        f"{area_label(ctx.raised[s][0], 30)} (z = {ctx.raised[s][1]:+.1f})"
        if s in ctx.raised else "–" for s in frame["scan_id"]]
    frame["card"] = [Safe(fmt('<a href="{}">{}</a>', cards[s], "card")) if s in cards else "–"
                     for s in frame["scan_id"]]
    columns = {"participant_id": "subject", "scan_id": "scan", "diagnosis": "diagnosis",
               "p_ad": "p(AD)", "outcome": "outcome", "top": "area of highest density",
               "raised": "most raised vs HC (top 10)", "card": "card"}
    if (frame["scan_id"] == frame["participant_id"]).all():
        del columns["scan_id"]
    sec.add(table(frame, columns,
                  formats={"p_ad": lambda v: f"{float(v):.3f}"},
                  row_class=lambda r: str(r["outcome"]), table_id="cards-table"))
    return sec


def methods_section(ctx: Context, extra_notes: list[str]) -> Section:
    """Methods and notes: paper, relevance sign per method, conventions, versions.

    Parameters
    ----------
    ctx : Context
    extra_notes : list of str
        Further notes to list.

    Returns
    -------
    Section
    """
    data = ctx.data
    sec = Section("methods", "Methods and notes",
                  "How the numbers above were made, and what to keep in mind reading them.")
    sec.add(fmt("<p><b>Reference.</b> {}</p>", PAPER))
    rows = []
    meaning = {"positive": "positive part kept (evidence for AD)",
               "absolute": "magnitude (a sensitivity's sign is a direction, not evidence)",
               "signed": "signed values"}
    for m in data.methods:
        mode = data.mode(m)
        rows.append({"method": m, "name": method_label(m), "relevance": mode,
                     "meaning": meaning.get(mode, mode), "unit": method_unit(data, m)})
    sec.add(heading("Relevance per method"),
            table(pd.DataFrame(rows), caption="How each method's heatmap became relevance "
                                              "(analysis/summary.json); every region number "
                                              "uses it.", table_id="relevance-modes"))
    card = data.card
    train = card.get("training") or {}
    items = [("space", f"MNI ICBM 2009c nonlinear asymmetric; grid {data.grid.describe()}"),
             ("display", "neurological convention: the subject's left is on the left (L/R "
                         "marked); slices are MNI mm"),
             ("colour maps", "black-red-yellow (hot) for non-negative relevance, blue-red for "
                             "signed maps; values below the marked threshold are transparent; "
                             "maps are shown inside the template brain mask"),
             ("atlas", f"{data.summary.get('atlas')}: left and right labels merged into "
                       f"{data.summary.get('n_areas')} areas; density = sum / voxels; "
                       "gain = group mean / HC mean"),
             ("groups", "AD, HC, and TP, TN, FP, FN from the test predictions (threshold 0.5); "
                        "each subject counts once per group"),
             ("preprocessing", card.get("normalisation", "–")),
             ("training", ", ".join(f"{k} {train[k]}" for k in ("lr", "weight_decay",
                                                                  "batch_size", "epochs",
                                                                  "patience") if k in train)
              or "–")]
    sec.add(heading("Conventions"), key_values(items))
    notices = [*(data.summary.get("notices") or []), *data.notes, *ctx.notes, *extra_notes]
    if notices:
        sec.add(heading("Notes"),
                Safe("<ul>" + "".join(f"<li>{esc(n)}</li>" for n in dict.fromkeys(notices))
                     + "</ul>"))
    versions = dict(card.get("libraries") or {})
    versions.update(_current_versions())
    sec.add(heading("Versions"),
            key_values(sorted(versions.items())))
    atlas = ctx.atlas()
    if atlas is not None:
        names = sorted(set(atlas.areas["region"]))
        frame = pd.DataFrame({"label used": [area_label(n) for n in names], "atlas name": names})
        sec.add(details(f"Area names ({len(names)} areas)", table(frame)))
    sec.add(fmt("<p class='subtitle'>Generated {} by brainlrp report.</p>",
                _dt.datetime.now().strftime("%Y-%m-%d %H:%M")))
    return sec


def _current_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("brainlrp", "nilearn", "matplotlib", "nibabel", "numpy", "pandas"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def timed(ctx: Context, name: str, func, *args, **kwargs):
    """Run ``func(*args, **kwargs)`` and record its time under ``ctx.timings[name]``.

    Parameters
    ----------
    ctx : Context
    name : str
    func : callable

    Returns
    -------
    object
        What ``func`` returns.
    """
    tick = time.perf_counter()
    try:
        return func(*args, **kwargs)
    finally:
        ctx.timings[name] = time.perf_counter() - tick
