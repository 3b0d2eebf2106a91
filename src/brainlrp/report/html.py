"""Page assembly: escaped text, embedded figures, tables, sections, the whole page.

Every string that comes from a file (ids, names, notices, table cells) goes through
:func:`esc` (``html.escape``); only :class:`Safe` strings, built by this module or
by :func:`fmt` (which escapes its arguments), pass unescaped. Figures become
base64 PNGs inside ``<img>`` tags, the style sheet and scripts are inlined, so the
page needs no other file and no network.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources

import pandas as pd
from matplotlib.figure import Figure

#: Resolution of embedded figures; they are shown at 96 CSS px per inch (1.5x: sharp
#: on high-density screens, readable at the default size everywhere).
FIGURE_DPI = 144
CSS_DPI = 96


class Safe(str):
    """A string that is already HTML (never escaped again)."""


def esc(value) -> Safe:
    """HTML-escape any value unless it is :class:`Safe`."""
    if isinstance(value, Safe):
        return value
    return Safe(html.escape("" if value is None else str(value)))


def fmt(template: str, *args, **kwargs) -> Safe:
    """``template.format`` with every argument escaped (the template is trusted)."""
    return Safe(template.format(*(esc(a) for a in args),
                                **{k: esc(v) for k, v in kwargs.items()}))


def join(parts: Iterable) -> Safe:
    """Concatenate HTML parts (text parts are escaped)."""
    return Safe("".join(esc(p) for p in parts))


def png_data_uri(fig: Figure, dpi: int = FIGURE_DPI) -> str:
    """A figure as a ``data:image/png;base64`` URI."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor=fig.get_facecolor())
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def figure(fig: Figure, alt: str, caption=None, fig_id: str | None = None) -> Safe:
    """An embedded figure, shown at its physical size (scaled down on narrow screens).

    Parameters
    ----------
    fig : Figure
    alt : str
        Text alternative.
    caption : str or Safe, optional
    fig_id : str, optional
        ``id`` of the ``<figure>`` element.
    """
    width = int(round(fig.get_figwidth() * CSS_DPI))
    height = int(round(fig.get_figheight() * CSS_DPI))
    uri = png_data_uri(fig)
    ident = fmt(' id="{}"', fig_id) if fig_id else ""
    cap = fmt("<figcaption>{}</figcaption>", caption) if caption else ""
    return Safe(f'<figure class="fig"{ident}><img src="{uri}" width="{width}" '
                f'height="{height}" alt="{esc(alt)}" loading="eager">{cap}</figure>')


def heading(text, level: int = 3, ident: str | None = None) -> Safe:
    """A heading (``<h3>`` by default)."""
    attr = fmt(' id="{}"', ident) if ident else ""
    return Safe(f"<h{level}{attr}>{esc(text)}</h{level}>")


def paragraph(text) -> Safe:
    """A paragraph."""
    return fmt("<p>{}</p>", text)


def note(text, kind: str = "missing") -> Safe:
    """A highlighted note: ``missing`` (what is absent and how to get it) or ``info``."""
    return Safe(f'<div class="note note-{esc(kind)}">{esc(text)}</div>')


def details(summary: str, body) -> Safe:
    """A collapsible block."""
    return fmt("<details><summary>{}</summary>{}</details>", summary, body)


Formatter = Callable[[object], str]


def table(frame: pd.DataFrame, columns: Mapping[str, str] | None = None,
          formats: Mapping[str, Formatter] | None = None, caption=None,
          table_id: str | None = None, numeric: Sequence[str] | None = None,
          row_class: Callable[[pd.Series], str] | None = None) -> Safe:
    """A table; every cell is escaped.

    Parameters
    ----------
    frame : pandas.DataFrame
    columns : mapping of column -> header, optional
        Columns shown, in order (default: all, headers = names).
    formats : mapping of column -> callable, optional
        Cell formatters (the result is escaped unless :class:`Safe`).
    caption : str, optional
    table_id : str, optional
    numeric : sequence of str, optional
        Right-aligned columns (default: numeric dtypes).
    row_class : callable, optional
        CSS class per row.
    """
    columns = dict(columns) if columns is not None else {c: c for c in frame.columns}
    formats = dict(formats or {})
    if numeric is None:
        numeric = [c for c in columns if c in frame and pd.api.types.is_numeric_dtype(frame[c])]
    head = "".join(f'<th{" class=numeric" if c in numeric else ""}>{esc(h)}</th>'
                   for c, h in columns.items())
    rows = []
    for _, row in frame.iterrows():
        cells = []
        for c in columns:
            value = row.get(c)
            text = formats[c](value) if c in formats else _default_cell(value)
            cells.append(f'<td{" class=numeric" if c in numeric else ""}>{esc(text)}</td>')
        cls = f' class="{esc(row_class(row))}"' if row_class else ""
        rows.append(f"<tr{cls}>{''.join(cells)}</tr>")
    ident = fmt(' id="{}"', table_id) if table_id else ""
    cap = fmt("<caption>{}</caption>", caption) if caption else ""
    return Safe(f'<div class="table-wrap"><table{ident}>{cap}<thead><tr>{head}</tr></thead>'
                f'<tbody>{"".join(rows)}</tbody></table></div>')


def _default_cell(value) -> str:
    from brainlrp.report.style import fmt_number

    if value is None:
        return "–"
    if isinstance(value, Safe):
        return value
    if isinstance(value, float):
        return fmt_number(value)
    return str(value)


def key_values(items: Sequence[tuple[str, object]]) -> Safe:
    """A two-column definition table."""
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in items)
    return Safe(f'<div class="table-wrap"><table class="kv"><tbody>{rows}</tbody></table></div>')


def tiles(items: Sequence[tuple[str, str, str]]) -> Safe:
    """Headline numbers: (label, value, detail) per tile."""
    parts = [f'<div class="tile"><div class="tile-value">{esc(v)}</div>'
             f'<div class="tile-label">{esc(label)}</div>'
             f'<div class="tile-detail">{esc(d)}</div></div>' for label, v, d in items]
    return Safe(f'<div class="tiles">{"".join(parts)}</div>')


@dataclass
class Section:
    """One section of the page, in pipeline order.

    Attributes
    ----------
    id : str
        Anchor (``<section id>``), checked by the tests.
    title : str
    body : list
        HTML parts (text parts are escaped).
    intro : str
        One sentence on what the section shows (and what the paper showed).
    """

    id: str
    title: str
    intro: str = ""
    body: list = field(default_factory=list)

    def add(self, *parts) -> Section:
        """Append parts; returns ``self``."""
        self.body.extend(p for p in parts if p)
        return self

    def render(self, number: int) -> Safe:
        """The section's HTML."""
        intro = paragraph(self.intro) if self.intro else ""
        return Safe(f'<section id="{esc(self.id)}"><h2><span class="num">{number}</span> '
                    f'{esc(self.title)}</h2>{intro}{join(self.body)}</section>')


def asset(name: str) -> str:
    """A text file shipped next to this module (``report.css``)."""
    return resources.files("brainlrp.report").joinpath(name).read_text()


def page(title: str, subtitle: str, sections: Sequence[Section], scripts: Sequence[str] = (),
         footer: str = "") -> str:
    """The whole self-contained page.

    Parameters
    ----------
    title, subtitle : str
    sections : sequence of Section
    scripts : sequence of str
        JavaScript sources, inlined at the end of the body.
    footer : str

    Returns
    -------
    str
    """
    nav = "".join(f'<li><a href="#{esc(s.id)}"><span class="num">{i}</span> {esc(s.title)}</a>'
                  f'</li>' for i, s in enumerate(sections, 1))
    body = "".join(s.render(i) for i, s in enumerate(sections, 1))
    js = "".join(f"<script>{src}</script>" for src in scripts)
    # The Content-Security-Policy forbids every network request: the page must work alone.
    csp = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
           "script-src 'unsafe-inline'")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title>
<style>{asset("report.css")}</style>
</head>
<body>
<header class="page-header"><h1>{esc(title)}</h1><p class="subtitle">{esc(subtitle)}</p>
</header>
<div class="layout">
<nav class="toc" aria-label="sections"><p class="toc-title">Contents</p><ol>{nav}</ol></nav>
<main>{body}
<footer>{esc(footer)}</footer>
</main>
</div>
{js}
</body>
</html>
"""
