"""Faithfulness: region perturbation curves and AOPC per method."""

from __future__ import annotations

from brainlrp.report import figures as figs
from brainlrp.report import glossary
from brainlrp.report.html import Section, note, table
from brainlrp.report.sections.context import Context
from brainlrp.report.sections.spec import SectionSpec
from brainlrp.report.style import method_html


def build(ctx: Context, sec: Section) -> None:
    """Perturbation curves and the AOPC table."""
    curves, aopc = ctx.table("faithfulness"), ctx.table("faithfulness_aopc")
    fig = figs.faithfulness_figure(curves, ctx.data.methods)
    n = int(aopc["n_subjects"].max())
    sec.add(ctx.fig(fig, "perturbation curves",
                    f"Mean over {n} AD scan(s): p(AD) and its drop as areas are replaced, "
                    "most relevant first (thick black dashes: random orders); each method "
                    "has its own colour, line style and marker.", "fig-faithfulness"))
    frame = aopc.copy()
    frame["label"] = [method_html(m) for m in frame["method"]]
    sec.add(table(frame, {"label": "method", "n_subjects": "scans", "steps": "steps",
                          "aopc_relevance": glossary.header("aopc"),
                          "aopc_random": glossary.header("aopc_random"),
                          "aopc_difference": glossary.header("aopc_difference")},
                  numeric=["n_subjects", "steps", "aopc_relevance", "aopc_random",
                           "aopc_difference"], table_id="aopc-table"))
    values = dict(zip(aopc["method"], aopc["aopc_difference"], strict=True))
    for text in glossary.floor_notes({"aopc_difference": values}):
        sec.add(note(text, "info"))
    if n < 10:
        sec.add(note(f"based on {n} scan(s): use `brainlrp analyze --faithfulness-subjects "
                     "20` for a firmer comparison", "info"))


SPEC = SectionSpec(
    "faithfulness", "Faithfulness: region perturbation",
    "Does the model rely on what the map marks? The most relevant areas of AD scans are "
    "replaced one by one by the controls' mean image and p(AD) is recomputed; a faithful map "
    "makes p(AD) fall faster than random area orders (AOPC: area over the perturbation "
    "curve).",
    build, requires=("analysis/faithfulness.tsv", "analysis/faithfulness_aopc.tsv"),
    why="no faithfulness check in this run - it needs the model checkpoint (and no "
        "--no-faithfulness)",
    data=("analysis/faithfulness.tsv", "analysis/faithfulness_aopc.tsv"))
