"""Every section built alone from the fake run: its key content with its files, its
missing-file note without them."""

from __future__ import annotations

import shutil
from html import escape as html_escape

import pytest

from brainlrp.report.sections import SECTIONS, build, section_number

#: A table or figure id (or text) each section shows when its files are there.
KEY = {"summary": 'id="claims"', "benchmark": 'id="benchmark-table"',
       "training": 'id="metrics"', "individual": "fig-example-TP",
       "group-means": "fig-group-slices", "regions": 'id="gain-by-method"',
       "fingerprints": 'id="fingerprint-table"', "beta": "fig-beta-overlap",
       "hippocampus": 'id="hippocampus-table"', "ground-truth": 'id="ground-truth-table"',
       "faithfulness": 'id="aopc-table"', "sanity": 'id="sanity-table"',
       "cards": "cards were not written", "methods": 'id="relevance-modes"'}


def test_every_section_has_a_key():
    assert [s.id for s in SECTIONS] == list(KEY)
    assert section_number("summary") == 1 and section_number("fingerprints") == 7
    assert [s.id for s in SECTIONS if s.last] == ["summary"]


@pytest.fixture(scope="module")
def analysed_ctx(analysed):
    from brainlrp import catalog
    from brainlrp.report.inputs import load_run
    from brainlrp.report.sections import Context

    data = load_run(analysed.root)
    main, compare = catalog.choose_main_and_comparison(data.methods)
    return Context(data=data, main=main, compare=compare, inputs_fn=analysed.inputs_fn)


@pytest.mark.parametrize("spec", SECTIONS, ids=[s.id for s in SECTIONS])
def test_section_shows_its_content(spec, analysed_ctx):
    html = build(spec, analysed_ctx).render(1)
    assert f'<section id="{spec.id}">' in html
    assert KEY[spec.id] in html
    assert "missing:" not in html


@pytest.mark.parametrize("spec", [s for s in SECTIONS if s.requires],
                         ids=[s.id for s in SECTIONS if s.requires])
def test_section_without_its_files_says_so(spec, run_copy, make_ctx):
    # The context is loaded first (load_run needs summary.json), so every required file,
    # the summary's own included, can go before the section is built.
    ctx = make_ctx(run_copy)
    removable = spec.paths(ctx)
    assert removable
    for path in removable:
        target = run_copy / path
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    html = build(spec, ctx).render(1)
    assert f"missing: {', '.join(removable)} - written by `brainlrp" in html
    assert KEY[spec.id] not in html and "<figure" not in html
    if spec.why:
        assert html_escape(spec.why) in html
