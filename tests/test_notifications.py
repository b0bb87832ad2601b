"""notify(): in-app notifications, emails and webhook deliveries; the inbox in the API and the browser."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from governance.audit.models import AuditEvent
from governance.core.context import audit_context
from governance.core.errors import ValidationFailed
from governance.notifications import services
from governance.notifications.models import DeliveryStatus, Notification, WebhookDelivery
from tests.conftest import PASSWORD, assert_error, signed_in

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _receivers_on_loopback(settings):
    """The test receivers listen on 127.0.0.1, which production refuses (see test_internal_addresses_are_refused)."""
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = True


User = get_user_model()


def _notify(team, recipients, *, event="review.requested", **kw):
    args = dict(
        event=event, team_id=team.pk, title="Review requested: credit-scoring v3",
        body="Alice asks you to review credit-scoring v3.", url="/versions/3/", recipients=recipients,
        payload={"version": 3, "model": "credit-scoring"},
    )  # fmt: skip
    services.notify(**{**args, **kw})


def _webhook(team, actor, **kw):
    with audit_context(source="cli", actor=actor):
        webhook, _secret = services.webhook_create(actor=actor, team=team, url="https://hooks.example.com/x", **kw)
    return webhook


# --- notify ---------------------------------------------------------------------------------


def test_notify_creates_one_notification_and_one_email_per_distinct_active_recipient(
    users, team, mailoutbox, django_capture_on_commit_callbacks
):
    gone = User.objects.create_user("gone", "gone@example.com", PASSWORD, is_active=False)
    no_mail = User.objects.create_user("nomail", "", PASSWORD)
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            _notify(team, [users.reviewer, users.approver, users.reviewer, gone, no_mail])
            assert mailoutbox == []  # emails leave on commit, not before

    rows = Notification.objects.order_by("recipient__username")
    assert [n.recipient.username for n in rows] == ["approver", "nomail", "reviewer"]
    first = rows[0]
    assert (first.event, first.team_id, first.url, first.read_at) == ("review.requested", team.pk, "/versions/3/", None)
    assert sorted(m.to[0] for m in mailoutbox) == ["approver@example.com", "reviewer@example.com"]
    assert all(len(m.to) == 1 for m in mailoutbox)
    assert mailoutbox[0].subject == "[Charter] Review requested: credit-scoring v3"
    assert "Alice asks you to review" in mailoutbox[0].body and "/versions/3/" in mailoutbox[0].body


def test_nothing_is_sent_when_the_callers_transaction_rolls_back(
    users, team, mailoutbox, django_capture_on_commit_callbacks
):
    _webhook(team, users.admin)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            _notify(team, [users.reviewer])
            raise RuntimeError("the approval failed")
    assert callbacks == [] and mailoutbox == []
    assert not Notification.objects.exists() and not WebhookDelivery.objects.exists()


def test_notify_creates_a_delivery_per_active_subscribed_webhook_of_the_team(
    users, team, other_team, django_capture_on_commit_callbacks
):
    everything = _webhook(team, users.admin)
    decided_only = _webhook(team, users.admin, events=["review.decided"])
    disabled = _webhook(team, users.admin, is_active=False)
    foreign = _webhook(other_team, users.superuser)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        with transaction.atomic():
            _notify(team, [User.objects.create_user("quiet", "", PASSWORD)])

    delivery = WebhookDelivery.objects.get()
    assert delivery.webhook == everything
    assert {decided_only.pk, disabled.pk, foreign.pk}.isdisjoint({delivery.webhook_id})
    assert (delivery.status, delivery.attempts, delivery.event) == (DeliveryStatus.PENDING, 0, "review.requested")
    assert delivery.payload == {
        "id": str(delivery.event_id),
        "event": "review.requested",
        "created_at": delivery.payload["created_at"],
        "team": {"id": team.pk, "name": "Credit Risk"},
        "data": {"version": 3, "model": "credit-scoring"},
    }
    assert delivery.payload["created_at"].startswith(str(delivery.created_at.date()))
    assert len(callbacks) == 1  # the delivery task, enqueued on commit (the recipient has no email)


def test_notify_refuses_an_unknown_event_kind(users, team):
    with pytest.raises(ValidationFailed) as caught:
        _notify(team, [users.reviewer], event="review.exploded")
    assert caught.value.code == "invalid_event"
    assert not Notification.objects.exists()


def test_notify_is_not_audited(users, team):
    before = AuditEvent.objects.count()
    _notify(team, [users.reviewer, users.approver])
    assert AuditEvent.objects.count() == before


# --- the inbox API --------------------------------------------------------------------------


@pytest.fixture
def inbox(users, team):
    _notify(team, [users.reviewer, users.approver], title="first")
    _notify(team, [users.reviewer], event="review.decided", title="second")
    _notify(team, [users.approver], title="someone else's")
    return {n.title: n for n in Notification.objects.filter(recipient=users.reviewer)}


def test_the_api_lists_only_your_own_notifications_newest_first_and_filters_unread(api, users, inbox):
    client = api.as_user(users.reviewer)
    r = client.get("/api/v1/notifications/")
    assert r.status_code == 200
    assert [n["title"] for n in r.json()["results"]] == ["second", "first"]
    assert r.json()["results"][0]["event"] == "review.decided"

    assert client.post(f"/api/v1/notifications/{inbox['first'].pk}/read/").json()["is_read"] is True
    unread = client.get("/api/v1/notifications/?unread=true").json()["results"]
    assert [n["title"] for n in unread] == ["second"]
    read = client.get("/api/v1/notifications/?unread=false").json()["results"]
    assert [n["title"] for n in read] == ["first"]


def test_marking_read_is_idempotent_and_someone_elses_notification_is_not_found(api, users, inbox):
    client = api.as_user(users.reviewer)
    url = f"/api/v1/notifications/{inbox['first'].pk}/read/"
    first_read = client.post(url).json()["read_at"]
    assert client.post(url).json()["read_at"] == first_read

    theirs = Notification.objects.get(recipient=users.approver, title="someone else's")
    assert_error(client.post(f"/api/v1/notifications/{theirs.pk}/read/"), 404)
    assert_error(client.get(f"/api/v1/notifications/{theirs.pk}/"), 404)
    theirs.refresh_from_db()
    assert theirs.read_at is None


def test_read_all_marks_only_your_own(api, users, inbox):
    r = api.as_user(users.reviewer).post("/api/v1/notifications/read-all/")
    assert r.status_code == 200 and r.json() == {"marked": 2}
    assert not Notification.objects.filter(recipient=users.reviewer, read_at__isnull=True).exists()
    assert Notification.objects.filter(recipient=users.approver, read_at__isnull=True).count() == 2
    assert api.as_user(users.reviewer).post("/api/v1/notifications/read-all/").json() == {"marked": 0}


def test_anonymous_gets_401_or_403(api, inbox):
    r = api.as_user(None).get("/api/v1/notifications/")
    assert r.status_code in (401, 403)


def test_read_all_cannot_be_pointed_at_someone_else(api, users, inbox):
    r = api.as_user(users.reviewer).post("/api/v1/notifications/read-all/", {"recipient": users.approver.pk})
    assert r.status_code == 200
    assert Notification.objects.filter(recipient=users.approver, read_at__isnull=True).count() == 2


# --- the browser ----------------------------------------------------------------------------


def test_the_bell_shows_the_unread_count_with_one_query(users, team, inbox):
    client = signed_in(users.reviewer)
    with CaptureQueriesContext(connection) as queries:
        html = client.get(reverse("teams")).content.decode()
    assert sum("notifications_notification" in q["sql"] for q in queries.captured_queries) == 1
    assert 'class="bell has-unread"' in html and '<span class="bell-count">2</span>' in html

    Notification.objects.filter(recipient=users.reviewer).update(read_at="2025-01-01T00:00:00Z")
    html = client.get(reverse("teams")).content.decode()
    assert "bell-count" not in html and reverse("notifications") in html


def test_the_bell_caps_its_count(users, team):
    Notification.objects.bulk_create(
        Notification(recipient=users.viewer, event="review.requested", title=f"n{i}", team=team) for i in range(120)
    )
    html = signed_in(users.viewer).get(reverse("home")).content.decode()
    assert '<span class="bell-count">99+</span>' in html


def test_the_list_shows_unread_first_and_marks_read(users, inbox):
    client = signed_in(users.reviewer)
    client.post(reverse("notification-read", args=[inbox["second"].pk]))
    html = client.get(reverse("notifications")).content.decode()
    assert html.index("first") < html.index("second")  # unread first, though older
    assert "Mark all read" in html

    r = client.post(reverse("notification-read", args=[inbox["first"].pk]), {"open": "1"})
    assert r.status_code == 302 and r["Location"] == "/versions/3/"
    html = client.get(reverse("notifications")).content.decode()
    assert "Mark all read" not in html and "all read" in html


def test_opening_a_notification_never_redirects_off_site(users, team):
    _notify(team, [users.reviewer], url="https://evil.example.com/")
    n = Notification.objects.get()
    r = signed_in(users.reviewer).post(reverse("notification-read", args=[n.pk]), {"open": "1"})
    assert r.status_code == 302 and r["Location"] == reverse("notifications")


def test_mark_all_read_in_the_browser(users, inbox):
    client = signed_in(users.reviewer)
    r = client.post(reverse("notifications-read-all"))
    assert r.status_code == 302
    assert not Notification.objects.filter(recipient=users.reviewer, read_at__isnull=True).exists()
    assert Notification.objects.filter(recipient=users.approver, read_at__isnull=True).exists()


def test_someone_elses_notification_is_not_found_in_the_browser(users, inbox):
    theirs = Notification.objects.filter(recipient=users.approver).first()
    assert signed_in(users.reviewer).post(reverse("notification-read", args=[theirs.pk])).status_code == 404


def test_empty_state_and_pagination(users, team):
    client = signed_in(users.viewer)
    html = client.get(reverse("notifications")).content.decode()
    assert "No notifications" in html

    Notification.objects.bulk_create(
        Notification(recipient=users.viewer, event="review.stale", title=f"stale {i:02d}", team=team) for i in range(30)
    )
    with CaptureQueriesContext(connection) as queries:
        page1 = client.get(reverse("notifications")).content.decode()
    assert "stale 29" in page1 and "stale 04" not in page1 and "1–25 of 30" in page1
    page2 = client.get(reverse("notifications") + "?page=2").content.decode()
    assert "stale 04" in page2 and "stale 29" not in page2
    # session, user, count, page, unread count (and the nav's teams): not one per row
    assert len(queries.captured_queries) <= 8, [q["sql"] for q in queries.captured_queries]


def test_anonymous_is_sent_to_sign_in(client):
    for url in (reverse("notifications"),):
        r = client.get(url)
        assert r.status_code == 302 and r["Location"].startswith(reverse("login"))
