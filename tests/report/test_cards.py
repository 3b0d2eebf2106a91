"""Per-subject cards: z-scores against the controls and the drawing."""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from brainlrp.data.grid import Grid, brain_mask, template
from brainlrp.report.cards import CardData, CardRenderer


def test_card_renders_peak_and_saves(tmp_path):
    grid = Grid.from_resolution(6.0)
    mask = np.asarray(brain_mask(grid))
    rel = np.zeros(grid.shape, np.float32)
    rel[10, 20, 15] = 1.0
    renderer = CardRenderer(grid.affine_array, grid.shape, "relevance (a.u.)", "positive",
                            "LRP β=0", vmax=1.0, mask=mask)
    top = pd.DataFrame({"area": ["Hippocampus", "Amygdala"], "density": [2.0, 1.0],
                        "hc_mean": [1.0, 1.0], "hc_sd": [0.5, 0.0], "z": [2.0, np.nan]})
    card = CardData("sub-01_ses-1", "sub-01", "AD", "TP", 0.93, np.asarray(template(grid)),
                    rel, top)
    fig = renderer.draw(card)
    texts = " ".join(t.get_text() for t in fig.texts)
    x, y, z = (grid.affine_array[:3, :3] @ [10, 20, 15] + grid.affine_array[:3, 3]).round()
    assert f"MNI ({x:.0f}, {y:.0f}, {z:.0f}) mm" in texts
    assert "p(AD) = 0.930" in texts and "+2.0" in texts and "(scan sub-01_ses-1)" in texts
    labels = [t.get_text() for t in renderer.bars_ax.get_yticklabels()]
    assert labels[:2] == ["Hippocampus", "Amygdala"] and labels[2] == ""
    path = tmp_path / "card.png"
    renderer.save(card, path)
    with Image.open(path) as img:
        assert img.size == (1100, 390)


def test_card_shows_age_sex_legend_and_coordinates_off_the_brain():
    grid = Grid.from_resolution(6.0)
    rel = np.zeros(grid.shape, np.float32)
    rel[10, 20, 15] = 1.0
    renderer = CardRenderer(grid.affine_array, grid.shape, "relevance (a.u.)", "positive",
                            "LRP β=0", vmax=1.0, mask=np.asarray(brain_mask(grid)))
    top = pd.DataFrame({"area": ["Hippocampus"], "density": [2.0], "hc_mean": [1.0],
                        "hc_sd": [0.5], "z": [2.0]})
    bg = np.asarray(template(grid))
    known = CardData("sub-01", "sub-01", "AD", "TP", 0.9, bg, rel, top, age=71.4, sex="F")
    texts = " ".join(t.get_text() for t in renderer.draw(known).texts)
    assert "age 71 · sex F" in texts
    unknown = CardData("sub-02", "sub-02", "AD", "TP", 0.9, bg, rel, top)
    texts = " ".join(t.get_text() for t in renderer.draw(unknown).texts)
    assert "age – · sex –" in texts
    legend = [t.get_text() for leg in renderer.fig.legends for t in leg.get_texts()]
    assert legend == ["z ≥ 2", "1 ≤ z < 2", "z < 1", "HC mean ± 1 SD"]
    # The slices' coordinates sit above each slice, outside the brain.
    for ax, *_rest, label in renderer.slices:
        assert label.get_text().endswith(" mm") and label.get_position()[1] > 1
        assert label.get_transform() == ax.transAxes
