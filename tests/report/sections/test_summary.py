"""The summary lays out the summary and claims files; it computes nothing."""

from __future__ import annotations

from html import escape as html_escape

import pandas as pd

from brainlrp._io import read_json, write_json
from brainlrp.report.sections import build, summary


def test_summary_lays_out_claims_and_summary(run_copy, make_ctx):
    claims_path = run_copy / "analysis" / "claims.tsv"
    claims = pd.read_csv(claims_path, sep="\t")
    assert set(claims["claim"]) >= {"individual", "hc_low", "temporal"}
    claims.loc[(claims["method"] == "lrp-b0") & (claims["claim"] == "temporal"),
               ["evidence", "verdict"]] = [
        "EVIDENCE FROM FILE; top 2: MSFG_superior_frontal_gyrus_medial_segment, Hippocampus",
        "no"]
    claims.loc[(claims["method"] == "lrp-b0") & (claims["claim"] == "hc_low"),
               "verdict"] = "partly"
    claims.to_csv(claims_path, sep="\t", index=False)
    path = run_copy / "analysis" / "summary.json"
    s = read_json(path)
    s["methods"]["lrp-b0"]["hc_ad_ratio"] = 0.4321
    write_json(path, s)

    html = build(summary.SPEC, make_ctx(run_copy)).render(1)
    assert "EVIDENCE FROM FILE" in html and '<span class="no">no</span>' in html
    assert '<span class="partly">partly</span>' in html
    assert '<tr class="verdict-partly">' in html and '<tr class="verdict-no">' in html
    # Raw atlas names in the evidence are shown as the report's area labels.
    assert "top 2: superior frontal gyrus medial segment (MSFG), Hippocampus" in html
    assert "MSFG_superior" not in html
    assert html.count("<tr") >= 7  # a row per claim: every claim analysis writes is shown
    for claim in ("individual", "hc_low", "temporal", "plausible"):
        statement = claims.loc[(claims["method"] == "lrp-b0") & (claims["claim"] == claim),
                               "statement"].iloc[0]
        assert html_escape(statement) in html, claim
    assert 'href="#fingerprints">see §7</a>' in html  # the claim judged by the reader
    assert "0.432" in html  # the HC / AD tile
    assert html.count("<tr>") >= 3 and "the paper: −0.56" in html


def test_summary_without_claims(run_copy, make_ctx):
    (run_copy / "analysis" / "claims.tsv").unlink()
    html = build(summary.SPEC, make_ctx(run_copy)).render(1)
    assert "missing: analysis/claims.tsv" in html and 'id="claims"' not in html
    assert "HC/AD relevance" in html  # the rest is still there
