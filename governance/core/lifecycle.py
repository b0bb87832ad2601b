"""The words every app uses for a model's governance: the stages of a version's life and the risk
tiers that choose how strictly it is reviewed.

They live in core, not in the registry, because core's UI (the stage and risk badges) names them
and core imports no app (the import-linter contracts in pyproject.toml). The registry's models
store them and own the transitions between stages (``governance.registry.models.TRANSITIONS``);
``governance.registry.models`` re-exports both, so either import works.
"""

from __future__ import annotations

from django.db import models


class RiskTier(models.TextChoices):
    MINIMAL = "minimal", "Minimal"
    LIMITED = "limited", "Limited"
    HIGH = "high", "High"
    UNACCEPTABLE = "unacceptable", "Unacceptable"


class Stage(models.TextChoices):
    DRAFT = "draft", "Draft"
    IN_REVIEW = "in_review", "In review"
    CHANGES_REQUESTED = "changes_requested", "Changes requested"
    REJECTED = "rejected", "Rejected"
    APPROVED = "approved", "Approved"
    DEPLOYED = "deployed", "Deployed"
    DEPRECATED = "deprecated", "Deprecated"
    RETIRED = "retired", "Retired"
