"""Who is told about a review, and what: the notifications the approvals services send."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models import Q

from governance.accounts.capabilities import Capability, roles_for
from governance.accounts.models import Membership
from governance.approvals.models import ApprovalRequest
from governance.notifications import services as notifications

User = get_user_model()


def _author_and_requester(request: ApprovalRequest) -> list:
    ids = {request.version.created_by_id, request.requested_by_id} - {None}
    return list(User.objects.filter(pk__in=ids, is_active=True))


def eligible_reviewers(request: ApprovalRequest) -> list:
    """People who may decide on the request (not the author or the requester)."""
    team_id = request.version.model.team_id
    wanted = {r for r, on in (("reviewer", request.wants_other_team_reviewer),
                              ("approver", request.wants_other_team_approver)) if on}  # fmt: skip
    inside = Membership.objects.filter(team_id=team_id, role__in=roles_for(Capability.APPROVAL_DECIDE)).values("user")
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
