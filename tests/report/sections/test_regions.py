"""The regions section takes its rank group, top areas and HC / AD from analysis files."""

from __future__ import annotations

import re

import pandas as pd

from brainlrp._io import read_json, write_json
from brainlrp.report.sections import build, regions
from brainlrp.report.style import area_label


def test_top_areas_and_ratio_come_from_files(run_copy, make_ctx):
    path = run_copy / "analysis" / "top_areas.tsv"
    top = pd.read_csv(path, sep="\t")
    gain = (top["method"] == "gb") & (top["measure"] == "gain")
    first = top.loc[gain & (top["rank"] == 1), "area"].iloc[0]
    last = top.loc[gain, "area"].iloc[-1]
    top.loc[gain & (top["rank"] == 1), "area"] = last  # swap the first and the last
    top.loc[gain & (top["area"] == last) & (top["rank"] > 1), "area"] = first
    top.to_csv(path, sep="\t", index=False)
    s = read_json(run_copy / "analysis" / "summary.json")
    s["methods"]["gb"]["hc_ad_ratio"] = 0.777
    write_json(run_copy / "analysis" / "summary.json", s)

    ctx = make_ctx(run_copy)
    group, ranked = regions.ranked_areas(pd.read_csv(path, sep="\t"), "gb")
    assert group in ("TP", "AD") and ranked["gain"][0] == last
    html = build(regions.SPEC, ctx).render(1)
    gain_table = html[html.index('id="gain-by-method"'):]
    gb_row = re.search(r'<tr><td>Guided backprop <code class="method-id">gb</code></td>(.*?)'
                       r"</tr>", gain_table).group(1)
    first_cell = re.search(r"<td>(.*?)</td>", gb_row).group(1)
    assert first_cell == area_label(last, 30).replace("'", "&#x27;")
    totals = html[html.index('id="relevance-totals"'):]
    assert "0.777" in totals
    assert f"ranked by the {group} group" in html
