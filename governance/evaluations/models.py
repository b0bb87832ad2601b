"""Evaluation runs: the evidence Charter computes itself, on the registered artifact.

A run is one (version, kind, parameters, data) evaluation. The worker verifies the artifact's
sha256 before loading it, records the library versions and host it ran with, and keeps only
aggregates (never data rows) in ``result``; the data file is deleted when the run ends unless
the requester asked to retain it. ``result_digest`` is what the approvals' evidence manifest
binds to.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse

from governance.core.leases import Leased
from governance.registry.models import ModelVersion


class EvaluationKind(models.TextChoices):
    EXPLAINABILITY = "explainability", "Explainability (SHAP, LIME)"
    FAIRNESS = "fairness", "Fairness"
    PERFORMANCE = "performance", "Performance"
    ROBUSTNESS = "robustness", "Robustness"
    DATA_QUALITY = "data_quality", "Data quality"
    BENCHMARK = "benchmark", "Benchmark (latency, throughput, memory on a host)"


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING)
FINISHED = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


class EvaluationRun(Leased, models.Model):
    """A run is leased by the worker executing it (``governance.core.leases``): one execution at a time,
    and a run whose worker died is re-queued or failed with ``worker_lost`` by the sweep."""

    AUDIT_FIELDS = [
        "id", "version", "kind", "parameters", "parameters_digest", "status", "data_sha256", "data_rows",
        "target_column", "sensitive_features", "retain_data", "artifact_sha256", "result_digest", "error_code",
    ]  # fmt: skip

    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="evaluation_runs")
    kind = models.CharField(max_length=20, choices=EvaluationKind.choices)
    parameters = models.JSONField(default=dict, blank=True)
    parameters_digest = models.CharField(max_length=64, help_text="sha256 of kind, parameters, columns and data.")
    status = models.CharField(max_length=12, choices=RunStatus.choices, default=RunStatus.QUEUED)
    progress = models.FloatField(default=0.0, help_text="Percent done, reported by the worker.")
    progress_message = models.CharField(max_length=200, blank=True)

    # the data it ran on (the file itself is deleted when the run ends unless retained)
    data_path = models.CharField(max_length=255, blank=True)
    data_name = models.CharField(max_length=255, blank=True)
    data_format = models.CharField(max_length=10, default="csv")
    data_sha256 = models.CharField(max_length=64, blank=True)
    data_rows = models.PositiveIntegerField(default=0)
    data_columns = models.JSONField(default=list, blank=True)
    target_column = models.CharField(max_length=128, blank=True)
    sensitive_features = models.JSONField(default=list, blank=True)
    retain_data = models.BooleanField(default=False)
    data_deleted_at = models.DateTimeField(null=True, blank=True)

    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    requested_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    # what the worker found and produced
    artifact_sha256 = models.CharField(max_length=64, blank=True, help_text="The digest the worker verified.")
    environment = models.JSONField(default=dict, blank=True, help_text="Library versions and host.")
    result = models.JSONField(default=dict, blank=True, help_text="Aggregates only, never data rows.")
    figures = models.JSONField(default=dict, blank=True, help_text="Plotly figure specs by name.")
    result_digest = models.CharField(max_length=64, blank=True)
    error_code = models.CharField(max_length=40, blank=True)
    error_message = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["version", "kind", "-id"], name="evaluation_version_kind_idx"),
            models.Index(fields=["status", "-id"], name="evaluation_status_idx"),
        ]
        constraints = [
            # one live or successful run per identical evaluation: asking again returns it
            models.UniqueConstraint(
                fields=["version", "parameters_digest"],
                condition=models.Q(status__in=["queued", "running", "succeeded"]),
                name="one_current_run_per_evaluation",
            )
        ]

    def __str__(self):
        return f"{self.get_kind_display()} #{self.pk} of {self.version}"

    def get_absolute_url(self):
        return reverse("evaluation-detail", args=[self.pk])

    @property
    def audit_team_id(self):
        return self.version.model.team_id

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE
