"""What the browser shows of audit events: timelines (the audit log, a model's and a version's
pages, the home page), so that every app's views describe events the same way."""

from __future__ import annotations

import json

from django.urls import reverse

from governance.audit import actions


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
