"""The compliance pages in headless Chromium against a live server: the regulatory report of a model
with its covered and missing items and their links, the decision record and its PDF link, a framework
and the revision form a site administrator sees. No Content-Security-Policy violation on any of them.
Screenshots go to var/screenshots/compliance-*.png."""

from __future__ import annotations

from pathlib import Path

import pytest

from governance.compliance.models import MappingItem
from governance.core.context import audit_context
from governance.registry import services as registry
from tests.browser import watch_csp
from tests.conftest import PASSWORD
from tests.test_approvals import NO_GATES_ONE_APPROVER, decide, request
from tests.test_compliance_mapping import WRITTEN, govern
from tests.test_run_command import CHROMIUM, CHROMIUM_FLAGS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_passwords")]

SCREENSHOTS = Path(__file__).resolve().parent.parent / "var" / "screenshots"
TIMEOUT_MS = 10_000


@pytest.fixture
def world(users, superuser, model, make_version):
    # the shipped mappings: conftest reloads them after the flush of the transactional test before
    govern(model, superuser, NO_GATES_ONE_APPROVER)
    v1 = make_version(model, metrics={"accuracy": 0.91})
    with audit_context(source="cli", actor=users.author):
        registry.card_save(actor=users.author, version=v1, sections=WRITTEN)
    decide(request(v1, users.author, environments=("staging",)), users.approver)
    v2 = make_version(model)
    request(v2, users.author)
    return {"v1": v1, "v2": v2}


def _sign_in(browser, base: str, username: str):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    violations = watch_csp(page)
    page.goto(f"{base}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert "/login/" not in page.url, f"{username} could not sign in"
    return page, violations


def test_the_compliance_pages_in_chromium(live_server, world, model):
    from playwright.sync_api import sync_playwright

    base = live_server.url
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    item = MappingItem.objects.get(framework__key="eu-ai-act", reference="Art. 12")  # no ORM under Playwright's loop
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        auditor, violations = _sign_in(browser, base, "auditor")

        # from the navigation to the report of credit-scoring, then v1's report through the version chooser
        auditor.get_by_role("navigation", name="Main").get_by_role("link", name="Compliance").click()
        auditor.wait_for_url(f"{base}/compliance/")
        auditor.screenshot(path=str(SCREENSHOTS / "compliance-home.png"), full_page=True)
        with auditor.expect_navigation():
            auditor.locator("#models").get_by_role("link", name="credit-scoring").click()
        auditor.select_option("#version", label="v1 · Approved")
        with auditor.expect_navigation():
            auditor.get_by_role("button", name="Show").click()
        assert "version=" in auditor.url
        art11 = auditor.locator("tr", has=auditor.get_by_role("link", name="Art. 11", exact=True))
        assert art11.locator(".badge").inner_text().strip().lower() == "covered"
        art10 = auditor.locator("tr", has=auditor.get_by_role("link", name="Art. 10", exact=True))
        assert art10.locator(".badge").inner_text().strip().lower() == "missing"
        assert auditor.locator(".gate-line.is-passed").count() > 10
        assert auditor.locator(".gate-line.is-missing").count() > 10
        auditor.screenshot(path=str(SCREENSHOTS / "compliance-report.png"), full_page=False)
        # a covered approval links to the review that gave it
        go = auditor.locator("tr", has=auditor.get_by_role("link", name="MANAGE 1.1", exact=True))
        with auditor.expect_navigation():
            go.get_by_role("link", name="Review #").first.click()
        assert "/reviews/" in auditor.url

        auditor.goto(f"{base}/compliance/decisions/?days=1")
        assert auditor.locator("#decisions tbody tr").count() == 1
        assert auditor.locator("#exceptions .gate-line").count() == 1  # v2's review is open
        href = auditor.get_by_role("link", name="Download PDF").get_attribute("href")
        assert href.startswith("/compliance/decisions.pdf?until=")
        auditor.screenshot(path=str(SCREENSHOTS / "compliance-decisions.png"), full_page=True)

        root, root_violations = _sign_in(browser, base, "root")
        root.goto(f"{base}/compliance/frameworks/{item.framework_id}/")
        assert root.get_by_role("link", name="+ Add item").is_visible()
        root.screenshot(path=str(SCREENSHOTS / "compliance-framework.png"))
        root.goto(f"{base}{item.get_absolute_url()}")
        root.uncheck("input[name=evidence][value=monitoring]")
        root.fill("input[name=comment]", "Runtime logs are the serving platform's.")
        with root.expect_navigation():
            root.get_by_role("button", name="Save revision").click()
        assert root.locator("#revisions li").count() == 2
        root.screenshot(path=str(SCREENSHOTS / "compliance-item.png"), full_page=True)
        browser.close()
    item.refresh_from_db()
    assert item.revision == 2 and item.evidence == ["audit"]
    assert violations == [] and root_violations == []
