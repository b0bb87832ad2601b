"""A policy's rules: the gates over evidence and the quorum per environment.

The rules are a JSON document stored with each policy revision and validated here with
pydantic (strict types, unknown keys refused), so the API, the UI's editor and the data
migration that creates the default policies all go through the same checks. Example::

    {
      "environments": {
        "staging":    {"min_approvals": 1, "roles": [{"role": "approver"}], "expiry_days": 90},
        "production": {"min_approvals": 2,
                       "roles": [{"role": "approver"}, {"role": "reviewer", "other_team": true}],
                       "expiry_days": 90}
      },
      "gates": [
        {"kind": "card_completeness", "min": 80},
        {"kind": "metric", "metric": "accuracy", "min": 0.85},
        {"kind": "fairness", "features": ["sex"], "dp_ratio_min": 0.8, "eo_diff_max": 0.1},
        {"kind": "rollback_target", "environments": ["production"]},
        {"kind": "checklist", "item": "rollback-plan", "text": "Error handling and rollback are in place."}
      ]
    }
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from governance.core.errors import ValidationFailed

ENVIRONMENTS = ("staging", "production")
Environment = Literal["staging", "production"]
# Only these roles give approvals that count; the version's author and the requester never do.
DECISION_ROLES = ("reviewer", "approver")
DecisionRole = Literal["reviewer", "approver"]
EVALUATION_KINDS = ("explainability", "fairness", "performance", "robustness", "data_quality", "benchmark")
EvaluationKind = Literal["explainability", "fairness", "performance", "robustness", "data_quality", "benchmark"]

Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]


class _Strict(BaseModel):
    # strict: "0.8" is not a number and 1 is not a boolean; a typo'd key is an error, not ignored
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _Gate(_Strict):
    environments: list[Environment] | None = Field(
        default=None, description="Environments the gate applies to; every covered environment when omitted."
    )

    def applies_to(self, environment: str) -> bool:
        return self.environments is None or environment in self.environments


class CardCompletenessGate(_Gate):
    kind: Literal["card_completeness"]
    min: int = Field(ge=0, le=100, description="Minimum completeness of the model card, in percent.")


class MetricGate(_Gate):
    kind: Literal["metric"]
    metric: Annotated[str, Field(min_length=1, max_length=64)]
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _one_bound(self):
        if self.min is None and self.max is None:
            raise ValueError("a metric gate needs a min or a max threshold")
        return self


class EvaluationGate(_Gate):
    kind: Literal["evaluation"]
    evaluation: EvaluationKind
    newer_than_artifact: bool = True


class FairnessGate(_Gate):
    kind: Literal["fairness"]
    features: Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]], Field(min_length=1, max_length=4)]
    dp_ratio_min: float | None = Field(default=0.8, ge=0, le=1)
    eo_diff_max: float | None = Field(default=None, ge=0, le=1)


class LatencyGate(_Gate):
    kind: Literal["latency"]
    host_class: Annotated[str, Field(min_length=1, max_length=64)]
    p95_ms_max: float = Field(gt=0)


class GpuMemoryGate(_Gate):
    kind: Literal["gpu_memory"]


class PreprocessingGate(_Gate):
    kind: Literal["preprocessing_fingerprint"]


class RollbackTargetGate(_Gate):
    kind: Literal["rollback_target"]


class ChecklistGate(_Gate):
    kind: Literal["checklist"]
    item: Slug
    text: Annotated[str, Field(min_length=3, max_length=300)]


Gate = Annotated[
    CardCompletenessGate
    | MetricGate
    | EvaluationGate
    | FairnessGate
    | LatencyGate
    | GpuMemoryGate
    | PreprocessingGate
    | RollbackTargetGate
    | ChecklistGate,
    Field(discriminator="kind"),
]
GATE_KINDS = (
    "card_completeness", "metric", "evaluation", "fairness", "latency", "gpu_memory", "preprocessing_fingerprint",
    "rollback_target", "checklist",
)  # fmt: skip


class RoleRequirement(_Strict):
    role: DecisionRole
    count: int = Field(default=1, ge=1, le=10)
    other_team: bool = Field(default=False, description="The approvals must come from people outside the owning team.")


class Quorum(_Strict):
    min_approvals: int = Field(ge=1, le=10)
    roles: list[RoleRequirement] = Field(default_factory=list, max_length=10)
    expiry_days: int | None = Field(default=90, ge=1, le=3650, description="Approvals older than this stop counting.")

    @model_validator(mode="after")
    def _possible(self):
        needed = sum(r.count for r in self.roles)
        if needed > self.min_approvals:
            raise ValueError(
                f"impossible quorum: the role requirements need {needed} approvals from different people "
                f"but min_approvals is {self.min_approvals}; raise min_approvals to at least {needed}"
            )
        return self

    @property
    def wants_other_team(self) -> frozenset[str]:
        return frozenset(r.role for r in self.roles if r.other_team)


class Rules(_Strict):
    environments: dict[Environment, Quorum] = Field(
        description="The environments a version can be approved for under this policy, each with its quorum. "
        "An empty object approves nothing (for prohibited uses)."
    )
    gates: list[Gate] = Field(default_factory=list, max_length=50)
    auto_evaluations: list[EvaluationKind] = Field(
        default_factory=list, max_length=len(EVALUATION_KINDS),
        description="Evaluations run on every new version of the model, with the retained data and the "
        "parameters of that kind's newest run on an earlier version.",
    )  # fmt: skip

    @model_validator(mode="after")
    def _consistent(self):
        if len(set(self.auto_evaluations)) != len(self.auto_evaluations):
            raise ValueError("auto_evaluations lists a kind twice")
        for i, gate in enumerate(self.gates):
            outside = sorted(set(gate.environments or ()) - set(self.environments))
            if outside:
                raise ValueError(f"gate {i} ({gate.kind}) names environments the policy does not cover: {outside}")
        items = [g.item for g in self.gates if isinstance(g, ChecklistGate)]
        if len(items) != len(set(items)):
            raise ValueError("checklist items must have distinct 'item' keys")
        return self

    def gates_for(self, environment: str) -> list:
        return [g for g in self.gates if g.applies_to(environment)]

    def wanted_from_outside(self, environments) -> frozenset[str]:
        """The decision roles the quorums of these environments want from outside the owning team."""
        return frozenset().union(
            *(self.environments[e].wants_other_team for e in environments if e in self.environments)
        )

    def checklist(self) -> list[ChecklistGate]:
        return [g for g in self.gates if isinstance(g, ChecklistGate)]


def parse(document: Any) -> Rules:
    """Validate a rules document; a domain error naming every bad field when it is wrong."""
    if not isinstance(document, dict):
        raise ValidationFailed("The policy rules must be a JSON object.", code="invalid_rules")
    try:
        return Rules.model_validate(document)
    except ValidationError as exc:
        fields = {}
        for error in exc.errors(include_url=False):
            path = ".".join(str(p) for p in ("rules", *error["loc"]))
            fields.setdefault(path, error["msg"])
        first_path, first_msg = next(iter(fields.items()))
        impossible = any("impossible quorum" in m for m in fields.values())
        raise ValidationFailed(
            f"The policy rules are invalid: {first_path}: {first_msg}"
            + (f" (and {len(fields) - 1} more)" if len(fields) > 1 else "")
            + ".",
            code="impossible_quorum" if impossible else "invalid_rules",
            fields=fields,
        ) from None


def dump(rules: Rules) -> dict:
    return rules.model_dump(mode="json", exclude_none=False)


# The six pre-deployment checks of seeds/000 ("6 Key Things to Check Before Deploying AI Models").
DEFAULT_CHECKLIST = [
    ("accuracy-stability", "Accuracy and stability verified on data that resembles production."),
    ("infrastructure", "Infrastructure requirements (memory, GPU, latency, cost) assessed realistically."),
    ("preprocessing-consistency", "Preprocessing in serving is the same as in training."),
    ("rollback-plan", "Error handling and a rollback to a previous version are in place."),
    ("privacy-security", "Data security and privacy obligations are met."),
    ("monitoring-logging", "Performance monitoring and logging are set up."),
]


def default_rules(risk_tier: str) -> dict:
    """The site-wide default policy of each risk tier (created by a data migration, editable later)."""
    checklist = [{"kind": "checklist", "item": key, "text": text} for key, text in DEFAULT_CHECKLIST]
    if risk_tier == "unacceptable":
        return {"environments": {}, "gates": []}
    if risk_tier == "minimal":
        quorum = {"min_approvals": 1, "roles": [{"role": "approver"}], "expiry_days": 365}
        return {
            "environments": {"staging": quorum, "production": quorum},
            "gates": [{"kind": "card_completeness", "min": 50}],
        }
    if risk_tier == "limited":
        quorum = {"min_approvals": 2, "roles": [{"role": "approver"}, {"role": "reviewer"}], "expiry_days": 180}
        return {
            "environments": {
                "staging": {"min_approvals": 1, "roles": [{"role": "approver"}], "expiry_days": 180},
                "production": quorum,
            },
            "gates": [{"kind": "card_completeness", "min": 70}, *checklist],
        }
    quorum = {"min_approvals": 2, "roles": [{"role": "approver"}, {"role": "reviewer"}], "expiry_days": 90}
    return {
        "environments": {"staging": {"min_approvals": 1, "roles": [{"role": "approver"}]}, "production": quorum},
        "gates": [{"kind": "card_completeness", "min": 90}, *checklist],
    }
