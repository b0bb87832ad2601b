"""Policies (versioned), approval requests bound to an artifact and evidence digest, decisions, checklist ticks.

A request freezes the version's artifact digest and the digest of its evidence manifest.
Decisions record the digests they were made against; an approval counts only while those
still equal the version's current ones, so new evidence or a changed artifact dismisses
earlier approvals whatever path the change took.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower
from django.urls import reverse

from governance.accounts.models import Team
from governance.registry.models import ModelVersion, RegisteredModel, RiskTier


class Environment(models.TextChoices):
    STAGING = "staging", "Staging"
    PRODUCTION = "production", "Production"


class Policy(models.Model):
    """A named set of rules. Site-wide policies (no team) are the defaults of a risk tier;
    a team's own policies are assigned to its models as overrides."""

    AUDIT_FIELDS = ["id", "name", "description", "team", "risk_tier", "revision"]

    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.PROTECT, related_name="policies")
    risk_tier = models.CharField(
        max_length=16, choices=RiskTier.choices, blank=True, help_text="Site-wide policies only: the tier it governs."
    )
    revision = models.PositiveIntegerField(default=1)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["team_id", "name"]
        verbose_name_plural = "policies"
        constraints = [
            models.UniqueConstraint(Lower("name"), "team", name="policy_name_unique_per_team"),
            models.UniqueConstraint(
                Lower("name"), condition=models.Q(team__isnull=True), name="policy_name_unique_site_wide"
            ),
            models.UniqueConstraint(
                fields=["risk_tier"],
                condition=models.Q(team__isnull=True) & ~models.Q(risk_tier=""),
                name="one_default_policy_per_tier",
            ),
        ]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("policy-detail", args=[self.pk])

    @property
    def audit_team_id(self):
        return self.team_id


class RevisionState(models.TextChoices):
    ADOPTED = "adopted", "Adopted"
    PROPOSED = "proposed", "Proposed"
    REJECTED = "rejected", "Rejected"


class Proposable:
    """What a policy revision and a policy assignment share: a ``state`` (adopted at once, or
    proposed until a second admin decides) and ``loosens``, the reasons it is looser."""

    @property
    def is_loosening(self) -> bool:
        return bool(self.loosens)

    @property
    def is_proposed(self) -> bool:
        return self.state == RevisionState.PROPOSED


class PolicyRevision(Proposable, models.Model):
    """One immutable state of a policy's rules; requests bind to the revision they were opened under.

    A revision that loosens the rules is stored *proposed* and takes effect (the policy's
    ``revision`` moves to it) only once a second admin approves it; ``loosens`` keeps the reasons,
    and its proposer (``created_by``) neither requests nor decides a review judged under it.
    """

    AUDIT_FIELDS = ["id", "policy", "number", "rules", "comment", "state", "loosens", "decided_by", "decision_comment"]

    policy = models.ForeignKey(Policy, on_delete=models.PROTECT, related_name="revisions")
    number = models.PositiveIntegerField()
    rules = models.JSONField()
    comment = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    state = models.CharField(max_length=16, choices=RevisionState.choices, default=RevisionState.ADOPTED)
    loosens = models.JSONField(default=list, blank=True, help_text="Why these rules are looser than the ones before.")
    based_on = models.PositiveIntegerField(null=True, blank=True, help_text="The revision a proposal was made against.")
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The second admin who approved or rejected a proposed loosening.",
    )  # fmt: skip
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_comment = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["policy_id", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["policy", "number"], name="policy_revision_unique"),
            models.UniqueConstraint(
                fields=["policy"], condition=models.Q(state="proposed"), name="one_proposed_revision_per_policy"
            ),
        ]

    def __str__(self):
        return f"{self.policy.name} r{self.number}"

    @property
    def audit_team_id(self):
        return self.policy.team_id


class ModelPolicy(models.Model):
    """A per-model override of the risk tier's default policy."""

    model = models.OneToOneField(RegisteredModel, on_delete=models.CASCADE, related_name="policy_override")
    policy = models.ForeignKey(Policy, on_delete=models.PROTECT, related_name="assignments")
    assigned_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    assigned_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"{self.model} → {self.policy}"


class PolicyAssignment(Proposable, models.Model):
    """One change of the policy that governs a model: a policy of its own, or (``policy`` empty) a
    return to its risk tier's default.

    A change whose rules are looser than the ones governing the model (``rules.loosens`` between
    ``based_on`` and ``target``) is stored *proposed* and takes effect (``ModelPolicy``) only once a
    second admin of the team (or a site administrator) approves it; any other change takes effect
    at once and is stored adopted. The latest adopted change is the one governing the model: when
    it loosened the rules, its proposer neither requests nor decides a review judged under it.
    """

    AUDIT_FIELDS = [
        "id", "model", "policy", "target", "based_on", "state", "loosens", "proposed_by", "decided_by",
        "decision_comment",
    ]  # fmt: skip

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="policy_assignments")
    policy = models.ForeignKey(
        Policy, null=True, blank=True, on_delete=models.PROTECT, related_name="assignment_changes",
        help_text="The policy given to the model; empty: back to the default of its risk tier.",
    )  # fmt: skip
    target = models.ForeignKey(
        PolicyRevision, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="The revision that governs the model once the change takes effect (none: no policy would).",
    )  # fmt: skip
    based_on = models.ForeignKey(
        PolicyRevision, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="The revision that governed the model when the change was made (none: no policy did).",
    )  # fmt: skip
    state = models.CharField(max_length=16, choices=RevisionState.choices, default=RevisionState.ADOPTED)
    loosens = models.JSONField(default=list, blank=True, help_text="Why the new rules are looser than the ones before.")
    proposed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    proposed_at = models.DateTimeField(auto_now_add=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="Who made it take effect (the proposer when it took effect at once) or rejected it.",
    )  # fmt: skip
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_comment = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["model"], condition=models.Q(state="proposed"), name="one_proposed_assignment_per_model"
            ),
        ]
        indexes = [models.Index(fields=["model", "state", "-decided_at"], name="assignment_model_state_idx")]

    def __str__(self):
        return f"{self.model} → {self.policy or 'tier default'} ({self.state})"

    @property
    def audit_team_id(self):
        return self.model.team_id

    def describe(self) -> str:
        """What the change does, in words: "the policy 'X'" or "the default of its risk tier"."""
        return f"the policy '{self.policy.name}'" if self.policy_id else "the default policy of its risk tier"


class RequestStatus(models.TextChoices):
    OPEN = "open", "Open"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    CHANGES_REQUESTED = "changes_requested", "Changes requested"
    WITHDRAWN = "withdrawn", "Withdrawn"


class ApprovalRequest(models.Model):
    AUDIT_FIELDS = [
        "id", "version", "policy_revision", "environments", "status", "artifact_sha256", "evidence_digest",
        "freeze", "comment",
    ]  # fmt: skip

    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="approval_requests")
    policy_revision = models.ForeignKey(PolicyRevision, on_delete=models.PROTECT, related_name="requests")
    environments = models.JSONField(help_text="Environments the approval is asked for.")
    status = models.CharField(max_length=20, choices=RequestStatus.choices, default=RequestStatus.OPEN)
    comment = models.TextField(blank=True)

    # the freeze: what the reviewers are asked to approve
    artifact_sha256 = models.CharField(max_length=64)
    evidence_digest = models.CharField(max_length=64)
    evidence = models.JSONField(help_text="The evidence manifest the digest covers.")
    freeze = models.PositiveIntegerField(default=1, help_text="Bumped each time new evidence re-freezes the request.")
    frozen_at = models.DateTimeField()
    stale_reason = models.CharField(max_length=300, blank=True)

    # who from outside the owning team may see and decide (from the policy revision, for the queue)
    wants_other_team_reviewer = models.BooleanField(default=False)
    wants_other_team_approver = models.BooleanField(default=False)

    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    assignment = models.ForeignKey(
        PolicyAssignment, null=True, blank=True, on_delete=models.PROTECT, related_name="requests",
        help_text="The change of the model's policy that chose this request's policy, when one is recorded.",
    )  # fmt: skip
    requested_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    approved_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["version"], condition=models.Q(status="open"), name="one_open_request_per_version"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "-id"], name="request_status_idx"),
            models.Index(fields=["version", "-id"], name="request_version_idx"),
        ]

    def __str__(self):
        return f"Review #{self.pk} of {self.version}"

    def get_absolute_url(self):
        return reverse("review-detail", args=[self.pk])

    @property
    def audit_team_id(self):
        return self.version.model.team_id

    @property
    def is_open(self) -> bool:
        return self.status == RequestStatus.OPEN


class DecisionKind(models.TextChoices):
    APPROVE = "approve", "Approve"
    REQUEST_CHANGES = "request_changes", "Request changes"
    REJECT = "reject", "Reject"


class Decision(models.Model):
    """Final once made: never edited, never deleted."""

    AUDIT_FIELDS = [
        "id", "request", "decision", "comment", "team_roles", "other_team_roles", "artifact_sha256",
        "evidence_digest", "freeze", "expires_at", "gate",
    ]  # fmt: skip

    request = models.ForeignKey(ApprovalRequest, on_delete=models.PROTECT, related_name="decisions")
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    decision = models.CharField(max_length=20, choices=DecisionKind.choices)
    comment = models.TextField(blank=True)
    team_roles = models.JSONField(help_text="Decision roles the person held in the owning team when deciding.")
    other_team_roles = models.JSONField(help_text="Decision roles the person held in other teams when deciding.")
    artifact_sha256 = models.CharField(max_length=64)
    evidence_digest = models.CharField(max_length=64)
    freeze = models.PositiveIntegerField()
    decided_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True)
    expiry_notified_at = models.DateTimeField(null=True, blank=True)
    gate = models.JSONField(
        default=dict,
        blank=True,
        help_text="The gate per requested environment as the person saw it when deciding (empty for decisions "
        "made before Charter kept it); part of the decision's audit record.",
    )

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["request", "decided_by", "freeze"], name="one_decision_per_person_per_freeze"
            )
        ]

    def __str__(self):
        return f"{self.get_decision_display()} by {self.decided_by} on {self.request}"

    @property
    def audit_team_id(self):
        return self.request.version.model.team_id


class ChecklistTick(models.Model):
    """Someone attests a manual checklist item of the policy for a version (through an API token
    only where the item names that automation; the token is then recorded)."""

    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="checklist_ticks")
    item = models.CharField(max_length=64)
    note = models.CharField(max_length=500, blank=True)
    ticked_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    ticked_at = models.DateTimeField(auto_now=True)
    token = models.ForeignKey(
        "accounts.ApiToken", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The API token the tick came through (an automation the policy allows); empty for a person.",
    )  # fmt: skip
    token_name = models.CharField(max_length=100, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["version", "item"], name="one_tick_per_item")]

    def __str__(self):
        return f"{self.item} ticked on {self.version}"

    @property
    def audit_team_id(self):
        return self.version.model.team_id
