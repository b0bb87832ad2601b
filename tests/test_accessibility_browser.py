"""Accessibility of the main pages, checked by axe-core in headless Chromium.

axe-core is the npm package, vendored under tests/vendor/axe-core/ (see its README line there), so
the check runs air-gapped. Each main page is opened as the user who lives in it and must have no
WCAG 2.1 A/AA violation of serious or critical impact; the skip link must lead to the content.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from governance.core.context import audit_context
from governance.registry import services as registry
from governance.registry.models import CARD_SECTION_KEYS
from tests.test_approvals import request
from tests.test_approvals_browser import _sign_in
from tests.test_evaluations_pages import finished, queued
from tests.test_run_command import CHROMIUM, CHROMIUM_FLAGS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_passwords")]

AXE = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
BLOCKING = ("serious", "critical")

_RUN_AXE = """
async (tags) => {
  const result = await axe.run(document, {runOnly: {type: "tag", values: tags}, resultTypes: ["violations"]});
  return result.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ") + " :: " + (n.failureSummary || "").split("\\n").slice(0, 2).join(" ")),
  }));
}
"""


def axe_violations(page) -> list[dict]:
    page.wait_for_load_state("networkidle")
    # evaluated through the DevTools protocol: the page's Content-Security-Policy refuses an injected
    # inline <script> (add_script_tag), as it should
    page.evaluate(AXE.read_text())
    return page.evaluate(_RUN_AXE, WCAG_TAGS)


@pytest.fixture
def pages(users, superuser, model, make_version):
    """A model with a carded version under review, a finished evaluation and a draft: every main page has content."""
    v1 = make_version(model, metrics={"accuracy": 0.912, "roc_auc": 0.874}, description="Logistic regression.")
    with audit_context(source="cli", actor=users.author):
        registry.card_save(
            actor=users.author,
            version=v1,
            sections={k: f"The {k.replace('_', ' ')}, written out." for k in CARD_SECTION_KEYS},
        )
    run = finished(queued(v1, users.author, kind="fairness"), {"dp_ratio": 0.83, "eo_difference": 0.07})
    review = request(v1, users.author, comment="Please review.")
    draft = make_version(model, metrics={"accuracy": 0.9})
    return {
        "viewer": ["/", "/models/", model.get_absolute_url(), v1.get_absolute_url(), run.get_absolute_url()],
        "reviewer": ["/reviews/", f"/reviews/{review.pk}/", "/teams/", "/tokens/"],
        "author": [f"/versions/{draft.pk}/card/", f"/models/{model.pk}/versions/new/"],
        "auditor": ["/audit/"],
    }


def test_main_pages_have_no_serious_accessibility_violations(live_server, pages):
    from playwright.sync_api import sync_playwright

    base = live_server.url
    found: dict[str, list] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        anonymous = browser.new_page()
        anonymous.goto(f"{base}/login/")
        found["/login/"] = axe_violations(anonymous)
        for username, urls in pages.items():
            page = _sign_in(browser, base, username)
            for url in urls:
                response = page.goto(f"{base}{url}")
                assert response.status == 200, f"{url} as {username}: {response.status}"
                found[url] = axe_violations(page)
        browser.close()
    blocking = {url: [v for v in vs if v["impact"] in BLOCKING] for url, vs in found.items()}
    blocking = {url: vs for url, vs in blocking.items() if vs}
    assert not blocking, "axe-core found serious or critical WCAG 2.1 AA violations:\n" + "\n".join(
        f"{url}: {v['id']} ({v['impact']}): {v['help']}: {v['nodes']}" for url, vs in blocking.items() for v in vs
    )


def test_the_skip_link_is_the_first_stop_and_leads_to_the_content(live_server, users):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = _sign_in(browser, live_server.url, "viewer")
        page.goto(f"{live_server.url}/models/")
        page.keyboard.press("Tab")
        focused = page.evaluate(
            "({text: document.activeElement.textContent, href: document.activeElement.getAttribute('href')})"
        )
        assert focused == {"text": "Skip to main content", "href": "#main"}
        assert page.locator(".skip-link").bounding_box()["y"] >= 0, "the focused skip link is visible"
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "main"
        browser.close()
