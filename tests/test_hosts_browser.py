"""The compute host pages in headless Chromium against a live server: the empty list that says how to add
a host, then a list with an online GPU host and a stale CPU host, and the GPU host's page. Saves
screenshots to var/screenshots/ (hosts-empty.png, hosts.png, host-page.png); axe-core finds no serious
WCAG 2.1 AA violation on any of the three."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from django.utils import timezone

from governance.core.context import audit_context
from governance.hosts import services
from governance.hosts.models import Host
from tests.test_accessibility_browser import BLOCKING, axe_violations
from tests.test_approvals_browser import _sign_in
from tests.test_hosts_api import INVENTORY, NO_GPU, STATS
from tests.test_run_command import CHROMIUM, CHROMIUM_FLAGS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_passwords")]

SCREENSHOTS = Path(__file__).resolve().parent.parent / "var" / "screenshots"


def _hosts(users) -> None:
    """gpu-1 online with two H100s and their figures, cpu-1 stale without a GPU."""
    with audit_context(source="cli", actor=users.operator):
        gpu, _ = services.host_register(actor=users.operator, name="gpu-1", labels={"gpu": "h100", "env": "prod"},
                                        inventory=INVENTORY, agent_version="1.0")  # fmt: skip
        cpu, _ = services.host_register(actor=users.operator, name="cpu-1", labels={"env": "dev"}, inventory=NO_GPU)
    Host.objects.filter(pk=gpu.pk).update(last_gpu_stats=STATS)
    Host.objects.filter(pk=cpu.pk).update(last_heartbeat_at=timezone.now() - dt.timedelta(minutes=3))


def test_the_host_pages_in_chromium(live_server, users):
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    # the database is written between the two browser sessions: Playwright's sync API runs an event loop,
    # inside which Django refuses ORM calls
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = _sign_in(browser, live_server.url, "operator")
        page.get_by_role("link", name="Hosts", exact=True).click()
        page.wait_for_url(f"{live_server.url}/hosts/")
        assert page.locator("#no-hosts h3").inner_text() == "No compute hosts yet"
        assert "python manage.py host_agent --name gpu-1" in page.locator("pre.command").inner_text()
        page.screenshot(path=str(SCREENSHOTS / "hosts-empty.png"), full_page=True)
        found = {"/hosts/ (empty)": axe_violations(page)}
        browser.close()

    _hosts(users)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = _sign_in(browser, live_server.url, "viewer")
        page.goto(f"{live_server.url}/hosts/")
        rows = page.locator("#hosts tbody tr")
        assert rows.count() == 2
        assert "Stale" in rows.nth(0).inner_text() and "3\xa0minutes ago" in rows.nth(0).inner_text()
        assert "Online" in rows.nth(1).inner_text() and "2 × NVIDIA H100 80GB HBM3" in rows.nth(1).inner_text()
        page.screenshot(path=str(SCREENSHOTS / "hosts.png"), full_page=True)
        found["/hosts/"] = axe_violations(page)

        page.get_by_role("link", name="gpu-1", exact=True).click()
        page.wait_for_url(f"{live_server.url}/hosts/gpu-1/")
        assert page.locator("#host-status").inner_text() == "Online"
        assert page.locator("#gpus tbody tr").count() == 2
        assert "87 %" in page.locator("#gpus").inner_text()
        assert "Benchmarks run on this host will be listed here" in page.locator("#benchmarks").inner_text()
        page.screenshot(path=str(SCREENSHOTS / "host-page.png"), full_page=True)
        found["/hosts/gpu-1/"] = axe_violations(page)
        browser.close()
    blocking = {url: [v for v in vs if v["impact"] in BLOCKING] for url, vs in found.items()}
    assert not any(blocking.values()), blocking
