"""Policies: creating them, changing their rules (a looser change is a proposal a second admin
adopts or rejects), and deciding those proposals."""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from governance.accounts.capabilities import Capability
from governance.accounts.models import Team
from governance.accounts.permissions import require, require_scope
from governance.approvals import rules as R
from governance.approvals import selectors
from governance.approvals.models import Policy, PolicyRevision, RevisionState
from governance.audit import services as audit
from governance.audit.actions import AuditAction
from governance.audit.refusals import record_refusal
from governance.core.errors import Conflict, DomainError, NotFound, NotPermitted, ValidationFailed
from governance.core.retry import retry_once
from governance.registry.models import RiskTier


def _require_policy_admin(actor, team: Team | None, what: str) -> None:
    require_scope(actor, "admin")
    if team is None:
        if not actor.is_superuser:
            raise NotPermitted(f"Only site administrators may {what} site-wide policies.")
    else:
        require(actor, Capability.POLICY_MANAGE, team_id=team.pk, what=what)


def _refuse_unknown_environments(rules: R.Rules) -> None:
    """A policy approves versions for environments that exist (the serving app's): a 400 naming each
    one that does not."""
    from governance.serving.selectors import environment_names

    known = set(environment_names())
    unknown = sorted(set(rules.environments) - known)
    if unknown:
        raise ValidationFailed(
            f"The policy names environment(s) that do not exist: {', '.join(unknown)}. Environments now: "
            f"{', '.join(sorted(known)) or 'none'}; a site administrator creates them (POST /api/v1/environments/).",
            code="unknown_environment",
            fields={f"rules.environments.{name}": f"No environment named {name}." for name in unknown},
        )


@retry_once
@transaction.atomic
def policy_create(
    *, actor, name: str, rules: dict, team: Team | None = None, risk_tier: str = "", description: str = "",
    comment: str = "",
) -> Policy:  # fmt: skip
    _require_policy_admin(actor, team, "create")
    parsed = R.parse(rules)
    R.refuse_unfed(parsed)
    _refuse_unknown_environments(parsed)
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
            _refuse_unknown_environments(parsed)
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
