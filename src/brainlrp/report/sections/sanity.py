"""Sanity check: cascading randomisation of the model's layers."""

from __future__ import annotations

import pandas as pd

from brainlrp.report import figures as figs
from brainlrp.report.html import Section, table
from brainlrp.report.sections.context import Context
from brainlrp.report.sections.spec import SectionSpec
from brainlrp.report.style import method_label


def build(ctx: Context, sec: Section) -> None:
    """Correlation curves and the top-layer / all-layers table."""
    data = ctx.data
    sanity = ctx.table("sanity")
    fig = figs.sanity_figure(sanity, data.methods)
    sec.add(ctx.fig(fig, "cascading randomisation",
                    f"Spearman correlation over {sanity['scan_id'].nunique()} AD scan(s) "
                    "between each method's map from the trained and the progressively "
                    "randomised network.", "fig-sanity"))
    rows = [{"method": method_label(m),
             "top layer": data.summary.method(m).sanity_spearman_top_layer,
             "all layers": data.summary.method(m).sanity_spearman_all_layers}
            for m in data.methods]
    sec.add(table(pd.DataFrame(rows), caption="Spearman ρ after randomising the top layer "
                                              "and after randomising all layers.",
                  table_id="sanity-table"))


SPEC = SectionSpec(
    "sanity", "Sanity check: model randomisation",
    "Adebayo et al. (2018): re-initialise the network's layers one by one from the output; "
    "a map that explains the model must change (rank correlation with the trained model's "
    "map falls towards 0), a map that mostly shows the image will not.",
    build, requires=("analysis/sanity.tsv",),
    why="no sanity check in this run - it needs the model checkpoint (and no --no-sanity)",
    data=("analysis/sanity.tsv",))
