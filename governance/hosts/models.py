"""Compute hosts: machines (GPU or not) whose Celery worker listens on a queue of their own, ``host.<name>``.

A host is registered, and kept alive with heartbeats, by the host agent on the machine
(``manage.py host_agent``) with an API token of the ``host`` scope; only the token that registered a
host may send its heartbeats or register it again. Hosts are site-wide, shared hardware: every signed-in
user sees them. Whether a host is online, stale or offline is not stored: it follows from the last
heartbeat and the ``HOST_STALE_SECONDS`` / ``HOST_OFFLINE_SECONDS`` settings (``selectors.status_of``).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse

QUEUE_PREFIX = "host."


def queue_for(name: str) -> str:
    """The Celery queue a host's worker listens on."""
    return f"{QUEUE_PREFIX}{name}"


class HostStatus(models.TextChoices):
    ONLINE = "online", "Online"
    STALE = "stale", "Stale"
    OFFLINE = "offline", "Offline"


class Host(models.Model):
    # what a registration may change, and the registering token; not the heartbeat's figures
    AUDIT_FIELDS = ["id", "name", "labels", "inventory", "agent_version", "registered_by", "token"]

    name = models.SlugField(max_length=60, unique=True)
    labels = models.JSONField(default=dict, blank=True, help_text='e.g. {"gpu": "h100", "env": "prod"}')
    inventory = models.JSONField(default=dict, blank=True, help_text="CPU, memory and GPUs, as the agent read them.")
    agent_version = models.CharField(max_length=40, blank=True)
    registered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+",
        help_text="Who registered the host last: the host token's owner, or the person signed in.",
    )  # fmt: skip
    token = models.ForeignKey(
        "accounts.ApiToken", null=True, blank=True, on_delete=models.SET_NULL, related_name="hosts",
        help_text="The host-scoped API token that registered the host: the only one that may send its heartbeats.",
    )  # fmt: skip
    registered_at = models.DateTimeField(help_text="First registration.")
    updated_at = models.DateTimeField(help_text="Last registration (the agent registers again when it starts).")
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    last_gpu_stats = models.JSONField(
        default=list, blank=True, help_text="Per GPU, at the last heartbeat: index, memory used, utilisation."
    )

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("host-detail", args=[self.name])

    @property
    def queue(self) -> str:
        return queue_for(self.name)

    @property
    def audit_team_id(self):
        return None  # site-wide
