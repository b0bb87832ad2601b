"""Review requests and decisions: requesting a review (freezing the artifact and the evidence),
deciding, withdrawing, and settling a request once its quorum and gates pass."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.db import transaction
from django.utils import timezone

from governance.accounts.capabilities import Capability
from governance.accounts.permissions import require, require_scope, token_scopes
from governance.approvals import evidence, selectors
from governance.approvals import rules as R
from governance.approvals.models import ApprovalRequest, Decision, DecisionKind, Policy, RequestStatus
from governance.approvals.services.locks import _locked_review, _locked_version
from governance.approvals.services.notify import _author_and_requester, _notify_people, _notify_reviewers
from governance.audit import services as audit
from governance.audit.actions import AuditAction
from governance.audit.refusals import record_refusal
from governance.core.errors import Conflict, DomainError, NotPermitted, ValidationFailed
from governance.core.retry import retry_once
from governance.registry import services as registry
from governance.registry.models import EDITABLE_STAGES, ModelVersion, Stage
from governance.serving.selectors import environment_names


def _check_environments(environments: Iterable[str], rules: R.Rules, policy: Policy) -> list[str]:
    envs = list(dict.fromkeys(environments or []))
    if not envs:
        raise ValidationFailed("Name at least one environment.", code="invalid", fields={"environments": "Required."})
    known = environment_names()
    unknown = [e for e in envs if e not in known]
    if unknown:
        raise ValidationFailed(
            f"Unknown environment(s): {', '.join(map(str, unknown))}. Environments are: {', '.join(known)}.",
            code="unknown_environment",
            fields={"environments": "Unknown environment."},
        )
    uncovered = [e for e in envs if e not in rules.environments]
    if uncovered:
        covered = ", ".join(rules.environments) or "no environment"
        raise ValidationFailed(
            f"The policy '{policy.name}' approves versions for {covered}; it cannot approve for {', '.join(uncovered)}.",
            code="environment_not_covered",
        )
    return envs


@retry_once
def request_review(*, actor, version: ModelVersion, environments: list[str], comment: str = "") -> ApprovalRequest:
    """Ask for approval of the version for some environments, freezing its artifact and evidence.

    Refused with ``separation_of_duties`` to the person who proposed the loosening the review would
    be judged under. A refusal is recorded (outside the rolled-back transaction) as
    ``review.request.refused``, as refused decisions are."""
    try:
        return _request_review(actor=actor, version=version, environments=environments, comment=comment)
    except DomainError as exc:
        record_refusal(
            action=AuditAction.REVIEW_REQUEST_REFUSED, exc=exc, actor=actor, obj=version,
            changes={"environments": [str(e)[:40] for e in (environments or [])][:5]},
        )  # fmt: skip
        raise


@transaction.atomic
def _request_review(*, actor, version: ModelVersion, environments: list[str], comment: str) -> ApprovalRequest:
    require_scope(actor, "transition")
    version = _locked_version(version)
    require(actor, Capability.REVIEW_REQUEST, team_id=version.model.team_id, what="request a review")
    policy = selectors.policy_for_model(version.model)
    revision = selectors.policy_revision_current(policy)
    assignment = selectors.assignment_governing(version.model)
    refusal = selectors.request_refusal(actor, revision, assignment=assignment, model=version.model)
    if refusal is not None:
        raise refusal
    rules = selectors.revision_rules(revision)
    envs = _check_environments(environments, rules, policy)
    if version.stage not in EDITABLE_STAGES:
        raise Conflict(
            f"Version {version.number} is {version.get_stage_display().lower()}; a review can be requested for a "
            "draft or a version whose reviewers asked for changes.",
            code="transition_not_allowed",
        )
    document, digest = evidence.current(version)
    # outsiders are asked (and may see the request) only when a requested environment's quorum wants them
    wanted = rules.wanted_from_outside(envs)
    request = ApprovalRequest.objects.create(
        version=version, policy_revision=revision, environments=envs, comment=comment,
        artifact_sha256=version.artifact_sha256, evidence_digest=digest, evidence=document, frozen_at=timezone.now(),
        wants_other_team_reviewer="reviewer" in wanted, wants_other_team_approver="approver" in wanted,
        requested_by=actor, assignment=assignment,
    )  # fmt: skip
    request.version = version
    registry.version_transition_by_review(
        actor=actor, version=version, to=Stage.IN_REVIEW, reason=f"Review #{request.pk} requested"
    )
    audit.record(action=AuditAction.REVIEW_REQUEST, obj=request, after=audit.snapshot(request), actor=actor)
    _notify_reviewers(request, event="review.requested", title=f"Review requested: {version}", actor=actor)
    return request


def _require_open(request: ApprovalRequest) -> None:
    if not request.is_open:
        raise Conflict(
            f"Review #{request.pk} is {request.get_status_display().lower()}; its decisions are final.",
            code="request_closed",
        )


@retry_once
def request_decide(*, actor, request: ApprovalRequest, decision: str, comment: str = "") -> Decision:
    """A reviewer's final decision. Approvals count toward the quorum; once it is reached and every
    gate passes the version is approved. A rejection or a request for changes closes the review.

    A refused decision is evidence too: it is recorded (outside the rolled-back transaction) as
    ``review.decide.refused`` with the reason.
    """
    try:
        return _decide(actor=actor, request=request, decision=decision, comment=comment)
    except DomainError as exc:
        with transaction.atomic():
            audit.record(
                action=AuditAction.REVIEW_DECIDE_REFUSED, object_type="approvals.approvalrequest", object_id=str(request.pk),
                team_id=request.version.model.team_id, actor=actor if actor.is_authenticated else None,
                changes={"decision": str(decision)[:40], "code": exc.code, "detail": exc.detail},
            )  # fmt: skip
        raise


@transaction.atomic
def _decide(*, actor, request: ApprovalRequest, decision: str, comment: str) -> Decision:
    if decision not in DecisionKind.values:
        raise ValidationFailed(
            f"'{decision}' is not a decision. Choose one of: {', '.join(DecisionKind.values)}.", code="invalid_decision"
        )
    if token_scopes(actor) is not None:
        raise NotPermitted(
            "Review decisions are made by people in the browser or with a session, never with an API token.",
            code="decision_requires_person",
        )
    comment = (comment or "").strip()
    if decision != DecisionKind.APPROVE and not comment:
        raise ValidationFailed(
            "Say why: a comment is required to reject or to request changes.",
            code="comment_required",
            fields={"comment": "Required for this decision."},
        )
    version, request = _locked_review(request)
    refusal = selectors.decision_refusal(actor, request)
    if refusal is not None:
        raise refusal
    rules = selectors.revision_rules(request.policy_revision)
    inside, outside = selectors.decision_roles(actor, version.model.team_id)
    outside &= selectors.wanted_from_outside(request)
    now = timezone.now()
    expiry_days = [q.expiry_days for e, q in rules.environments.items() if e in request.environments and q.expiry_days]
    # the gate as the person saw it when deciding, kept with the decision and in its audit record
    seen = selectors.gate_checks(version=version, environments=request.environments, now=now)
    made = Decision.objects.create(
        request=request, decided_by=actor, decision=decision, comment=comment, team_roles=sorted(inside),
        other_team_roles=sorted(outside), artifact_sha256=request.artifact_sha256,
        evidence_digest=request.evidence_digest, freeze=request.freeze, decided_at=now,
        expires_at=now + dt.timedelta(days=min(expiry_days)) if expiry_days else None,
        gate={environment: verdict.as_dict() for environment, verdict in seen.items()},
    )  # fmt: skip
    audit.record(action=AuditAction.REVIEW_DECIDE, obj=made, after=audit.snapshot(made), actor=actor)
    if decision == DecisionKind.APPROVE:
        _settle(request, actor=actor)
    else:
        status = RequestStatus.REJECTED if decision == DecisionKind.REJECT else RequestStatus.CHANGES_REQUESTED
        stage = Stage.REJECTED if decision == DecisionKind.REJECT else Stage.CHANGES_REQUESTED
        _close(request, status=status, actor=actor)
        registry.version_transition_by_review(
            actor=actor, version=version, to=stage, reason=f"Review #{request.pk}: {comment}"
        )
    _notify_people(
        request, event="review.decided", actor=actor,
        title=f"{made.get_decision_display()} by {actor.get_username()}: {version}",
        body=comment or "Approved.", recipients=_author_and_requester(request),
        payload={"decision": decision, "by": actor.get_username(), "request_status": request.status},
    )  # fmt: skip
    return made


# What closing a request records, by the status it closes with.
_CLOSED_AS = {
    RequestStatus.APPROVED: AuditAction.REVIEW_APPROVED,
    RequestStatus.REJECTED: AuditAction.REVIEW_REJECTED,
    RequestStatus.CHANGES_REQUESTED: AuditAction.REVIEW_CHANGES_REQUESTED,
    RequestStatus.WITHDRAWN: AuditAction.REVIEW_WITHDRAWN,
}


def _close(request: ApprovalRequest, *, status: str, actor) -> None:
    before = {"status": request.status}
    request.status = status
    request.closed_at = timezone.now()
    if status == RequestStatus.APPROVED:
        request.approved_at = request.closed_at
    request.save(update_fields=["status", "closed_at", "approved_at", "updated_at"])
    audit.record(action=_CLOSED_AS[status], obj=request, before=before, after={"status": status}, actor=actor)


def _settle(request: ApprovalRequest, *, actor) -> None:
    """Approve the request (and the version) when every environment it asks for passes its gate.
    The caller holds the version's lock and the request's (``_locked_review``)."""
    version = request.version
    if version.stage != Stage.IN_REVIEW:
        return
    verdicts = selectors.gate_checks(version=version, environments=request.environments)
    if all(v.passed for v in verdicts.values()):
        _close(request, status=RequestStatus.APPROVED, actor=actor)
        registry.version_transition_by_review(
            actor=actor, version=version, to=Stage.APPROVED,
            reason=f"Review #{request.pk}: quorum reached and every gate passed for {', '.join(request.environments)}",
        )  # fmt: skip


@retry_once
@transaction.atomic
def request_withdraw(*, actor, request: ApprovalRequest, reason: str = "") -> ApprovalRequest:
    require_scope(actor, "transition")
    version, request = _locked_review(request)
    require(actor, Capability.REVIEW_REQUEST, team_id=version.model.team_id, what="withdraw a review request")
    _require_open(request)
    _close(request, status=RequestStatus.WITHDRAWN, actor=actor)
    registry.version_transition_by_review(
        actor=actor, version=version, to=Stage.DRAFT,
        reason=f"Review #{request.pk} withdrawn" + (f": {reason}" if reason else ""),
    )  # fmt: skip
    return request


@retry_once
@transaction.atomic
def request_settle(*, actor, request: ApprovalRequest) -> ApprovalRequest:
    """Look again after something outside the decisions changed (a checklist tick, new evidence)."""
    _, request = _locked_review(request)
    if request.is_open:
        _settle(request, actor=actor)
    return request
