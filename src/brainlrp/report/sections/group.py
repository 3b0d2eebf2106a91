"""Group means: slices and glass brains per group, AD means per method, the viewer."""

from __future__ import annotations

from brainlrp.report import figures as figs
from brainlrp.report import style
from brainlrp.report.html import Safe, Section, fmt, heading, note
from brainlrp.report.sections.context import Context, mean_rule, method_unit
from brainlrp.report.sections.context import group_counts as _counts
from brainlrp.report.sections.spec import SectionSpec
from brainlrp.report.style import fmt_number, method_label

#: Axial cuts (z, mm) of the group-mean slices: temporal lobe and hippocampus to vertex.
AXIAL_CUTS = (-36, -24, -14, -4, 8, 20, 34, 50)


def group_section(ctx: Context, sec: Section) -> tuple[Section, dict]:
    """Group means: slices and glass brains per group, AD means per method, the viewer.

    Parameters
    ----------
    ctx : Context
    sec : Section

    Returns
    -------
    Section
    dict
        ``{"maps": [...]}``: the names of the viewer's maps (empty without mean images).
    """
    from brainlrp.report.niivue import Overlay, group_viewer

    data = ctx.data
    main = ctx.main
    unit = method_unit(data, main)
    mode = data.mode(main)
    counts = _counts(data, main)
    maps = {g: data.mean_map(main, g) for g in style.GROUPS}
    if all(v is None for v in maps.values()):
        sec.add(note(f"no mean images in means/{main}/ - run `brainlrp analyze` again"))
        return sec, {}
    ref = maps.get("AD") if maps.get("AD") is not None else next(
        v for v in maps.values() if v is not None)
    vmax = figs.robust_max(ref)
    template = ctx.template()
    fig = figs.group_slices(template, ctx.affine, maps, counts, unit, mode, AXIAL_CUTS, vmax,
                            method_label(main))
    sec.add(heading("Axial slices"),
            ctx.fig(fig, "group mean heatmaps, axial slices",
                    f"{method_label(main)} mean maps over the ICBM 2009c template, "
                    f"neurological convention (left on the left). Each is {mean_rule(mode)} "
                    f"(each subject counts once). One colour scale "
                    f"(0 to the AD mean's 99.5th percentile, {fmt_number(vmax)}); values "
                    "below 20% of it are transparent. FP and FN means rest on few subjects.",
                    "fig-group-slices"))
    glass = [figs.BrainMap(v, f"{g} (n = {counts.get(g, 0)})", unit, mode, vmax=vmax)
             for g, v in maps.items() if v is not None]
    fig = figs.glass_brains(glass, ctx.affine, ncols=2, display_mode="lyrz")
    sec.add(heading("Glass brains"),
            ctx.fig(fig, "group mean heatmaps, glass brains",
                    "Maximum-intensity projections of the same maps (left, front, right and "
                    "top views), on the same colour scale.", "fig-group-glass"))
    per_method, with_mean = [], []
    for m in data.methods:
        ad = data.mean_map(m, "AD")
        if ad is not None:
            with_mean.append(m)
            per_method.append(figs.BrainMap(ad, method_label(m), method_unit(data, m),
                                            data.mode(m)))
    if len(per_method) > 1:
        fig = figs.glass_brains(per_method, ctx.affine, ncols=2, display_mode="ortho",
                                row_height=2.3)
        sec.add(heading("AD mean per method"),
                ctx.fig(fig, "AD mean heatmap per method",
                        "Mean map of the AD group for every method, each on its own scale "
                        "(99.5th percentile); projections: sagittal, coronal, axial. "
                        + mean_rules_text(data, with_mean),
                        "fig-method-glass"))
    layers = []
    for m in data.methods:
        groups = style.GROUPS if m == main else ("AD",)
        for g in groups:
            v = maps[g] if m == main else data.mean_map(m, g)
            if v is None:
                continue
            scale = vmax if m == main else figs.robust_max(v)
            n = _counts(data, m).get(g, 0)
            layers.append(Overlay(f"{method_label(m)} · {g} mean (n = {n})", v,
                                  method_unit(data, m), data.mode(m) == "signed", scale))
    sec.add(heading("Interactive viewer", ident="viewer-heading"),
            fmt("<p>NiiVue: click or drag in a view to move the crosshair, or type MNI "
                "coordinates; the readout gives them, the map's value and the atlas area "
                "({}) under the crosshair. Other maps (every group of {}, the AD mean of every "
                "method) are in the menu; the threshold hides smaller magnitudes. Works "
                "offline.</p>", data.summary.atlas, method_label(main)),
            Safe(group_viewer(ctx, "viewer", layers)))
    return sec, {"maps": [lay.name for lay in layers]}


def mean_rules_text(data, methods: list[str]) -> str:
    """One sentence per relevance mode among ``methods`` saying what their means average."""
    by_mode: dict[str, list[str]] = {}
    for m in methods:
        by_mode.setdefault(data.mode(m), []).append(m)
    return " ".join(f"{', '.join(ms)}: {mean_rule(mode)}." for mode, ms in by_mode.items())


SPEC = SectionSpec(
    "group-means", "Group mean heatmaps",
    "Mean relevance over the subjects of each group, as in the paper: patients (AD), "
    "controls (HC) and the four outcomes, on one colour scale so that groups compare "
    "directly. A mean averages each subject's relevance as analysed: for LRP and "
    "attributions only its positive part (negative values are set to 0 in every map "
    "first), for sensitivities its magnitude.",
    group_section, requires=("means/{main}",),
    data=("means/{main}/{group}.nii.gz", "means/{method}/AD.nii.gz"))
