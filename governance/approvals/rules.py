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

# The environments the default policies name (the serving app creates them); a policy may name any
# environment that exists when it is stored (``services.policies`` checks against the serving app).
ENVIRONMENTS = ("staging", "production")
ENVIRONMENT_NAME = r"^[a-z0-9]([a-z0-9-]{0,58}[a-z0-9])?$"
Environment = Annotated[str, Field(pattern=ENVIRONMENT_NAME)]
# Only the roles of Capability.APPROVAL_DECIDE give approvals that count; the version's author and
# the requester never do.
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
    min_group_size: int = Field(
        default=30, ge=1, le=100_000,
        description="Groups with fewer rows are reported but left out of the disparities the gate judges (the gate "
        "line names them); the gate applies this value to the stored per-group numbers, whatever the evaluation "
        "used. A rate with no denominator in a group (no actual positives, say) leaves that group out of the "
        "disparities on that rate; it never counts as 0.",
    )  # fmt: skip
    judge: Literal["estimate", "bound"] = Field(
        default="estimate",
        description="What the thresholds judge: 'estimate' (the point estimate) or 'bound' (the unfavourable end "
        "of the disparity's simultaneous 95% interval): the gate fails if the lower bound of the "
        "demographic-parity ratio is under dp_ratio_min, or the upper bound of the equalized-odds difference is "
        "over eo_diff_max. 'bound' is stricter: it passes only what the evidence shows within the thresholds, "
        "so small samples with wide intervals fail.",
    )


# The largest batch a benchmark measures (workers/engines/benchmark.py's MAX_BATCH_SIZE).
MAX_BATCH_SIZE = 65_536
HostClass = Annotated[
    str,
    Field(
        min_length=1, max_length=64,
        description="A label the benchmarked host carried, as key=value (e.g. gpu=h100), or a host's name.",
    ),
]  # fmt: skip


class LatencyGate(_Gate):
    kind: Literal["latency"]
    host_class: HostClass
    p95_ms_max: float = Field(gt=0)
    batch_size: int = Field(
        default=1, ge=1, le=MAX_BATCH_SIZE,
        description="The batch size (rows per predict call) whose p95 latency is judged; the benchmark must have "
        "measured it.",
    )  # fmt: skip


class GpuMemoryGate(_Gate):
    kind: Literal["gpu_memory"]
    host_class: HostClass | None = Field(
        default=None, description="Judge only benchmarks run on hosts of this class; any host's when omitted."
    )
    headroom: float = Field(
        default=0.2, ge=0, le=0.9,
        description="The share of the GPU's memory that must stay free at the benchmark's peak: it passes when the "
        "peak is at most (1 - headroom) times the GPU's total memory.",
    )  # fmt: skip


class PreprocessingGate(_Gate):
    kind: Literal["preprocessing_fingerprint"]


class RollbackTargetGate(_Gate):
    kind: Literal["rollback_target"]


TokenName = Annotated[str, Field(min_length=1, max_length=100)]


class ChecklistGate(_Gate):
    kind: Literal["checklist"]
    item: Slug
    text: Annotated[str, Field(min_length=3, max_length=300)]
    automation: bool | Annotated[list[TokenName], Field(min_length=1, max_length=10)] = Field(
        default=False,
        description="Whether an API token may tick the item: false (people only, the default), true (any token "
        "with the transition scope) or a list of token names (only those). The tick records the token.",
    )

    def allows_token(self, name: str) -> bool:
        """Whether an API token of this name may tick the item."""
        if isinstance(self.automation, bool):
            return self.automation
        return name in self.automation

    def automation_names(self) -> frozenset[str] | None:
        """The token names that may tick; ``None`` for any token, empty for none."""
        if self.automation is True:
            return None
        return frozenset() if self.automation is False else frozenset(self.automation)


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


# What a policy may not name although the rules' schema knows it, refused when rules are saved as a
# new revision (created, changed or proposed) by ``refuse_unfed``; a revision stored before still
# parses (nothing stored becomes unreadable). Two separate lists:
# - ``UNFED_GATES``: gates nothing in Charter feeds (keyed ``kind`` or ``evaluation: <kind>``). Such a
#   gate would stay missing on every version and block every review (400 ``gate_not_fed``). Empty
#   now: the benchmark evaluation (issue 15) feeds ``latency``, ``gpu_memory`` and ``evaluation:
#   benchmark``; a gate kind added before what feeds it lands goes here until then.
# - ``UNRUNNABLE_AUTO_EVALUATIONS``: evaluation kinds that cannot run automatically on every new
#   version (400 ``auto_evaluation_not_runnable``). A benchmark runs on a compute host that its
#   requester chooses per request (``parameters.host``), and a host may be offline when a version is
#   registered; it is requested per version (and its gates then read it) instead.
UNFED_GATES: dict[str, str] = {}
UNRUNNABLE_AUTO_EVALUATIONS = {
    "benchmark": "a benchmark runs on a compute host chosen with each request (parameters.host), which no "
    "automatic run can choose",
}


def _unfed_key(gate) -> str:
    return f"{gate.kind}: {gate.evaluation}" if isinstance(gate, EvaluationGate) else gate.kind


def refuse_unfed(rules: Rules) -> None:
    """Refuse rules about to be stored as a new revision that name a gate nothing can feed (400
    ``gate_not_fed``) or an automatic evaluation that cannot run automatically (400
    ``auto_evaluation_not_runnable``), naming each one."""
    unfed = [
        (f"rules.gates.{i}", f"the '{_unfed_key(g)}' gate", UNFED_GATES[_unfed_key(g)])
        for i, g in enumerate(rules.gates)
        if _unfed_key(g) in UNFED_GATES
    ]
    if unfed:
        path, what, why = unfed[0]
        raise ValidationFailed(
            f"The policy names {what} ({path.removeprefix('rules.')}){_more(unfed)}, which nothing can feed: {why}, "
            "so every review under the policy would wait forever. Remove it.",
            code="gate_not_fed",
            fields={p: f"Nothing can feed {w}: {y}." for p, w, y in unfed},
        )
    unrunnable = [
        (f"rules.auto_evaluations.{i}", kind, UNRUNNABLE_AUTO_EVALUATIONS[kind])
        for i, kind in enumerate(rules.auto_evaluations)
        if kind in UNRUNNABLE_AUTO_EVALUATIONS
    ]
    if unrunnable:
        path, kind, why = unrunnable[0]
        raise ValidationFailed(
            f"The policy asks for an automatic '{kind}' evaluation ({path.removeprefix('rules.')}){_more(unrunnable)} "
            f"on every new version, which cannot run automatically: {why}. Remove it from auto_evaluations and "
            f"request the {kind} per version (POST /api/v1/evaluations/); a policy may still name its gates.",
            code="auto_evaluation_not_runnable",
            fields={p: f"A '{k}' evaluation cannot run automatically: {y}." for p, k, y in unrunnable},
        )


def _more(found: list) -> str:
    return f" (and {len(found) - 1} more like it)" if len(found) > 1 else ""


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


# --- loosening ----------------------------------------------------------------------------------


def loosens(old_rules: Rules | dict, new_rules: Rules | dict) -> list[str]:
    """Why ``new_rules`` lets through something ``old_rules`` did not: one sentence per reason,
    empty when the change only tightens (or changes nothing a version has to pass).

    A rule that the new rules cannot be shown to keep at least as strictly counts as loosened:
    an environment the policy newly approves for, fewer approvals, a role slot removed or moved
    between the owning team and outsiders, a longer or no expiry, a gate removed (or no longer
    applied to an environment), a threshold relaxed, a checklist item reworded or opened to API
    tokens. Environments the policy stops covering tighten (nothing is approved there any more).
    """
    old = old_rules if isinstance(old_rules, Rules) else parse(old_rules)
    new = new_rules if isinstance(new_rules, Rules) else parse(new_rules)
    reasons: list[str] = []
    for env, quorum in new.environments.items():
        before = old.environments.get(env)
        if before is None:
            reasons.append(f"{env}: the policy now approves versions for {env}, which it did not cover before.")
            continue
        reasons += [f"{env}: {reason}" for reason in _quorum_loosened(before, quorum)]
        for gate in old.gates_for(env):
            problem = _gate_loosened(gate, [g for g in new.gates_for(env) if _gate_key(g) == _gate_key(gate)])
            if problem:
                reasons.append(f"{env}: {problem}")
    return list(dict.fromkeys(reasons))


def _quorum_loosened(old: Quorum, new: Quorum) -> list[str]:
    reasons = []
    if new.min_approvals < old.min_approvals:
        reasons.append(f"approvals needed lowered from {old.min_approvals} to {new.min_approvals}.")
    slots_old, slots_new = _slots(old), _slots(new)
    for (role, other_team), count in slots_old.items():
        kept = slots_new.get((role, other_team), 0)
        if kept < count:
            who = f"{role}{' from another team' if other_team else ' of the owning team'}"
            reasons.append(
                f"role slot removed: {count} {who} required before, {kept} now."
                if kept
                else f"role slot removed: no {who} is required any more (was {count})."
            )
    if old.expiry_days is not None and (new.expiry_days is None or new.expiry_days > old.expiry_days):
        after = "never" if new.expiry_days is None else f"after {new.expiry_days} days"
        reasons.append(f"approvals expire {after} instead of after {old.expiry_days} days.")
    return reasons


def _slots(quorum: Quorum) -> dict[tuple[str, bool], int]:
    out: dict[tuple[str, bool], int] = {}
    for requirement in quorum.roles:
        key = (requirement.role, requirement.other_team)
        out[key] = out.get(key, 0) + requirement.count
    return out


def _gate_key(gate) -> tuple:
    """What a gate checks, whatever its thresholds: a gate is kept when a gate of the same key is."""
    if isinstance(gate, MetricGate):
        return (gate.kind, gate.metric)
    if isinstance(gate, EvaluationGate):
        return (gate.kind, gate.evaluation)
    if isinstance(gate, FairnessGate):
        return (gate.kind, tuple(sorted(gate.features)))
    if isinstance(gate, LatencyGate):
        # a p95 at one batch size says nothing about another: another batch size is another gate
        return (gate.kind, gate.host_class, gate.batch_size)
    if isinstance(gate, GpuMemoryGate):
        # benchmarks on one host class say nothing about another (nor about "any host", or the reverse)
        return (gate.kind, gate.host_class)
    if isinstance(gate, ChecklistGate):
        return (gate.kind, gate.item)
    return (gate.kind,)


def _gate_name(gate) -> str:
    key = _gate_key(gate)
    if isinstance(gate, FairnessGate):
        return f"fairness gate over {', '.join(key[1])}"
    if isinstance(gate, LatencyGate):
        return f"latency gate '{gate.host_class}'" + (
            f" at batch size {gate.batch_size}" if gate.batch_size != 1 else ""
        )
    if isinstance(gate, GpuMemoryGate):
        return "gpu memory gate" + (f" '{gate.host_class}'" if gate.host_class is not None else " (any host)")
    if len(key) > 1:
        return f"{gate.kind.replace('_', ' ')} gate '{key[1]}'"
    return f"{gate.kind.replace('_', ' ')} gate"


def _gate_loosened(old, candidates: list) -> str:
    """Why none of ``candidates`` (the new gates of the same key on the same environment) is at
    least as strict as ``old``; empty when one is."""
    name = _gate_name(old)
    if not candidates:
        return f"the {name} was removed."
    problems = [_relaxed(old, new) for new in candidates]
    if any(not p for p in problems):
        return ""
    return f"the {name} was relaxed: {problems[0]}"


def _lower_bound_relaxed(label: str, old: float | None, new: float | None) -> str:
    if old is None or (new is not None and new >= old):
        return ""
    return f"{label} lowered from {old:g} to {new:g}." if new is not None else f"{label} of {old:g} dropped."


def _upper_bound_relaxed(label: str, old: float | None, new: float | None) -> str:
    if old is None or (new is not None and new <= old):
        return ""
    return f"{label} raised from {old:g} to {new:g}." if new is not None else f"{label} of {old:g} dropped."


def _relaxed(old, new) -> str:
    """How ``new`` (same kind and key as ``old``) is less strict; empty when it is at least as strict."""
    if isinstance(old, CardCompletenessGate):
        return _lower_bound_relaxed("minimum completeness", old.min, new.min)
    if isinstance(old, MetricGate):
        return _lower_bound_relaxed("minimum", old.min, new.min) or _upper_bound_relaxed("maximum", old.max, new.max)
    if isinstance(old, EvaluationGate):
        if old.newer_than_artifact and not new.newer_than_artifact:
            return "an evaluation of an earlier artifact now counts."
        return ""
    if isinstance(old, FairnessGate):
        if old.judge == "bound" and new.judge != "bound":
            return "it judges the point estimate instead of the interval's bound."
        if new.min_group_size > old.min_group_size:  # more groups left out of the disparities
            return f"minimum group size raised from {old.min_group_size} to {new.min_group_size}."
        return _lower_bound_relaxed("demographic-parity ratio minimum", old.dp_ratio_min, new.dp_ratio_min) or (
            _upper_bound_relaxed("equalized-odds difference maximum", old.eo_diff_max, new.eo_diff_max)
        )
    if isinstance(old, LatencyGate):
        return _upper_bound_relaxed("p95 latency maximum (ms)", old.p95_ms_max, new.p95_ms_max)
    if isinstance(old, GpuMemoryGate):  # less headroom lets a bigger peak through
        return _lower_bound_relaxed("GPU memory headroom", old.headroom, new.headroom)
    if isinstance(old, ChecklistGate):
        if new.text != old.text:
            return "its text changed, so ticks attest something else."
        before, after = old.automation_names(), new.automation_names()
        if (after is None and before is not None) or (after is not None and before is not None and after - before):
            return "more API tokens may tick it."
        return ""
    return ""


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
