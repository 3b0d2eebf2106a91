"""Names, colours, colour maps and units shared by every figure and the page.

One place decides how a method, a group or an atlas area is written and drawn, so
the same thing looks the same in every figure, card and table.
"""

from __future__ import annotations

import re

from brainlrp import catalog

#: Groups in the paper's order.
GROUPS = ("AD", "HC", "TP", "TN", "FP", "FN")
OUTCOMES = ("TP", "FP", "TN", "FN")
#: Colour-blind-safe (Okabe-Ito) colours per group and outcome.
GROUP_COLORS = {"AD": "#D55E00", "HC": "#0072B2", "TP": "#E69F00", "TN": "#56B4E9",
                "FP": "#CC79A7", "FN": "#009E73"}
GROUP_NAMES = {"AD": "Alzheimer's disease (all)", "HC": "healthy controls (all)",
               "TP": "true positives (AD, detected)", "TN": "true negatives (HC, detected)",
               "FP": "false positives (HC called AD)", "FN": "false negatives (AD missed)"}
#: Colours of patients A and B (the least similar confident patients).
PATIENT_COLORS = {"A": "#000000", "B": "#7B3294"}
#: Contour colours of an explanation's top regions (distinct from the hot overlay).
CONTOUR_COLORS = ("#00E5FF", "#76FF03", "#FF40FF")
#: Colour maps: positive relevance (black-red-yellow) and signed (diverging).
POSITIVE_CMAP = "hot"
SIGNED_CMAP = "cold_hot"

_TAB10 = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f", "#bcbd22", "#17becf")
#: Line styles and markers that tell methods apart beyond the ten colours: the colour
#: repeats every 10 methods, the line style changes with each round of 10 (so colour and
#: line style alone differ for 40 methods) and the marker cycles with a period (7)
#: prime to 10, so two methods of one colour also differ in marker.
LINE_STYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def method_label(method: str) -> str:
    """Display name of a method in figures and text: its label in
    :mod:`brainlrp.catalog` with its id, ``LRP β=0 [lrp-b0]`` (the id is what
    ``--methods`` takes and what names the run's folders)."""
    label = catalog.describe(method).label
    return method if label == method else f"{label} [{method}]"


def method_html(method: str):
    """A method in a table cell or paragraph: its label, then its id as code."""
    from brainlrp.report.html import fmt

    label = catalog.describe(method).label
    if label == method:
        return fmt('<code class="method-id">{}</code>', method)
    return fmt('{} <code class="method-id">{}</code>', label, method)


def method_color(method: str, methods: list[str]) -> str:
    """A stable colour per method within one report."""
    return _TAB10[methods.index(method) % len(_TAB10)] if method in methods else "#333333"


def method_style(method: str, methods: list[str]) -> dict[str, str]:
    """Colour, line style and marker of a method within one report: distinct for every
    method of ``methods`` up to 40 (see :data:`LINE_STYLES`), so a chart with more
    methods than colours still tells each apart, in colour and in grey.

    Returns
    -------
    dict
        ``color``, ``linestyle`` and ``marker`` (keyword arguments of ``Axes.plot``).
    """
    i = methods.index(method) if method in methods else 0
    return {"color": method_color(method, methods),
            "linestyle": LINE_STYLES[(i // len(_TAB10)) % len(LINE_STYLES)],
            "marker": MARKERS[i % len(MARKERS)]}


def unit_label(method: str, mode: str | None = None) -> str:
    """Colour-bar label with units, e.g. ``relevance (a.u.)`` or ``|gradient| (a.u.)``."""
    return catalog.unit_label(method, mode)


def cmap_for(mode: str | None) -> str:
    """Colour map for a relevance mode: diverging for signed, black-red-yellow otherwise."""
    return SIGNED_CMAP if mode == "signed" else POSITIVE_CMAP


_ABBREVIATED = re.compile(r"^([A-Za-z0-9]+)_([a-z][a-z_]*)$")
#: Shortenings applied one by one (only while a label is too long).
_SHORTER = (("part of the ", ""), ("superior", "sup."), ("inferior", "inf."),
            ("middle", "mid."), ("anterior", "ant."), ("posterior", "post."),
            ("segment", "seg."), ("medial", "med."), ("lateral", "lat."), ("gyrus", "g."),
            ("cortex", "ctx."), ("occipital", "occ."), ("frontal", "front."),
            ("temporal", "temp."), ("parietal", "par."), ("triangular", "tri."),
            ("opercular", "operc."), ("orbital", "orb."), ("postcentral", "postcentr."),
            ("precentral", "precentr."), ("supramarginal", "supramarg."))


def area_label(name: str, max_len: int = 32) -> str:
    """A readable, short label of an atlas area or label.

    Neuromorphometrics names such as ``OpIFG_opercular_part_of_the_inferior_frontal_gyrus``
    become ``opercular inf. front. g. (OpIFG)``: words first, the abbreviation in
    parentheses, standard anatomical shortenings applied only while the label is
    longer than ``max_len`` (then cut with an ellipsis).

    Parameters
    ----------
    name : str
        Area or label name (``Left_``/``Right_`` prefixes become ``L``/``R``).
    max_len : int

    Returns
    -------
    str
    """
    side = ""
    for prefix, short in (("Left_", "L "), ("Right_", "R "), ("Left ", "L "), ("Right ", "R ")):
        if name.startswith(prefix):
            side, name = short, name[len(prefix):]
            break
    m = _ABBREVIATED.match(name)
    if m:
        words, suffix = m.group(2).replace("_", " "), f" ({m.group(1)})"
    else:
        words, suffix = name.replace("_", " "), ""
    words = side + words

    def total() -> int:
        return len(words) + len(suffix)

    for long, short in _SHORTER:
        if total() <= max_len:
            break
        words = words.replace(long, short)
    if total() > max_len:
        cut = words[: max(4, max_len - len(suffix) - 1)]
        if " " in cut[4:]:  # end on a whole word when one fits
            cut = cut[: cut.rindex(" ")]
        words = cut.rstrip(" ,") + "…"
    return words + suffix


def fmt_number(value, digits: int = 3) -> str:
    """A number with ``digits`` significant digits; ``–`` for missing values."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "–" if value is None else str(value)
    if v != v:  # NaN
        return "–"
    if v == 0:
        return "0"
    if abs(v) >= 10 ** (digits + 2) or abs(v) < 10 ** -(digits + 1):
        return f"{v:.{digits - 1}e}"
    return f"{v:.{digits}g}"


def fmt_r(r) -> str:
    """A correlation with two decimals (``-0.80``); ``–`` when missing."""
    try:
        v = float(r)
    except (TypeError, ValueError):
        return "–"
    return "–" if v != v else f"{v:.2f}"


def fmt_p(p) -> str:
    """A p-value as ``p = 0.012`` or ``p < 0.001``."""
    try:
        v = float(p)
    except (TypeError, ValueError):
        return "p = –"
    if v != v:
        return "p = –"
    return "p < 0.001" if v < 0.001 else f"p = {v:.3f}"


def fmt_seconds(seconds) -> str:
    """Duration as ``4.2 s``, ``3.1 min`` or ``1.2 h``."""
    try:
        s = float(seconds)
    except (TypeError, ValueError):
        return "–"
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"
