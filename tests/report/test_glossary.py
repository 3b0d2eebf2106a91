"""One name and one definition per measure; "n/a" where a measure does not apply; the
floors named, with numbers, where they beat the methods."""

from __future__ import annotations

import re
import shutil
from dataclasses import replace

import pandas as pd
import pytest

from brainlrp._io import read_json, write_json
from brainlrp.report import glossary
from brainlrp.report.sections import (
    benchmark,
    build,
    faithfulness,
    fingerprints,
    ground_truth,
    hippocampus,
    methods,
    regions,
    sanity,
    summary,
)

#: ``<a class="measure" href="#measure-KEY" title="...">NAME</a>``
MEASURE_LINK = re.compile(r'<a class="measure" href="#measure-(\w+)" title="[^"]*">([^<]*)</a>')


def test_names_and_definitions():
    assert glossary.name("topk_recall", k=7) == "top-7 recall"
    assert "more tissue lost than 5 %" in glossary.definition("mass", threshold=0.05)
    assert "than 12 %" in glossary.definition("mass", threshold=0.12)
    assert "than the analysis' threshold" in glossary.definition("mass")
    with pytest.raises(KeyError):
        glossary.name("voxel_auc")  # a typo fails instead of printing a new name
    names = [glossary.name(k) for k in glossary.MEASURES]
    assert len(set(names)) == len(names)  # two numbers never share a name


def test_every_section_takes_its_measure_names_from_the_glossary(monkeypatch, run_copy,
                                                                   make_ctx):
    """Renaming a measure in the glossary renames it in every header and tile that shows
    it; no section keeps a name of its own (e.g. the old "voxel AUC")."""
    renamed = {k: replace(m, name=f"NAME{i}") for i, (k, m) in
               enumerate(glossary.MEASURES.items())}
    monkeypatch.setattr(glossary, "MEASURES", renamed)
    ctx = make_ctx(run_copy)
    expected = {"benchmark": {"mass", "chance", "auc_abs", "rho_restoration", "topk_recall",
                              "sanity_top", "sanity_all", "aopc_difference", "cost"},
                "ground-truth": {"mass", "chance", "auc_abs", "auc_relevance", "area_rho",
                                 "topk_recall", "group_topk"},
                "summary": {"hc_ad", "fingerprint", "hippocampus_r", "mass", "auc_abs"},
                "hippocampus": {"hippocampus_r"},
                "faithfulness": {"aopc", "aopc_random", "aopc_difference"},
                "sanity": {"sanity_top", "sanity_all"},
                "fingerprints": {"fingerprint", "fingerprint_min"},
                "regions": {"hc_ad"}}
    specs = {s.id: s for s in (benchmark.SPEC, ground_truth.SPEC, summary.SPEC,
                               hippocampus.SPEC, faithfulness.SPEC, sanity.SPEC,
                               fingerprints.SPEC, regions.SPEC)}
    for section, keys in expected.items():
        html = build(specs[section], ctx).render(1)
        links = MEASURE_LINK.findall(html)
        assert {k for k, _ in links} >= keys, section
        for key, shown in links:
            assert shown == renamed[key].name, (section, key, shown)
        for old in ("voxel AUC", "relevance in true atrophy", "mean similarity"):
            assert old not in html, (section, old)


def test_methods_section_defines_every_linked_measure_once(reported):
    html = reported.index.read_text()
    defined = re.findall(r'<dt id="measure-(\w+)">', html)
    assert sorted(defined) == sorted(glossary.MEASURES)
    linked = set(re.findall(r'href="#measure-(\w+)"', html))
    assert linked and linked <= set(defined)


def _add_method(root, method: str, like: str, hc_total: float, ratio: float) -> None:
    """Make ``method`` an analysed method of the copied run (its region tables copied from
    ``like``), with the given HC total relevance and HC/AD ratio."""
    shutil.copytree(root / "regions" / like, root / "regions" / method)
    path = root / "analysis" / "summary.json"
    s = read_json(path)
    s["methods"][method] = {**s["methods"][like], "hc_ad_ratio": ratio}
    write_json(path, s)
    path = root / "analysis" / "relevance_totals.tsv"
    totals = pd.read_csv(path, sep="\t")
    extra = totals[totals["method"] == like].assign(method=method)
    extra.loc[extra["group"].isin(["HC", "TN", "FP"]), "mean_total_relevance"] = hc_total
    pd.concat([totals, extra]).to_csv(path, sep="\t", index=False)


def test_twin_reference_shows_na_not_zero(run_copy, make_ctx):
    """A control is its own healthy twin: its twin-referenced map is zero, HC/AD is 0 in
    the file, and the report shows n/a with the reason instead."""
    _add_method(run_copy, "lrp-ref@twin", "lrp-b0", hc_total=0.0, ratio=0.0)
    assert glossary.not_applicable("hc_ad", "lrp-ref@twin")
    assert glossary.not_applicable("hc_ad", "lrp-ref@twin-restore")
    assert glossary.not_applicable("hc_ad", "lrp-ref@knn-restore") is None
    html = build(regions.SPEC, make_ctx(run_copy)).render(1)
    totals = html[html.index('id="relevance-totals"'):]
    row = re.search(r"<tr>(<td[^>]*>LRP from healthy twin.*?)</tr>", totals).group(1)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
    assert "own healthy twin" in cells[-1] and ">n/a</span>" in cells[-1]
    assert "lrp-ref@twin" in cells[0]  # the id beside the label
    summary_html = build(summary.SPEC, make_ctx(run_copy, ["lrp-ref@twin"])).render(1)
    tile = re.search(r'<div class="tile-value">([^<]*)</div><div class="tile-label">'
                     r'<a class="measure" href="#measure-hc_ad"', summary_html)
    assert tile.group(1) == "n/a"


def test_summary_compares_the_paper_with_lrp_b0(run_copy, make_ctx):
    """The paper's β = 0 r sits beside this run's lrp-b0 r, the recommended method's r on
    its own tile; without lrp-b0 the lowest analysed beta is compared at its own beta."""
    path = run_copy / "analysis" / "summary.json"
    s = read_json(path)
    s["recommended_method"] = "gb"
    s["methods"]["gb"]["hippocampus_r"] = -0.123
    s["methods"]["lrp-b0"]["hippocampus_r"] = -0.777
    s["methods"]["lrp-b1"]["hippocampus_r"] = -0.444
    write_json(path, s)
    html = build(summary.SPEC, make_ctx(run_copy)).render(1)
    tiles = dict((label, value) for value, label in re.findall(
        r'<div class="tile-value">([^<]*)</div><div class="tile-label">(.*?)</div>', html))
    paper = [v for lab, v in tiles.items() if "the paper&#x27;s LRP" in lab]
    assert paper == ["-0.78"]
    assert "at β=0" in next(lab for lab in tiles if "the paper&#x27;s LRP" in lab)
    assert "the paper: −0.56" in html
    own = [v for lab, v in tiles.items() if "#measure-hippocampus_r" in lab
           and lab.endswith("</a>")]  # no "at β=..." after the name
    assert own == ["-0.12"]
    html = build(summary.SPEC, make_ctx(run_copy, ["lrp-b1", "gb"])).render(1)
    assert "at β=1" in html and "the paper: −0.36" in html and "-0.44" in html
    hippo = build(hippocampus.SPEC, make_ctx(run_copy)).render(1)
    assert "this run, LRP β=0 <code" in hippo and "gives r = −0.78 (n = " in hippo


def test_floor_notes_compare_the_run_numbers():
    scores = {"auc_abs": {"edges": 0.75, "noise": 0.5, "lrp-ref@knn-restore": 0.72,
                          "lrp-ref@twin": 0.9, "lrp-b0": 0.52},
              "mass": {"edges": 0.2, "noise": 0.17, "lrp-ref@knn-restore": 0.6},
              "hippocampus_r": {"edges": -0.8, "lrp-ref@knn-restore": -0.57, "lrp-b0": -0.78},
              "chance": {"edges": 0.9, "lrp-b0": 0.1}}  # no direction: never compared
    notes = glossary.floor_notes(scores)
    assert len(notes) == 1  # noise wins nothing; the twin upper bound is not compared
    text = notes[0]
    assert "Edges (floor) [edges]" in text and "|.|-AUC vs atrophy (0.75" in text
    assert "[lrp-ref@knn-restore]: 0.72" in text
    assert "hippocampus r (-0.80" in text and "[lrp-b0]: -0.78" in text
    assert "mass in atrophy" not in text and "chance" not in text
    assert "CSF" in text  # why
    scores["auc_abs"]["edges"] = 0.70
    scores["hippocampus_r"]["edges"] = -0.5
    assert glossary.floor_notes(scores) == []


def test_benchmark_names_a_winning_floor_from_its_table(run_copy, make_ctx):
    _add_method(run_copy, "edges", "gb", hc_total=1.0, ratio=1.0)
    path = run_copy / "analysis" / "method_benchmark.tsv"
    bench = pd.read_csv(path, sep="\t")
    bench = pd.concat([bench, bench[bench["method"] == "gb"].assign(method="edges",
                                                                    family="floor")])
    best = bench.loc[bench["method"] != "edges", "auc_abs"].max()
    bench.loc[bench["method"] == "edges", "auc_abs"] = best + 0.123
    bench.to_csv(path, sep="\t", index=False)
    html = build(benchmark.SPEC, make_ctx(run_copy)).render(1)
    assert f"|.|-AUC vs atrophy ({best + 0.123:.2f}" in html
    assert f": {best:.2f})" in html
    bench.loc[bench["method"] == "edges", "auc_abs"] = best - 0.01
    bench.to_csv(path, sep="\t", index=False)
    html = build(benchmark.SPEC, make_ctx(run_copy)).render(1)
    assert "|.|-AUC vs atrophy (" not in html


def test_group_means_say_what_they_average(run_copy, make_ctx):
    from brainlrp.report.sections import group

    html = build(group.SPEC, make_ctx(run_copy)).render(1)
    assert "negative values are set to 0 in every map before averaging" in html
    assert "gb: the mean of each subject&#x27;s magnitude |map|" in html
    files = build(methods.SPEC, make_ctx(run_copy)).render(1)
    assert "AD, the mean of each subject&#x27;s positive relevance" in files


def test_hc_ad_above_one_says_what_lies_behind_it(run_copy, make_ctx):
    """HC/AD above 1 gets the medians and the largest control's share from the run's own
    subjects.tsv; one control carrying most of it under a reference method is named as a
    likely inflated map; a twin reference (n/a) gets nothing."""
    _add_method(run_copy, "lrp-ref@mean", "lrp-b0", hc_total=3.5, ratio=3.49)
    _add_method(run_copy, "lrp-ref@twin", "lrp-b0", hc_total=0.0, ratio=0.0)
    path = run_copy / "regions" / "lrp-ref@mean" / "subjects.tsv"
    sub = pd.read_csv(path, sep="\t")
    controls = sorted(sub.loc[sub["diagnosis"] != "AD", "participant_id"].unique())
    big = controls[0]
    sub.loc[sub["participant_id"] == big, "relevance_sum"] *= 1000  # one inflated map
    sub.to_csv(path, sep="\t", index=False)
    html = build(regions.SPEC, make_ctx(run_copy)).render(1)
    notes = [n for n in re.findall(r'<div class="note note-info">(.*?)</div>', html)
             if "HC/AD relevance above 1" in n]
    assert len(notes) == 1
    per = sub.groupby(["participant_id", "scan_id"])["relevance_sum"].sum().groupby(
        "participant_id").mean()
    hc, ad = per[controls], per.drop(controls)
    expected = (f"LRP from mean control [lrp-ref@mean]: 3.49; median control "
                f"{hc.median():.3g} against median patient {ad.median():.3g}")
    assert expected in notes[0]
    assert (f"the largest control, {big}, carries {100 * hc.max() / hc.sum():.0f} % of the "
            f"controls&#x27; total (without it HC/AD is "
            f"{hc.drop(big).mean() / ad.mean():.2f})") in notes[0]
    assert f"under a reference method ({big}) is most likely an inflated map" in notes[0]
    assert "lrp-ref@twin" not in notes[0] and "lrp-b1" not in notes[0]
