"""Methods and notes: the paper, relevance per method, conventions, notes, versions."""

from __future__ import annotations

import datetime as _dt

import pandas as pd

from brainlrp import catalog
from brainlrp.report import glossary, paper, style
from brainlrp.report.html import (
    Safe,
    Section,
    details,
    esc,
    fmt,
    heading,
    key_values,
    paragraph,
    table,
)
from brainlrp.report.sections.context import Context, mean_rule
from brainlrp.report.sections.spec import DATA_LINKS_NOTE, SectionSpec, data_href
from brainlrp.report.style import area_label, method_label


def build(ctx: Context, sec: Section) -> None:
    """Reference, relevance modes, conventions, notes, versions and area names."""
    data = ctx.data
    sec.add(fmt("<p><b>Reference.</b> {}</p>", paper.CITATION))
    rows = []
    meaning = {"positive": "positive part kept (evidence for AD)",
               "absolute": "magnitude (a sensitivity's sign is a direction, not evidence)",
               "signed": "signed values"}
    for m in data.methods:
        mode = data.mode(m)
        rows.append({"method": m, "name": catalog.describe(m).label, "relevance": mode,
                     "meaning": meaning.get(mode, mode), "unit": ctx.method_unit(m)})
    sec.add(heading("Relevance per method"),
            table(pd.DataFrame(rows), caption="How each method's heatmap became relevance "
                                              "(analysis/summary.json); every region number "
                                              "uses it.", table_id="relevance-modes"))
    sec.add(heading("Measures", ident="measures"),
            paragraph("Every number the report compares between methods, with the one name "
                      "it has in every table, tile, caption and figure; table headers link "
                      "here. Where a measure does not apply to a method the report shows "
                      f"“{glossary.NOT_APPLICABLE}” with the reason as a tooltip."),
            glossary.definitions(list(glossary.MEASURES), data.summary.top_k,
                                 data.summary.threshold))
    card = data.card
    train = card.train_config
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
             ("training", ", ".join(f"{k} {getattr(train, k)}"
                                    for k in ("lr", "weight_decay", "batch_size", "epochs",
                                              "patience")) if train is not None else "–")]
    sec.add(heading("Conventions"), key_values(items))
    notices = [*data.summary.notices, *data.notes, *ctx.notes]
    if notices:
        sec.add(heading("Notes"),
                Safe("<ul>" + "".join(f"<li>{esc(n)}</li>" for n in dict.fromkeys(notices))
                     + "</ul>"))
    files = data_files(ctx)
    if files:
        frame = pd.DataFrame({"file": [Safe(fmt('<a href="{}">{}</a>', data_href(f), f))
                                       for f, _ in files],
                              "contents": [what for _, what in files]})
        sec.add(heading("Data", ident="data"),
                fmt("<p>The files of this run behind every number and map above, for your own "
                    "statistics (TSV: tab-separated with a header row; NIfTI: float32 on the "
                    "model's MNI grid). The page embeds none of them: these are {}.</p>",
                    DATA_LINKS_NOTE),
                details(f"All data files ({len(frame)})", table(frame, table_id="data-files")))
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


def data_files(ctx: Context) -> list[tuple[str, str]]:
    """The run's data files (relative to the run) shown in the Data list, with what each
    holds; only files that exist."""
    data = ctx.data
    rd = data.rd
    out = [(p.relative_to(rd.root).as_posix(),
            "summary of every analysis (JSON)" if p.suffix == ".json"
            else f"{p.stem.replace('_', ' ')} (columns: see brainlrp.analysis)")
           for p in sorted(rd.analysis.glob("*")) if p.suffix in (".tsv", ".json")]
    for m in data.methods:
        label = method_label(m)
        out += [(f"regions/{m}/subjects.tsv", f"{label}: per scan and atlas label: n_voxels, "
                                              "relevance_sum, relevance_density"),
                (f"regions/{m}/groups.tsv", f"{label}: per group and label or area: "
                                            "mean_sum, mean_density, gain")]
        out += [(f"means/{m}/{g}.nii.gz", f"{label}: {g}, {mean_rule(data.mode(m), True)}")
                for g in style.GROUPS]
    out += [("predictions.tsv", "per scan: diagnosis, p(AD), prediction, outcome, split"),
            ("metrics.json", "classification metrics per split and trial")]
    return [(f, what) for f, what in out if (rd.root / f).is_file()]


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
