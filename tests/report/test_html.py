"""Page assembly: escaping, tables, embedded figures, the whole page."""

from __future__ import annotations

import re

import pandas as pd
from matplotlib.figure import Figure

from brainlrp.report.html import Safe, Section, esc, figure, fmt, note, page, table


def test_escaping():
    assert esc("<b>&") == "&lt;b&gt;&amp;"
    assert esc(Safe("<b>")) == "<b>"
    assert fmt("<p>{}</p>", "<i>") == "<p>&lt;i&gt;</p>"
    assert "<script>" not in note("<script>alert(1)</script>")


def test_table_escapes_cells_but_keeps_safe_html():
    frame = pd.DataFrame({"id": ["<x>", "b"], "value": [0.123456, float("nan")],
                          "link": [Safe('<a href="cards/b.png">card</a>'), "–"]})
    html = table(frame, {"id": "subject", "value": "value", "link": "card"},
                 row_class=lambda r: "TP")
    assert "&lt;x&gt;" in html and "<x>" not in html
    assert '<a href="cards/b.png">card</a>' in html
    assert "0.123" in html and "–" in html
    assert 'class="TP"' in html and 'class=numeric' in html


def test_figure_is_embedded_at_its_size():
    fig = Figure(figsize=(4, 2))
    fig.add_subplot().plot([0, 1], [0, 1])
    html = figure(fig, "a line", "caption <1>", "fig-x")
    assert 'id="fig-x"' in html and 'width="384" height="192"' in html
    assert re.search(r'src="data:image/png;base64,[A-Za-z0-9+/=]{100,}"', html)
    assert "caption &lt;1&gt;" in html


def test_page_is_self_contained():
    sections = [Section("one", "First <1>", "intro").add(note("missing")),
                Section("two", "Second")]
    html = page("Title", "sub", sections, scripts=["console.log(1)"])
    assert '<section id="one">' in html and '<section id="two">' in html
    assert 'href="#one"' in html and "First &lt;1&gt;" in html
    assert "default-src 'none'" in html
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "<script>console.log(1)</script>" in html
