from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.db import models
from django.urls import reverse

from governance.accounts.capabilities import transition_roles
from governance.accounts.models import Role, Team
from governance.core.lifecycle import RiskTier, Stage  # shared words (core's UI names them too); stored here


@dataclass(frozen=True)
class Transition:
    roles: frozenset[str]
    verb: str
    # Steps into and out of review belong to the approval workflow (approval requests and
    # decisions); nobody takes them by hand, whatever their role.
    by_review: bool = False
    # Steps into and out of "deployed" follow what is live (the serving app's deployments): a version
    # is deployed while it is live in some environment, and leaves it when it is live nowhere.
    by_serving: bool = False


def _t(verb: str, *roles: Role, by_review: bool = False) -> Transition:
    return Transition(roles=transition_roles(*roles), verb=verb, by_review=by_review)


def _review(verb: str) -> Transition:
    return Transition(roles=frozenset(), verb=verb, by_review=True)


def _serving(verb: str) -> Transition:
    return Transition(roles=frozenset(), verb=verb, by_serving=True)


# The lifecycle: from-stage -> to-stage -> who may take that step. Services enforce it;
# anything not listed is refused with a 409 that names the allowed next stages.
TRANSITIONS: dict[str, dict[str, Transition]] = {
    Stage.DRAFT: {Stage.IN_REVIEW: _review("request a review"), Stage.RETIRED: _t("retire", Role.AUTHOR)},
    Stage.IN_REVIEW: {
        Stage.APPROVED: _review("approve (quorum reached and gates passing)"),
        Stage.CHANGES_REQUESTED: _review("request changes"),
        Stage.REJECTED: _review("reject"),
        Stage.DRAFT: _review("withdraw the review request"),
    },
    Stage.CHANGES_REQUESTED: {
        Stage.IN_REVIEW: _review("request a review again"),
        Stage.DRAFT: _t("move back to draft", Role.AUTHOR),
    },
    Stage.REJECTED: {Stage.RETIRED: _t("retire", Role.AUTHOR, Role.OPERATOR)},
    Stage.APPROVED: {
        Stage.DEPLOYED: _serving("go live in an environment"),
        Stage.DEPRECATED: _t("deprecate", Role.OPERATOR, Role.APPROVER),
        Stage.IN_REVIEW: _review("review again (the evidence changed after approval)"),
    },
    Stage.DEPLOYED: {
        Stage.APPROVED: _serving("go off serving in every environment"),
        Stage.RETIRED: _serving("retire (taken off serving)"),
    },
    Stage.DEPRECATED: {Stage.RETIRED: _t("retire", Role.OPERATOR)},
    Stage.RETIRED: {},
}

# Metadata can change only before review; afterwards a change needs a new version.
EDITABLE_STAGES = frozenset({Stage.DRAFT, Stage.CHANGES_REQUESTED})

# Stages whose version is never served again, whatever approvals it holds: the gate fails them.
NEVER_SERVED_STAGES = frozenset({Stage.REJECTED, Stage.DEPRECATED, Stage.RETIRED})
# Stages that hold an open or approved review, which a change of the evidence re-freezes.
REVIEWED_STAGES = frozenset({Stage.IN_REVIEW, Stage.APPROVED})


class Framework(models.TextChoices):
    SKLEARN = "sklearn", "scikit-learn"
    XGBOOST = "xgboost", "XGBoost"
    LIGHTGBM = "lightgbm", "LightGBM"
    ONNX = "onnx", "ONNX"
    PYTORCH = "pytorch", "PyTorch"
    TENSORFLOW = "tensorflow", "TensorFlow"
    OTHER = "other", "Other"


class ArtifactFormat(models.TextChoices):
    SKLEARN_JOBLIB = "sklearn-joblib", "scikit-learn (joblib)"
    SKOPS = "skops", "skops"
    ONNX = "onnx", "ONNX"
    XGBOOST = "xgboost", "XGBoost (json/ubj)"
    LIGHTGBM = "lightgbm", "LightGBM (text)"
    PICKLE = "pickle", "Pickle"
    OTHER = "other", "Other"


# Formats that run code when loaded: only trust artifacts uploaded by the owning team's authors.
PICKLE_FORMATS = frozenset({ArtifactFormat.SKLEARN_JOBLIB, ArtifactFormat.PICKLE})


class RegisteredModel(models.Model):
    AUDIT_FIELDS = ["id", "team", "name", "description", "use_case", "risk_tier", "business_kpis"]

    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="models")
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    use_case = models.CharField(max_length=200, blank=True)
    risk_tier = models.CharField(max_length=16, choices=RiskTier.choices, default=RiskTier.LIMITED)
    owners = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="owned_models")
    business_kpis = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Denormalised so lists never count 200,000 versions; kept by version_create under the model's row lock.
    latest_version_number = models.PositiveIntegerField(default=0)
    version_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="model_name_unique_per_team")]
        indexes = [
            models.Index(fields=["name", "id"], name="model_name_idx"),  # the default list order
            models.Index(fields=["-updated_at"], name="model_updated_idx"),
            models.Index(fields=["risk_tier", "name"], name="model_tier_idx"),
        ]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("model-detail", args=[self.pk])

    @property
    def audit_team_id(self):
        return self.team_id


class ModelVersion(models.Model):
    AUDIT_FIELDS = [
        "id", "model", "number", "stage", "description", "artifact_sha256", "artifact_size", "artifact_name",
        "framework", "artifact_format", "training_data_ref", "evaluation_data_ref", "preprocessing_ref",
        "preprocessing_fingerprint", "hyperparameters", "metrics", "tags",
    ]  # fmt: skip

    # indexed by the (model, number) unique constraint, which also serves "newest first" backwards
    model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="versions", db_index=False)
    number = models.PositiveIntegerField()
    stage = models.CharField(max_length=20, choices=Stage.choices, default=Stage.DRAFT)
    description = models.TextField(blank=True)

    artifact_sha256 = models.CharField(max_length=64)
    artifact_size = models.BigIntegerField()
    artifact_name = models.CharField(max_length=255)
    artifact_path = models.CharField(max_length=255)
    artifact_metadata = models.JSONField(default=dict, blank=True)
    framework = models.CharField(max_length=16, choices=Framework.choices, default=Framework.SKLEARN)
    artifact_format = models.CharField(
        max_length=20, choices=ArtifactFormat.choices, default=ArtifactFormat.SKLEARN_JOBLIB
    )

    training_data_ref = models.CharField(
        max_length=500, blank=True, help_text="e.g. dvc://repo@rev#path or lakefs://repo/branch/path"
    )
    evaluation_data_ref = models.CharField(max_length=500, blank=True)
    preprocessing_ref = models.CharField(max_length=500, blank=True)
    preprocessing_fingerprint = models.CharField(max_length=128, blank=True)
    hyperparameters = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    tags = models.JSONField(default=list, blank=True)
    training_profile = models.JSONField(
        default=dict, blank=True, help_text="Statistics of the training data, compared with evaluation data."
    )

    card_completeness = models.PositiveSmallIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    stage_changed_at = models.DateTimeField(null=True, blank=True)

    # The last re-hash of the stored artifact bytes (the integrity scrub, or a download that found
    # them changed): None until first checked. A failed check fails the version's gate.
    integrity_checked_at = models.DateTimeField(null=True, blank=True)
    integrity_ok = models.BooleanField(null=True, blank=True)
    integrity_problem = models.CharField(max_length=40, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [models.UniqueConstraint(fields=["model", "number"], name="version_number_unique_per_model")]
        indexes = [
            models.Index(fields=["artifact_sha256"], name="version_sha256_idx"),  # exact lookups only
            models.Index(fields=["model", "-id"], name="version_model_id_idx"),
            models.Index(fields=["stage", "-id"], name="version_stage_idx"),
            # the integrity scrub's order: never checked (IS NULL) first, then the oldest check; a
            # plain index serves both halves on PostgreSQL and SQLite (which has no NULLS FIRST index)
            models.Index(fields=["integrity_checked_at", "id"], name="version_integrity_due_idx"),
        ]

    def __str__(self):
        return f"{self.model.name} v{self.number}"

    def get_absolute_url(self):
        return reverse("version-detail", args=[self.pk])

    @property
    def audit_team_id(self):
        return self.model.team_id

    @property
    def is_editable(self) -> bool:
        return self.stage in EDITABLE_STAGES

    def allowed_transitions(self) -> dict[str, Transition]:
        return TRANSITIONS[self.stage]

    def manual_transitions(self) -> dict[str, Transition]:
        """The steps a person takes by hand (the review steps belong to approval requests, the steps into
        and out of "deployed" to the serving app's actions)."""
        return {to: step for to, step in TRANSITIONS[self.stage].items() if not (step.by_review or step.by_serving)}


# Sections of Mitchell et al., "Model Cards for Model Reporting", as the Model Card Toolkit names them.
CARD_SECTIONS: list[tuple[str, str, str]] = [
    (
        "model_details",
        "Model details",
        "Who built it, when, the version, the model type, the licence and where to send questions.",
    ),
    ("intended_use", "Intended use", "Primary uses and users, and uses that are out of scope."),
    ("factors", "Factors", "Groups, instrumentation and environments that affect performance."),
    ("metrics", "Metrics", "Which performance measures, decision thresholds and why."),
    ("evaluation_data", "Evaluation data", "Datasets, motivation and preprocessing used for evaluation."),
    ("training_data", "Training data", "What the model was trained on, or why that cannot be shared."),
    ("quantitative_analyses", "Quantitative analyses", "Unitary and intersectional results across the factors."),
    ("ethical_considerations", "Ethical considerations", "Sensitive data, risks to people, mitigations."),
    ("caveats_and_recommendations", "Caveats and recommendations", "Known limits and what users should do about them."),
]
CARD_SECTION_KEYS = [key for key, _, _ in CARD_SECTIONS]
# A section counts towards completeness once it says something (more than a placeholder).
CARD_SECTION_MIN_CHARS = 20


class ModelCard(models.Model):
    """One revision of a version's model card. Revisions are never edited; an edit adds one."""

    AUDIT_FIELDS = ["id", "version", "revision", "sections", "completeness", "comment"]

    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="cards")
    revision = models.PositiveIntegerField()
    sections = models.JSONField(default=dict)
    completeness = models.PositiveSmallIntegerField(default=0)
    comment = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-revision"]
        constraints = [models.UniqueConstraint(fields=["version", "revision"], name="card_revision_unique")]

    def __str__(self):
        return f"Card r{self.revision} of {self.version}"

    @property
    def audit_team_id(self):
        return self.version.model.team_id

    def missing_sections(self) -> list[str]:
        return [
            key for key in CARD_SECTION_KEYS if len((self.sections.get(key) or "").strip()) < CARD_SECTION_MIN_CHARS
        ]
