"""What the sections share: the minimum area size of per-scan rankings, age and sex."""

from __future__ import annotations

import shutil
from html import escape as html_escape

import pandas as pd

from brainlrp.analysis.scans import scan_areas
from brainlrp.report import cards as cards_module
from brainlrp.report import style
from brainlrp.report.sections import build, cards_list
from brainlrp.report.sections.context import (
    MIN_AREA_FRACTION,
    large_areas,
    min_area_text,
    scan_ranking,
)
from brainlrp.report.stage import write_cards
from brainlrp.run import RunDir


def make_tiny_area_brightest(root) -> str:
    """Give the smallest area of every scan a huge density in subjects.tsv and rank the
    scans' areas again as analyze does (analysis/scan_areas.tsv); its name."""
    path = root / "regions" / "lrp-b0" / "subjects.tsv"
    sub = pd.read_csv(path, sep="\t", dtype={"participant_id": str, "scan_id": str})
    sizes = sub.drop_duplicates("region").groupby("area")["n_voxels"].sum()
    tiny = str(sizes[sizes > 0].idxmin())
    sub.loc[sub["area"] == tiny, "relevance_sum"] = 1e6
    sub.to_csv(path, sep="\t", index=False)
    ranked_path = root / "analysis" / "scan_areas.tsv"
    ranked = pd.read_csv(ranked_path, sep="\t", dtype={"participant_id": str, "scan_id": str})
    areas = list(dict.fromkeys(sub["area"]))
    ranked = pd.concat([ranked[ranked["method"] != "lrp-b0"],
                        scan_areas("lrp-b0", sub, areas)], ignore_index=True)
    ranked.to_csv(ranked_path, sep="\t", index=False)
    return tiny


def test_rankings_leave_out_tiny_areas(run_copy, make_ctx):
    tiny = make_tiny_area_brightest(run_copy)
    ctx = make_ctx(run_copy)
    n = ctx.data.area_voxels("lrp-b0")
    assert n[tiny] < MIN_AREA_FRACTION * n.sum()  # the fixture's smallest area is tiny
    ranking = scan_ranking(ctx.data, "lrp-b0")
    ranked = set().union(*(set(top["area"]) for top in ranking.values()))
    assert tiny not in ranked and ranked <= set(large_areas(ctx.data, "lrp-b0"))
    assert all(n[a] >= MIN_AREA_FRACTION * n.sum() for a in ranked)
    assert ctx.data.area_density("lrp-b0")[tiny].min() > 1  # it would have won

    ctx.cards = {s: f"cards/{s}.png" for s in ctx.data.test_scans()["scan_id"]}
    html = build(cards_list.SPEC, ctx).render(1)
    assert f"<td>{style.area_label(tiny, 34)}</td>" not in html  # named only in the caption
    assert "at least 0.1 % of the atlas" in html
    assert html_escape(min_area_text(ctx.data, "lrp-b0")) in html


def test_cards_get_age_sex_and_large_areas(run_copy, make_ctx, tmp_path, monkeypatch):
    """write_cards hands the renderer the participants table's age and sex (checked on
    the CardData, not on pixels) and ranks only large enough areas."""
    tiny = make_tiny_area_brightest(run_copy)
    rd = RunDir(run_copy)
    cohort = tmp_path / "cohort"
    shutil.copytree(rd.cohort_source(), cohort)
    table = pd.read_csv(cohort / "participants.tsv", sep="\t", dtype={"participant_id": str})
    pred = pd.read_csv(run_copy / "predictions.tsv", sep="\t", dtype={"participant_id": str})
    first = pred.loc[pred["split"] == "test", "participant_id"].iloc[0]
    table = table.set_index("participant_id").loc[[first, *(table["participant_id"].drop(
        table.index[table["participant_id"] == first]))]].reset_index()
    table["age"] = [71.6] + [None] * (len(table) - 1)
    table["sex"] = ["F"] + [""] * (len(table) - 1)
    table.to_csv(cohort / "participants.tsv", sep="\t", index=False)
    rd.set_cohort({"source": str(cohort)})

    seen = {}
    monkeypatch.setattr(cards_module.CardRenderer, "save",
                        lambda self, card, path: seen.__setitem__(card.participant_id, card))
    ctx = make_ctx(run_copy)
    write_cards(ctx, tmp_path / "cards")
    assert seen
    for pid, card in seen.items():
        assert tiny not in set(card.top["area"])
        if pid == first:
            assert (card.age, card.sex) == (71.6, "F")
            assert card.demographics() == "age 72 · sex F"
        else:
            assert (card.age, card.sex) == (None, None)
            assert card.demographics() == "age – · sex –"


def test_group_density_ranking_warns_of_small_areas(run_copy, make_ctx):
    """The region bars' density ranking is analyze's (top_areas.tsv): the report does not
    re-rank it, it names the small areas in it."""
    from brainlrp.report.sections.regions import small_area_caveat

    ctx = make_ctx(run_copy)
    small = [a for a in ctx.data.area_order("lrp-b0")
             if a not in large_areas(ctx.data, "lrp-b0")]
    assert small
    text = small_area_caveat(ctx, [small[0], large_areas(ctx.data, "lrp-b0")[0]])
    assert "1 small area (" + style.area_label(small[0]) in text
    assert small_area_caveat(ctx, large_areas(ctx.data, "lrp-b0")[:3]) == ""
