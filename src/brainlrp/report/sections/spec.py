"""A section as a small spec, and the one mechanism that builds it.

A :class:`SectionSpec` names the run files its section needs. :func:`build`
checks them first: when one is missing (or an empty table), the section is only
a note saying which files are missing and which command writes them; files the
section can do without get a note each and the builder skips their part.
"""

from __future__ import annotations

import itertools
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from brainlrp.report import style
from brainlrp.report.html import Safe, Section, esc, fmt, note
from brainlrp.report.sections.context import Context

#: The stage that writes each top-level entry of a run directory.
WRITTEN_BY = {"analysis": "analyze", "regions": "analyze", "means": "analyze",
              "heatmaps": "explain", "model": "train", "metrics.json": "train",
              "training_log.csv": "train", "predictions.tsv": "train", "splits.tsv": "train"}


@dataclass(frozen=True)
class SectionSpec:
    """One section of the page.

    Attributes
    ----------
    id : str
        Anchor (``<section id>``).
    title : str
    intro : str or callable
        One sentence on what the section shows; ``intro(ctx)`` when it names methods.
    build : callable
        ``build(ctx, section)``: adds the section's content (runs only when every
        required file is present).
    requires : tuple of str
        Files the section cannot do without, relative to the run (``{main}`` stands
        for the method shown in depth).
    optional : tuple of (str, str)
        Files the section uses when present, each with what is left out without it.
    why : str
        Why a required file may legitimately be missing, and what to do about it.
    last : bool
        Built after every other section (the summary reports their timings), while
        keeping its place on the page.
    data : tuple of str
        Run files holding the numbers the section shows, linked under it for readers
        who take them into their own statistics (:func:`data_links`). ``{main}`` is the
        method shown in depth, ``{method}`` each method shown, ``{group}`` each group.
    """

    id: str
    title: str
    intro: str | Callable[[Context], str]
    build: Callable[[Context, Section], object]
    requires: tuple[str, ...] = ()
    optional: tuple[tuple[str, str], ...] = ()
    why: str = ""
    last: bool = False
    data: tuple[str, ...] = ()

    def paths(self, ctx: Context) -> list[str]:
        """The required files of this run (placeholders filled in)."""
        return [p.format(main=ctx.main) for p in self.requires]

    def data_paths(self, ctx: Context) -> list[str]:
        """The files of :attr:`data` present in this run (placeholders expanded)."""
        out = []
        for pattern in self.data:
            methods = ctx.data.methods if "{method}" in pattern else [None]
            groups = style.GROUPS if "{group}" in pattern else [None]
            for m, g in itertools.product(methods, groups):
                out.append(pattern.format(main=ctx.main, method=m, group=g))
        root = ctx.data.rd.root
        return [p for p in dict.fromkeys(out) if (root / p).is_file()]


#: How the page links the run's files (said on the page next to the links).
DATA_LINKS_NOTE = ("links relative to this page: they open when report/index.html is viewed "
                   "inside its run folder (share the whole folder to keep them)")


def data_href(path: str) -> str:
    """The link from ``report/index.html`` to the run file ``path`` (relative to the run)."""
    return "../" + urllib.parse.quote(path)


def data_links(paths: list[str]) -> Safe:
    """``Data: <a>analysis/x.tsv</a> · ...``: the run files behind a section."""
    if not paths:
        return Safe("")
    links = " · ".join(fmt('<a href="{}">{}</a>', data_href(p), p) for p in paths)
    return Safe(f'<p class="data-links" title="{esc(DATA_LINKS_NOTE)}"><b>Data</b> (files of '
                f'the run): {links}</p>')


def present(path: Path) -> bool:
    """Whether a run file is there: a table with at least one row, a non-empty folder,
    any other file."""
    if path.is_dir():
        return any(path.iterdir())
    if not path.is_file():
        return False
    if path.suffix in (".tsv", ".csv"):
        with path.open("rb") as f:
            return sum(1 for line in itertools.islice(f, 2) if line.strip()) > 1
    return True


def missing_note(paths: list[str], root: Path, why: str = "") -> str:
    """``missing: <files> - run `brainlrp <stage> <run>` ...`` for files of ``root``."""
    shown = [p + (" (empty)" if (root / p).is_file() else "") for p in paths]
    stages = list(dict.fromkeys(WRITTEN_BY.get(Path(p).parts[0], "analyze") for p in paths))
    text = (f"missing: {', '.join(shown)} - written by "
            + " and ".join(f"`brainlrp {s} {root}`" for s in stages))
    return f"{text}; {why}" if why else text


def build(spec: SectionSpec, ctx: Context) -> Section:
    """Build one section, or its missing-file note; its time goes to ``ctx.timings``.

    Parameters
    ----------
    spec : SectionSpec
    ctx : Context

    Returns
    -------
    Section
    """
    tick = time.perf_counter()
    try:
        intro = spec.intro(ctx) if callable(spec.intro) else spec.intro
        sec = Section(spec.id, spec.title, intro)
        root = ctx.data.rd.root
        missing = [p for p in spec.paths(ctx) if not present(root / p)]
        if missing:
            return sec.add(note(missing_note(missing, root, spec.why)))
        for path, without in spec.optional:
            if not present(root / path):
                sec.add(note(missing_note([path], root, f"without it: {without}")))
        spec.build(ctx, sec)
        return sec.add(data_links(spec.data_paths(ctx)))
    finally:
        ctx.timings[spec.id] = time.perf_counter() - tick
