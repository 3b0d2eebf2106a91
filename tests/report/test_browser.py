"""The report in headless Chromium: no console errors, every image loads, the sections
exist, nothing is requested from the network, and the slice viewer's JavaScript works.

Uses Playwright for Python with Debian's ``chromium`` (never a downloaded browser);
skipped, with the reason, when either is missing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.report.test_stage import SECTIONS

playwright = pytest.importorskip("playwright.sync_api",
                                 reason="playwright is not installed (pip install playwright)")

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
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
def page(reported):
    """The report opened from file:// in headless Chromium; network requests recorded."""
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
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
        pg.goto(reported.index.as_uri())
        pg.wait_for_load_state("load")
        yield pg, errors, outside
        browser.close()


def test_page_loads_offline_without_errors(page, reported):
    pg, errors, outside = page
    assert outside == []
    assert errors == []
    for sid in SECTIONS:
        assert pg.locator(f"section#{sid}").count() == 1, sid
    images = pg.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
    assert len(images) >= 15
    assert all(done and width > 0 for done, width in images)
    hrefs = pg.evaluate("Array.from(document.querySelectorAll('#cards a')).map(a => a.href)")
    assert len(hrefs) == len(reported.cards)
    for href in hrefs:
        assert href.startswith("file://") and Path(href[len("file://"):]).is_file()


def test_viewer_navigates(page):
    pg, errors, _ = page
    coords = pg.locator("#viewer-coords")
    start = coords.inner_text()
    assert start.startswith("MNI x = ") and start.endswith(" mm")
    assert pg.locator("#viewer-value").inner_text() != ""
    slider = pg.locator("#viewer input[data-axis='z']")
    value = int(slider.input_value())
    slider.evaluate("(s, v) => { s.value = v; s.dispatchEvent(new Event('input')); }",
                    str(max(value - 3, 0)))
    moved = coords.inner_text()
    assert moved != start
    z_before = int(start.split("z = ")[1].split()[0])
    z_after = int(moved.split("z = ")[1].split()[0])
    assert z_after == z_before - 3 * 6  # three 6 mm voxels down
    canvas = pg.locator("#viewer canvas[data-view='axial']")
    box = canvas.bounding_box()
    canvas.click(position={"x": box["width"] * 0.25, "y": box["height"] * 0.5})
    clicked = coords.inner_text()
    assert clicked != moved and "z = " in clicked
    assert int(clicked.split("z = ")[1].split()[0]) == z_after  # an axial click keeps z
    options = pg.locator("#viewer select.viewer-map option").count()
    assert options >= 6 + 2  # six groups of the main method plus the others' AD means
    pg.locator("#viewer select.viewer-map").select_option(index=options - 1)
    assert "guided backprop" in pg.locator("#viewer-value").inner_text()
    assert errors == []
