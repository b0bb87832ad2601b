"""Every log line names its request (governance/core/logs.py, settings.LOGGING): a line written while a
request is served carries that request's id, the one X-Request-ID answers and the audit log records;
a Celery task's lines carry the id of the request that enqueued it; LOG_FORMAT=json writes JSON."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.test import Client

from governance.core.logs import RequestIdFilter
from governance.notifications.models import DeliveryStatus, WebhookDelivery
from tests.conftest import celery_worker, wait_for
from tests.test_webhooks import Receiver, _create

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def console():
    """What the configured console handler (settings.LOGGING) writes, while the test runs."""
    handler = next(h for h in logging.getLogger().handlers if any(isinstance(f, RequestIdFilter) for f in h.filters))
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    try:
        yield buffer
    finally:
        handler.setStream(previous)


@pytest.mark.django_db
def test_a_line_logged_during_a_request_carries_its_request_id(users, console):
    client = Client(REMOTE_ADDR="203.0.113.50")
    response = client.post("/login/", {"username": "author", "password": "wrong"}, HTTP_X_REQUEST_ID="req-login-1")
    assert response["X-Request-ID"] == "req-login-1"
    client.get("/no-such-page/", HTTP_X_REQUEST_ID="req-missing-2")  # Django logs the 404 after the middleware
    lines = console.getvalue().splitlines()
    failure = [line for line in lines if "AXES" in line and "login failure" in line]
    assert failure and all("[req-login-1]" in line for line in failure), lines
    missing = [line for line in lines if "Not Found: /no-such-page/" in line]
    assert missing and all("[req-missing-2]" in line for line in missing), lines
    outside = logging.getLogger("charter.test")
    outside.warning("between requests")
    assert "[-] charter.test between requests" in console.getvalue()


def test_log_format_json_writes_one_object_per_line_with_the_request_id():
    """A fresh process (settings are read once) with LOG_FORMAT=json logs inside an audit context."""
    code = (
        "import django, logging; django.setup()\n"
        "from governance.core.context import audit_context\n"
        "with audit_context(source='cli', request_id='req-json-3'):\n"
        "    logging.getLogger('charter.test').warning('inside %s', 'a command')\n"
    )
    env = {**os.environ, "LOG_FORMAT": "json", "DJANGO_SETTINGS_MODULE": "governance.settings"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    entries = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    entry = next(e for e in entries if e["logger"] == "charter.test")
    assert entry["request_id"] == "req-json-3" and entry["message"] == "inside a command"
    assert entry["level"] == "WARNING" and entry["time"]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_celery_tasks_lines_carry_the_id_of_the_request_that_enqueued_it(api, users, team, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True
    with Receiver([200]) as receiver, celery_worker(queues="default", WEBHOOK_ALLOW_PRIVATE_ADDRESSES="true") as worker:
        webhook, receiver.secret = _create(team, users.admin, receiver.url)
        response = api.as_user(users.admin).post(
            f"/api/v1/webhooks/{webhook.pk}/test/", HTTP_X_REQUEST_ID="req-ping-42"
        )
        assert response.status_code in (200, 201, 202), response.content
        delivered = wait_for(
            lambda: WebhookDelivery.objects.filter(webhook=webhook, status=DeliveryStatus.DELIVERED).exists(), 60
        )
        time.sleep(0.5)  # the line is written just after the delivery is saved
    output = worker.stdout.read().decode(errors="replace")  # the worker has stopped: all it wrote
    assert delivered, output[-3000:]
    lines = [line for line in output.splitlines() if "Webhook delivery" in line]
    assert lines and all("[req-ping-42]" in line for line in lines), output[-3000:]
