"""Team webhooks: who may manage them, the secret that is shown once, signatures, and delivery
with retries against a real HTTP server on loopback (directly, and through a real Celery worker)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from governance.accounts import services as accounts
from governance.audit.models import AuditEvent
from governance.core.context import audit_context
from governance.notifications import crypto, services, signing
from governance.notifications.models import DeliveryStatus, Webhook, WebhookDelivery
from tests.conftest import assert_error, celery_worker, signed_in


@pytest.fixture(autouse=True)
def _receivers_on_loopback(settings):
    """Test receivers listen on 127.0.0.1 (or use names that resolve nowhere here), which production
    refuses: see test_internal_addresses_are_refused."""
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True


ROOT = Path(__file__).resolve().parent.parent


# --- a real receiver ------------------------------------------------------------------------


class Receiver:
    """An HTTP server on loopback that answers the given statuses in turn (the last one repeats)
    and checks every request's signature with the secret it is given."""

    def __init__(self, statuses: list[int], *, delay: float = 0.0):
        self.statuses, self.delay = list(statuses), delay
        self.secret: str | None = None
        self.requests: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append(
                    {
                        "headers": dict(self.headers),
                        "body": body,
                        "verified": receiver.secret is not None
                        and signing.verify(receiver.secret, body, self.headers.get("X-Charter-Signature")),
                    }
                )
                if receiver.delay:
                    time.sleep(receiver.delay)
                n = len(receiver.requests) - 1
                code = receiver.statuses[min(n, len(receiver.statuses) - 1)]
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/charter?token=receiver-token"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _create(team, actor, url: str, **kw) -> tuple[Webhook, str]:
    with audit_context(source="cli", actor=actor):
        return services.webhook_create(actor=actor, team=team, url=url, **kw)


def _event(team, users):
    services.notify(
        event="review.requested", team_id=team.pk, title="Review requested", body="Please review v3.",
        url="/versions/3/", recipients=[users.reviewer], payload={"version": 3},
    )  # fmt: skip
    return WebhookDelivery.objects.order_by("-id").first()


# --- signing --------------------------------------------------------------------------------


def test_a_signature_verifies_and_a_tampered_body_or_wrong_secret_does_not():
    body, secret, now = b'{"event":"review.requested"}', "whsec_abcdefghijklmnop", 1_700_000_000
    header = signing.sign(secret, body, now)
    assert header.startswith(f"t={now},v1=") and len(header.split("v1=")[1]) == 64
    assert signing.verify(secret, body, header, now=now + 10)
    assert not signing.verify(secret, body + b" ", header, now=now)
    assert not signing.verify(secret, b'{"event":"review.decided"}', header, now=now)
    assert not signing.verify("whsec_someone-else-entirely", body, header, now=now)
    assert not signing.verify(secret, body, header, now=now + 301)  # a replay, too late
    for broken in (None, "", "v1=abc", f"t={now}", f"t=x,v1={header.split('v1=')[1]}", "garbage"):
        assert not signing.verify(secret, body, broken, now=now)
    # during a rotation a sender may sign with two secrets; either one verifies
    rotated = f"{header},v1={signing.sign('whsec_the-next-secret-0000', body, now).split('v1=')[1]}"
    assert signing.verify("whsec_the-next-secret-0000", body, rotated, now=now)


def test_secrets_are_encrypted_at_rest_and_survive_a_secret_key_rotation(users, team, settings):
    webhook, secret = _create(team, users.admin, "https://hooks.example.com/a")
    assert secret not in webhook.secret_encrypted
    assert crypto.decrypt(webhook.secret_encrypted) == secret
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-secret-key-for-this-deployment"
    assert crypto.decrypt(webhook.secret_encrypted) == secret
    settings.SECRET_KEY_FALLBACKS = []
    with pytest.raises(crypto.SecretUnreadable):
        crypto.decrypt(webhook.secret_encrypted)


# --- the API: who may -----------------------------------------------------------------------


@pytest.mark.django_db
def test_only_team_admins_create_webhooks_and_the_secret_is_shown_once(api, users, team):
    body = {"team": team.pk, "url": "https://hooks.example.com/charter"}
    assert_error(api.as_user(users.viewer).post("/api/v1/webhooks/", body, format="json"), 403)
    assert_error(api.as_user(users.approver).post("/api/v1/webhooks/", body, format="json"), 403)
    assert not Webhook.objects.exists()

    admin = api.as_user(users.admin)
    r = admin.post("/api/v1/webhooks/", body, format="json")
    assert r.status_code == 201, r.json()
    created = r.json()
    secret = created["secret"]
    assert secret.startswith("whsec_") and len(secret) > 30
    assert created["events"] == [
        "review.requested",
        "review.decided",
        "review.stale",
        "approval.expiring",
        "artifact.integrity_failed",
        "serving.drift",
        "serving.canary",
    ]
    assert created["is_active"] is True and created["created_by"] == "admin" and created["team"] == team.pk

    pk = created["id"]
    outputs = [
        admin.get("/api/v1/webhooks/"),
        admin.get(f"/api/v1/webhooks/{pk}/"),
        admin.patch(f"/api/v1/webhooks/{pk}/", {"events": ["review.decided"]}, format="json"),
        admin.patch(f"/api/v1/webhooks/{pk}/", {"secret": "whsec_a-brand-new-secret-value"}, format="json"),
        admin.post(f"/api/v1/webhooks/{pk}/test/"),
        admin.get(f"/api/v1/webhooks/{pk}/deliveries/"),
    ]
    for response in outputs:
        assert response.status_code in (200, 202), response.content
        text = response.content.decode()
        assert secret not in text and "whsec_a-brand-new" not in text and "secret" not in json.loads(text)
    assert crypto.decrypt(Webhook.objects.get(pk=pk).secret_encrypted) == "whsec_a-brand-new-secret-value"

    # nor in the audit trail, in clear or encrypted
    events = AuditEvent.objects.filter(object_type="notifications.webhook", object_id=str(pk)).order_by("seq")
    assert [e.action for e in events] == ["webhook.create", "webhook.update", "webhook.update", "webhook.test"]
    encrypted = Webhook.objects.get(pk=pk).secret_encrypted
    for event in events:
        assert secret not in event.changes and "whsec_" not in event.changes and encrypted not in event.changes
        assert "secret_encrypted" not in event.changes
        assert event.actor == users.admin and event.team_id == team.pk
    rotated = json.loads(events[2].changes)
    assert rotated["secret_rotated"] is True and rotated["before"] == rotated["after"]


@pytest.mark.django_db
def test_other_teams_webhooks_are_not_found_and_members_who_are_not_admins_are_refused(api, users, team, other_team):
    webhook, _ = _create(team, users.admin, "https://hooks.example.com/charter")
    url = f"/api/v1/webhooks/{webhook.pk}/"
    outsider = api.as_user(users.outsider)
    for response in (
        outsider.get(url),
        outsider.patch(url, {"is_active": False}, format="json"),
        outsider.delete(url),
        outsider.post(url + "test/"),
        outsider.get(url + "deliveries/"),
    ):
        assert_error(response, 404)
    assert_error(outsider.post("/api/v1/webhooks/", {"team": team.pk, "url": "https://x.example.com"}), 404)
    assert outsider.get("/api/v1/webhooks/").json()["results"] == []

    viewer = api.as_user(users.viewer)
    for response in (viewer.get(url), viewer.patch(url, {"is_active": False}, format="json"), viewer.delete(url)):
        assert_error(response, 403)
    assert_error(viewer.post(url + "test/"), 403)
    assert_error(viewer.get(url + "deliveries/"), 403)
    assert viewer.get("/api/v1/webhooks/").json()["results"] == []
    assert Webhook.objects.get().is_active and not WebhookDelivery.objects.exists()

    admin = api.as_user(users.admin)
    assert admin.get(url).status_code == 200
    assert [w["id"] for w in admin.get("/api/v1/webhooks/").json()["results"]] == [webhook.pk]
    assert api.as_user(users.superuser).get(url).status_code == 200
    assert admin.delete(url).status_code == 204
    assert not Webhook.objects.exists()
    event = AuditEvent.objects.get(action="webhook.delete")
    assert event.object_id == str(webhook.pk) and "whsec_" not in event.changes


@pytest.mark.django_db
def test_a_token_needs_the_admin_scope_to_manage_webhooks(api, users, team):
    with audit_context(source="cli", actor=users.admin):
        _token, read_only = accounts.token_create(actor=users.admin, name="ci", scopes=["read"])
        _token, admin_scope = accounts.token_create(actor=users.admin, name="ops", scopes=["read", "admin"])
    body = {"team": team.pk, "url": "https://hooks.example.com/charter"}
    assert_error(api.with_token(read_only).post("/api/v1/webhooks/", body, format="json"), 403, "token_scope_missing")
    assert api.with_token(admin_scope).post("/api/v1/webhooks/", body, format="json").status_code == 201


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://files.example.com/hook"}, "url"),
        ({"url": "javascript:alert(1)"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "https://hooks.example.com", "events": ["review.exploded"]}, "events"),
        ({"url": "https://hooks.example.com", "events": []}, "events"),
        ({"url": "https://hooks.example.com", "secret": "short"}, "secret"),
        ({"url": "https://hooks.example.com", "colour": "blue"}, None),
        ({"url": "https://hooks.example.com", "secret_encrypted": "x"}, None),
    ],
)
def test_bad_input_is_refused_and_nothing_is_stored(api, users, team, body, field):
    admin = api.as_user(users.admin)
    before = AuditEvent.objects.exclude(action="permission.denied").count()
    r = admin.post("/api/v1/webhooks/", {"team": team.pk, **body}, format="json")
    error = assert_error(r, 400)
    if field is None:
        assert error["code"] == "unknown_field"
    else:
        assert field in error.get("fields", {}), error
    assert not Webhook.objects.exists()
    assert AuditEvent.objects.exclude(action="permission.denied").count() == before


@pytest.mark.django_db
def test_bad_input_on_update_changes_nothing(api, users, team):
    webhook, _ = _create(team, users.admin, "https://hooks.example.com/charter")
    url = f"/api/v1/webhooks/{webhook.pk}/"
    admin = api.as_user(users.admin)
    for body in (
        {"url": "file:///etc/passwd"},
        {"events": ["nope"]},
        {"team": 99},
        {"secret": " padded secret value "},
    ):
        assert_error(admin.patch(url, body, format="json"), 400)
    fresh = Webhook.objects.get()
    assert (fresh.url, fresh.events, fresh.secret_encrypted) == (webhook.url, webhook.events, webhook.secret_encrypted)
    assert not AuditEvent.objects.filter(action="webhook.update").exists()


@pytest.mark.django_db
def test_the_delivery_log_is_paginated_newest_first(api, users, team):
    webhook, _ = _create(team, users.admin, "https://hooks.example.com/charter")
    for _ in range(3):
        _event(team, users)
    r = api.as_user(users.admin).get(f"/api/v1/webhooks/{webhook.pk}/deliveries/?page_size=2")
    assert r.status_code == 200
    page = r.json()
    ids = list(WebhookDelivery.objects.order_by("-id").values_list("id", flat=True))
    assert [d["id"] for d in page["results"]] == ids[:2] and page["next"]
    assert page["results"][0]["status"] == "pending" and page["results"][0]["attempts"] == 0
    assert [d["id"] for d in api.as_user(users.admin).get(page["next"]).json()["results"]] == ids[2:]


# --- delivery, one attempt at a time --------------------------------------------------------


@pytest.mark.django_db
def test_a_500_is_retried_and_the_second_attempt_delivers(users, team, settings):
    settings.WEBHOOK_RETRY_BASE_SECONDS = 30
    with Receiver([500, 200]) as receiver:
        webhook, receiver.secret = _create(team, users.admin, receiver.url, events=["review.requested"])
        delivery = _event(team, users)

        first = services.webhook_deliver(delivery_id=delivery.pk)
        assert (first.status, first.attempts, first.status_code, first.sent) == ("pending", 1, 500, True)
        assert first.retryable and first.retry_in == 30
        delivery.refresh_from_db()
        assert delivery.next_attempt_at is not None and delivery.last_error == "HTTP 500."

        second = services.webhook_deliver(delivery_id=delivery.pk)
        assert (second.status, second.attempts, second.status_code, second.retry_in) == ("delivered", 2, 200, None)
        # idempotent: a redelivered task sends nothing more
        third = services.webhook_deliver(delivery_id=delivery.pk)
        assert (third.status, third.attempts, third.sent) == ("delivered", 2, False)

    assert len(receiver.requests) == 2 and all(r["verified"] for r in receiver.requests)
    first_request, second_request = receiver.requests
    headers = first_request["headers"]
    assert headers["Content-Type"] == "application/json" and headers["User-Agent"] == "Charter-Webhooks/1"
    assert headers["X-Charter-Event"] == "review.requested"
    assert headers["X-Charter-Delivery"] == second_request["headers"]["X-Charter-Delivery"] == str(delivery.event_id)
    sent = json.loads(first_request["body"])
    assert sent["id"] == str(delivery.event_id) and sent["data"] == {"version": 3}
    assert sent["team"] == {"id": team.pk, "name": team.name}
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED and delivery.delivered_at and delivery.last_error == ""


@pytest.mark.django_db
@pytest.mark.parametrize("code", [400, 404, 410])
def test_a_4xx_is_not_retried(users, team, code):
    with Receiver([code, 200]) as receiver:
        _, receiver.secret = _create(team, users.admin, receiver.url)
        delivery = _event(team, users)
        outcome = services.webhook_deliver(delivery_id=delivery.pk)
        assert (outcome.status, outcome.attempts, outcome.retryable) == ("failed", 1, False)
        assert services.webhook_deliver(delivery_id=delivery.pk).sent is False
    assert len(receiver.requests) == 1


@pytest.mark.django_db
def test_429_is_retried_and_the_last_attempt_fails(users, team, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    settings.WEBHOOK_RETRY_BASE_SECONDS = 10
    with Receiver([429, 503, 502]) as receiver:
        _, receiver.secret = _create(team, users.admin, receiver.url)
        delivery = _event(team, users)
        outcomes = [services.webhook_deliver(delivery_id=delivery.pk) for _ in range(4)]
    assert [(o.status, o.attempts, o.retry_in) for o in outcomes] == [
        ("pending", 1, 10), ("pending", 2, 20), ("failed", 3, None), ("failed", 3, None),
    ]  # fmt: skip
    assert len(receiver.requests) == 3


@pytest.mark.django_db
def test_connection_errors_and_timeouts_are_retried_without_echoing_the_url(users, team, settings):
    settings.WEBHOOK_TIMEOUT_SECONDS = 0.3
    with Receiver([200], delay=1.0) as slow:
        _, slow.secret = _create(team, users.admin, slow.url)
        delivery = _event(team, users)
        timed_out = services.webhook_deliver(delivery_id=delivery.pk)
    assert timed_out.status == "pending" and timed_out.retryable and timed_out.error == "Timed out after 0.3 s."

    closed = Receiver([200])  # bound, never served, then closed: nothing listens on the port
    closed.server.server_close()
    webhook = Webhook.objects.get()
    webhook.url = closed.url
    webhook.save()
    refused = services.webhook_deliver(delivery_id=delivery.pk)
    assert refused.status == "pending" and refused.attempts == 2 and refused.error.startswith("Connection failed")
    assert "receiver-token" not in refused.error and "127.0.0.1" not in refused.error


@pytest.mark.django_db
def test_a_disabled_webhook_sends_nothing_but_a_ping(users, team):
    with Receiver([200]) as receiver:
        webhook, receiver.secret = _create(team, users.admin, receiver.url)
        delivery = _event(team, users)
        with audit_context(source="cli", actor=users.admin):
            services.webhook_update(actor=users.admin, webhook=webhook, is_active=False)
            ping = services.webhook_test(actor=users.admin, webhook=webhook)
        skipped = services.webhook_deliver(delivery_id=delivery.pk)
        pinged = services.webhook_deliver(delivery_id=ping.pk)
    assert (skipped.status, skipped.sent) == ("failed", False) and "disabled" in skipped.error
    assert (pinged.status, pinged.attempts) == ("delivered", 1)
    assert [r["headers"]["X-Charter-Event"] for r in receiver.requests] == ["ping"]
    assert receiver.requests[0]["verified"]


@pytest.mark.django_db
def test_a_delivery_deleted_with_its_webhook_is_a_no_op(users, team):
    webhook, _ = _create(team, users.admin, "https://hooks.example.com/charter")
    delivery = _event(team, users)
    with audit_context(source="cli", actor=users.admin):
        services.webhook_delete(actor=users.admin, webhook=webhook)
    assert services.webhook_deliver(delivery_id=delivery.pk).status == "missing"


# --- the same through a real Celery worker --------------------------------------------------


@pytest.fixture
def worker():
    with celery_worker(
        queues="default", WEBHOOK_RETRY_BASE_SECONDS="0.2", WEBHOOK_ALLOW_PRIVATE_ADDRESSES="true"
    ) as proc:
        yield proc


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_retries_a_500_and_delivers_on_the_second_attempt(users, team, worker):
    with Receiver([500, 200]) as receiver:
        _, receiver.secret = _create(team, users.admin, receiver.url, events=["review.requested"])
        with transaction.atomic(), audit_context(source="cli", request_id="approvals-1", actor=users.author):
            delivery = _event(team, users)

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            delivery.refresh_from_db()
            if delivery.status != DeliveryStatus.PENDING:
                break
            time.sleep(0.1)
        else:
            worker.terminate()
            pytest.fail("The worker never delivered:\n" + worker.stdout.read().decode(errors="replace")[-3000:])

    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 2, 200)
    assert len(receiver.requests) == 2
    assert all(r["verified"] for r in receiver.requests), "the receiver verifies both signatures with the secret"
    assert {r["headers"]["X-Charter-Delivery"] for r in receiver.requests} == {str(delivery.event_id)}


# --- the browser ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_webhooks_page_is_for_team_admins(users, team, other_team, client):
    url = reverse("team-webhooks", args=[team.pk])
    assert client.get(url)["Location"].startswith(reverse("login"))
    assert signed_in(users.outsider).get(url).status_code == 404
    assert signed_in(users.viewer).get(url).status_code == 403
    assert not AuditEvent.objects.filter(action="permission.denied").exists()  # reading is not a write
    viewer = signed_in(users.viewer)
    assert viewer.post(url, {"url": "https://x.example.com", "events": ["review.stale"]}).status_code == 403
    assert not Webhook.objects.exists()
    denied = AuditEvent.objects.get(action="permission.denied")
    assert denied.actor == users.viewer and denied.object_id == f"POST {url}"
    assert signed_in(users.admin).get(url).status_code == 200
    assert signed_in(users.superuser).get(reverse("team-webhooks", args=[other_team.pk])).status_code == 200
    assert signed_in(users.admin).get(reverse("team-webhooks", args=[99999])).status_code == 404


@pytest.mark.django_db
def test_adding_a_webhook_shows_the_secret_once_then_test_and_delete(users, team):
    client = signed_in(users.admin)
    url = reverse("team-webhooks", args=[team.pk])
    html = client.get(url).content.decode()
    assert "No webhooks yet" in html and "Nothing sent yet" in html

    r = client.post(url, {"url": "https://hooks.example.com/charter", "events": ["review.requested", "review.stale"]})
    assert r.status_code == 201
    webhook = Webhook.objects.get()
    secret = crypto.decrypt(webhook.secret_encrypted)
    assert secret in r.content.decode() and webhook.events == ["review.requested", "review.stale"]
    html = client.get(url).content.decode()
    assert secret not in html and "https://hooks.example.com/charter" in html

    r = client.post(reverse("team-webhook-test", args=[team.pk, webhook.pk]))
    assert r.status_code == 302
    delivery = WebhookDelivery.objects.get()
    assert delivery.event == "ping"
    html = client.get(url).content.decode()
    assert "delivery-pending" in html and ">ping<" in html

    r = client.post(reverse("team-webhook-delete", args=[team.pk, webhook.pk]))
    assert r.status_code == 302 and not Webhook.objects.exists()
    assert AuditEvent.objects.filter(action="webhook.delete", object_id=str(webhook.pk)).exists()


@pytest.mark.django_db
def test_the_page_refuses_bad_input_with_the_form(users, team):
    client = signed_in(users.admin)
    url = reverse("team-webhooks", args=[team.pk])
    r = client.post(url, {"url": "ftp://files.example.com", "events": ["review.requested"]})
    assert r.status_code == 400 and "http:// or https://" in r.content.decode()
    r = client.post(url, {"url": "https://hooks.example.com", "events": ["review.exploded"]})
    assert r.status_code == 400
    assert not Webhook.objects.exists()


@pytest.mark.django_db
def test_another_teams_webhook_cannot_be_reached_through_your_team(users, team, other_team):
    foreign, _ = _create(other_team, users.superuser, "https://hooks.example.com/marketing")
    mine, _ = _create(team, users.admin, "https://hooks.example.com/credit")
    client = signed_in(users.admin)
    # a webhook of another team, addressed under a team you administer
    assert client.post(reverse("team-webhook-delete", args=[team.pk, foreign.pk])).status_code == 404
    assert client.post(reverse("team-webhook-test", args=[other_team.pk, mine.pk])).status_code == 404
    assert signed_in(users.viewer).post(reverse("team-webhook-delete", args=[team.pk, mine.pk])).status_code == 403
    assert Webhook.objects.count() == 2 and not WebhookDelivery.objects.exists()


@pytest.mark.django_db
def test_the_delivery_log_shows_status_badges_and_attempts_in_a_fixed_number_of_queries(users, team):
    with Receiver([410]) as receiver:
        _, receiver.secret = _create(team, users.admin, receiver.url)
        delivery = _event(team, users)
        services.webhook_deliver(delivery_id=delivery.pk)
    client = signed_in(users.admin)
    url = reverse("team-webhooks", args=[team.pk])
    with CaptureQueriesContext(connection) as one:
        html = client.get(url).content.decode()
    assert 'class="badge delivery delivery-failed"' in html and "HTTP 410" in html
    assert '<td class="num">1</td>' in html

    _create(team, users.admin, "https://hooks.example.com/second")
    for _ in range(5):
        _event(team, users)
    with CaptureQueriesContext(connection) as many:
        html = client.get(url).content.decode()
    assert html.count("delivery-pending") == 10
    assert len(many.captured_queries) == len(one.captured_queries)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest",
        "http://[::1]/hook",
        "http://localhost/hook",
    ],
)
def test_internal_addresses_are_refused(api, users, team, settings, url):
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False
    before = Webhook.objects.count()
    r = api.as_user(users.admin).post("/api/v1/webhooks/", {"team": team.pk, "url": url}, format="json")
    assert_error(r, 400, "private_address")
    assert Webhook.objects.count() == before


def test_a_receiver_that_now_resolves_inside_is_not_sent_to(users, team, settings):
    with Receiver([200]) as receiver:
        _, receiver.secret = _create(team, users.admin, receiver.url, events=["review.requested"])
        with transaction.atomic(), audit_context(source="cli", request_id="ssrf-1", actor=users.author):
            delivery = _event(team, users)
        settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False  # as if the host had been re-pointed inside
        outcome = services.webhook_deliver(delivery_id=delivery.pk)
        assert receiver.requests == []
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED and "internal address" in delivery.last_error
    assert outcome.retry_in is None
