"""Methods and notes: the paper, relevance per method, conventions, notes, versions."""

from __future__ import annotations

import datetime as _dt

import pandas as pd

from brainlrp.report.html import Safe, Section, details, esc, fmt, heading, key_values, table
from brainlrp.report.sections.context import Context
from brainlrp.report.sections.spec import SectionSpec
from brainlrp.report.style import area_label, method_label

PAPER = ("Böhle M, Eitel F, Weygandt M, Ritter K (2019). Layer-wise relevance propagation "
         "for explaining deep neural network decisions in MRI-based Alzheimer's disease "
         "classification. Front. Aging Neurosci. 11:194. doi:10.3389/fnagi.2019.00194 "
         "(arXiv:1903.07317)")


def build(ctx: Context, sec: Section) -> None:
    """Reference, relevance modes, conventions, notes, versions and area names."""
    data = ctx.data
    sec.add(fmt("<p><b>Reference.</b> {}</p>", PAPER))
    rows = []
    meaning = {"positive": "positive part kept (evidence for AD)",
               "absolute": "magnitude (a sensitivity's sign is a direction, not evidence)",
               "signed": "signed values"}
    for m in data.methods:
        mode = data.mode(m)
        rows.append({"method": m, "name": method_label(m), "relevance": mode,
                     "meaning": meaning.get(mode, mode), "unit": ctx.method_unit(m)})
    sec.add(heading("Relevance per method"),
            table(pd.DataFrame(rows), caption="How each method's heatmap became relevance "
                                              "(analysis/summary.json); every region number "
                                              "uses it.", table_id="relevance-modes"))
    card = data.card
    train = card.training
    items = [("space", f"MNI ICBM 2009c nonlinear asymmetric; grid {data.grid.describe()}"),
             ("display", "neurological convention: the subject's left is on the left (L/R "
                         "marked); slices are MNI mm"),
             ("colour maps", "black-red-yellow (hot) for non-negative relevance, blue-red for "
                             "signed maps; values below the marked threshold are transparent; "
                             "maps are shown inside the template brain mask"),
             ("atlas", f"{data.summary.atlas}: left and right labels merged into "
                       f"{data.summary.n_areas} areas; density = sum / voxels; "
                       "gain = group mean / HC mean"),
             ("groups", "AD, HC, and TP, TN, FP, FN from the test predictions (threshold 0.5); "
                        "each subject counts once per group"),
             ("preprocessing", card.normalisation or "–"),
             ("training", ", ".join(f"{k} {train[k]}" for k in ("lr", "weight_decay",
                                                                  "batch_size", "epochs",
                                                                  "patience") if k in train)
              or "–")]
    sec.add(heading("Conventions"), key_values(items))
    notices = [*data.summary.notices, *data.notes, *ctx.notes]
    if notices:
        sec.add(heading("Notes"),
                Safe("<ul>" + "".join(f"<li>{esc(n)}</li>" for n in dict.fromkeys(notices))
                     + "</ul>"))
    versions = dict(card.libraries)
    versions.update(current_versions())
    sec.add(heading("Versions"),
            key_values(sorted(versions.items())))
    atlas = ctx.atlas()
    if atlas is not None:
        names = sorted(set(atlas.areas["region"]))
        frame = pd.DataFrame({"label used": [area_label(n) for n in names], "atlas name": names})
        sec.add(details(f"Area names ({len(names)} areas)", table(frame)))
    sec.add(fmt("<p class='subtitle'>Generated {} by brainlrp report.</p>",
                _dt.datetime.now().strftime("%Y-%m-%d %H:%M")))


def current_versions() -> dict[str, str]:
    """Versions of brainlrp and the libraries drawing the report, as installed now."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("brainlrp", "nilearn", "matplotlib", "nibabel", "numpy", "pandas"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


SPEC = SectionSpec("methods", "Methods and notes",
                   "How the numbers above were made, and what to keep in mind reading them.",
                   build)
