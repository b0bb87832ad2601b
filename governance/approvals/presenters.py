"""Read-only shaping of approvals data for the browser pages: sentences, table rows, gate panels.

Nothing here writes or decides: the services re-check every rule when someone acts. These
helpers only say what the pages show (who may see the decision form, how a policy reads).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from governance.accounts.models import Role
from governance.accounts.permissions import has_any_role, roles_by_team
from governance.approvals import gates, selectors
from governance.approvals import rules as R
from governance.approvals.models import ApprovalRequest, Decision, DecisionKind, RequestStatus
from governance.registry.models import ModelVersion, Stage

ENVIRONMENT_LABELS = {"staging": "Staging", "production": "Production"}
EVALUATION_LABELS = {k: k.replace("_", " ") for k in R.EVALUATION_KINDS}
# The roles the checklist service accepts; the buttons are shown to them only (the service re-checks).
CHECKLIST_ROLES = frozenset({Role.AUTHOR, Role.REVIEWER, Role.APPROVER, Role.ADMIN})


def environment_label(environment: str) -> str:
    return ENVIRONMENT_LABELS.get(environment, environment)


def _people(count: int, role: str) -> str:
    return f"{count} {role}{'s' if count != 1 else ''}"


# --- policies ---------------------------------------------------------------------------------


def quorum_sentence(environment: str, quorum: R.Quorum) -> str:
    """“Production needs 2 approvals from different people: 1 approver and 1 reviewer from another team.”"""
    text = (
        f"{environment_label(environment)} needs {quorum.min_approvals} approval{'s' if quorum.min_approvals != 1 else ''}"
        + (" from different people" if quorum.min_approvals > 1 else "")
    )
    if quorum.roles:
        parts = [
            _people(r.count, r.role) + (" from another team" if r.other_team else " of the owning team")
            for r in quorum.roles
        ]
        text += ", including " + (", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0])
    else:
        text += " from reviewers or approvers of the owning team"
    text += "."
    if quorum.expiry_days:
        text += f" An approval stops counting after {quorum.expiry_days} days."
    else:
        text += " Approvals do not expire."
    return text


def gate_sentence(gate) -> str:
    """One gate of a policy, in words, with its thresholds."""
    kind = gate.kind
    if kind == "card_completeness":
        return f"The model card is at least {gate.min}% complete."
    if kind == "metric":
        bounds = []
        if gate.min is not None:
            bounds.append(f"at least {gate.min:g}")
        if gate.max is not None:
            bounds.append(f"at most {gate.max:g}")
        return f"The registered metric “{gate.metric}” is {' and '.join(bounds)}."
    if kind == "evaluation":
        return f"A {EVALUATION_LABELS[gate.evaluation]} evaluation has run" + (
            " after the artifact was registered." if gate.newer_than_artifact else "."
        )
    if kind == "fairness":
        parts = []
        if gate.dp_ratio_min is not None:
            parts.append(f"demographic-parity ratio at least {gate.dp_ratio_min:g}")
        if gate.eo_diff_max is not None:
            parts.append(f"equalized-odds difference at most {gate.eo_diff_max:g}")
        return f"Fairness over {', '.join(gate.features)}: " + (" and ".join(parts) or "reported") + "."
    if kind == "latency":
        return f"p95 latency at most {gate.p95_ms_max:g} ms on host class “{gate.host_class}”."
    if kind == "gpu_memory":
        return "Peak GPU memory fits the target host."
    if kind == "preprocessing_fingerprint":
        return "Serving preprocessing has the same fingerprint as training preprocessing."
    if kind == "rollback_target":
        return "An earlier version, approved and served before, is there to roll back to."
    if kind == "checklist":
        return f"Checklist: {gate.text}"
    return kind


@dataclass
class PolicyView:
    rules: R.Rules
    quorum: list[dict[str, str]] = field(default_factory=list)
    gates: list[dict[str, Any]] = field(default_factory=list)

    @property
    def environments(self) -> list[str]:
        return list(self.rules.environments)


def policy_view(rules_document: dict) -> PolicyView:
    rules = R.parse(rules_document)
    quorum = [
        {"environment": env, "label": environment_label(env), "sentence": quorum_sentence(env, q)}
        for env, q in rules.environments.items()
    ]
    shown = [
        {
            "kind": g.kind,
            "sentence": gate_sentence(g),
            "environments": [environment_label(e) for e in (g.environments or rules.environments)],
            "all_environments": g.environments is None,
        }
        for g in rules.gates
    ]
    return PolicyView(rules=rules, quorum=quorum, gates=shown)


def rules_json(document: dict) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False)


def policy_revisions(policy, *, limit: int) -> list:
    return list(policy.revisions.select_related("created_by").order_by("-number")[:limit])


def open_request_count(policy) -> int:
    """Open requests bound to one of the policy's revisions: an edit never changes them."""
    return ApprovalRequest.objects.filter(policy_revision__policy=policy, status=RequestStatus.OPEN).count()


def decides_anywhere(user) -> bool:
    """Whether the person holds a decision role somewhere (for the queue's empty state)."""
    if user.is_superuser:
        return True
    return any(roles & frozenset(R.DECISION_ROLES) for roles in roles_by_team(user).values())


def may_edit_policy(user, policy) -> bool:
    """Whether to offer the edit button (the service decides for real)."""
    if policy.team_id is None:
        return user.is_superuser
    return has_any_role(user, policy.team_id, {Role.ADMIN})


# --- the review queue -------------------------------------------------------------------------


def with_approval_counts(qs: QuerySet[ApprovalRequest]) -> QuerySet[ApprovalRequest]:
    """Annotate the approvals given on each request's current freeze (a cheap count, no gate)."""
    approvals = (
        Decision.objects.filter(request=OuterRef("pk"), decision=DecisionKind.APPROVE, freeze=OuterRef("freeze"))
        .order_by()
        .values("request")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return qs.annotate(approvals_given=Coalesce(Subquery(approvals, output_field=IntegerField()), Value(0)))


def approvals_needed(request: ApprovalRequest) -> int | None:
    """The largest quorum among the environments the request asks for (from its policy revision)."""
    try:
        rules = selectors.revision_rules(request.policy_revision)
    except Exception:  # an unreadable old revision should not break the queue
        return None
    needed = [rules.environments[e].min_approvals for e in request.environments if e in rules.environments]
    return max(needed) if needed else None


def queue_rows(requests: list[ApprovalRequest]) -> list[dict[str, Any]]:
    return [
        {
            "request": r,
            "version": r.version,
            "model": r.version.model,
            "environments": [environment_label(e) for e in r.environments],
            "given": getattr(r, "approvals_given", None),
            "needed": approvals_needed(r),
        }
        for r in requests
    ]


# --- the review page --------------------------------------------------------------------------


@dataclass(frozen=True)
class DecisionRight:
    allowed: bool
    reason: str = ""


def decision_right(user, request: ApprovalRequest, decisions: list[Decision]) -> DecisionRight:
    """Whether to show the decision form, and if not, why (the service re-checks on POST)."""
    refusal = selectors.decision_refusal(user, request, decisions)
    return DecisionRight(True) if refusal is None else DecisionRight(False, refusal.detail)


def decision_rows(request: ApprovalRequest, decisions: list[Decision]) -> list[dict[str, Any]]:
    return [
        {
            "decision": d,
            "dismissed": d.freeze != request.freeze,
            "roles": sorted(set(d.team_roles) | {f"{r} (other team)" for r in d.other_team_roles}),
        }
        for d in decisions
    ]


def digest_short(value: str) -> str:
    return f"{value[:12]}…" if value and len(value) > 12 else value or ""


def evidence_view(manifest: dict[str, Any]) -> dict[str, Any]:
    """The frozen manifest, flattened for tables, with the numeric metrics for the chart."""
    artifact = manifest.get("artifact") or {}
    metadata = manifest.get("metadata") or {}
    metrics = metadata.get("metrics") if isinstance(metadata.get("metrics"), dict) else {}
    numeric = {k: v for k, v in sorted(metrics.items()) if isinstance(v, int | float) and not isinstance(v, bool)}
    hyper = metadata.get("hyperparameters") if isinstance(metadata.get("hyperparameters"), dict) else {}
    inspection = artifact.get("inspection") if isinstance(artifact.get("inspection"), dict) else {}
    return {
        "artifact_sha256": artifact.get("sha256", ""),
        "artifact_size": artifact.get("size"),
        "inspection": sorted(inspection.items()),
        "metadata": [
            (key, metadata.get(key))
            for key in (
                "framework",
                "artifact_format",
                "training_data_ref",
                "evaluation_data_ref",
                "preprocessing_ref",
                "preprocessing_fingerprint",
            )
        ],  # fmt: skip
        "tags": metadata.get("tags") or [],
        "metrics": sorted(metrics.items()),
        "hyperparameters": sorted(hyper.items()),
        "card": manifest.get("card"),
        "evaluations": manifest.get("evaluations") or [],
        "chart": {"labels": list(numeric), "values": list(numeric.values())} if numeric else None,
    }


def deployed_baseline(version: ModelVersion) -> ModelVersion | None:
    """The newest deployed version of the same model, other than this one: what a reviewer compares
    against. Loaded through the version the reviewer already sees by way of the request, so an
    independent reviewer from another team gets the comparison too."""
    return (
        ModelVersion.objects.filter(model_id=version.model_id, stage=Stage.DEPLOYED)
        .exclude(pk=version.pk)
        .select_related("model")
        .order_by("-number")
        .first()
    )


# --- the gate panel ---------------------------------------------------------------------------


VERDICT_LABELS = {"pass": "Pass", "fail": "Fail", "pending": "Pending"}


def gate_panel(*, user, version: ModelVersion, environments=R.ENVIRONMENTS) -> list[dict[str, Any]]:
    """One verdict per environment with its lines; checklist lines carry their item key for the
    tick buttons. A model whose risk tier has no policy gets a panel that says so."""
    from governance.core.errors import DomainError

    may_tick = has_any_role(user, version.model.team_id, CHECKLIST_ROLES) and version.stage != Stage.RETIRED
    try:
        loaded = selectors.gate_inputs_for(version=version, environments=environments)
    except DomainError:  # no policy for the tier: say so per environment (one may still have a review)
        loaded = {}
    panels = []
    for env in environments:
        try:
            inputs = loaded.get(env) or selectors.gate_inputs(version=version, environment=env)
        except DomainError as exc:
            panels.append({"environment": env, "label": environment_label(env), "error": exc.detail})
            continue
        verdict = gates.evaluate(inputs)
        lines = [{"line": line, "item": line.item, "ticked": line.item in inputs.ticks} for line in verdict.gates]
        lines += [{"line": line, "item": "", "ticked": False} for line in verdict.quorum]
        panels.append(
            {
                "environment": env,
                "label": environment_label(env),
                "verdict": verdict,
                "verdict_label": VERDICT_LABELS[verdict.verdict],
                "lines": lines,
                "counts": {
                    s: sum(entry["line"].status == s for entry in lines)
                    for s in (gates.PASSED, gates.FAILED, gates.MISSING)
                },
                "policy": inputs.policy,
                "revision": inputs.revision,
                "request": inputs.request,
                "may_tick": may_tick,
            }
        )
    return panels


def version_review_links(*, user, version: ModelVersion) -> dict[str, Any]:
    """The open review of a version, or else its latest one (one query)."""
    latest = list(
        selectors.request_list(user=user).filter(version=version).order_by("-id").values("id", "status", "freeze")[:1]
    )
    if not latest:
        return {"open": None, "latest": None}
    row = latest[0]
    return {"open": row if row["status"] == RequestStatus.OPEN else None, "latest": row}


def request_status_label(status: str) -> str:
    try:
        return RequestStatus(status).label
    except ValueError:
        return status
