"""Template helpers for the browser UI: badges, JSON, diffs, links to audited objects."""

from __future__ import annotations

import json
from typing import Any

from django import template
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from governance.registry.models import RiskTier, Stage

register = template.Library()

# Stage colours, shared by the badges (CSS classes) and the home page chart.
STAGE_COLOURS = {
    Stage.DRAFT: "#64748b",
    Stage.IN_REVIEW: "#d97706",
    Stage.CHANGES_REQUESTED: "#ea580c",
    Stage.REJECTED: "#dc2626",
    Stage.APPROVED: "#16a34a",
    Stage.DEPLOYED: "#2563eb",
    Stage.DEPRECATED: "#7c3aed",
    Stage.RETIRED: "#334155",
}


@register.simple_tag
def stage_badge(stage: str) -> str:
    try:
        label = Stage(stage).label
    except ValueError:
        label = stage
    return format_html('<span class="badge stage stage-{}">{}</span>', stage, label)


@register.simple_tag
def risk_badge(tier: str) -> str:
    try:
        label = RiskTier(tier).label
    except ValueError:
        label = tier
    return format_html('<span class="badge risk risk-{}" title="Risk tier">{} risk</span>', tier, label)


@register.filter
def stage_label(stage: str) -> str:
    try:
        return Stage(stage).label
    except ValueError:
        return stage


@register.filter
def get_item(mapping: Any, key: Any) -> Any:
    if isinstance(mapping, dict):
        return mapping.get(key)
    return None


@register.filter
def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


@register.filter
def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@register.filter
def scalar(value: Any) -> str:
    """A short, readable rendering of a JSON value for table cells."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)
    return str(value)


@register.filter
def signed(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return ""
    text = f"{value:+.4g}"
    return text


@register.filter
def diff_lines(diff: str) -> list[tuple[str, str]]:
    """Classify the lines of a unified diff for colouring."""
    out = []
    for line in (diff or "").splitlines():
        if line.startswith(("+++", "---")):
            cls = "meta"
        elif line.startswith("@@"):
            cls = "hunk"
        elif line.startswith("+"):
            cls = "add"
        elif line.startswith("-"):
            cls = "del"
        else:
            cls = "ctx"
        out.append((cls, line))
    return out


_OBJECT_ROUTES = {
    "registry.registeredmodel": "model-detail",
    "registry.modelversion": "version-detail",
}


@register.simple_tag
def event_object_url(event) -> str:
    """A link to the object an audit event is about, when the UI has a page for it."""
    name = _OBJECT_ROUTES.get(event.object_type)
    object_id = event.object_id
    if name is None and event.object_type == "registry.modelcard":
        after = (getattr(event, "parsed", None) or {}).get("after") or {}
        name, object_id = "version-detail", after.get("version")
    if name is None or not str(object_id or "").isdigit():
        return ""
    try:
        return reverse(name, args=[int(object_id)])
    except NoReverseMatch:
        return ""


_OBJECT_LABELS = {
    "registry.registeredmodel": "model",
    "registry.modelversion": "version",
    "registry.modelcard": "model card",
    "accounts.team": "team",
    "accounts.membership": "membership",
    "accounts.apitoken": "API token",
    "auth.user": "user",
    "request": "request",
}


@register.filter
def object_label(object_type: str) -> str:
    return _OBJECT_LABELS.get(object_type, object_type)


@register.filter
def action_kind(action: str) -> str:
    """A CSS hint for the action: create / change / transition / denied / login."""
    if action.endswith((".create", ".add")):
        return "create"
    if action.endswith((".delete", ".remove", ".revoke")):
        return "delete"
    if "denied" in action or "failed" in action:
        return "denied"
    if action.endswith(".transition"):
        return "transition"
    if action.startswith("user."):
        return "login"
    return "change"


@register.simple_tag(takes_context=True)
def nav_active(context, *names: str) -> str:
    match = getattr(context.get("request"), "resolver_match", None)
    return "active" if match is not None and match.url_name in names else ""


@register.simple_tag
def elided_pages(page) -> list:
    return list(page.paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1))
