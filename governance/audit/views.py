"""The audit log in the browser: filter, page by sequence number (never a COUNT of the table), verify."""

from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from governance.accounts.permissions import can_anywhere
from governance.audit import selectors, services
from governance.audit.filters import AuditEventFilter

PAGE_SIZE = 50

KNOWN_ACTIONS = [
    "model.create", "model.update", "model.delete", "version.create", "version.update", "version.transition",
    "version.artifact_inspected", "card.save", "team.create", "team.update", "membership.add", "membership.remove",
    "token.create", "token.revoke", "user.login", "user.login_failed", "permission.denied",
]  # fmt: skip
KNOWN_OBJECT_TYPES = [
    "registry.registeredmodel", "registry.modelversion", "registry.modelcard", "accounts.team",
    "accounts.membership", "accounts.apitoken", "auth.user", "request",
]  # fmt: skip

_VERBS = {
    "model.create": "registered",
    "model.update": "edited",
    "model.delete": "deleted",
    "version.create": "registered",
    "version.update": "edited",
    "version.artifact_inspected": "inspected the artifact of",
    "card.save": "edited the model card of",
    "team.create": "created team",
    "team.update": "edited team",
    "membership.add": "added a membership in",
    "membership.remove": "removed a membership in",
    "token.create": "created an API token",
    "token.revoke": "revoked an API token",
    "user.login": "signed in",
    "user.login_failed": "failed to sign in",
    "permission.denied": "was refused",
}


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
        event.verb = _VERBS.get(event.action, event.action)
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
    context = {
        "events": describe_events(user, rows),
        "filterset": filterset,
        "filters_active": any(params.get(k) for k in filterset.form.fields),
        "newer_seq": rows[0].seq if rows and has_newer else None,
        "older_seq": rows[-1].seq if rows and has_older else None,
        "paged": before is not None or after is not None,
        "known_actions": KNOWN_ACTIONS,
        "known_object_types": KNOWN_OBJECT_TYPES,
    }
    return render(request, "audit/audit_log.html", context)


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
