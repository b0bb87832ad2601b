"""The audit log in the browser: filter, page by sequence number (never a COUNT of the table), verify."""

from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from governance.accounts.permissions import can_anywhere, team_ids_visible_to
from governance.audit import actions, selectors, services, signing
from governance.audit.filters import AuditEventFilter
from governance.audit.models import Checkpoint

PAGE_SIZE = 50

KNOWN_OBJECT_TYPES = [
    "registry.registeredmodel", "registry.modelversion", "registry.modelcard", "approvals.policy",
    "approvals.approvalrequest", "approvals.decision", "evaluations.evaluationrun", "notifications.webhook",
    "accounts.team", "accounts.membership", "accounts.apitoken", "auth.user", "request",
]  # fmt: skip


def describe_events(user, events) -> list:
    """Attach what a timeline shows: parsed changes, a verb, the subject's name and its page.

    Version names come from one query for the whole list (through the registry selector, so
    scoped to the user); model names from the events' own snapshots. A timeline costs the same
    whatever its length.
    """
    from governance.registry import selectors as registry

    events = list(events)
    version_ids = set()
    for event in events:
        try:
            event.parsed = json.loads(event.changes or "{}")
        except ValueError:
            event.parsed = {}
        after = event.parsed.get("after") or {}
        before = event.parsed.get("before") or {}
        event.version_ref = None
        if event.object_type == "registry.modelversion" and event.object_id.isdigit():
            event.version_ref = int(event.object_id)
        elif event.object_type == "registry.modelcard":
            ref = after.get("version", before.get("version"))
            event.version_ref = ref if isinstance(ref, int) else None
        if event.version_ref is not None:
            version_ids.add(event.version_ref)
    versions = {}
    if version_ids:
        versions = {
            pk: (name, number, model_id)
            for pk, name, number, model_id in registry.version_list(user=user)
            .filter(pk__in=version_ids)
            .values_list("pk", "model__name", "number", "model_id")
        }
    for event in events:
        after = event.parsed.get("after") or {}
        before = event.parsed.get("before") or {}
        event.verb = actions.verb(event.action)
        event.subject, event.url = "", ""
        event.from_stage = event.to_stage = None
        if event.version_ref is not None:
            found = versions.get(event.version_ref)
            event.subject = f"{found[0]} v{found[1]}" if found else f"version #{event.version_ref}"
            event.url = reverse("version-detail", args=[event.version_ref]) if found else ""
        elif event.object_type == "registry.registeredmodel":
            event.subject = after.get("name") or before.get("name") or f"model #{event.object_id}"
            if event.object_id.isdigit() and event.action != "model.delete":
                event.url = reverse("model-detail", args=[int(event.object_id)])
        elif event.object_type == "accounts.team":
            event.subject = after.get("name") or before.get("name") or ""
        elif event.action == "permission.denied":
            event.subject = event.object_id
        if event.action == "version.transition":
            event.verb = "moved"
            event.from_stage, event.to_stage = before.get("stage"), after.get("stage")
        if event.action == "card.save" and after.get("revision"):
            event.verb = f"saved card revision {after['revision']} of"
    return events


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
    }
    return render(request, "audit/audit_log.html", context)


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
    if not can_anywhere(request.user, "audit.verify"):
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
