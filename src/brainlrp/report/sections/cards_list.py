"""The list of per-subject cards, linked relatively."""

from __future__ import annotations

from brainlrp.report import style
from brainlrp.report.html import Safe, Section, fmt, note, table
from brainlrp.report.sections.context import Context, min_area_text, scan_ranking
from brainlrp.report.sections.spec import SectionSpec
from brainlrp.report.style import area_label, method_label


def intro(ctx: Context) -> str:
    """The intro names the method of the cards."""
    return (f"One card per test scan ({method_label(ctx.main)}): AD probability, three slices "
            "through the relevance peak and the ten areas of highest relevance density with "
            "their z-score against the healthy controls. Click a row's card to open it.")


def build(ctx: Context, sec: Section) -> None:
    """One row per test scan (outcome order), linking its card."""
    data, cards = ctx.data, ctx.cards
    scans = data.test_scans()
    order = {o: i for i, o in enumerate(style.OUTCOMES)}
    scans = scans.assign(_order=scans["outcome"].map(order)).sort_values(
        ["_order", "p_ad", "scan_id"], ascending=[True, False, True])
    if not cards:
        sec.add(note("cards were not written (`brainlrp report --no-cards`)"))
        return
    ranking = scan_ranking(data, ctx.main)
    tops = [area_label(ranking[s]["area"].iloc[0], 34) if len(ranking.get(s, ())) else "–"
            for s in scans["scan_id"]]
    frame = scans.assign(top=tops)
    frame["raised"] = [
        f"{area_label(ctx.raised[s][0], 30)} (z = {ctx.raised[s][1]:+.1f})"
        if s in ctx.raised else "–" for s in frame["scan_id"]]
    frame["card"] = [Safe(fmt('<a href="{}">{}</a>', cards[s], "card")) if s in cards else "–"
                     for s in frame["scan_id"]]
    columns = {"participant_id": "subject", "scan_id": "scan", "diagnosis": "diagnosis",
               "p_ad": "p(AD)", "outcome": "outcome", "top": "area of highest density",
               "raised": "most raised vs HC (top 10)", "card": "card"}
    if (frame["scan_id"] == frame["participant_id"]).all():
        del columns["scan_id"]
    sec.add(table(frame, columns,
                  formats={"p_ad": lambda v: f"{float(v):.3f}"},
                  row_class=lambda r: str(r["outcome"]), table_id="cards-table",
                  caption=f"Areas ranked on the cards and here: "
                          f"{min_area_text(data, ctx.main)}."))


SPEC = SectionSpec("cards", "Per-subject explanation cards", intro, build,
                   data=("predictions.tsv", "regions/{main}/subjects.tsv"))
