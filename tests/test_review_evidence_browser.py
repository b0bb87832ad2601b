"""The review page's evidence in headless Chromium: every chart drew data (the fairness, performance
and explainability runs' main charts and the registered metrics), and the digests open on demand.
Saves a screenshot to var/screenshots/review-evidence.png."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser import assert_charts_drew
from tests.conftest import PASSWORD
from tests.test_review_evidence import make_evidence_review
from tests.test_run_command import CHROMIUM, CHROMIUM_FLAGS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_passwords")]

SCREENSHOTS = Path(__file__).resolve().parent.parent / "var" / "screenshots"


def test_every_chart_of_a_review_with_real_evaluations_drew_data(live_server, users, superuser, model):
    from playwright.sync_api import sync_playwright

    review, runs = make_evidence_review(users, superuser, model)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(10_000)
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{live_server.url}/login/")
        page.fill("input[name=username]", "reviewer")
        page.fill("input[name=password]", PASSWORD)
        with page.expect_navigation():
            page.click("button[type=submit]")
        page.goto(f"{live_server.url}{review.get_absolute_url()}")

        states = assert_charts_drew(page, at_least=len(runs) + 1)
        inline = [s for s in states if s["label"].startswith("figure-")]
        assert len(inline) == len(runs), states
        assert not errors, errors
        digests = page.locator("details.ev-digests")
        assert not digests.locator("table").is_visible()
        digests.locator("summary").click()
        assert digests.locator("table").is_visible()
        page.evaluate("window.scrollTo(0, 0)")  # the sticky top bar would be stitched in where the page stood
        page.screenshot(path=str(SCREENSHOTS / "review-evidence.png"), full_page=True)
        browser.close()
