"""Manual checklist items of a policy: attesting them (and withdrawing an attestation)."""

from __future__ import annotations

from django.db import transaction

from governance.accounts.permissions import require_scope
from governance.approvals import selectors
from governance.approvals.models import ChecklistTick, RequestStatus
from governance.approvals.services.locks import _locked_version
from governance.approvals.services.reviews import _settle
from governance.audit import services as audit
from governance.audit.actions import AuditAction
from governance.audit.refusals import record_refusal
from governance.core.errors import DomainError, ValidationFailed
from governance.core.retry import retry_once
from governance.registry.models import ModelVersion


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
