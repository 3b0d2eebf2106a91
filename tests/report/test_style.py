"""Names, labels and number formats."""

from __future__ import annotations

import pytest

from brainlrp.report.style import (
    area_label,
    cmap_for,
    fmt_number,
    fmt_p,
    fmt_seconds,
    method_html,
    method_label,
    unit_label,
)


@pytest.mark.parametrize(("name", "expected"), [
    ("Hippocampus", "Hippocampus"),
    ("PHG_parahippocampal_gyrus", "parahippocampal gyrus (PHG)"),
    ("Cerebral_White_Matter", "Cerebral White Matter"),
    ("Left_Hippocampus", "L Hippocampus"),
    ("Right_PHG_parahippocampal_gyrus", "R parahippocampal gyrus (PHG)"),
    ("OpIFG_opercular_part_of_the_inferior_frontal_gyrus", "opercular inf. front. g. (OpIFG)"),
    ("MSFG_superior_frontal_gyrus_medial_segment", "sup. frontal g. med. seg. (MSFG)"),
])
def test_area_label(name, expected):
    assert area_label(name) == expected


def test_area_label_never_exceeds_the_limit():
    long = "XYZ_" + "_".join(["verylongword"] * 10)
    for limit in (12, 20, 32):
        label = area_label(long, limit)
        assert len(label) <= limit and label.endswith("(XYZ)") and "…" in label


def test_method_names_and_units():
    assert method_label("lrp-b0") == "LRP β=0 [lrp-b0]"  # the id beside the label
    assert method_label("lrp-b0.25") == "LRP β=0.25 [lrp-b0.25]"
    assert method_label("gb") == "Guided backprop [gb]"
    assert method_label("custom") == "custom"  # no catalog label: the id alone
    assert method_html("lrp-ref@knn-restore") == (
        'LRP from nearest controls, tissue loss only <code class="method-id">'
        'lrp-ref@knn-restore</code>')
    assert method_html("<x>") == '<code class="method-id">&lt;x&gt;</code>'

    assert unit_label("lrp-b1", "positive") == "relevance (a.u.)"
    assert unit_label("gb", "absolute") == "|guided backprop| (a.u.)"
    assert unit_label("ig", "signed") == "IG attribution (a.u.)"
    assert cmap_for("signed") == "cold_hot" and cmap_for("positive") == "hot"


def test_number_formats():
    assert fmt_number(0.123456) == "0.123"
    assert fmt_number(None) == "–" and fmt_number(float("nan")) == "–"
    assert fmt_number(0) == "0"
    assert fmt_number(2.5e-6) == "2.50e-06"
    assert fmt_number(1234.5) == "1.23e+03"
    assert fmt_p(0.0004) == "p < 0.001" and fmt_p(0.0421) == "p = 0.042"
    assert fmt_p(None) == "p = –"
    assert fmt_seconds(5) == "5.0 s" and fmt_seconds(600) == "10.0 min"
    assert fmt_seconds(None) == "–"
