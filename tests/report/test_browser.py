"""The report in headless Chromium: no console errors, every image loads, the sections
exist, nothing is requested from the network, and the NiiVue viewers draw and answer:
the crosshair on the left hippocampus names it, and a left-hemisphere marker shows left.

Uses Playwright for Python with Debian's ``chromium`` (never a downloaded browser), WebGL2
from SwiftShader (software); skipped, with the reason, when either is missing.
"""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest

from tests.report.test_stage import SECTIONS

playwright = pytest.importorskip("playwright.sync_api",
                                 reason="playwright is not installed (pip install playwright)")

expect = playwright.expect
# WebGL2 without a GPU: ANGLE on SwiftShader.
CHROMIUM_ARGS = ["--headless=new", "--use-gl=angle", "--use-angle=swiftshader",
                 "--enable-unsafe-swiftshader", "--no-sandbox",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    pytest.skip("no chromium binary (Debian: apt-get install chromium)")


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium, shared by the pages of this module."""
    with playwright.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def page(browser, reported):
    """The report opened from file:// in headless Chromium; network requests recorded."""
    yield from _open(browser, reported.index)


def _open(browser, index: Path):
    """``(page, console errors, blocked requests)`` of ``index`` opened from file://."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    outside: list[str] = []

    def block(route):
        outside.append(route.request.url)
        route.abort()

    # Everything but file:// and data: URIs is blocked and recorded.
    context.route(lambda url: not url.startswith(("file:", "data:")), block)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(index.as_uri())
    pg.wait_for_load_state("load")
    yield pg, errors, outside
    context.close()


def test_page_loads_offline_without_errors(page, reported):
    pg, errors, outside = page
    assert outside == []
    assert errors == []
    for sid in SECTIONS:
        assert pg.locator(f"section#{sid}").count() == 1, sid
    images = pg.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
    assert len(images) >= 15
    assert all(done and width > 0 for done, width in images)
    hrefs = pg.evaluate("Array.from(document.querySelectorAll('#cards-table a'))"
                        ".map(a => a.href)")
    assert len(hrefs) == len(reported.cards)
    # The data links resolve, in the browser, to the run's own files.
    data = pg.evaluate("Array.from(document.querySelectorAll('a[href^=\"../\"]'))"
                       ".map(a => a.href)")
    assert any(h.endswith("/analysis/claims.tsv") for h in data)
    for href in hrefs + data:
        assert href.startswith("file://") and Path(unquote(href[len("file://"):])).is_file()


def _ready(pg, selector: str):
    """Scroll a viewer into view (it starts then) and wait until NiiVue has loaded it."""
    viewer = pg.locator(selector)
    viewer.scroll_into_view_if_needed()
    expect(viewer).to_have_attribute("data-state", re.compile("ready|error"), timeout=30_000)
    assert viewer.get_attribute("data-state") == "ready", viewer.locator(
        ".viewer-error").inner_text()
    return viewer


def _pixels(locator) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(locator.screenshot())).convert("RGB"), int)


def _drawn(canvas) -> np.ndarray:
    """The canvas's pixels, checked not to be blank (a brain in grey levels)."""
    rgb = _pixels(canvas)
    grey = (np.abs(rgb[..., 0] - rgb[..., 2]) < 12) & (rgb.mean(axis=-1) > 60)
    assert grey.mean() > 0.05, "the NiiVue canvas is blank"
    return rgb


def test_viewers_draw_and_navigate(page):
    pg, errors, outside = page
    for outcome in ("TP", "FP", "TN", "FN"):
        assert pg.locator(f"#viewer-{outcome}").count() == 1, outcome
    viewer = _ready(pg, "#viewer")
    canvas = viewer.locator("canvas")
    _drawn(canvas)
    coords = pg.locator("#viewer-coords")
    start = coords.inner_text()
    assert re.fullmatch(r"MNI x = -?\d+, y = -?\d+, z = -?\d+ mm", start)
    assert pg.locator("#viewer-value").inner_text().startswith("≈ ")
    box = canvas.bounding_box()
    canvas.click(position={"x": box["width"] * 0.12, "y": box["height"] * 0.4})
    expect(coords).not_to_have_text(start)
    options = viewer.locator("select.viewer-map option").count()
    assert options >= 6 + 2  # six groups of the main method plus the others' AD means
    viewer.locator("select.viewer-map").select_option(index=options - 1)
    assert "guided backprop" in pg.locator("#viewer-value").inner_text()
    example = _ready(pg, "#viewer-TP")
    _drawn(example.locator("canvas"))
    assert example.locator("select.viewer-map option").count() == 3  # every method
    assert errors == [] and outside == []


@pytest.fixture(scope="module")
def atlas_page(browser, tmp_path_factory):
    """One viewer on the real 2 mm grid: template, Neuromorphometrics labels and two
    markers, 8 mm Gaussians at MNI (-40, -20, 10) (unsigned) and (40, -20, 10)
    (negative, in the signed map)."""
    from brainlrp.analysis.regions import AtlasRegions
    from brainlrp.data.grid import Grid, brain_mask, template
    from brainlrp.report.html import Safe, Section
    from brainlrp.report.html import page as html_page
    from brainlrp.report.niivue import Overlay, ViewerStore, page_scripts, viewer_html

    grid = Grid.from_resolution(2.0)
    affine = grid.affine_array
    atlas = AtlasRegions.fit("neuromorphometrics", grid)
    ijk = np.indices(grid.shape).reshape(3, -1).T
    mm = (ijk @ affine[:3, :3].T + affine[:3, 3]).reshape(*grid.shape, 3)

    def blob(centre):
        return np.exp(-((mm - np.asarray(centre)) ** 2).sum(-1) / (2 * 8.0**2))

    left = blob([-40, -20, 10]).astype(np.float32)
    signed = (left - blob([40, -20, 10])).astype(np.float32)
    store = ViewerStore(affine, np.asarray(brain_mask(grid)))
    body = viewer_html(store, "viewer", np.asarray(template(grid)),
                       [Overlay("left marker", left, "a.u.", False, 1.0),
                        Overlay("signed markers", signed, "a.u.", True, 1.0)],
                       atlas.codes, [str(n) for n in atlas.labels["region"]], "template")
    index = tmp_path_factory.mktemp("niivue") / "index.html"
    index.write_text(html_page("atlas", "2 mm", [Section("v", "Viewer").add(Safe(body))],
                               scripts=page_scripts()))
    yield from _open(browser, index)


def _go(pg, x: float, y: float, z: float) -> None:
    """Type MNI coordinates into the viewer's fields and press Enter."""
    for axis, value in enumerate((x, y, z)):
        pg.locator(f"#viewer input.viewer-mm[data-axis='{axis}']").fill(str(value))
    pg.locator("#viewer input.viewer-mm[data-axis='2']").press("Enter")


def test_crosshair_names_the_left_hippocampus(atlas_page):
    pg, errors, outside = atlas_page
    _drawn(_ready(pg, "#viewer").locator("canvas"))
    _go(pg, -28, -22, -14)
    expect(pg.locator("#viewer-region")).to_have_text("Left_Hippocampus")
    xyz = [int(v) for v in re.findall(r"-?\d+", pg.locator("#viewer-coords").inner_text())]
    assert np.abs(np.subtract(xyz, [-28, -22, -14])).max() <= 2
    _go(pg, 28, -22, -14)
    expect(pg.locator("#viewer-region")).to_have_text("Right_Hippocampus")
    assert errors == [] and outside == []


def test_left_stays_left(atlas_page):
    pg, errors, _ = atlas_page
    viewer = _ready(pg, "#viewer")
    viewer.locator("select.viewer-map").select_option(index=0)
    value = pg.locator("#viewer-value")
    _go(pg, -40, -20, 10)
    expect(value).to_have_text(re.compile(r"^≈ 1\.00 a\.u\."))
    _go(pg, 40, -20, 10)
    expect(value).to_have_text(re.compile(r"^≈ 0 a\.u\."))
    # On screen (neurological convention) the marker is left of the brain's midline in
    # the axial view, NiiVue's first tile.
    _go(pg, -40, -20, 10)
    rgb = _pixels(viewer.locator("canvas"))
    tile = rgb[:, : rgb.shape[1] // 3]
    hot = (tile[..., 0] > 200) & (tile[..., 2] < 90) & (tile[..., 1] < 220)
    brain = tile.mean(axis=-1) > 40
    cols = np.nonzero(brain.any(axis=0))[0]
    assert hot.sum() > 50
    assert np.nonzero(hot)[1].mean() < (cols.min() + cols.max()) / 2
    viewer.locator("select.viewer-map").select_option(index=1)
    _go(pg, 40, -20, 10)
    expect(value).to_have_text(re.compile(r"^≈ -1\.00 a\.u\."))
    assert errors == []
