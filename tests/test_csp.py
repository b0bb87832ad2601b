"""Content-Security-Policy (django-csp) on every page: scripts from Charter's own origin only, no inline
script and no eval; and no template carries an inline script or event handler that the policy would
refuse (tests/test_csp_browser.py checks the pages in Chromium)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import signed_in

pytestmark = pytest.mark.django_db

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def _directives(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    return {name: values for name, *values in (part.split() for part in header.split(";") if part.strip())}


def _assert_strict(response, path: str) -> None:
    assert "Content-Security-Policy" in response, f"{path} has no Content-Security-Policy"
    policy = _directives(response)
    assert policy["script-src"] == ["'self'"], (path, policy)
    assert policy["default-src"] == ["'self'"] and policy["object-src"] == ["'none'"], (path, policy)
    assert policy["frame-ancestors"] == ["'none'"] and policy["base-uri"] == ["'self'"], (path, policy)


def test_every_page_has_the_policy(users, version, client):
    for path in ("/login/", "/no-such-page/"):
        _assert_strict(client.get(path), path)
    browser = signed_in(users.superuser)
    pages = [
        "/", "/models/", version.model.get_absolute_url(), version.get_absolute_url(), "/reviews/", "/audit/",
        "/teams/", "/tokens/", "/api/docs/", "/api/v1/models/", "/admin/", "/no-such-page/",
    ]  # fmt: skip
    for path in pages:
        response = browser.get(path)
        assert response.status_code in (200, 404), (path, response.status_code)
        _assert_strict(response, path)


def test_the_api_docs_start_swagger_ui_from_a_script_of_their_own_origin(users):
    browser = signed_in(users.superuser)
    page = browser.get("/api/docs/").content.decode()
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page, flags=re.S)
    assert scripts and all("src=" in attrs and not body.strip() for attrs, body in scripts), scripts
    start = re.search(r'<script src="(/api/docs/\?[^"]*script[^"]*)"', page)
    assert start, "Swagger UI's start script is served from the docs' own path"
    script = browser.get(start.group(1).replace("&amp;", "&"))
    assert script.status_code == 200 and b"SwaggerUIBundle" in script.content


_INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc=)(?![^>]*type=\"application/(?:ld\+)?json\")[^>]*>", re.I)
_EVENT_HANDLER = re.compile(r"<[a-z][^>]*\son[a-z]+\s*=", re.I)
_JS_URL = re.compile(r"""(?:href|src|action)\s*=\s*["']\s*javascript:""", re.I)


def test_no_template_has_an_inline_script_or_event_handler():
    found = []
    for path in sorted(TEMPLATES.rglob("*.html")):
        text = path.read_text()
        for pattern in (_INLINE_SCRIPT, _EVENT_HANDLER, _JS_URL):
            found += [f"{path.relative_to(TEMPLATES)}: {m.group(0)[:80]}" for m in pattern.finditer(text)]
    assert not found, "the Content-Security-Policy refuses these; use a static file:\n" + "\n".join(found)
