"""Approvals writes: policies, review requests, decisions, checklist ticks, stale evidence.

Every write locks what two people could change at once, records its audit event in the same
transaction, and sends notifications on commit. A request's row lock serialises decisions on
it, so concurrent approvals are counted once each and the request closes exactly once.

Locks are taken in the order written down in ``governance/audit/services.py``: the model row, the
version row, then the version's review request (``_locked_review``), the audit chain head last. A
finishing evaluation run locks the version and then (the re-freeze) its request, so a service that
locked the request first would deadlock with it. Policies and revisions are locked ``FOR NO KEY
UPDATE``: a request, a revision or an assignment that references them (whose deferred foreign-key
check takes ``FOR KEY SHARE`` at commit, after the chain head) is never blocked by it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Max, Q
from django.dispatch import receiver
from django.utils import timezone

from governance.accounts.models import Membership, Team
from governance.accounts.permissions import require, require_scope, token_scopes
from governance.approvals import evidence, selectors
from governance.approvals import rules as R
from governance.approvals.models import (
    ApprovalRequest,
    ChecklistTick,
    Decision,
    DecisionKind,
    ModelPolicy,
    Policy,
    PolicyAssignment,
    PolicyRevision,
    RequestStatus,
    RevisionState,
)
from governance.audit import services as audit
from governance.audit.actions import AuditAction
from governance.core.errors import Conflict, DomainError, NotFound, NotPermitted, ValidationFailed, record_refusal
from governance.core.retry import retry_once
from governance.notifications import services as notifications
from governance.registry import services as registry
from governance.registry.models import EDITABLE_STAGES, ModelVersion, RegisteredModel, RiskTier, Stage
from governance.registry.signals import evidence_changed

User = get_user_model()


# --- policies ---------------------------------------------------------------------------------


def _require_policy_admin(actor, team: Team | None, what: str) -> None:
    require_scope(actor, "admin")
    if team is None:
        if not actor.is_superuser:
            raise NotPermitted(f"Only site administrators may {what} site-wide policies.")
    else:
        require(actor, "team.manage", team_id=team.pk, what=what)


@retry_once
@transaction.atomic
def policy_create(
    *, actor, name: str, rules: dict, team: Team | None = None, risk_tier: str = "", description: str = "",
    comment: str = "",
) -> Policy:  # fmt: skip
    _require_policy_admin(actor, team, "create")
    parsed = R.parse(rules)
    R.refuse_unfed(parsed)
    name = (name or "").strip()
    if not name:
        raise ValidationFailed("A policy needs a name.", code="invalid", fields={"name": "This field is required."})
    if risk_tier and team is not None:
        raise ValidationFailed(
            "Only site-wide policies are tier defaults; assign a team policy to models instead.", code="invalid_tier"
        )
    if risk_tier and risk_tier not in RiskTier.values:
        raise ValidationFailed(f"'{risk_tier}' is not a risk tier.", code="invalid_risk_tier")
    try:
        with transaction.atomic():
            policy = Policy.objects.create(
                name=name, description=description, team=team, risk_tier=risk_tier, created_by=actor
            )
    except IntegrityError:
        raise Conflict(
            f"A policy named '{name}'"
            + (f" or a default for the {risk_tier} tier" if risk_tier else "")
            + " already exists there.",
            code="duplicate_policy",
        ) from None
    revision = PolicyRevision.objects.create(
        policy=policy, number=1, rules=R.dump(parsed), comment=comment, created_by=actor
    )
    audit.record(
        action=AuditAction.POLICY_CREATE,
        obj=policy,
        after={**audit.snapshot(policy), "rules": revision.rules},
        actor=actor,
    )
    return policy


@retry_once
@transaction.atomic
def policy_update(
    *, actor, policy: Policy, name: str | None = None, description: str | None = None, rules: dict | None = None,
    comment: str = "",
) -> Policy:  # fmt: skip
    """Rename or re-describe a policy, or change its rules as a new revision. Requests already
    opened keep the revision they were opened under: a policy change never rewrites past decisions."""
    policy = Policy.objects.select_for_update(no_key=True).filter(pk=policy.pk).first()
    if policy is None:
        raise NotFound("This policy no longer exists.")
    _require_policy_admin(actor, policy.team, "edit")
    before = audit.snapshot(policy)
    changed = {}
    if name is not None and name.strip() != policy.name:
        if not name.strip():
            raise ValidationFailed("A policy needs a name.", code="invalid", fields={"name": "This field is required."})
        changed["name"] = policy.name = name.strip()
    if description is not None and description != policy.description:
        changed["description"] = policy.description = description
    proposal = None
    if rules is not None:
        parsed = R.parse(rules)
        dumped = R.dump(parsed)
        current = selectors.policy_revision_current(policy)
        current_rules = selectors.revision_rules(current)
        if dumped != R.dump(current_rules):
            R.refuse_unfed(parsed)  # a new revision, adopted or proposed; unchanged rules keep what they name
            pending = policy.revisions.filter(state=RevisionState.PROPOSED).first()
            if pending is not None:
                raise Conflict(
                    f"Revision {pending.number} of '{policy.name}' is proposed and waits for a second admin; "
                    "approve or reject it before changing the rules again.",
                    code="proposal_pending",
                )
            number = (policy.revisions.aggregate(top=Max("number"))["top"] or 0) + 1
            reasons = R.loosens(current_rules, parsed)
            if reasons:
                # a looser policy is a two-person act: stored as proposed, the current revision stays
                proposal = PolicyRevision.objects.create(
                    policy=policy, number=number, rules=dumped, comment=comment, created_by=actor,
                    state=RevisionState.PROPOSED, loosens=reasons, based_on=current.number,
                )  # fmt: skip
            else:
                policy.revision = number
                PolicyRevision.objects.create(
                    policy=policy, number=number, rules=dumped, comment=comment, created_by=actor
                )
                changed["rules"] = dumped
    if proposal is not None:
        audit.record(
            action=AuditAction.POLICY_REVISION_PROPOSE, obj=proposal, after=audit.snapshot(proposal),
            changes={"reasons": proposal.loosens, "based_on": proposal.based_on}, actor=actor,
        )  # fmt: skip
    if not changed:
        return policy
    try:
        with transaction.atomic():
            policy.save()
    except IntegrityError:
        raise Conflict(f"A policy named '{policy.name}' already exists there.", code="duplicate_policy") from None
    audit.record(
        action=AuditAction.POLICY_UPDATE, obj=policy, before=before, after=audit.snapshot(policy),
        changes={"rules": changed.get("rules"), "comment": comment} if "rules" in changed else None, actor=actor,
    )  # fmt: skip
    return policy


@retry_once
@transaction.atomic
def policy_assign(*, actor, policy: Policy | None, model: RegisteredModel) -> PolicyAssignment | None:
    """Give a model its own policy (``None``: back to its risk tier's default).

    A change whose rules are looser than the ones the model's versions are reviewed under now
    (``rules.loosens`` between the governing revision and the one after the change; a model no
    policy governs approves nothing) is only proposed (``policy.assign.proposed``): it takes effect
    once a second admin of the team (or a site administrator) approves it, and 409
    ``proposal_pending`` refuses another change meanwhile. Any other change takes effect at once
    (``model.policy``); so does a site administrator's, as they are the second admin a team's
    proposal waits for. Returns the change, proposed or adopted; ``None`` when nothing changes."""
    require_scope(actor, "admin")
    require(actor, "team.manage", team_id=model.team_id, what="choose a model's policy")
    if policy is not None and policy.team_id not in (None, model.team_id):
        raise ValidationFailed("A team's policy can govern only that team's models.", code="policy_other_team")
    model = _locked_model(model)  # the model row first (the lock order of governance/audit/services.py)
    current = ModelPolicy.objects.select_for_update().select_related("policy").filter(model=model).first()
    before = {"policy": current.policy_id if current else None}
    after = {"policy": policy.pk if policy else None}
    if after == before:
        return None
    pending = selectors.assignment_proposal(model)
    if pending is not None:
        raise Conflict(
            f"Giving {model.name} {pending.describe()} is proposed and waits for a second admin; approve or reject "
            "it before choosing the model's policy again.",
            code="proposal_pending",
        )
    if policy is not None:
        policy = Policy.objects.get(pk=policy.pk)  # its current revision, now
    based_on = _revision_under(model, current.policy if current else None)
    target = _revision_under(model, policy)
    reasons = R.loosens(_rules_of(based_on), _rules_of(target))
    change = PolicyAssignment(
        model=model, policy=policy, target=target, based_on=based_on, loosens=reasons, proposed_by=actor
    )
    if reasons and not actor.is_superuser:
        change.state = RevisionState.PROPOSED
        change.save()
        audit.record(
            action=AuditAction.POLICY_ASSIGN_PROPOSED, obj=model, before=before, after=after,
            changes={"assignment": change.pk, "reasons": reasons, "based_on": _revision_ref(based_on),
                     "target": _revision_ref(target)},
            actor=actor,
        )  # fmt: skip
        return change
    change.state, change.decided_by, change.decided_at = RevisionState.ADOPTED, actor, timezone.now()
    change.save()
    _apply_assignment(model, current, policy, assigned_by=actor)
    audit.record(
        action=AuditAction.MODEL_POLICY, obj=model, before=before, after=after,
        changes={"assignment": change.pk, **({"reasons": reasons} if reasons else {})}, actor=actor,
    )  # fmt: skip
    return change


def policy_assignment_approve(*, actor, assignment: PolicyAssignment, comment: str = "") -> PolicyAssignment:
    """A second admin makes a proposed, looser choice of a model's policy take effect."""
    return _assignment_decide(actor=actor, assignment=assignment, approve=True, comment=comment)


def policy_assignment_reject(*, actor, assignment: PolicyAssignment, comment: str = "") -> PolicyAssignment:
    """An admin (the proposer too) turns a proposed choice of a model's policy down: nothing changes."""
    return _assignment_decide(actor=actor, assignment=assignment, approve=False, comment=comment)


@retry_once
def _assignment_decide(*, actor, assignment: PolicyAssignment, approve: bool, comment: str) -> PolicyAssignment:
    """A refused approval or rejection is recorded (outside the rolled-back transaction) as
    ``policy.assign.refused`` with the reason, on the model's trail."""
    try:
        return _assignment_settle(actor=actor, assignment=assignment, approve=approve, comment=comment)
    except DomainError as exc:
        record_refusal(
            action=AuditAction.POLICY_ASSIGN_REFUSED, exc=exc, actor=actor, object_type="registry.registeredmodel",
            object_id=str(assignment.model_id), team_id=assignment.model.team_id,
            changes={"decision": "approve" if approve else "reject", "assignment": assignment.pk},
        )  # fmt: skip
        raise


@transaction.atomic
def _assignment_settle(*, actor, assignment: PolicyAssignment, approve: bool, comment: str) -> PolicyAssignment:
    model = RegisteredModel.objects.select_for_update(no_key=True, of=("self",)).select_related("team")
    model = model.filter(pk=assignment.model_id).first()
    locked = None
    if model is not None:
        locked = PolicyAssignment.objects.select_for_update(no_key=True).filter(pk=assignment.pk).first()
    if locked is None:
        raise NotFound("This change of a model's policy no longer exists.")
    locked.model = model
    refusal = selectors.assignment_refusal(actor, locked, approve=approve)
    if refusal is not None:
        raise refusal
    current = ModelPolicy.objects.select_for_update().select_related("policy").filter(model=model).first()
    before = {"policy": current.policy_id if current else None, "state": locked.state}
    if approve:
        policy = Policy.objects.get(pk=locked.policy_id) if locked.policy_id is not None else None
        based_on = _revision_under(model, current.policy if current else None)
        target = _revision_under(model, policy)
        if (_pk(based_on), _pk(target)) != (locked.based_on_id, locked.target_id):
            raise Conflict(
                f"Giving {model.name} {locked.describe()} was proposed under other rules than the ones in force now "
                "(its policy, a revision or its risk tier changed since); reject it and propose the change again.",
                code="proposal_stale",
            )
        _apply_assignment(model, current, policy, assigned_by=locked.proposed_by)
    locked.state = RevisionState.ADOPTED if approve else RevisionState.REJECTED
    locked.decided_by, locked.decided_at = actor, timezone.now()
    locked.decision_comment = (comment or "").strip()[:300]
    locked.save(update_fields=["state", "decided_by", "decided_at", "decision_comment"])
    audit.record(
        action=AuditAction.POLICY_ASSIGN_APPROVED if approve else AuditAction.POLICY_ASSIGN_REJECTED, obj=model, before=before,
        after={"policy": locked.policy_id if approve else before["policy"], "state": locked.state},
        changes={"assignment": locked.pk, "reasons": locked.loosens, "proposed_by": locked.proposed_by_id,
                 "comment": locked.decision_comment},
        actor=actor,
    )  # fmt: skip
    return locked


def _locked_model(model: RegisteredModel) -> RegisteredModel:
    # FOR NO KEY UPDATE: serialises the model's policy changes without blocking the versions that
    # reference the model (their inserts take FOR KEY SHARE)
    locked = RegisteredModel.objects.select_for_update(no_key=True, of=("self",)).select_related("team")
    locked = locked.filter(pk=model.pk).first()
    if locked is None:
        raise NotFound("This model no longer exists.")
    return locked


def _revision_under(model: RegisteredModel, policy: Policy | None) -> PolicyRevision | None:
    """The revision that governs the model under ``policy`` (``None``: its risk tier's default),
    or ``None`` when no policy would."""
    if policy is None:
        policy = Policy.objects.filter(team__isnull=True, risk_tier=model.risk_tier).first()
        if policy is None:
            return None
    return selectors.policy_revision_current(policy)


_APPROVES_NOTHING = {"environments": {}, "gates": []}


def _rules_of(revision: PolicyRevision | None):
    return selectors.revision_rules(revision) if revision is not None else _APPROVES_NOTHING


def _pk(obj) -> int | None:
    return obj.pk if obj is not None else None


def _revision_ref(revision: PolicyRevision | None) -> dict | None:
    if revision is None:
        return None
    return {"policy": revision.policy_id, "revision": revision.number}


def _apply_assignment(model: RegisteredModel, current: ModelPolicy | None, policy: Policy | None, *, assigned_by):
    if policy is None:
        if current is not None:
            current.delete()
    elif current is None:
        ModelPolicy.objects.create(model=model, policy=policy, assigned_by=assigned_by)
    else:
        current.policy, current.assigned_by = policy, assigned_by
        current.save()


def policy_revision_approve(*, actor, revision: PolicyRevision, comment: str = "") -> PolicyRevision:
    """A second admin adopts a proposed loosening: the policy's current revision moves to it."""
    return _proposal_decide(actor=actor, revision=revision, approve=True, comment=comment)


def policy_revision_reject(*, actor, revision: PolicyRevision, comment: str = "") -> PolicyRevision:
    """An admin (the proposer too) turns a proposed loosening down: the policy keeps its revision."""
    return _proposal_decide(actor=actor, revision=revision, approve=False, comment=comment)


@retry_once
def _proposal_decide(*, actor, revision: PolicyRevision, approve: bool, comment: str) -> PolicyRevision:
    """A refused approval or rejection is recorded (outside the rolled-back transaction) as
    ``policy.revision.refused`` with the reason, as refused review decisions are."""
    try:
        return _proposal_settle(actor=actor, revision=revision, approve=approve, comment=comment)
    except DomainError as exc:
        record_refusal(
            action=AuditAction.POLICY_REVISION_REFUSED, exc=exc, actor=actor, object_type="approvals.policyrevision",
            object_id=str(revision.pk), team_id=revision.policy.team_id,
            changes={"decision": "approve" if approve else "reject", "number": revision.number},
        )  # fmt: skip
        raise


@transaction.atomic
def _proposal_settle(*, actor, revision: PolicyRevision, approve: bool, comment: str) -> PolicyRevision:
    policy = Policy.objects.select_for_update(no_key=True).filter(pk=revision.policy_id).first()
    revision = PolicyRevision.objects.select_for_update(no_key=True).filter(pk=revision.pk).first() if policy else None
    if policy is None or revision is None:
        raise NotFound("This policy revision no longer exists.")
    revision.policy = policy
    refusal = selectors.proposal_refusal(actor, revision, approve=approve)
    if refusal is not None:
        raise refusal
    if approve and revision.based_on != policy.revision:
        raise Conflict(
            f"Revision {revision.number} was proposed against revision {revision.based_on}, but '{policy.name}' is "
            f"at revision {policy.revision} now; reject it and propose the change again.",
            code="proposal_stale",
        )
    before = {"state": revision.state, "policy_revision": policy.revision}
    revision.state = RevisionState.ADOPTED if approve else RevisionState.REJECTED
    revision.decided_by, revision.decided_at = actor, timezone.now()
    revision.decision_comment = (comment or "").strip()[:300]
    revision.save(update_fields=["state", "decided_by", "decided_at", "decision_comment"])
    if approve:
        policy.revision = revision.number
        policy.save(update_fields=["revision", "updated_at"])
    audit.record(
        action=AuditAction.POLICY_REVISION_APPROVE if approve else AuditAction.POLICY_REVISION_REJECT, obj=revision, before=before,
        after={"state": revision.state, "policy_revision": policy.revision},
        changes={"reasons": revision.loosens, "proposed_by": revision.created_by_id, "comment": revision.decision_comment},
        actor=actor,
    )  # fmt: skip
    return revision


# --- requests ---------------------------------------------------------------------------------


def _locked_version(version: ModelVersion) -> ModelVersion:
    return _locked_version_pk(version.pk)


def _locked_version_pk(pk: int) -> ModelVersion:
    locked = ModelVersion.objects.select_for_update(of=("self",)).select_related("model").filter(pk=pk).first()
    if locked is None:
        raise NotFound("This version no longer exists.")
    return locked


def _check_environments(environments: Iterable[str], rules: R.Rules, policy: Policy) -> list[str]:
    envs = list(dict.fromkeys(environments or []))
    if not envs:
        raise ValidationFailed("Name at least one environment.", code="invalid", fields={"environments": "Required."})
    unknown = [e for e in envs if e not in R.ENVIRONMENTS]
    if unknown:
        raise ValidationFailed(
            f"Unknown environment(s): {', '.join(map(str, unknown))}. Environments are: {', '.join(R.ENVIRONMENTS)}.",
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
    require(actor, "version.create", team_id=version.model.team_id, what="request a review")
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


def _locked_review(request: ApprovalRequest) -> tuple[ModelVersion, ApprovalRequest]:
    """The request's version, then the request, both locked: the version first, as a finishing
    evaluation run (and every other writer of the version) takes them."""
    version = _locked_version_pk(request.version_id)
    locked = _locked_request(request)
    locked.version = version
    return version, locked


def _locked_request(request: ApprovalRequest) -> ApprovalRequest:
    """The request row, locked. Only with its version's row already locked (``_locked_review``)."""
    locked = (
        ApprovalRequest.objects.select_for_update(of=("self",))
        .select_related("version", "version__model", "policy_revision__policy", "requested_by", "assignment")
        .filter(pk=request.pk)
        .first()
    )
    if locked is None:
        raise NotFound("This review request no longer exists.")
    return locked


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
    made = Decision.objects.create(
        request=request, decided_by=actor, decision=decision, comment=comment, team_roles=sorted(inside),
        other_team_roles=sorted(outside), artifact_sha256=request.artifact_sha256,
        evidence_digest=request.evidence_digest, freeze=request.freeze, decided_at=now,
        expires_at=now + dt.timedelta(days=min(expiry_days)) if expiry_days else None,
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
    require(actor, "version.create", team_id=version.model.team_id, what="withdraw a review request")
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


# --- checklist ------------------------------------------------------------------------------------


@retry_once
def checklist_tick(
    *, actor, version: ModelVersion, item: str, ticked: bool = True, note: str = ""
) -> ChecklistTick | None:
    """Attest (or withdraw the attestation of) one manual checklist item of the version's policy.

    Separation of duties as for decisions (``selectors.checklist_refusal``): neither the version's
    author nor the open review's requester ticks, and an API token ticks only an item whose policy
    names that automation (the tick then records the token). A refused tick is recorded (outside
    the rolled-back transaction) as ``checklist.tick.refused``. A token needs the transition scope:
    the last tick can be what approves the version."""
    try:
        return _checklist_tick(actor=actor, version=version, item=item, ticked=ticked, note=note)
    except DomainError as exc:
        record_refusal(
            action=AuditAction.CHECKLIST_TICK_REFUSED, exc=exc, actor=actor, obj=version,
            changes={"item": str(item)[:64], "ticked": bool(ticked)},
        )  # fmt: skip
        raise


@transaction.atomic
def _checklist_tick(*, actor, version: ModelVersion, item: str, ticked: bool, note: str) -> ChecklistTick | None:
    require_scope(actor, "write")
    require_scope(actor, "transition")
    version = _locked_version(version)
    policy = selectors.policy_for_model(version.model)
    items = {g.item: g for g in selectors.current_rules(policy).checklist()}
    # the open request is locked now, before the audit record takes the chain head (the tick may settle it)
    open_request = (
        version.approval_requests.select_for_update(of=("self",))
        .select_related("policy_revision__policy", "requested_by")
        .filter(status=RequestStatus.OPEN)
        .first()
    )
    if open_request is not None:
        open_request.version = version
        items |= {g.item: g for g in selectors.revision_rules(open_request.policy_revision).checklist()}
    refusal = selectors.checklist_refusal(actor, version, open_request=open_request, item=items.get(item))
    if refusal is not None:
        raise refusal
    if item not in items:
        raise ValidationFailed(
            f"'{item}' is not a checklist item of this version's policy. Items: {', '.join(items) or 'none'}.",
            code="unknown_checklist_item",
        )
    token = getattr(actor, "_charter_token", None)
    current = ChecklistTick.objects.filter(version=version, item=item).first()
    before = None if current is None else {"item": item, "note": current.note, "ticked_by": current.ticked_by_id,
                                           "token": current.token_name or None}  # fmt: skip
    if ticked:
        tick = current or ChecklistTick(version=version, item=item)
        tick.note, tick.ticked_by = (note or "").strip()[:500], actor
        tick.token, tick.token_name = token, token.name if token is not None else ""
        tick.save()
        after = {"item": item, "note": tick.note, "ticked_by": actor.pk, "token": tick.token_name or None}
    else:
        if current is None:
            return None
        current.delete()
        tick, after = None, None
    audit.record(
        action=AuditAction.CHECKLIST_TICK if ticked else AuditAction.CHECKLIST_UNTICK,
        obj=version,
        before=before,
        after=after,
        actor=actor,
    )
    if open_request is not None and ticked:
        _settle(open_request, actor=actor)
    return tick


# --- stale evidence ---------------------------------------------------------------------------------


def evaluations_auto_request(*, version_id: int) -> list:
    """The evaluations the version's policy runs on every new version (``auto_evaluations``),
    requested as the version's registrant. Called by the worker after the artifact inspection, so
    that registering a version pays nothing for it; idempotent (a run per identical evaluation)."""
    version = ModelVersion.objects.select_related("model", "created_by").filter(pk=version_id).first()
    if version is None or version.created_by is None:
        return []
    try:
        policy = selectors.policy_for_model(version.model)
    except Conflict:  # no policy for the tier: nothing to run (requesting a review will say so)
        return []
    rules = selectors.current_rules(policy)
    if not rules.auto_evaluations:
        return []
    from governance.evaluations import services as evaluations

    return evaluations.runs_auto_request(actor=version.created_by, version=version, kinds=list(rules.auto_evaluations))


@receiver(evidence_changed, dispatch_uid="approvals.refreeze")
def _on_evidence_changed(sender, *, version: ModelVersion, actor=None, reason: str = "", **kwargs) -> None:
    request_refreeze(version=version, reason=reason, actor=actor)


def request_refreeze(*, version: ModelVersion, reason: str, actor=None) -> ApprovalRequest | None:
    """New evidence after the freeze: the open (or approved) request is frozen again on the new
    digests, the approvals given so far stop counting, an approved version goes back to review,
    and everyone who decided or may decide is told. Runs inside the sender's transaction."""
    request = (
        version.approval_requests.select_for_update(of=("self",))
        .filter(status__in=[RequestStatus.OPEN, RequestStatus.APPROVED])
        .order_by("-id")
        .first()
    )
    if request is None or version.stage not in (Stage.IN_REVIEW, Stage.APPROVED):
        return None
    document, digest = evidence.current(version)
    if digest == request.evidence_digest and version.artifact_sha256 == request.artifact_sha256:
        return None
    what = evidence.changes(request.evidence, document) or ["the evidence"]
    before = {"status": request.status, "freeze": request.freeze, "evidence_digest": request.evidence_digest}
    request.status = RequestStatus.OPEN
    request.closed_at = request.approved_at = None
    request.artifact_sha256, request.evidence_digest, request.evidence = version.artifact_sha256, digest, document
    request.freeze += 1
    request.frozen_at = timezone.now()
    request.stale_reason = f"{reason} Changed: {', '.join(what)}."[:300]
    governing = selectors.policy_revision_if_changed(request=request, model=version.model)
    if governing is not None:  # the model's tier (or assigned policy) now chooses another policy
        before["policy_revision"] = request.policy_revision_id
        request.policy_revision = governing
        request.assignment = selectors.assignment_governing(version.model)
        wanted = selectors.revision_rules(governing).wanted_from_outside(request.environments)
        request.wants_other_team_reviewer = "reviewer" in wanted
        request.wants_other_team_approver = "approver" in wanted
    request.save()
    audit.record(
        action=AuditAction.REVIEW_STALE, obj=request, before=before,
        after={"status": request.status, "freeze": request.freeze, "evidence_digest": digest,
               **({"policy_revision": governing.pk} if governing is not None else {})},
        changes={"reason": request.stale_reason}, actor=actor,
    )  # fmt: skip
    if version.stage == Stage.APPROVED:
        registry.version_transition_by_review(
            actor=actor, version=version, to=Stage.IN_REVIEW, reason=f"Review #{request.pk} went stale: {reason}"
        )
    deciders = User.objects.filter(pk__in=request.decisions.values("decided_by")).distinct()
    if before["status"] == RequestStatus.APPROVED or deciders.exists():
        # only news when something was dismissed: evidence that lands before anyone decided (the
        # artifact inspection finishing just after the request, say) simply joins the freeze
        _notify_reviewers(
            request, event="review.stale", actor=actor, title=f"Review went stale: {version}",
            body=f"{request.stale_reason} Approvals given before no longer count; please review again.",
            extra=deciders,
        )  # fmt: skip
    return request


# --- expiry reminders -------------------------------------------------------------------------------


def approvals_expiring_notify(*, within_days: int = 14, now=None) -> int:
    """Tell the author, the requester and the approver once about approvals expiring soon (beat task)."""
    now = now or timezone.now()
    soon = (
        Decision.objects.filter(
            decision=DecisionKind.APPROVE,
            expiry_notified_at__isnull=True,
            expires_at__gt=now,
            expires_at__lte=now + dt.timedelta(days=within_days),
            request__status=RequestStatus.APPROVED,
        )  # fmt: skip
        .select_related("request__version__model", "decided_by")
        .order_by("id")
    )
    sent = 0
    for decision in soon[:500]:
        with transaction.atomic():
            claimed = Decision.objects.filter(pk=decision.pk, expiry_notified_at__isnull=True)
            if not claimed.update(expiry_notified_at=now):  # another run announced it meanwhile
                continue
            request = decision.request
            _notify_people(
                request, event="approval.expiring", actor=None,
                title=f"Approval expiring on {decision.expires_at:%Y-%m-%d}: {request.version}",
                body=f"{decision.decided_by.get_username()}'s approval stops counting on {decision.expires_at:%Y-%m-%d}.",
                recipients=[*_author_and_requester(request), decision.decided_by],
                payload={"expires_at": decision.expires_at.isoformat(), "approver": decision.decided_by.get_username()},
            )  # fmt: skip
            sent += 1
    return sent


# --- notifications ----------------------------------------------------------------------------------


def _author_and_requester(request: ApprovalRequest) -> list:
    ids = {request.version.created_by_id, request.requested_by_id} - {None}
    return list(User.objects.filter(pk__in=ids, is_active=True))


def eligible_reviewers(request: ApprovalRequest) -> list:
    """People who may decide on the request (not the author or the requester)."""
    team_id = request.version.model.team_id
    wanted = {r for r, on in (("reviewer", request.wants_other_team_reviewer),
                              ("approver", request.wants_other_team_approver)) if on}  # fmt: skip
    inside = Membership.objects.filter(team_id=team_id, role__in=R.DECISION_ROLES).values("user")
    members = Membership.objects.filter(team_id=team_id).values("user")
    outside = Membership.objects.filter(role__in=wanted).exclude(user__in=members).values("user")
    barred = {request.version.created_by_id, request.requested_by_id}
    if request.policy_revision.is_loosening:  # its proposer never decides a review judged under it
        barred.add(request.policy_revision.created_by_id)
    if request.assignment_id is not None and request.assignment.is_loosening:  # nor does a looser choice's
        barred.add(request.assignment.proposed_by_id)
    # two IN subqueries, not a UNION: SQLite refuses ORDER BY (from Membership's ordering) in compound selects
    return list(
        User.objects.filter(is_active=True)
        .filter(Q(pk__in=inside) | Q(pk__in=outside))
        .exclude(pk__in=barred - {None})
        .distinct()
    )


def _payload(request: ApprovalRequest) -> dict:
    version = request.version
    return {
        "request": {"id": request.pk, "status": request.status, "environments": request.environments,
                    "freeze": request.freeze, "artifact_sha256": request.artifact_sha256,
                    "evidence_digest": request.evidence_digest},
        "version": {"id": version.pk, "number": version.number, "stage": version.stage},
        "model": {"id": version.model_id, "name": version.model.name},
    }  # fmt: skip


def _notify_reviewers(request, *, event: str, title: str, actor, body: str = "", extra=()) -> None:
    recipients = {u.pk: u for u in [*eligible_reviewers(request), *extra]}
    if actor is not None:
        recipients.pop(actor.pk, None)
    _notify_people(
        request, event=event, actor=actor, title=title, recipients=recipients.values(),
        body=body or (request.comment or f"{request.version} awaits your review for {', '.join(request.environments)}."),
    )  # fmt: skip


def _notify_people(request, *, event: str, title: str, body: str, recipients, actor, payload: dict | None = None):
    notifications.notify(
        event=event, team_id=request.version.model.team_id, title=title, body=body,
        url=request.get_absolute_url(), recipients=[u for u in recipients if actor is None or u.pk != actor.pk],
        payload={**_payload(request), **(payload or {})},
    )  # fmt: skip
