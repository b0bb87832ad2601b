"""Reminders: approvals about to expire (the beat task)."""

from __future__ import annotations

import datetime as dt

from django.db import transaction
from django.utils import timezone

from governance.approvals.models import Decision, DecisionKind, RequestStatus
from governance.approvals.services.notify import _author_and_requester, _notify_people


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
