"""What a first visit downloads: the partial Plotly bundle, hashed static names cached for good, gzipped pages.

The suite runs on plain static storage (no collectstatic needed; tests/conftest.py swaps it in), so the
production path is checked here: collectstatic with the manifest storage into a temporary STATIC_ROOT,
then pages and files served through the whole middleware stack.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from tests.test_run_command import CHROMIUM, CHROMIUM_FLAGS

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT / "static" / "vendor"
BUNDLE = VENDOR / "plotly-charter.min.js"
RECIPE = ROOT / "scripts" / "plotly-bundle"
# The trace types Charter's figures use (workers/engines, static/js): what the bundle must draw.
TRACES = {"bar", "box", "heatmap", "scatter", "scattergl"}
MANIFEST_STORAGE = "whitenoise.storage.CompressedManifestStaticFilesStorage"
FAR_FUTURE = "max-age=315360000, public, immutable"


# --- the bundle and where it is loaded -----------------------------------------------------------


def test_every_chart_page_loads_plotly_through_the_one_include():
    include = ROOT / "templates" / "includes" / "plotly.html"
    assert "vendor/plotly-charter.min.js" in include.read_text()
    for template in (ROOT / "templates").rglob("*.html"):
        if template != include:
            assert "vendor/plotly" not in template.read_text(), f"{template}: load Plotly with includes/plotly.html"
    assert not (VENDOR / "plotly.min.js").exists(), "the full bundle is no longer used"


def test_the_bundle_is_what_its_pinned_recipe_builds():
    package = json.loads((RECIPE / "package.json").read_text())
    lock = json.loads((RECIPE / "package-lock.json").read_text())
    pinned = package["dependencies"]
    assert all(re.fullmatch(r"\d+\.\d+\.\d+", v) for v in pinned.values()), pinned  # exact versions only
    assert lock["packages"]["node_modules/plotly.js"]["version"] == pinned["plotly.js"]
    header = BUNDLE.read_text()[:400]
    assert f"plotly.js v{pinned['plotly.js']}, partial bundle for Charter" in header
    assert "Licensed under the MIT license" in header and (VENDOR / "plotly.LICENSE").is_file()
    # Nothing the manifest storage would have to rewrite (it rewrites sourceMappingURL in JS files).
    for js in [*VENDOR.glob("*.js"), *(ROOT / "static" / "js").glob("*.js")]:
        assert "sourceMappingURL" not in js.read_text(), js


@pytest.mark.browser
def test_the_bundle_draws_every_trace_type_charter_uses():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    draw_one_of_each = """
    async () => {
      const traces = {
        bar: {type: 'bar', x: ['a', 'b', 'c'], y: [3, 1, 2], error_y: {type: 'data', array: [0.2, 0.1, 0.3]}},
        box: {type: 'box', orientation: 'h', x: [1, 2, 3, 4, 5, 9]},
        heatmap: {type: 'heatmap', z: [[1, 2], [3, 4]], text: [['1', '2'], ['3', '4']], texttemplate: '%{text}'},
        scatter: {type: 'scatter', mode: 'lines+markers', x: [0, 0.5, 1], y: [0, 0.7, 1]},
        scattergl: {type: 'scattergl', mode: 'markers', x: [1, 2, 3], y: [3, 1, 2],
                    marker: {color: [0, 0.5, 1], showscale: true, colorbar: {title: {text: 'feature value'}}}},
      };
      const drawn = {};
      for (const [name, trace] of Object.entries(traces)) {
        const el = document.createElement('div');
        el.style.cssText = 'width: 400px; height: 300px';
        document.body.appendChild(el);
        await Plotly.newPlot(el, [trace], {shapes: [{type: 'line', x0: 0, x1: 1, y0: 0, y1: 1, xref: 'paper', yref: 'paper'}]});
        drawn[name] = {
          data: el.data.length,
          type: el._fullData[0].type,
          marks: el.querySelectorAll('.trace, .point, .bars path, .heatmaplayer image, .boxlayer path, canvas').length,
        };
      }
      return {drawn, registered: Object.keys(Plotly.PlotSchema.get().traces).sort()};
    }
    """
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page()
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.set_content("<!doctype html><html><body></body></html>")
        page.add_script_tag(path=str(BUNDLE))
        result = page.evaluate(draw_one_of_each)
        browser.close()
    assert not errors, errors
    assert set(result["registered"]) == TRACES  # partial: nothing else was bundled
    for name in TRACES:
        drawn = result["drawn"][name]
        assert drawn["data"] == 1 and drawn["type"] == name and drawn["marks"] >= 1, (name, drawn)


# --- hashed names, far-future caching, compression -----------------------------------------------


@pytest.fixture
def collected(settings, tmp_path):
    """collectstatic with the production storage into a temporary STATIC_ROOT; returns the manifest."""
    settings.STATIC_ROOT = tmp_path / "static"
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {"BACKEND": MANIFEST_STORAGE}}
    call_command("collectstatic", interactive=False, verbosity=0)
    return json.loads((settings.STATIC_ROOT / "staticfiles.json").read_text())["paths"]


@pytest.mark.django_db
def test_pages_name_hashed_files_served_immutable_and_compressed(collected, login, users, version):
    home = login(users.viewer).get(reverse("home"))  # a version exists: the stage chart loads Plotly
    assert home.status_code == 200
    html = home.content.decode()
    for name in ("vendor/plotly-charter.min.js", "css/charter.css", "vendor/htmx.min.js"):
        hashed = collected[name]
        assert re.fullmatch(r".+\.[0-9a-f]{12}\.(js|css)", hashed), hashed
        assert f"/static/{hashed}" in html, name
        assert f'/static/{name}"' not in html, f"{name} referenced by its unhashed name"

    original = (VENDOR / "plotly-charter.min.js").read_bytes()
    hashed_url = f"/static/{collected['vendor/plotly-charter.min.js']}"
    client = Client()  # static files need no session
    zipped = client.get(hashed_url, HTTP_ACCEPT_ENCODING="gzip, deflate")
    assert zipped.status_code == 200 and zipped["Cache-Control"] == FAR_FUTURE
    assert zipped["Content-Encoding"] == "gzip" and "Accept-Encoding" in zipped["Vary"]
    body = b"".join(zipped.streaming_content)
    assert gzip.decompress(body) == original and len(body) < len(original) / 2
    # Brotli is installed with base.lock (MLServer's dependencies bring it), so collectstatic writes .br too
    # and a browser that accepts it gets the smaller file
    import brotli

    squeezed = client.get(hashed_url, HTTP_ACCEPT_ENCODING="gzip, deflate, br")
    assert squeezed["Content-Encoding"] == "br" and squeezed["Cache-Control"] == FAR_FUTURE
    smaller = b"".join(squeezed.streaming_content)
    assert brotli.decompress(smaller) == original and len(smaller) < len(body)
    plain = client.get(hashed_url)
    assert not plain.has_header("Content-Encoding") and b"".join(plain.streaming_content) == original
    # The unhashed name still answers (a page cached before a deploy), but only for a short while.
    unhashed = client.get("/static/vendor/plotly-charter.min.js")
    assert unhashed.status_code == 200 and "immutable" not in unhashed["Cache-Control"]


@pytest.mark.django_db
def test_pages_are_gzipped_when_the_client_asks(login, users, version):
    client = login(users.auditor)
    url = reverse("audit-log")
    plain = client.get(url)
    zipped = client.get(url, HTTP_ACCEPT_ENCODING="gzip, deflate, br")
    assert plain.status_code == zipped.status_code == 200
    assert not plain.has_header("Content-Encoding") and "Accept-Encoding" in plain["Vary"]
    assert zipped["Content-Encoding"] == "gzip" and int(zipped["Content-Length"]) == len(zipped.content)
    page = gzip.decompress(zipped.content)
    assert b"Audit" in page and abs(len(page) - len(plain.content)) < 200  # the same page (CSRF token aside)
    assert len(zipped.content) < len(plain.content) / 3


def test_streamed_downloads_are_not_gzipped(api, users, model, make_version):
    """Artifacts stream as stored, with their length: gzipping them would cost the web worker for nothing."""
    content = b"artifact bytes " * 4096
    version = make_version(model, content=content)
    response = api.as_user(users.viewer).get(f"/api/v1/versions/{version.pk}/artifact/", HTTP_ACCEPT_ENCODING="gzip")
    assert response.status_code == 200 and response.streaming
    assert "Content-Encoding" not in response and response["Content-Length"] == str(len(content))
    assert b"".join(response.streaming_content) == content
    page = api.as_user(users.viewer).get(f"/api/v1/versions/{version.pk}/", HTTP_ACCEPT_ENCODING="gzip")
    assert page["Content-Encoding"] == "gzip", "documents are still compressed"
