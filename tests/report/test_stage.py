"""``report`` end to end on the fake run, missing optional parts and bad input."""

from __future__ import annotations

import re
import urllib.parse

import pandas as pd
import pytest
from typer.testing import CliRunner

from brainlrp import catalog
from brainlrp._io import read_json, write_json
from brainlrp.cli import app
from brainlrp.errors import BrainLRPError
from brainlrp.report import report

SECTIONS = ["summary", "benchmark", "training", "individual", "group-means", "regions",
            "fingerprints", "beta", "hippocampus", "ground-truth", "faithfulness", "sanity",
            "cards", "methods"]


def test_report_end_to_end(reported, analysed):
    root = analysed.root
    assert reported.index == root / "report" / "index.html"
    assert reported.sections == SECTIONS
    assert reported.main_method == "lrp-b0"
    assert reported.notes == []  # the subjects' own scans were available
    html = reported.index.read_text()
    for sid in SECTIONS:
        assert f'<section id="{sid}">' in html
    for fig_id in ("fig-training-curves", "fig-classification", "fig-example-TP",
                   "fig-example-FP", "fig-example-TN", "fig-example-FN", "fig-group-slices",
                   "fig-group-glass", "fig-method-glass", "fig-region-bars",
                   "fig-density-violins", "fig-fingerprints", "fig-beta-overlap",
                   "fig-hippocampus", "fig-ground-truth", "fig-faithfulness", "fig-sanity"):
        assert f'id="{fig_id}"' in html, fig_id
    # Self-contained: every image is embedded; links lead only to the cards and to the
    # run's own data files, relative to the page, and every target exists.
    sources = re.findall(r'<img src="([^"]{0,40})', html)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert not re.search(r'(src|href)="(https?:)?//', html)
    hrefs = re.findall(r'href="([^"#][^"]*)"', html)
    assert hrefs and all(h.startswith(("cards/", "../")) for h in hrefs)
    for h in hrefs:
        assert (root / "report" / urllib.parse.unquote(h)).resolve().is_file(), h
    data = {h[3:] for h in hrefs if h.startswith("../")}
    assert {"analysis/claims.tsv", "analysis/top_areas.tsv", "regions/lrp-b0/groups.tsv",
            "regions/gb/groups.tsv", "means/lrp-b0/AD.nii.gz", "means/lrp-b0/HC.nii.gz",
            "means/gb/AD.nii.gz"} <= data
    assert 'id="data-files"' in html and "inside its run folder" in html
    pred = pd.read_csv(root / "predictions.tsv", sep="\t")
    test_scans = set(pred.loc[pred["split"] == "test", "scan_id"])
    assert {p.name[:-4] for p in reported.cards} == test_scans
    assert {p.name[:-4] for p in (root / "report" / "cards").glob("*.png")} == test_scans
    assert read_json(root / "run.json")["stages"]["report"]["n_cards"] == len(test_scans)
    assert "brainlrp-niivue" in html and "Content-Security-Policy" in html
    assert "most raised vs HC" in html and "(z = " in html


def test_main_and_comparison_methods():
    """The report shows the paper's lowest beta in depth, beside guided backprop."""
    choose_methods = catalog.choose_main_and_comparison
    assert choose_methods(["lrp-b0", "lrp-b1", "gb", "ig"]) == ("lrp-b0", "gb")
    assert choose_methods(["lrp-b0.5", "lrp-b1", "ig"]) == ("lrp-b0.5", "ig")
    assert choose_methods(["lrp-b1"]) == ("lrp-b1", None)
    assert choose_methods(["gb", "gradient"]) == ("gb", "gradient")


def test_missing_optional_parts_are_explained(run_copy):
    """No training outputs, one beta, no ground truth, no checks, no own scans (the fake
    model card's preprocessing record is empty): each section says which files are
    missing and which command writes them, through the CLI; text from files is escaped."""
    analysis = run_copy / "analysis"
    for name in ("ground_truth", "ground_truth_summary", "faithfulness",
                 "faithfulness_aopc", "sanity", "hippocampus", "hippocampus_subjects"):
        (analysis / f"{name}.tsv").unlink()
    (run_copy / "metrics.json").unlink()
    (run_copy / "training_log.csv").unlink()
    summary = read_json(analysis / "summary.json")
    summary["notices"].append("<img src=x onerror=alert(1)>")
    write_json(analysis / "summary.json", summary)

    result = CliRunner().invoke(app, ["report", str(run_copy), "--methods", "lrp-b0",
                                      "--no-cards", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "note: the subjects' own scans are not available" in result.output
    assert "wrote" in result.output
    html = (run_copy / "report" / "index.html").read_text()
    for sid in SECTIONS:
        assert f'<section id="{sid}">' in html
    for text in ("missing: metrics.json - written by `brainlrp train",
                 "missing: training_log.csv - written by `brainlrp train",
                 "only one method was analysed", "this run has 1 LRP β",
                 "missing: analysis/hippocampus.tsv, analysis/hippocampus_subjects.tsv - "
                 "written by `brainlrp analyze", "no hippocampus analysis",
                 "missing: analysis/ground_truth.tsv", "no ground truth",
                 "missing: analysis/faithfulness.tsv", "no faithfulness check",
                 "missing: analysis/sanity.tsv", "no sanity check",
                 "cards were not written", "template is shown"):
        assert text in html, text
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert not (run_copy / "report" / "cards").exists()


def test_unknown_method(analysed):
    with pytest.raises(BrainLRPError, match="not analysed"):
        report(analysed.root, methods=["lrp-b0", "occlusion"])


@pytest.mark.parametrize("make", ["no_analysis", "no_run"])
def test_cli_bad_input_is_one_line(tmp_path, analysed, make):
    run = tmp_path / "run"
    if make == "no_analysis":
        run.mkdir()
        (run / "predictions.tsv").write_text((analysed.root / "predictions.tsv").read_text())
    result = CliRunner().invoke(app, ["report", str(run)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:")
    if make == "no_analysis":
        assert "run `brainlrp analyze" in lines[0]
