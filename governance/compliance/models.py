"""Regulatory mappings and what retention removed.

A ``Framework`` (the EU AI Act, NIST AI RMF, ISO/IEC 42001, SR 11-7) holds ``MappingItem``s: an
official reference number ("Art. 10", "MAP 2.3"), a short paraphrase in Charter's own words (never
the regulation's text) and the evidence that covers it, as requirement codes
(``governance.compliance.evidence``). An item's content is never edited in place: every change adds
a ``MappingRevision`` (kept, readable) and the item carries its newest one. The catalogue Charter
ships is loaded by a data migration, so a fresh database has it.

``EvaluationPurge`` records each payload the retention task deleted (an evaluation run's stored
result and figures, or its retained data file), with the digests that stay.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower
from django.urls import reverse


class Framework(models.Model):
    key = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=120)
    source = models.CharField(max_length=300, help_text="The official document the references point into.")
    description = models.TextField(blank=True)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position", "id"]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("compliance-framework", args=[self.pk])


class MappingItem(models.Model):
    """One obligation or control of a framework, with its current content (its newest revision's)."""

    AUDIT_FIELDS = ["id", "framework", "reference", "revision", "title", "summary", "evidence", "active"]

    framework = models.ForeignKey(Framework, on_delete=models.PROTECT, related_name="items")
    reference = models.CharField(max_length=60, help_text='The official reference, e.g. "Art. 10" or "MAP 2.3".')
    position = models.PositiveIntegerField(default=0)
    revision = models.PositiveIntegerField(default=1)
    title = models.CharField(max_length=160)
    summary = models.TextField(help_text="A short paraphrase in Charter's words, never the official text.")
    evidence = models.JSONField(default=list, help_text="Requirement codes (governance.compliance.evidence).")
    active = models.BooleanField(default=True, help_text="Listed in reports; a withdrawn item keeps its history.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["framework_id", "position", "id"]
        constraints = [models.UniqueConstraint(Lower("reference"), "framework", name="mapping_reference_unique")]

    def __str__(self):
        return f"{self.framework.key} {self.reference}"

    def get_absolute_url(self):
        return reverse("compliance-item", args=[self.pk])

    @property
    def audit_team_id(self):
        return None  # site-wide


class MappingRevision(models.Model):
    """One state of an item's content; never edited, never deleted."""

    AUDIT_FIELDS = ["id", "item", "number", "title", "summary", "evidence", "active", "comment"]

    item = models.ForeignKey(MappingItem, on_delete=models.PROTECT, related_name="revisions")
    number = models.PositiveIntegerField()
    title = models.CharField(max_length=160)
    summary = models.TextField()
    evidence = models.JSONField(default=list)
    active = models.BooleanField(default=True)
    comment = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["item_id", "-number"]
        constraints = [models.UniqueConstraint(fields=["item", "number"], name="mapping_revision_unique")]

    def __str__(self):
        return f"{self.item} r{self.number}"


class PurgeKind(models.TextChoices):
    RESULT = "result", "Stored result and figures"
    DATA = "data", "Retained data file"


class EvaluationPurge(models.Model):
    run = models.ForeignKey("evaluations.EvaluationRun", on_delete=models.PROTECT, related_name="+")
    what = models.CharField(max_length=10, choices=PurgeKind.choices)
    purged_at = models.DateTimeField()
    retention_days = models.PositiveIntegerField()
    result_digest = models.CharField(max_length=64, blank=True, help_text="Kept: the digest reviews bound to.")
    data_sha256 = models.CharField(max_length=64, blank=True, help_text="Kept: the digest of the deleted file.")

    class Meta:
        ordering = ["-id"]
        constraints = [models.UniqueConstraint(fields=["run", "what"], name="one_purge_per_run_and_kind")]

    def __str__(self):
        return f"{self.get_what_display()} of run #{self.run_id} purged"
