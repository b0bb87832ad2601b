"""A review, end to end in headless Chromium against a live server: the author asks, a reviewer and
an approver decide with the keyboard, the version's gate panel and the gate API say pass; and a
rejection that first forgets its comment. Saves screenshots to var/screenshots/ (the README's copies in
docs/screenshots/ are taken from there)."""

from __future__ import annotations

from pathlib import Path

import pytest

from governance.approvals import services
from governance.approvals.models import ApprovalRequest, Decision, RequestStatus
from governance.core.context import audit_context
from governance.registry import services as registry
from governance.registry.models import CARD_SECTION_KEYS, ModelVersion, Stage
from tests.conftest import PASSWORD
from tests.test_approvals import APPROVER_AND_REVIEWER, request
from tests.test_run_command import CHROMIUM, CHROMIUM_FLAGS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_passwords")]

SCREENSHOTS = Path(__file__).resolve().parent.parent / "var" / "screenshots"
TIMEOUT_MS = 10_000


@pytest.fixture
def world(users, superuser, model, make_version):
    """credit-scoring under a two-approval policy (one reviewer, one approver, no gates), its v1 with a
    full model card, and a v2 already up for review (for the rejection)."""
    with audit_context(source="cli", actor=superuser):
        policy = services.policy_create(actor=superuser, name="Two approvals", rules=APPROVER_AND_REVIEWER)
        services.policy_assign(actor=superuser, policy=policy, model=model)
    v1 = make_version(
        model,
        metrics={"accuracy": 0.912, "auc": 0.874, "f1": 0.803, "precision": 0.781},
        hyperparameters={"C": 0.5, "max_iter": 300},
        description="Logistic regression retrained on 2019-2024 applications.",
    )
    with audit_context(source="cli", actor=users.author):
        registry.card_save(
            actor=users.author,
            version=v1,
            sections={
                k: f"The {k.replace('_', ' ')} of the credit scoring model, written out." for k in CARD_SECTION_KEYS
            },
        )
    v2 = make_version(model, metrics={"accuracy": 0.84})
    rejected_review = request(v2, users.author, comment="Smaller feature set; please check the accuracy drop.")
    return {"v1": v1, "v2": v2, "rejected_review": rejected_review}


def _sign_in(browser, base: str, username: str):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto(f"{base}/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert "/login/" not in page.url, f"{username} could not sign in"
    return page


def test_a_review_from_request_to_gate_pass_and_a_rejection_in_chromium(live_server, world):
    from playwright.sync_api import sync_playwright

    base = live_server.url
    v1, v2, second = world["v1"], world["v2"], world["rejected_review"]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)

        # (a) the author asks for a review of v1 for production from the version's gate panel
        author = _sign_in(browser, base, "author")
        author.goto(f"{base}/versions/{v1.pk}/")
        with author.expect_navigation():
            author.locator("#gate").get_by_role("link", name="Request review").click()
        assert author.locator("input[name=environments][value=production]").is_checked()
        assert author.locator("input[name=environments][value=staging]").count() == 0  # the policy covers production
        assert "Production needs 2 approvals" in author.inner_text("body")
        author.fill("textarea[name=comment]", "Quarterly retrain: the card and metrics are up to date.")
        with author.expect_navigation():
            author.get_by_role("button", name="Request review").click()
        assert "/reviews/" in author.url
        review_url = author.url
        assert "Separation of duties" in author.inner_text("#decide")

        # the reviewer finds it in "Awaiting my review" and approves with the keyboard
        reviewer = _sign_in(browser, base, "reviewer")
        assert "2" in reviewer.inner_text(".nav-count")  # v1 and v2 await them
        with reviewer.expect_navigation():
            reviewer.get_by_role("link", name="Reviews").first.click()
        assert reviewer.locator(".tabs a.active").inner_text().startswith("Awaiting my review")
        with reviewer.expect_navigation():  # waits for "load": the shortcuts' script has run
            reviewer.get_by_role("link", name="credit-scoring v1").click()
        assert reviewer.url == review_url
        reviewer.keyboard.press("a")
        assert reviewer.locator("input[name=decision][value=approve]").is_checked()
        with reviewer.expect_navigation():
            reviewer.keyboard.press("Control+Enter")
        assert "Approved." in reviewer.inner_text(".messages")
        assert "1 of 2 approval(s)" in reviewer.inner_text("#gate-production")

        # the approver approves too; screenshot the review page as they see it before deciding
        approver = _sign_in(browser, base, "approver")
        approver.goto(review_url)
        approver.wait_for_selector("#metrics-chart .main-svg")
        approver.keyboard.press("a")
        approver.screenshot(path=str(SCREENSHOTS / "review-page.png"), full_page=True)
        with approver.expect_navigation():
            approver.keyboard.press("Control+Enter")
        assert "is now approved" in approver.inner_text(".messages")

        # the version's gate panel says production passes; the gate API agrees
        approver.goto(f"{base}/versions/{v1.pk}/")
        production = approver.inner_text("#gate-production")
        assert "PASS" in production.upper() and "may be served in production" in production
        assert "FAIL" in approver.inner_text("#gate-staging").upper()  # this policy approves production only
        approver.locator("#gate").screenshot(path=str(SCREENSHOTS / "gate-panel.png"))
        gate = approver.request.get(f"{base}/api/v1/versions/{v1.pk}/gate/?environment=production").json()
        assert gate["verdict"] == "pass", gate

        # (b) the reviewer rejects v2, first without the comment the rejection needs
        reviewer.goto(f"{base}/reviews/{second.pk}/")
        reviewer.keyboard.press("r")
        assert reviewer.locator("input[name=decision][value=reject]").is_checked()
        assert reviewer.evaluate("document.activeElement.name") == "comment"
        with reviewer.expect_navigation():
            reviewer.keyboard.press("Control+Enter")
        assert "Required for this decision." in reviewer.inner_text("#decide")
        assert reviewer.locator("input[name=decision][value=reject]").is_checked()
        reviewer.fill("textarea[name=comment]", "Accuracy fell from 0.91 to 0.84: not fit for credit decisions.")
        with reviewer.expect_navigation():
            reviewer.keyboard.press("Control+Enter")
        decisions = reviewer.inner_text("#decisions")
        assert "Accuracy fell from 0.91 to 0.84" in decisions and "Rejected" in decisions
        reviewer.goto(f"{base}/versions/{v2.pk}/")
        assert "Rejected" in reviewer.inner_text(".title-row")
        browser.close()

    assert ModelVersion.objects.get(pk=v1.pk).stage == Stage.APPROVED
    assert ModelVersion.objects.get(pk=v2.pk).stage == Stage.REJECTED
    assert ApprovalRequest.objects.get(pk=second.pk).status == RequestStatus.REJECTED
    assert list(Decision.objects.filter(request__version=v1).values_list("decided_by__username", flat=True)) == [
        "reviewer",
        "approver",
    ]
    assert (SCREENSHOTS / "review-page.png").stat().st_size > 20_000
    assert (SCREENSHOTS / "gate-panel.png").stat().st_size > 5_000
