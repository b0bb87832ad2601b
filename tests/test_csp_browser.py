"""The Content-Security-Policy in headless Chromium: the pages that run scripts (htmx forms, the audit
log's event rows, confirmations, the API docs' Swagger UI) work under it and report no violation.
The check itself is shown to catch one: an injected inline script is refused and reported."""

from __future__ import annotations

import pytest

from governance.accounts import services as accounts
from governance.accounts.models import ApiToken
from governance.core.context import audit_context
from tests.browser import watch_csp
from tests.test_approvals_browser import _sign_in
from tests.test_run_command import CHROMIUM, CHROMIUM_FLAGS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_passwords")]


def _revoked(pk: int) -> bool:
    """Read on a thread of its own: Playwright's event loop owns this one, and the ORM refuses it."""
    import threading

    from django.db import connection

    found = []

    def read():
        try:
            found.append(ApiToken.objects.get(pk=pk).revoked_at is not None)
        finally:
            connection.close()

    thread = threading.Thread(target=read)
    thread.start()
    thread.join()
    return found[0]


def test_pages_that_run_scripts_work_under_the_csp_and_report_no_violation(live_server, users, version):
    from playwright.sync_api import sync_playwright

    base = live_server.url
    with audit_context(source="cli", actor=users.superuser):
        token, _ = accounts.token_create(actor=users.superuser, name="to-revoke", scopes=["read"])
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = _sign_in(browser, base, "root")
        violations = watch_csp(page)

        # the audit log: htmx posts the chain verification; the static script opens an event's row
        page.goto(f"{base}/audit/")
        page.get_by_role("button", name="Verify chain").click()
        page.wait_for_selector("#verify-result .alert")
        assert "Chain intact" in page.inner_text("#verify-result")
        first = page.locator("details.event-details").first
        row = page.locator(f"#event-{first.get_attribute('data-seq')}")
        assert row.is_hidden()
        first.locator("summary").click()
        row.wait_for(state="visible")

        # a confirmation (data-confirm, confirm.js): dismissed, nothing is revoked; accepted, it is
        page.goto(f"{base}/tokens/")
        revoke = page.locator(f"form[action$='/tokens/{token.pk}/revoke/'] button")
        page.once("dialog", lambda dialog: dialog.dismiss())
        revoke.click()
        page.wait_for_timeout(300)
        assert not _revoked(token.pk)
        page.once("dialog", lambda dialog: dialog.accept())
        with page.expect_navigation():
            revoke.click()
        assert _revoked(token.pk)

        # the model list filters with htmx as one types
        page.goto(f"{base}/models/")
        with page.expect_response(lambda r: "/models/?" in r.url):
            page.fill("#f-q", version.model.name[:5])

        # Swagger UI draws the API's operations
        page.goto(f"{base}/api/docs/")
        page.wait_for_selector(".swagger-ui .opblock", timeout=20_000)

        # the version page, the browsable API, the admin and the sign-in page
        for path in (version.get_absolute_url(), "/api/v1/models/", "/admin/", "/admin/auth/user/"):
            page.goto(base + path)
            page.wait_for_load_state("networkidle")
        anonymous = browser.new_context().new_page()
        anonymous_violations = watch_csp(anonymous)
        anonymous.goto(f"{base}/login/")
        anonymous.wait_for_load_state("networkidle")
        assert not violations + anonymous_violations, "\n".join(violations + anonymous_violations)

        # and the check catches a violation when there is one
        page.goto(f"{base}/models/")
        page.evaluate(
            "() => { const s = document.createElement('script'); s.textContent = 'window.injected = 1';"
            " document.body.appendChild(s); }"
        )
        page.wait_for_timeout(300)
        assert page.evaluate("() => window.injected") is None
        assert violations and "script-src" in " ".join(violations), violations
        browser.close()
