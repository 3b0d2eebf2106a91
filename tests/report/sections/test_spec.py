"""The section spec and its one missing-file mechanism."""

from __future__ import annotations

from brainlrp.report.html import Section
from brainlrp.report.sections.spec import SectionSpec, build, missing_note, present


def test_present(tmp_path):
    (tmp_path / "header.tsv").write_text("method\tvalue\n")
    (tmp_path / "rows.tsv").write_text("method\tvalue\nx\t1\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "AD.nii.gz").write_bytes(b"x")
    (tmp_path / "metrics.json").write_text("{}")
    assert not present(tmp_path / "header.tsv") and present(tmp_path / "rows.tsv")
    assert not present(tmp_path / "empty") and present(tmp_path / "full")
    assert present(tmp_path / "metrics.json") and not present(tmp_path / "nothing.tsv")


def test_missing_note_names_files_and_commands(tmp_path):
    (tmp_path / "analysis").mkdir()
    (tmp_path / "analysis" / "sanity.tsv").write_text("method\n")
    text = missing_note(["analysis/sanity.tsv", "metrics.json"], tmp_path, "because")
    assert text.startswith("missing: analysis/sanity.tsv (empty), metrics.json - ")
    assert f"`brainlrp analyze {tmp_path}`" in text and f"`brainlrp train {tmp_path}`" in text
    assert text.endswith("; because")


def test_build_replaces_a_section_without_its_files(make_ctx, run_copy):
    ctx = make_ctx(run_copy)
    calls = []

    def fill(c, sec: Section) -> None:
        calls.append(c)
        sec.add("content")

    spec = SectionSpec("x", "X", lambda c: f"intro of {c.main}", fill,
                       requires=("analysis/nothing.tsv", "means/{main}"), why="a reason")
    sec = build(spec, ctx)
    html = sec.render(1)
    assert calls == [] and "content" not in html and "intro of lrp-b0" in html
    assert "missing: analysis/nothing.tsv - written by `brainlrp analyze" in html
    assert "a reason" in html and "means/lrp-b0" not in html  # the mean images are there
    assert "x" in ctx.timings

    optional = SectionSpec("y", "Y", "", fill, requires=("means/{main}",),
                           optional=(("analysis/nothing.tsv", "the table"),))
    html = build(optional, ctx).render(2)
    assert calls == [ctx] and "content" in html
    assert "missing: analysis/nothing.tsv" in html and "without it: the table" in html
