"""Which policy governs a model: choosing it (a looser choice is a proposal a second admin adopts
or rejects) and deciding those proposals."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from governance.accounts.capabilities import Capability
from governance.accounts.permissions import require, require_scope
from governance.approvals import rules as R
from governance.approvals import selectors
from governance.approvals.models import ModelPolicy, Policy, PolicyAssignment, PolicyRevision, RevisionState
from governance.approvals.services.locks import _locked_model
from governance.audit import services as audit
from governance.audit.actions import AuditAction
from governance.audit.refusals import record_refusal
from governance.core.errors import Conflict, DomainError, NotFound, ValidationFailed
from governance.core.retry import retry_once
from governance.registry.models import RegisteredModel


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
    require(actor, Capability.POLICY_MANAGE, team_id=model.team_id, what="choose a model's policy")
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
