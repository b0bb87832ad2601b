"""In-app notifications, team webhooks and the log of their deliveries."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone

from governance.accounts.models import Team


class EventKind(models.TextChoices):
    REVIEW_REQUESTED = "review.requested", "Review requested"
    REVIEW_DECIDED = "review.decided", "Review decided"
    REVIEW_STALE = "review.stale", "Review stale"
    APPROVAL_EXPIRING = "approval.expiring", "Approval expiring"
    ARTIFACT_INTEGRITY_FAILED = "artifact.integrity_failed", "Artifact integrity check failed"
    SERVING_DRIFT = "serving.drift", "A serving backend differs from the record"
    SERVING_CANARY = "serving.canary", "A canary judged by its health policy"


# A test delivery from "send test": every webhook receives it, whatever it subscribed to.
PING = "ping"
DELIVERY_EVENTS = [*EventKind.choices, (PING, "Ping")]


class Notification(models.Model):
    """One message to one person, shown in the top bar until read."""

    # indexed by the composite index below, which starts with it
    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications", db_index=False
    )
    event = models.CharField(max_length=40, choices=EventKind.choices)
    title = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    url = models.CharField(max_length=500, blank=True)
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # serves the unread count of the top bar and the newest-first lists
        indexes = [models.Index(fields=["recipient", "read_at", "-id"], name="notif_recipient_read_id")]

    def __str__(self):
        return f"{self.title} → {self.recipient}"

    @property
    def is_read(self) -> bool:
        return self.read_at is not None


class Webhook(models.Model):
    """A team's HTTP endpoint for events. The signing secret is stored encrypted (see ``crypto``)."""

    # the secret is never part of an audit snapshot
    AUDIT_FIELDS = ["id", "team", "url", "events", "is_active", "created_by"]

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="webhooks")
    url = models.URLField(max_length=500)
    secret_encrypted = models.TextField()
    events = models.JSONField(default=list)
    is_active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["team_id", "id"]

    def __str__(self):
        return f"{self.url} ({self.team_id})"

    @property
    def audit_team_id(self):
        return self.team_id

    def subscribes_to(self, event: str) -> bool:
        return event == PING or event in self.events


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"


class WebhookDelivery(models.Model):
    """One event sent (or being sent) to one webhook. ``event_id`` is the receiver's idempotency key:
    every attempt of a delivery carries the same one."""

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries", db_index=False)
    event = models.CharField(max_length=40, choices=DELIVERY_EVENTS)
    event_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    payload = models.JSONField(encoder=DjangoJSONEncoder)
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["webhook", "-id"], name="delivery_webhook_id")]

    def __str__(self):
        return f"{self.event} → webhook {self.webhook_id}: {self.status}"
