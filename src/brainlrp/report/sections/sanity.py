"""Sanity check: cascading randomisation of the model's layers."""

from __future__ import annotations

import pandas as pd

from brainlrp.report import figures as figs
from brainlrp.report import glossary
from brainlrp.report.html import Section, table
from brainlrp.report.sections.context import Context
from brainlrp.report.sections.spec import SectionSpec
from brainlrp.report.style import method_html


def build(ctx: Context, sec: Section) -> None:
    """Correlation curves and the top-layer / all-layers table."""
    data = ctx.data
    sanity = ctx.table("sanity")
    fig = figs.sanity_figure(sanity, data.methods)
    sec.add(ctx.fig(fig, "cascading randomisation",
                    f"Spearman correlation over {sanity['scan_id'].nunique()} AD scan(s) "
                    "between each method's map from the trained and the progressively "
                    "randomised network; each method has its own colour, line style and "
                    "marker.", "fig-sanity"))
    shown = [m for m in data.methods if m in set(sanity["method"])]
    rows = [{"method": method_html(m),
             "top": data.summary.method(m).sanity_spearman_top_layer,
             "all": data.summary.method(m).sanity_spearman_all_layers}
            for m in shown]
    sec.add(table(pd.DataFrame(rows, columns=["method", "top", "all"]),
                  {"method": "method", "top": glossary.header("sanity_top"),
                   "all": glossary.header("sanity_all")}, numeric=["top", "all"],
                  caption="Spearman ρ with the trained network's map after randomising the "
                          "top layer and after randomising all layers (low: the map depends "
                          "on the weights; a model-free floor stays at 1).",
                  table_id="sanity-table"))


SPEC = SectionSpec(
    "sanity", "Sanity check: model randomisation",
    "Adebayo et al. (2018): re-initialise the network's layers one by one from the output; "
    "a map that explains the model must change (rank correlation with the trained model's "
    "map falls towards 0), a map that mostly shows the image will not.",
    build, requires=("analysis/sanity.tsv",),
    why="no sanity check in this run - it needs the model checkpoint (and no --no-sanity)",
    data=("analysis/sanity.tsv",))
