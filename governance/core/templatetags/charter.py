"""Template helpers for the browser UI: badges, JSON, diffs, links to audited objects."""

from __future__ import annotations

import json
from typing import Any

from django import template
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.timesince import timesince

from governance.core.lifecycle import RiskTier, Stage

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


def _label(choices, value: str) -> str:
    """A choice's label, or the raw value for one the choices no longer know."""
    try:
        return choices(value).label
    except ValueError:
        return value


@register.simple_tag
def stage_badge(stage: str) -> str:
    return format_html('<span class="badge stage stage-{}">{}</span>', stage, _label(Stage, stage))


@register.simple_tag
def risk_badge(tier: str) -> str:
    return format_html(
        '<span class="badge risk risk-{}" title="Risk tier">{} risk</span>', tier, _label(RiskTier, tier)
    )


@register.filter
def stage_label(stage: str) -> str:
    return _label(Stage, stage)


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


@register.filter
def ago(value) -> str:
    """“3 hours ago”, or “just now” for the last minute."""
    if not value:
        return ""
    text = timesince(value)
    if text.startswith("0\xa0minutes"):
        return "just now"
    return f"{text.split(',')[0]} ago"


def _circle(cx: float, cy: float, r: float) -> str:
    return f"M{cx - r} {cy}a{r} {r} 0 1 0 {2 * r} 0a{r} {r} 0 1 0 {-2 * r} 0"


# Stroke icons on a 24x24 grid (drawn for Charter; no icon font, so nothing depends on emoji fonts).
_ICONS = {
    "search": _circle(11, 11, 7) + "M21 21l-4.35-4.35",
    "chart": "M4 20V10M10 20V4M16 20v-7M22 20H2",
    "doc": "M14 2H6a2 2 0 0 0-2 2v16a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2V8zM14 2v6h6M8 13h8M8 17h6",
    "key": _circle(7.5, 15.5, 4.5) + "M10.7 12.3 21 2M16 7l3 3M18.5 4.5l2 2",
    "users": "M17 21v-2a4 4 0 0 0-4-4H5a4 4 0 0 0-4 4v2"
    + _circle(9, 7, 4)
    + "M23 21v-2a4 4 0 0 0-3-3.87M16 3.13a4 4 0 0 1 0 7.75",
    "lock": "M5 11h14a2 2 0 0 1 2 2v7a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2v-7a2 2 0 0 1 2-2zM7 11V7a5 5 0 0 1 10 0v4",
    "upload": "M21 15v4a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2v-4M17 8l-5-5-5 5M12 3v12",
    "download": "M21 15v4a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2v-4M7 10l5 5 5-5M12 15V3",
    "cube": "M21 16V8l-9-5-9 5v8l9 5zM3.3 7 12 12l8.7-5M12 22V12",
    "check": "M20 6 9 17l-5-5",
    "edit": "M12 20h9M16.5 3.5a2.12 2.12 0 0 1 3 3L7 19l-4 1 1-4z",
    "shield": "M12 22s8-4 8-10V5l-8-3-8 3v7c0 6 8 10 8 10z",
}


@register.simple_tag
def icon(name: str, size: int = 18) -> str:
    return format_html(
        '<svg class="ic" width="{}" height="{}" viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" '
        'stroke-linecap="round" stroke-linejoin="round" aria-hidden="true"><path d="{}"/></svg>',
        size,
        size,
        _ICONS[name],
    )
