"""The plotting functions: right data in the right place, on small inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from brainlrp.data.grid import Grid, template
from brainlrp.report import figures as figs


def _texts(fig: Figure) -> str:
    out = [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        out += [t.get_text() for t in ax.texts]
        out += [ax.get_title(loc="left"), ax.get_xlabel(), ax.get_ylabel()]
        out += [t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels()]
    return "\n".join(out)


@pytest.fixture(scope="module")
def grid():
    return Grid.from_resolution(6.0)


def _groups():
    areas = ["Hippocampus", "Amygdala", "PHG_parahippocampal_gyrus", "CSF"]
    rows = []
    for g, scale in (("AD", 3.0), ("HC", 1.0), ("TP", 4.0), ("TN", 1.0)):
        for k, a in enumerate(areas):
            sum_ = scale * (k + 1) if g != "TP" else scale * (4 - k)
            rows.append({"group": g, "level": "area", "region": a, "n_subjects": 3,
                         "mean_sum": sum_, "mean_density": sum_ / (k + 1),
                         "gain": sum_ / (k + 1)})
    frame = pd.DataFrame(rows)
    return {g: part.reset_index(drop=True) for g, part in frame.groupby("group")}


def test_region_bars_draw_the_given_top_areas():
    """The areas and their order come from analysis/top_areas.tsv, the values from the
    group tables."""
    top = {"sum": ["Hippocampus", "Amygdala", "PHG_parahippocampal_gyrus"],
           "density": ["CSF", "Hippocampus"], "gain": ["Amygdala"]}
    fig = figs.region_bars(_groups(), "relevance (a.u.)", top, "TP")
    sum_ax = fig.axes[0]
    labels = [t.get_text() for t in sum_ax.get_yticklabels()]
    assert labels == ["Hippocampus", "Amygdala", "parahippocampal gyrus (PHG)"]
    assert "top 3 by TP" in sum_ax.get_title(loc="left")
    assert "top 2 by TP" in fig.axes[1].get_title(loc="left")
    assert [t.get_text() for t in fig.axes[2].get_yticklabels()] == ["Amygdala"]
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["AD (n=3)", "HC (n=3)", "TP/HC (n=3)", "TN/HC (n=3)"]
    assert layout_problems(fig) == []


def test_density_violins_mark_patients():
    rng = np.random.default_rng(0)
    areas = ["Hippocampus", "Amygdala"]
    dens = pd.DataFrame(rng.random((6, 2)), columns=areas,
                        index=[f"sub-{i}" for i in range(6)])
    dx = pd.Series(["AD"] * 3 + ["HC"] * 3, index=dens.index)
    fig = figs.density_violins(dens, dx, areas, "relevance (a.u.)",
                               {"A": ("sub-0", dens.loc["sub-0"]),
                                "B": ("sub-1", dens.loc["sub-1"])})
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "patient A (sub-0)" in legend and "patient B (sub-1)" in legend
    assert any(t.startswith("AD (n=3)") for t in legend)


def test_training_curves_star_the_kept_checkpoint():
    log = pd.DataFrame({"trial": [0] * 3 + [1] * 3, "epoch": [1, 2, 3] * 2,
                        "train_loss": [0.7, 0.5, 0.4, 0.7, 0.6, 0.5],
                        "train_bacc": [0.6, 0.7, 0.8, 0.6, 0.65, 0.7],
                        "val_loss": [0.7, 0.6, 0.6, 0.7, 0.65, 0.6],
                        "val_bacc": [0.55, 0.8, 0.7, 0.5, 0.6, 0.65]})
    fig = figs.training_curves(log, selected_trial=0, early_stopping_start=2)
    stars = [line for line in fig.axes[1].lines if line.get_marker() == "*"]
    assert len(stars) == 1 and stars[0].get_xdata()[0] == 2


def test_classification_counts():
    """The figure draws analyze's confusion and ROC tables (analysis.scans)."""
    from brainlrp.analysis.scans import classification

    test = pd.DataFrame({"scan_id": list("abcde"), "split": "test", "label": [1, 1, 1, 0, 0],
                         "p_ad": [0.9, 0.8, 0.2, 0.1, 0.7], "predicted": [1, 1, 0, 0, 1]})
    confusion, roc = classification(test)
    fig = figs.classification_figure(test, confusion, roc)
    text = _texts(fig)
    for cell in ("2\nTP", "1\nFN", "1\nTN", "1\nFP"):
        assert cell in text
    assert fig.axes[1].get_legend().get_texts()[0].get_text() == "AUC = 0.833"  # 5 of 6 AD-HC pairs


def test_beta_overlap_annotations():
    rows = []
    for measure, n in (("sum", 7), ("density", 9), ("gain", 5)):
        rows.append({"method_a": "lrp-b0", "method_b": "lrp-b1", "beta_a": 0.0,
                     "beta_b": 1.0, "measure": measure, "group": "TP", "k": 10,
                     "n_shared": n, "overlap": n / 10, "shared_areas": "Hippocampus"})
    fig = figs.beta_overlap_figure(pd.DataFrame(rows))
    for ax, n in zip(fig.axes[:3], (7, 9, 5), strict=True):
        assert sorted(t.get_text() for t in ax.texts) == sorted(["10", "10", str(n), str(n)])


def test_hippocampus_titles_carry_r_and_p():
    subj = pd.DataFrame({"method": "lrp-b0", "participant_id": ["a", "b", "c"],
                         "hippocampus_relevance": [3.0, 2.0, 1.0],
                         "hippocampus_volume": [2000.0, 2500.0, 3000.0]})
    stats = pd.DataFrame({"method": ["lrp-b0"], "r": [-1.0], "p_value": [0.0004],
                          "n_subjects": [3]})
    fig = figs.hippocampus_figure(subj, stats, ["lrp-b0", "gb"])
    assert "r = -1.00, p < 0.001, n = 3" in fig.axes[0].get_title(loc="left")


def test_checks_figures():
    curves = pd.DataFrame({"method": ["lrp-b0"] * 3 + ["random"] * 3, "scan_id": "s",
                           "order": ["relevance"] * 3 + ["random"] * 3,
                           "step": [0, 1, 2] * 2, "n_areas_replaced": [0, 1, 2] * 2,
                           "p_ad": [0.9, 0.5, 0.3, 0.9, 0.85, 0.8],
                           "p_ad_drop": [0, 0.4, 0.6, 0, 0.05, 0.1]})
    fig = figs.faithfulness_figure(curves, ["lrp-b0"])
    assert [line.get_label() for line in fig.axes[0].lines] == ["LRP β=0 [lrp-b0]",
                                                                "random order"]
    sanity = pd.DataFrame({"method": "lrp-b0", "scan_id": "s", "stage": [1, 2],
                           "layer": ["classifier.5", "features.0"], "spearman": [0.5, 0.1]})
    fig = figs.sanity_figure(sanity, ["lrp-b0", "gb"])
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["trained", "+classifier.5", "+features.0"]


def test_brain_figures(grid):
    bg = np.asarray(template(grid))
    heat = np.zeros(grid.shape, np.float32)
    heat[15:18, 20:23, 10:13] = 1.0
    cut = figs.peak_coords(heat, grid.affine_array)
    ijk = np.linalg.solve(grid.affine_array, [*cut, 1])[:3]
    assert np.allclose(ijk, [16, 21, 11])
    maps = [figs.BrainMap(heat, "LRP β=0", "relevance (a.u.)"),
            figs.BrainMap(-heat, "IG", "IG attribution (a.u.)", "signed")]
    mask = np.zeros(grid.shape, bool)
    mask[14:19, 19:24, 9:14] = True
    fig = figs.explanation_figure(bg, grid.affine_array, maps, cut, [(mask, "Hippocampus")],
                                  "TP · sub-01")
    text = _texts(fig)
    assert "TP · sub-01" in text and "■ Hippocampus" in text and "IG" in text
    fig = figs.group_slices(bg, grid.affine_array, {"AD": heat, "FP": None}, {"AD": 3},
                            "relevance (a.u.)", "positive", [-10, 10])
    text = _texts(fig)
    assert "no false positives (HC called AD) in the test set" in text and "n = 3" in text
    fig = figs.glass_brains(maps, grid.affine_array, ncols=2)
    assert "relevance (a.u.)" in [ax.get_ylabel() for ax in fig.axes]
    assert figs.robust_max(np.zeros(3)) == 1.0


def test_glass_brain_outlines_leave_matplotlib_alone(grid):
    """The outline speed-up lives in the glass-brain figure's own axes: other axes still
    update their data limits when a patch is added, and the views keep nilearn's limits."""
    from matplotlib.axes import Axes
    from matplotlib.patches import Rectangle

    original = Axes.add_patch
    data = np.zeros(grid.shape, np.float32)
    data[5:9, 6:10, 5:9] = 1.0
    fig = figs.glass_brains([figs.BrainMap(data, "m", "relevance (a.u.)", "positive")],
                            grid.affine_array, ncols=1)
    assert Axes.add_patch is original
    views = [ax for ax in fig.axes if len(ax.patches) > 50]
    assert len(views) == 4  # l, y, r, z: nilearn's outline patches, all drawn
    assert all(abs(np.diff(ax.get_xlim())[0]) > 100 for ax in views)  # mm, not 0..1
    plain = Figure().add_subplot()
    plain.add_patch(Rectangle((10, 20), 5, 5))
    assert plain.dataLim.x1 == 15 and plain.dataLim.y1 == 25
    extra = fig.add_axes((0, 0, 0.1, 0.1))  # made after nilearn: an ordinary Axes
    assert type(extra) is Axes


# ---------------------------------------------------------------- readable with many methods

#: Twenty methods, as a report with the demo's methods and the benchmark's references has.
TWENTY = ["lrp-b0", "lrp-b0.25", "lrp-b0.5", "lrp-b0.75", "lrp-b1", "lrp-eps", "gb",
          "gradient", "ig", "smoothgrad", "lrp-ref@knn-restore", "lrp-ref@knn",
          "lrp-ref@mean", "lrp-ref@mean-restore", "lrp-ref@pca-restore", "lrp-ref@twin",
          "lrp-ref@twin-restore", "lrp-epsilon-plus-flat", "edges", "noise"]


def layout_problems(fig: Figure) -> list[str]:
    """Text that leaves the figure (clipped when saved) and axes titles that overlap
    another axes' title, after drawing ``fig``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    texts = list(fig.texts) + [t for leg in fig.legends for t in leg.get_texts()]
    titles = []
    for ax in fig.axes:
        own = [t for t in (ax.title, ax._left_title, ax._right_title) if t.get_text()]
        titles += [(ax, t) for t in own]
        texts += own + [ax.xaxis.label, ax.yaxis.label]
        if ax.axison:  # only ticks inside the view are drawn
            for axis in (ax.xaxis, ax.yaxis):
                lo, hi = sorted(axis.get_view_interval())
                texts += [t.label1 for t in axis.get_major_ticks()
                          if lo - 1e-9 <= t.get_loc() <= hi + 1e-9]
        if ax.get_legend() is not None:
            texts += ax.get_legend().get_texts()
    out = []
    for t in texts:
        if not t.get_visible() or not t.get_text().strip():
            continue
        bb = t.get_window_extent(renderer)
        if bb.x0 < box.x0 - 1 or bb.y0 < box.y0 - 1 or bb.x1 > box.x1 + 1 or bb.y1 > box.y1 + 1:
            out.append(f"clipped: {t.get_text()!r}")
    for i, (a, s) in enumerate(titles):
        for b, t in titles[i + 1:]:
            if a is not b and s.get_window_extent(renderer).overlaps(t.get_window_extent(renderer)):
                out.append(f"overlap: {s.get_text()!r} / {t.get_text()!r}")
    return out


def _styles(ax, methods):
    from brainlrp.report.style import method_label

    labels = {method_label(m) for m in methods}
    return {(line.get_color(), line.get_linestyle(), line.get_marker())
            for line in ax.lines if line.get_label() in labels}


def test_many_methods_get_distinct_colour_style_marker():
    from brainlrp.report import style

    combos = {tuple(style.method_style(m, TWENTY).values()) for m in TWENTY}
    assert len(combos) == 20
    forty = [f"m{i}" for i in range(40)]
    assert len({tuple(style.method_style(m, forty).values()) for m in forty}) == 40
    assert style.method_label("lrp-ref@knn-restore").endswith("[lrp-ref@knn-restore]")
    assert style.method_label("my-own-map") == "my-own-map"  # no label: the id alone


def test_checks_figures_with_twenty_methods():
    from brainlrp.report.style import method_label

    rng = np.random.default_rng(0)
    curves = pd.DataFrame([{"method": m, "scan_id": f"s{s}", "order": "relevance",
                            "step": k, "n_areas_replaced": k,
                            "p_ad": 0.9 - 0.1 * k * rng.random(),
                            "p_ad_drop": 0.1 * k * rng.random()}
                           for m in [*TWENTY, "random"] for s in range(2) for k in range(6)])
    fig = figs.faithfulness_figure(curves, TWENTY)
    assert layout_problems(fig) == []
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == [method_label(m) for m in TWENTY] + ["random order"]
    assert len(_styles(fig.axes[0], TWENTY)) == 20
    sanity = pd.DataFrame([{"method": m, "scan_id": "s", "stage": k,
                            "layer": f"features.{k}", "spearman": rng.random()}
                           for m in TWENTY for k in range(1, 9)])
    fig = figs.sanity_figure(sanity, TWENTY)
    assert layout_problems(fig) == []
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [method_label(m)
                                                                  for m in TWENTY]
    assert len(_styles(fig.axes[0], TWENTY)) == 20


def test_per_method_figures_with_twenty_methods():
    from brainlrp.report.style import method_label

    rng = np.random.default_rng(1)
    per_scan = pd.DataFrame([{"method": m, "participant_id": f"p{s}", "scan_id": f"p{s}",
                              "mass_accuracy": rng.random(), "auc": rng.random(),
                              "auc_abs": rng.random(), "topk_recall": rng.random(), "k": 10}
                             for m in TWENTY for s in range(4)])
    summary = pd.DataFrame({"method": TWENTY, "chance_mass_accuracy": 0.17})
    fig = figs.ground_truth_figure(per_scan, summary, TWENTY)
    assert layout_problems(fig) == []
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == [method_label(m)
                                                                     for m in TWENTY]
    assert [ax.get_xlabel() for ax in fig.axes] == [
        "mass in atrophy", "|.|-AUC vs atrophy", "relevance-AUC vs atrophy", "top-10 recall"]
    subjects = pd.DataFrame([{"method": m, "participant_id": f"p{i}",
                              "hippocampus_relevance": rng.random(),
                              "hippocampus_volume": 3000 + 100 * rng.random()}
                             for m in TWENTY for i in range(6)])
    stats = pd.DataFrame({"method": TWENTY, "r": -0.5, "p_value": 0.01, "n_subjects": 6})
    fig = figs.hippocampus_figure(subjects, stats, TWENTY)
    assert layout_problems(fig) == []
    titles = [ax.get_title(loc="left") for ax in fig.axes if ax.get_title(loc="left")]
    assert [t.rsplit("\n", 1)[0].replace("\n", " ") for t in titles] == [
        method_label(m) for m in TWENTY]


def test_long_method_titles_stay_in_their_panels(grid):
    """A label with its id (80 characters) side by side with another: each panel's title
    is shrunk or wrapped to its own panel, in explanation figures and glass brains."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from brainlrp.report.style import method_label

    bg = np.asarray(template(grid))
    heat = np.zeros(grid.shape, np.float32)
    heat[15:18, 20:23, 10:13] = 1.0
    titles = [method_label("lrp-ref@pca-restore"), method_label("lrp-ref@twin-restore")]
    assert len(titles[0]) > 75
    maps = [figs.BrainMap(heat, t, "relevance (a.u.)") for t in titles]
    cut = figs.peak_coords(heat, grid.affine_array)
    for fig in (figs.explanation_figure(bg, grid.affine_array, maps, cut),
                figs.glass_brains(maps, grid.affine_array, ncols=2)):
        FigureCanvasAgg(fig).draw()
        renderer = fig.canvas.get_renderer()
        shown = [t for t in fig.texts if t.get_text().replace("\n", " ") in titles]
        assert len(shown) == 2
        boxes = [t.get_window_extent(renderer) for t in shown]
        half = fig.bbox.width / 2
        assert boxes[0].x1 < half < boxes[1].x0  # each stays in its half
        assert not boxes[0].overlaps(boxes[1])
        assert layout_problems(fig) == []
