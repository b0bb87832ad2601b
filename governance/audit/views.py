"""The audit log in the browser: filter, page by sequence number (never a COUNT of the table), verify."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.http import QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from governance.accounts.capabilities import Capability
from governance.accounts.permissions import can_anywhere, team_ids_visible_to
from governance.audit import actions, exports, selectors, services, signing
from governance.audit.filters import AuditEventFilter
from governance.audit.models import Checkpoint
from governance.audit.presenters import describe_events

PAGE_SIZE = 50

KNOWN_OBJECT_TYPES = [
    "registry.registeredmodel", "registry.modelversion", "registry.modelcard", "approvals.policy",
    "approvals.approvalrequest", "approvals.decision", "evaluations.evaluationrun", "notifications.webhook",
    "accounts.team", "accounts.membership", "accounts.apitoken", "auth.user", "request", "audit.export",
]  # fmt: skip


def _int(value) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _hidden_in_range(user, rows, *, filters_active: bool) -> dict | None:
    """Why the page's sequence numbers skip: sequence numbers count every event of the chain.

    The page is one seq range, so what it does not show is the range's width minus its rows:
    arithmetic on the page itself, no COUNT.
    """
    if not rows:
        return None
    newest, oldest = rows[0].seq, rows[-1].seq
    count = newest - oldest + 1 - len(rows)
    if count <= 0:
        return None
    if filters_active:
        why = "filtered"
    elif team_ids_visible_to(user) is None:
        why = "missing"  # someone who may read every event sees a hole in the chain itself
    else:
        why = "other_teams"
    return {"count": count, "oldest": oldest, "newest": newest, "why": why}


@login_required
def audit_log(request):
    user = request.user
    params = request.GET.copy()
    for key in ("before", "after"):
        params.pop(key, None)
    filterset = AuditEventFilter(params or None, queryset=selectors.event_list(user=user))
    events = filterset.qs
    before, after = _int(request.GET.get("before")), _int(request.GET.get("after"))
    if after is not None:
        rows = list(events.filter(seq__gt=after).order_by("seq")[: PAGE_SIZE + 1])
        has_newer = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE][::-1]
        has_older = bool(rows)
    else:
        if before is not None:
            events = events.filter(seq__lt=before)
        rows = list(events.order_by("-seq")[: PAGE_SIZE + 1])
        has_older = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE]
        has_newer = before is not None and bool(rows)
    filters_active = any(params.get(k) for k in filterset.form.fields)
    context = {
        "events": describe_events(user, rows),
        "filterset": filterset,
        "filters_active": filters_active,
        "hidden": _hidden_in_range(user, rows, filters_active=filters_active),
        "newer_seq": rows[0].seq if rows and has_newer else None,
        "older_seq": rows[-1].seq if rows and has_older else None,
        "paged": before is not None or after is not None,
        "action_groups": actions.grouped(),
        "known_object_types": KNOWN_OBJECT_TYPES,
        "signing": _signing_key(),
        "newest_checkpoint": Checkpoint.objects.order_by("-seq", "-id").first(),
        "exports": _export_links(filterset),
    }
    return render(request, "audit/audit_log.html", context)


def _export_links(filterset) -> dict[str, str]:
    """The export of what the page shows: its filters (those it did not ignore as invalid), not its
    paging, as CSV and as JSON Lines."""
    url = reverse("api:auditevent-export")
    query = QueryDict(mutable=True)
    if filterset.is_bound:
        errors = filterset.form.errors
        for name in filterset.form.fields:
            value = filterset.data.get(name)
            if value not in (None, "") and name not in errors:
                query[name] = value
    links = {}
    for fmt in exports.CONTENT_TYPES:
        query["format"] = fmt
        links[fmt] = f"{url}?{query.urlencode()}"
    return links


def _signing_key() -> dict:
    """The public half of the checkpoint key, published so auditors check exports without Charter."""
    try:
        key = signing.public_key()
    except ImproperlyConfigured as exc:
        return {"error": str(exc)}
    return {"key_id": signing.key_id(key), "pem": signing.public_pem(key)}


@login_required
@require_POST
def audit_verify(request):
    if not can_anywhere(request.user, Capability.AUDIT_VERIFY):
        raise PermissionDenied("Only auditors and admins can verify the audit chain.")
    result = services.verify()
    if request.headers.get("HX-Request"):
        return render(request, "audit/_verify_result.html", {"result": result})
    if result.ok:
        messages.success(
            request, f"Audit chain verified: {result.events_checked:,} events, head #{result.head_seq}, intact."
        )
    else:
        messages.error(request, f"Audit chain broken at #{result.first_broken_seq}: {result.reason}.")
    return redirect("audit-log")
