"""The ``report`` stage: a run directory in, ``report/index.html`` and the cards out."""

from __future__ import annotations

import os
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd

from brainlrp import catalog
from brainlrp._io import write_text
from brainlrp.report import style
from brainlrp.report.inputs import RunData, load_run
from brainlrp.report.sections import SECTIONS, Context, build
from brainlrp.report.sections.context import method_unit, scan_ranking
from brainlrp.run import inputs_key

#: Scans sampled to set the cards' common colour scale.
SCALE_SAMPLE = 8
#: Scans read at a time for the cards.
CARD_BATCH = 8


@dataclass
class ReportResult:
    """What :func:`report` wrote.

    Attributes
    ----------
    run : Path
    index : Path
        ``report/index.html``.
    cards : list of Path
        ``report/cards/<scan_id>.png``, one per test scan.
    sections : list of str
        Section ids, in page order.
    methods : list of str
    main_method : str
    notes : list of str
        What was missing or replaced (also listed on the page).
    seconds : float
    timings : dict
        Seconds per section, cards and writing.
    size_bytes : int
        Size of ``index.html``.
    skipped : bool
        Nothing the report reads had changed since the last report: no file was
        written (``overwrite=True`` rebuilds).
    """

    run: Path
    index: Path
    cards: list[Path]
    sections: list[str]
    methods: list[str]
    main_method: str
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    size_bytes: int = 0
    skipped: bool = False


def report(run: str | os.PathLike, methods: Sequence[str] | None = None, cards: bool = True,
           inputs_fn=None, progress: bool = False, overwrite: bool = False) -> ReportResult:
    """Write a run's self-contained HTML report and per-subject explanation cards.

    Parameters
    ----------
    run : path-like
        Run directory after ``brainlrp analyze``.
    methods : sequence of str, optional
        Methods shown (default: every analysed method).
    cards : bool
        Write ``report/cards/<scan_id>.png`` for every test scan.
    inputs_fn : callable, optional
        ``inputs_fn(scan_ids) -> (n, 1, X, Y, Z)``: the subjects' preprocessed scans,
        drawn beneath their heatmaps. Default: :func:`brainlrp.data.load_inputs` (the
        run's cohort and preprocessing cache); the template when that fails.
    progress : bool
        Print one line per step.
    overwrite : bool
        Rebuild even when the report is up to date: a call whose inputs (the
        ``analyze`` outputs, the shown methods' heatmaps, predictions, metrics, model
        card, participants table, the other stages' run.json records, the report's own
        code and these options) are those of the last finished report writes nothing
        (``ReportResult.skipped``). Calls with a custom ``inputs_fn`` always rebuild.

    Returns
    -------
    ReportResult

    Raises
    ------
    BrainLRPError
        When the run has no analysis outputs (run ``brainlrp analyze`` first).
    """
    start = time.perf_counter()
    matplotlib.use("Agg", force=False)
    data = load_run(run, methods)
    main, compare = catalog.choose_main_and_comparison(
        data.methods, recommended=data.summary.recommended_method)
    key = None if inputs_fn is not None else _inputs_key(data, cards)
    if not overwrite and key is not None:
        done = _up_to_date(data.rd, key, cards)
        if done is not None:
            index, card_paths = done
            record = data.rd.stage_record("report")
            return ReportResult(run=data.rd.root, index=index, cards=card_paths,
                                sections=[s.id for s in SECTIONS], methods=data.methods,
                                main_method=main, notes=list(record.get("notes") or []),
                                seconds=time.perf_counter() - start,
                                size_bytes=index.stat().st_size, skipped=True)
    if inputs_fn is None:
        inputs_fn = _default_inputs(data)
    ctx = Context(data=data, main=main, compare=compare, inputs_fn=inputs_fn)
    ctx.timings["read"] = time.perf_counter() - start
    out = data.rd.report
    out.mkdir(parents=True, exist_ok=True)

    def say(text: str) -> None:
        if progress:
            print(f"report: {text}", flush=True)

    card_paths: list[Path] = []
    if cards:
        say("cards")
        tick = time.perf_counter()
        card_paths = write_cards(ctx, out / "cards")
        ctx.cards = {p.name[: -len(".png")]: "cards/" + urllib.parse.quote(p.name)
                     for p in card_paths}
        ctx.timings["card files"] = time.perf_counter() - tick
    built = {}
    for spec in sorted(SECTIONS, key=lambda s: s.last):  # stable: page order otherwise
        say(spec.id)
        built[spec.id] = build(spec, ctx)
    pages = [built[spec.id] for spec in SECTIONS]
    from brainlrp.report.html import page
    from brainlrp.report.niivue import has_viewers, page_scripts

    tick = time.perf_counter()
    title = f"brainlrp report: {data.rd.root.resolve().name}"
    cohort = (data.run.get("cohort") or {}).get("source") or "cohort not recorded"
    names = ", ".join(style.method_label(m) for m in data.methods)
    subtitle = (f"{len(data.test_scans())} test scans · {names} · {data.grid.describe()} · "
                f"cohort {cohort}")
    text = page(title, subtitle, pages, scripts=page_scripts() if has_viewers(ctx) else [],
                footer=f"Self-contained page: all images and scripts are embedded; the cards "
                       f"are in {out / 'cards'}.")
    index = out / "index.html"
    write_text(index, text)
    ctx.timings["write"] = time.perf_counter() - tick
    seconds = time.perf_counter() - start
    data.rd.record("report", {"methods": data.methods, "main_method": main,
                              "n_cards": len(card_paths), "seconds": round(seconds, 2),
                              "timings": {k: round(v, 2) for k, v in ctx.timings.items()},
                              "notes": list(dict.fromkeys(ctx.notes)), "inputs_key": key})
    return ReportResult(run=data.rd.root, index=index, cards=card_paths,
                        sections=[s.id for s in pages], methods=data.methods, main_method=main,
                        notes=list(dict.fromkeys(ctx.notes)), seconds=seconds,
                        timings=dict(ctx.timings), size_bytes=index.stat().st_size)


#: Entries of run.json that change without changing what the report shows: the report's
#: own record (its timings) and the demo's (written after the report), and the time stamp.
_RUN_JSON_IGNORED = ("report", "demo")


def _inputs_key(data: RunData, cards: bool) -> str:
    """The key of everything the report reads (files by size and mtime, options)."""
    from brainlrp import __version__

    rd = data.rd
    files = [rd.predictions, rd.metrics, rd.card, rd.splits, rd.root / "training_log.csv"]
    files += sorted(p for p in rd.analysis.glob("*") if p.is_file())
    for m in data.methods:
        for folder in (rd.regions / m, rd.means / m, rd.heatmaps / m):
            files += sorted(p for p in folder.glob("*") if p.is_file())
    source = rd.cohort_source()
    if source is not None:  # the participants table (age and sex on the cards)
        files.append(source / "participants.tsv" if source.is_dir() else source)
    # The report's own code: a changed figure or section rebuilds an unchanged run.
    code = Path(__file__).parent
    files += sorted(p for p in code.rglob("*") if p.is_file() and p.suffix != ".pyc")
    run = dict(data.run)
    run.pop("updated", None)
    run["stages"] = {k: v for k, v in (run.get("stages") or {}).items()
                     if k not in _RUN_JSON_IGNORED}
    options = {"version": __version__, "methods": data.methods, "cards": cards, "run": run}
    return inputs_key(files, options)


def _up_to_date(rd, key: str, cards: bool) -> tuple[Path, list[Path]] | None:
    """The last report's page and cards when it had these inputs and they are all there."""
    record = rd.stage_record("report")
    index = rd.report / "index.html"
    if record.get("inputs_key") != key or not index.is_file():
        return None
    card_paths = sorted((rd.report / "cards").glob("*.png")) if cards else []
    if len(card_paths) != int(record.get("n_cards", -1)):
        return None
    return index, card_paths


def _default_inputs(data: RunData):
    """The run's preprocessed scans through the data module's loader."""
    from brainlrp.data import load_inputs

    # The preprocessing is read at the first call, where a card without one becomes a
    # note (the template is shown) rather than a failed report.
    return lambda ids: load_inputs(data.rd.root, ids, data.card.prep)


def write_cards(ctx: Context, folder: Path) -> list[Path]:
    """Write one card per test scan of the main method; remove stale cards.

    Parameters
    ----------
    ctx : Context
    folder : Path
        ``report/cards``.

    Returns
    -------
    list of Path
    """
    from brainlrp.report.cards import CardData, CardRenderer
    from brainlrp.report.figures import robust_max

    data, main = ctx.data, ctx.main
    scans = data.test_scans()
    ranking = scan_ranking(data, main)
    none = pd.DataFrame(columns=["area", "density", "hc_mean", "hc_sd", "z"], dtype=float)
    ids = scans["scan_id"].astype(str).tolist()
    if not ids:
        return []
    # The common scale comes from scans called AD: a control's map then looks as weak
    # as it is (relevance starts at p(AD)) instead of pulling the scale down.
    called = scans.loc[scans["p_ad"] >= 0.5, "scan_id"].astype(str).tolist() or ids
    sample = [called[int(i)] for i in np.unique(np.linspace(
        0, len(called) - 1, min(SCALE_SAMPLE, len(called))).round())]
    peaks = [robust_max(h) for h in (data.heatmap(main, s) for s in sample) if h is not None]
    vmax = float(np.median(peaks)) if peaks else 1.0
    renderer = CardRenderer(ctx.affine, ctx.grid.shape, method_unit(data, main),
                            data.mode(main), style.method_label(main), vmax, ctx.mask())
    rows = scans.set_index("scan_id")
    written = []
    missing = []
    folder.mkdir(parents=True, exist_ok=True)
    for startix in range(0, len(ids), CARD_BATCH):
        batch = ids[startix: startix + CARD_BATCH]
        backgrounds, reason = ctx.scans(batch)
        for sid, bg in zip(batch, backgrounds, strict=True):
            heat = data.heatmap(main, sid)
            if heat is None:
                missing.append(sid)
                continue
            row = rows.loc[sid]
            age, sex = data.age_sex(str(row["participant_id"]))
            card = CardData(scan_id=sid, participant_id=str(row["participant_id"]),
                            diagnosis="AD" if int(row["label"]) == 1 else "HC",
                            outcome=str(row["outcome"]), p_ad=float(row["p_ad"]),
                            background=bg, relevance=heat, top=ranking.get(sid, none),
                            background_note="template" if reason else "", age=age, sex=sex)
            z = card.top["z"].to_numpy(float)
            if np.isfinite(z).any():
                best = int(np.nanargmax(z))
                ctx.raised[sid] = (str(card.top["area"].iloc[best]), float(z[best]))
            path = folder / f"{sid}.png"
            renderer.save(card, path)
            written.append(path)
    if missing:
        ctx.notes.append(f"{len(missing)} test scan(s) have no {main} heatmap and no card "
                         f"(e.g. {missing[0]})")
    keep = {p.name for p in written}
    for old in folder.glob("*.png"):
        if old.name not in keep:
            old.unlink()
    return written
