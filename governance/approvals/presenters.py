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

from governance.accounts.capabilities import Capability
from governance.accounts.permissions import can, can_anywhere
from governance.approvals import gates, selectors
from governance.approvals import rules as R
from governance.approvals.models import ApprovalRequest, Decision, DecisionKind, RequestStatus
from governance.evaluations import measures
from governance.evaluations.presenters import flat_figures
from governance.registry.models import ModelVersion, Stage

ENVIRONMENT_LABELS = {"staging": "Staging", "production": "Production"}
EVALUATION_LABELS = {k: k.replace("_", " ") for k in R.EVALUATION_KINDS}


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
        # as the gate reads it: Charter's own performance evaluation wins over what was registered
        return (
            f"The metric “{gate.metric}” is {' and '.join(bounds)} (from Charter's newest performance evaluation, "
            "else the registered metrics)."
        )
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
        judged = (
            f"the unfavourable bound of its {gates.FAIRNESS_GATE_CONFIDENCE:.0%} interval"
            if gate.judge == "bound"
            else "the estimate"
        )
        return (
            f"Fairness over {', '.join(gate.features)}: " + (" and ".join(parts) or "reported")
            + f", judged on {judged} over groups of at least {gate.min_group_size} rows."
        )  # fmt: skip
    if kind == "latency":
        return (
            f"p95 latency at most {gate.p95_ms_max:g} ms at batch size {gate.batch_size} on host class "
            f"“{gate.host_class}”, measured by a benchmark on such a host."
        )
    if kind == "gpu_memory":
        where = f" on host class “{gate.host_class}”" if gate.host_class else ""
        return f"Peak GPU memory{where} at most {1 - gate.headroom:.0%} of the GPU's memory ({gate.headroom:.0%} headroom)."
    if kind == "preprocessing_fingerprint":
        return "Serving preprocessing has the same fingerprint as training preprocessing."
    if kind == "rollback_target":
        return "An earlier version, approved and served before, is there to roll back to."
    if kind == "checklist":
        names = gate.automation_names()
        tokens = (
            " An API token with the transition scope may tick it." if names is None
            else f" An API token named {', '.join(sorted(names))} may tick it." if names else ""
        )  # fmt: skip
        return f"Checklist: {gate.text}{tokens}"
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
    return list(policy.revisions.select_related("created_by", "decided_by").order_by("-number")[:limit])


def open_request_count(policy) -> int:
    """Open requests bound to one of the policy's revisions: an edit never changes them."""
    return ApprovalRequest.objects.filter(policy_revision__policy=policy, status=RequestStatus.OPEN).count()


def decides_anywhere(user) -> bool:
    """Whether the person holds a decision role somewhere (for the queue's empty state)."""
    return can_anywhere(user, Capability.APPROVAL_DECIDE)


def may_edit_policy(user, policy) -> bool:
    """Whether to offer the edit button (the service decides for real)."""
    if policy.team_id is None:
        return user.is_superuser
    return can(user, Capability.POLICY_MANAGE, policy.team_id)


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


def proposal_right(user, proposal) -> dict[str, DecisionRight]:
    """Whether to offer Approve and Reject on a proposed loosening, and if not, why."""
    rights = {}
    for name, approve in (("approve", True), ("reject", False)):
        refusal = selectors.proposal_refusal(user, proposal, approve=approve)
        rights[name] = DecisionRight(True) if refusal is None else DecisionRight(False, refusal.detail)
    return rights


def assignment_right(user, assignment) -> dict[str, DecisionRight]:
    """Whether to offer Approve and Reject on a proposed choice of a model's policy, and if not, why."""
    rights = {}
    for name, approve in (("approve", True), ("reject", False)):
        refusal = selectors.assignment_refusal(user, assignment, approve=approve)
        rights[name] = DecisionRight(True) if refusal is None else DecisionRight(False, refusal.detail)
    return rights


def assignment_proposals(user, assignments) -> list[dict[str, Any]]:
    """Proposed choices of models' policies with what the user may do about each (the policy page)."""
    return [{"assignment": a, "right": assignment_right(user, a)} for a in assignments]


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


def gate_panel(*, user, version: ModelVersion, environments=None) -> list[dict[str, Any]]:
    """One verdict per environment with its lines; checklist lines carry their item key for the
    tick buttons. A model whose risk tier has no policy gets a panel that says so."""
    from governance.core.errors import DomainError
    from governance.serving.selectors import environment_names

    if environments is None:
        environments = environment_names()
    try:
        loaded = selectors.gate_inputs_for(version=version, environments=environments)
    except DomainError:  # no policy for the tier: say so per environment (one may still have a review)
        loaded = {}
    open_request = version.approval_requests.filter(status=RequestStatus.OPEN).only("id", "requested_by").first()
    # the same rule as the service; a person in the browser acts without a token, so one answer for every item
    refusal = selectors.checklist_refusal(user, version, open_request=open_request)
    may_tick = refusal is None and version.stage != Stage.RETIRED
    # the reason is worth a sentence only to people who hold a ticking role
    tick_refusal = refusal.detail if refusal is not None and refusal.code == "separation_of_duties" else ""
    panels = []
    for env in environments:
        try:
            inputs = loaded.get(env) or selectors.gate_inputs(version=version, environment=env)
        except DomainError as exc:
            panels.append({"environment": env, "label": environment_label(env), "error": exc.detail})
            continue
        verdict = gates.evaluate(inputs)
        items = {g.item: g for g in inputs.rules.checklist()}
        lines = [
            # a tick that does not count (its ticker requested the review) offers "Tick" to someone else
            {"line": line, "item": line.item, "ticked": line.item in inputs.ticks and line.status == gates.PASSED,
             "who": selectors.checklist_tickers(items[line.item]) if line.item in items else "",
             "token": getattr(inputs.ticks.get(line.item), "token_name", "")}
            for line in verdict.gates
        ]  # fmt: skip
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
                "tick_refusal": tick_refusal,
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


# --- the review's evaluations -----------------------------------------------------------------

# What a reviewer reads first of each kind: these summary keys, in this order, those the run has.
KEY_NUMBERS = {
    "performance": (
        "roc_auc", "roc_auc_ovr_macro", "accuracy", "balanced_accuracy", "f1", "f1_macro", "precision", "recall",
        "r2", "mae", "rmse",
    ),
    "data_quality": ("rows", "columns", "max_psi", "missing_columns", "extra_columns"),
}  # fmt: skip
KEY_NUMBERS_SHOWN = 6
FAIRNESS_MEASURES = ("demographic_parity_ratio", "demographic_parity_difference", "equalized_odds_difference")
FAIRNESS_SHORT = {
    "demographic_parity_ratio": "DP ratio",
    "demographic_parity_difference": "DP difference",
    "equalized_odds_difference": "EO difference",
}
TOP_FEATURES = 5
NOTES_SHOWN = 3
# The order a reviewer reads them in: how good, how fair, why, how sturdy, on what data.
KIND_ORDER = ("performance", "fairness", "explainability", "robustness", "data_quality")
# The chart shown inline: the first of these figures (the last name of its key in
# ``flatten_figures``) that the run has, the fairness primary analysis' own first; a run with
# none of them shows its first figure.
MAIN_FIGURES = {
    "fairness": ("selection_rate", "error_rates"),
    "explainability": ("importance", "lime_importance"),
    "performance": ("roc", "confusion_matrix", "predicted_vs_actual"),
    "robustness": ("noise",),
    "data_quality": ("psi",),
}


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.3f}" if abs(value) < 1000 else f"{value:,.0f}"


def _bound(low: float | None, high: float | None) -> str:
    return " and ".join(
        t for t in (f"≥ {low:g}" if low is not None else "", f"≤ {high:g}" if high is not None else "") if t
    )


def _judged(value: Any, low: float | None, high: float | None) -> str:
    if low is None and high is None:
        return ""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return gates.FAILED
    return gates.PASSED if (low is None or value >= low) and (high is None or value <= high) else gates.FAILED


def _number(label: str, value: Any, low: float | None = None, high: float | None = None) -> dict[str, str]:
    return {"label": label, "value": _fmt(value), "threshold": _bound(low, high), "status": _judged(value, low, high)}


def _review_gates(rules: R.Rules, environments) -> list:
    """The gates of the review's policy revision that apply to one of its environments."""
    seen, out = set(), []
    for env in environments:
        for gate in rules.gates_for(env) if env in rules.environments else []:
            if id(gate) not in seen:
                seen.add(id(gate))
                out.append(gate)
    return out


def _main_figure(run, figures: list[dict[str, Any]], primary: str = "") -> dict[str, Any] | None:
    for name in MAIN_FIGURES.get(run.kind, ()):
        named = [f for f in figures if f["key"].rsplit("/", 1)[-1] == name]
        if named:
            return next((f for f in named if f["key"] == f"{primary}/{name}"), named[0])
    return figures[0] if figures else None


def _fairness(run, result: dict, review_gates: list) -> dict[str, Any]:
    """Disparities per sensitive feature (and their intersection): one column per analysis, one row
    per measure, with the policy's threshold beside the analysis its fairness gate reads (the
    primary one, of a run over exactly the gate's features)."""
    report = result.get("report") or {}
    primary = report.get("primary") or ""
    gate = next(
        (g for g in review_gates if g.kind == "fairness" and sorted(g.features) == sorted(run.sensitive_features)),
        None,
    )
    limits = {
        "demographic_parity_ratio": (gate.dp_ratio_min, None) if gate else (None, None),
        "equalized_odds_difference": (None, gate.eo_diff_max) if gate else (None, None),
    }
    analyses = [a for a in report.get("analyses") or [] if isinstance(a, dict)]
    if not analyses:  # an older result: the primary analysis' disparities only
        analyses = [{"name": primary or ", ".join(run.sensitive_features), "disparities": result.get("overall") or {}}]
    names = [str(a.get("name", "")) for a in analyses]
    gated = [gate is not None and name == (primary or name) for name in names]
    # the gated column shows what the gate reads: recomputed over the policy's minimum group size,
    # judged on the estimate or on the interval's unfavourable bound
    judged = gates.fairness_recomputed(result, gate) if gate is not None else None
    rows = []
    for measure in FAIRNESS_MEASURES:
        low, high = limits.get(measure, (None, None))
        cells = [
            _gated_cell(measure, judged, gate, low, high)
            if g and judged is not None
            else _number(
                FAIRNESS_SHORT[measure], (a.get("disparities") or {}).get(measure), *((low, high) if g else ())
            )
            for a, g in zip(analyses, gated, strict=True)
        ]
        rows.append({"label": FAIRNESS_SHORT[measure], "cells": cells, "threshold": _bound(low, high) or "—"})
    small = [
        (name, [g.get("label") for g in a.get("groups") or [] if isinstance(g, dict) and g.get("small")])
        for name, a in zip(names, analyses, strict=True)
    ]
    return {
        "subtitle": f"over {', '.join(run.sensitive_features)}",
        "table": {
            "columns": [{"name": name, "gated": g} for name, g in zip(names, gated, strict=True)],
            "rows": rows,
            "gated": gate is not None,
            # the primary analysis' small groups are in the run's notes already
            "small": [(name, groups) for name, groups in small if groups and name != primary],
        },
        "primary": primary,
    }


def _gated_cell(measure: str, judged: dict, gate, low: float | None, high: float | None) -> dict[str, str]:
    """A disparity as the fairness gate reads it; with a gate judging the bound, the status is the
    bound's and the value says so."""
    estimate = judged["disparities"].get(measure)
    if gate.judge != "bound" or (low is None and high is None):
        return _number(FAIRNESS_SHORT[measure], estimate, low, high)
    interval = judged["disparity_ci"].get(measure) or [None, None]
    bound = interval[0] if low is not None else interval[1]
    cell = _number(FAIRNESS_SHORT[measure], bound, low, high)
    cell["value"] = f"{_fmt(estimate)} ({'lower' if low is not None else 'upper'} bound {_fmt(bound)})"
    return cell


def _explainability(run, result: dict) -> dict[str, Any]:
    summary = result.get("summary") or {}
    shap = sorted(
        ((k.split(".", 1)[1], v) for k, v in summary.items() if k.startswith("mean_abs_shap.") and isinstance(v, int | float)),
        key=lambda item: -item[1],
    )  # fmt: skip
    return {
        "subtitle": "top features by mean |SHAP|",
        "numbers": [_number(feature, value) for feature, value in shap[:TOP_FEATURES]],
    }


def _summary_numbers(run, result: dict, review_gates: list) -> dict[str, Any]:
    summary = result.get("summary") or {}
    wanted = KEY_NUMBERS.get(run.kind)
    keys = [k for k in wanted if k in summary] if wanted else list(summary)
    metric_limits = {g.metric: (g.min, g.max) for g in review_gates if g.kind == "metric"}
    limits = metric_limits if run.kind == "performance" else {}
    slice_column = (run.parameters or {}).get("slice_column")
    return {
        "subtitle": f"sliced by {slice_column}" if slice_column else "",
        "numbers": [
            _number(measures.label(k), summary[k], *limits.get(k, (None, None))) for k in keys[:KEY_NUMBERS_SHOWN]
        ],
    }


def review_evaluations(review: ApprovalRequest, runs: dict[int, Any]) -> list[dict[str, Any]]:
    """Each evaluation frozen into the review, as the reviewer needs it: its key numbers (with the
    thresholds of the review's policy where it has them) and its main chart, beside the digest the
    approval binds to. ``runs``: the frozen runs by id (``selectors.review_runs``)."""
    rules = selectors.revision_rules(review.policy_revision)
    review_gates = _review_gates(rules, review.environments)
    out = []
    entries = [e for e in (review.evidence or {}).get("evaluations") or [] if isinstance(e, dict)]
    rank = {kind: i for i, kind in enumerate(KIND_ORDER)}
    for entry in sorted(entries, key=lambda e: rank.get(e.get("kind"), len(rank))):
        run = runs.get(entry.get("run"))
        item: dict[str, Any] = {
            "kind": entry.get("kind", ""),
            "label": EVALUATION_LABELS.get(entry.get("kind", ""), str(entry.get("kind", ""))).capitalize(),
            "run_id": entry.get("run"),
            "run": run,
            "digest": entry.get("result_digest", ""),
            "artifact_sha256": entry.get("artifact_sha256", ""),
            "subtitle": "",
            "numbers": [],
            "table": None,
            "figure": None,
            "notes": [],
        }
        if run is not None:
            result = run.result or {}
            if run.kind == "fairness":
                shaped = _fairness(run, result, review_gates)
            elif run.kind == "explainability":
                shaped = _explainability(run, result)
            else:
                shaped = _summary_numbers(run, result, review_gates)
            item.update({k: v for k, v in shaped.items() if k != "primary"})
            item["figure"] = _main_figure(run, flat_figures(run), shaped.get("primary", ""))
            item["notes"] = [n for n in result.get("notes") or [] if isinstance(n, str)][:NOTES_SHOWN]
            item["digest_matches"] = run.result_digest == item["digest"]
        out.append(item)
    return out
