"""Serving: backends, environments, what is live where (deployments) and the actions that changed it.

A ``Deployment`` row is one version live in one environment for a span of time: ``until`` is null
while it is live. History is never rewritten: ending a deployment sets ``until``; a new one is a new
row. ``DeploymentAction`` is a request to change what is live (deploy, canary, promote, rollback,
retire), executed by a worker on the ``deploy`` queue under a lease; at most one per environment and
model is in flight, which the database enforces.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse

from governance.core.leases import Leased
from governance.registry.models import ModelVersion, RegisteredModel


class BackendKind(models.TextChoices):
    MLSERVER = "mlserver", "MLServer"
    KSERVE = "kserve", "KServe"


class ServingBackend(models.Model):
    """Where models are served. Credentials are stored encrypted and never shown, logged or audited."""

    AUDIT_FIELDS = ["id", "name", "kind", "url", "config"]

    name = models.SlugField(max_length=60, unique=True)
    kind = models.CharField(max_length=16, choices=BackendKind.choices)
    url = models.URLField(max_length=300, help_text="Inference URL (MLServer) or Kubernetes API server (KServe).")
    config = models.JSONField(
        default=dict, blank=True, help_text="Kind-specific settings: repository_dir, metrics_url, namespace..."
    )
    credentials_encrypted = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class Environment(models.Model):
    """A place a version can be live (staging, production...), bound to one backend, with the health
    policy a new deployment must meet."""

    AUDIT_FIELDS = [
        "id", "name", "description", "backend", "probe_payload", "max_error_rate", "max_p95_ms", "observation_seconds",
        "min_requests", "canary_percent", "canary_auto_promote",
    ]  # fmt: skip

    name = models.SlugField(max_length=60, unique=True)
    description = models.CharField(max_length=300, blank=True)
    backend = models.ForeignKey(ServingBackend, on_delete=models.PROTECT, related_name="environments")
    position = models.PositiveSmallIntegerField(default=0, help_text="Order on pages (staging before production).")
    # the health policy
    probe_payload = models.JSONField(
        null=True, blank=True, help_text="An Open Inference Protocol request body used when a version has none."
    )
    max_error_rate = models.FloatField(default=0.05)
    max_p95_ms = models.PositiveIntegerField(default=1000)
    observation_seconds = models.PositiveIntegerField(default=0, help_text="How long to watch a new deployment.")
    min_requests = models.PositiveIntegerField(default=20, help_text="Requests needed before the window judges.")
    canary_percent = models.PositiveSmallIntegerField(default=10)
    canary_auto_promote = models.BooleanField(
        default=False,
        help_text="Promote a canary by itself once it has met the health policy over the observation window "
        "(a canary that breaches it is always rolled back by itself).",
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["position", "name"]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("environment-detail", args=[self.name])


class VersionProbe(models.Model):
    """The probe request a version's deployments are checked with: an Open Inference Protocol body."""

    version = models.OneToOneField(ModelVersion, on_delete=models.CASCADE, related_name="probe")
    payload = models.JSONField()
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"Probe of {self.version}"

    @property
    def audit_team_id(self):
        return self.version.model.team_id


class DeploymentState(models.TextChoices):
    LIVE = "live", "Live"
    CANARY = "canary", "Canary"
    ENDED = "ended", "Ended"


class Deployment(models.Model):
    """One version live in one environment from ``since`` until ``until`` (null while live)."""

    AUDIT_FIELDS = ["id", "environment", "model", "version", "state", "traffic_percent", "since", "until"]

    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="deployments")
    model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="deployments")
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="deployments")
    state = models.CharField(max_length=12, choices=DeploymentState.choices, default=DeploymentState.LIVE)
    traffic_percent = models.PositiveSmallIntegerField(default=100)
    since = models.DateTimeField()
    until = models.DateTimeField(null=True, blank=True)
    # what made it live: the action, and the approval and policy revision the gate passed on
    action = models.ForeignKey("DeploymentAction", on_delete=models.PROTECT, related_name="deployments")
    approval_request = models.ForeignKey(
        "approvals.ApprovalRequest", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    policy_revision = models.ForeignKey(
        "approvals.PolicyRevision", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    ended_by_action = models.ForeignKey(
        "DeploymentAction", null=True, blank=True, on_delete=models.PROTECT, related_name="ended"
    )
    # What the backend's metrics said about it while it was current (beat's ``serving-watch``): figures
    # counted since the watch first read them, not history; the span and its links above never change.
    stats = models.JSONField(
        null=True, blank=True, help_text="{requests, errors, duration_seconds_sum, buckets, raw} while current."
    )
    stats_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-since", "-id"]
        constraints = [
            # one live and at most one canary release per model and environment
            models.UniqueConstraint(
                fields=["environment", "model", "state"],
                condition=Q(until__isnull=True),
                name="deployment_one_current_per_state",
            ),  # fmt: skip
            models.CheckConstraint(condition=Q(traffic_percent__lte=100), name="deployment_traffic_percent_max"),
        ]
        indexes = [
            models.Index(fields=["environment", "since"], name="deployment_env_since_idx"),
            models.Index(fields=["version", "environment"], name="deployment_version_env_idx"),
        ]

    def __str__(self):
        return f"{self.version} in {self.environment}"

    @property
    def current(self) -> bool:
        return self.until is None

    @property
    def audit_team_id(self):
        return self.model.team_id


class ActionKind(models.TextChoices):
    DEPLOY = "deploy", "Deploy"
    CANARY = "canary", "Canary"
    PROMOTE = "promote", "Promote"
    ROLLBACK = "rollback", "Roll back"
    RETIRE = "retire", "Retire"


class ActionStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    REFUSED = "refused", "Refused"
    ROLLED_BACK = "rolled_back", "Rolled back"


IN_FLIGHT = (ActionStatus.QUEUED, ActionStatus.RUNNING)
ENDED = (ActionStatus.SUCCEEDED, ActionStatus.FAILED, ActionStatus.REFUSED, ActionStatus.ROLLED_BACK)


class DeploymentAction(Leased):
    """A request to change what is live in an environment, and what the worker did about it."""

    AUDIT_FIELDS = [
        "id", "kind", "environment", "model", "version", "status", "error_code", "artifact_sha256", "automatic",
    ]  # fmt: skip

    kind = models.CharField(max_length=12, choices=ActionKind.choices)
    environment = models.ForeignKey(Environment, on_delete=models.PROTECT, related_name="actions")
    model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="deployment_actions")
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="deployment_actions")
    status = models.CharField(max_length=12, choices=ActionStatus.choices, default=ActionStatus.QUEUED)
    reason = models.CharField(max_length=500, blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    requested_at = models.DateTimeField(auto_now_add=True)
    idempotency_key = models.CharField(max_length=200, blank=True)
    automatic = models.BooleanField(
        default=False, help_text="Asked for by the health policy's watch, on behalf of the canary's requester."
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    steps = models.JSONField(default=list, blank=True, help_text="[{at, step, status, message}] in order.")
    gate = models.JSONField(null=True, blank=True, help_text="The gate verdict the worker saw when it acted.")
    artifact_sha256 = models.CharField(max_length=64, blank=True, help_text="The digest of the bytes handed over.")
    error_code = models.CharField(max_length=60, blank=True)
    error_message = models.TextField(blank=True)
    # for a rollback (asked for, or after a failed probe): the version that served again
    rolled_back_to = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+")

    class Meta:
        ordering = ["-requested_at", "-id"]
        constraints = [
            # at most one action in flight per environment and model: the database says so, not a check-then-act
            models.UniqueConstraint(
                fields=["environment", "model"],
                condition=Q(status__in=["queued", "running"]),
                name="deployment_action_one_in_flight",
            ),  # fmt: skip
            models.UniqueConstraint(
                fields=["requested_by", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="deployment_action_idempotency_key",
            ),  # fmt: skip
        ]
        indexes = [models.Index(fields=["version", "-requested_at"], name="deployment_action_version_idx")]

    def __str__(self):
        return f"{self.get_kind_display()} #{self.pk}"

    def get_absolute_url(self):
        return reverse("deployment-action-detail", args=[self.pk])

    @property
    def audit_team_id(self):
        return self.model.team_id

    @property
    def in_flight(self) -> bool:
        return self.status in IN_FLIGHT
