"""Shape serving records for the pages: badges, the health policy, the gate a worker saw, the
timeline chart, and which action buttons a version's "Serving" card offers per environment.

Pure functions over rows the views and template tags loaded: no queries in here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.urls import NoReverseMatch, reverse

from governance.serving import selectors
from governance.serving.models import (
    ActionKind,
    ActionStatus,
    Deployment,
    DeploymentState,
    Environment,
)
from workers.serving import health

# Action statuses reuse the colours of evaluation runs (queued, running, succeeded, failed) and the
# lifecycle's (a refusal reads as a rejection, an automatic rollback as "changes requested").
STATUS_CLASSES = {
    ActionStatus.QUEUED: "run-queued",
    ActionStatus.RUNNING: "run-running",
    ActionStatus.SUCCEEDED: "run-succeeded",
    ActionStatus.FAILED: "run-failed",
    ActionStatus.REFUSED: "stage-rejected",
    ActionStatus.ROLLED_BACK: "stage-changes_requested",
}
STATE_CLASSES = {DeploymentState.LIVE: "stage-deployed", DeploymentState.CANARY: "stage-in_review"}
STEP_CLASSES = {"ok": "check-ok", "failed": "check-missing", "refused": "check-missing"}

# What each action does, in words, for the buttons and the confirm page.
ACTION_WORDS = {
    ActionKind.DEPLOY: "Make this version the live one in {env}, replacing what serves there now.",
    ActionKind.CANARY: "Serve this version next to the live one in {env}, with {percent}% of the traffic.",
    ActionKind.PROMOTE: "Give this canary all the traffic in {env}; the version it ran next to stops serving.",
    ActionKind.ROLLBACK: "Serve this version again in {env}, instead of the one live there now.",
    ActionKind.RETIRE: "Stop serving this version in {env} (unloaded from the backend; its records stay).",
}
BUTTON_ORDER = [ActionKind.DEPLOY, ActionKind.CANARY, ActionKind.PROMOTE, ActionKind.ROLLBACK, ActionKind.RETIRE]
DANGER = {ActionKind.RETIRE, ActionKind.ROLLBACK}


def state_label(deployment: Deployment, *, as_then: bool = False) -> str:
    """ "Live" or "Canary · 10%"; for a deployment that ended, "Was live" unless ``as_then`` (a page
    about an instant when it was live)."""
    current = deployment.until is None or as_then
    if deployment.state == DeploymentState.CANARY:
        return f"Canary · {deployment.traffic_percent}%" if current else "Was a canary"
    return "Live" if current else "Was live"


def state_class(deployment: Deployment, *, as_then: bool = False) -> str:
    if deployment.until is None or as_then:
        return STATE_CLASSES.get(deployment.state, "stage-retired")
    return "stage-retired"


def safe_url(url: str) -> str:
    """A backend's URL as shown on a page: scheme, host, port and path only, never a user name, a
    password or a query string (where a token could ride along)."""
    try:
        parts = urlsplit(url or "")
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return ""
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def health_policy(environment: Environment) -> list[tuple[str, str]]:
    seconds = environment.observation_seconds
    return [
        ("Max error rate", f"{environment.max_error_rate:.1%}"),
        ("Max p95 latency", f"{environment.max_p95_ms} ms"),
        ("Observation window", f"{seconds} s" if seconds else "none (the probe alone decides)"),
        ("Minimum requests", str(environment.min_requests)),
        ("Canary traffic", f"{environment.canary_percent}%"),
        (
            "Canary promotion",
            "automatic, once the policy is met over the window" if environment.canary_auto_promote else "by hand",
        ),
        ("Canary breach", "rolled back automatically"),
    ]


VERDICT_CLASSES = {health.MET: "check-ok", health.BREACHED: "check-missing", health.WATCHING: "muted"}


def figures(deployment: Deployment, *, now: dt.datetime) -> dict[str, Any] | None:
    """A current deployment's request figures for a table cell, and a canary's verdict and what the watch
    did about it; ``None`` before the watch first read the backend's metrics."""
    window = selectors.figures(deployment)
    if window is None:
        return None
    latency = window.latency()
    out: dict[str, Any] = {
        "requests": window.requests,
        "error_rate": f"{window.error_rate:.1%}" if window.error_rate is not None else "—",
        "latency": f"{latency[1]} {latency[0]:.0f} ms" if latency else "—",
        "read_at": deployment.stats_at,
    }
    if deployment.state == DeploymentState.CANARY and deployment.until is None:
        verdict = selectors.canary_verdict(deployment, now=now)
        decision = (deployment.stats or {}).get("decision") or {}
        out["verdict"] = {"state": verdict.state, "sentence": verdict.sentence,
                          "class": VERDICT_CLASSES.get(verdict.state, "")}  # fmt: skip
        if decision:
            out["decision"] = decision
    return out


def action_words(kind: str, environment: Environment) -> str:
    return ACTION_WORDS.get(kind, "").format(env=environment.name, percent=environment.canary_percent)


def _instant(text) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(str(text))
    except (TypeError, ValueError):
        return None


def steps(log: list | None) -> list[dict[str, Any]]:
    """An action's step log (``[{at, step, status, message}]``) with its times read back as instants."""
    return [
        {"at": _instant(s.get("at")), "step": s.get("step", ""), "status": s.get("status", ""),
         "message": s.get("message", ""), "ok": s.get("status") == "ok"}
        for s in (log or []) if isinstance(s, dict)
    ]  # fmt: skip


def checked_at(gate: dict[str, Any] | None) -> dt.datetime | None:
    return _instant(gate.get("checked_at")) if gate else None


# --- the gate, as the worker (or the confirm page) saw it ----------------------------------------


def _policy_url(policy_id) -> str:
    if not policy_id:
        return ""
    try:
        return reverse("policy-detail", args=[int(policy_id)])
    except (NoReverseMatch, TypeError, ValueError):
        return ""


def gate_panel(gate: dict[str, Any] | None, *, environment: str, error: str = "") -> dict[str, Any] | None:
    """A verdict (``Verdict.as_dict()``, stored on an action, or made now for a confirm page) in the
    shape ``approvals/_gate_env.html`` draws: one line per gate and quorum rule, no tick buttons."""
    if error:
        return {"environment": environment, "label": environment, "error": error}
    if not gate:
        return None
    lines = [{"line": line, "item": "", "ticked": False} for line in [*gate.get("gates", []), *gate.get("quorum", [])]]
    policy = gate.get("policy") or {}
    return {
        "environment": environment,
        "label": environment,
        "verdict": {"verdict": gate.get("verdict", ""), "summary": gate.get("summary", "")},
        "lines": lines,
        "counts": {
            s: sum(entry["line"].get("status") == s for entry in lines) for s in ("passed", "failed", "missing")
        },
        "policy": {"name": policy.get("name", "—"), "get_absolute_url": _policy_url(policy.get("id"))},
        "revision": {"number": policy.get("revision", "—")},
        "may_tick": False,
        "tick_refusal": "",
    }


# --- what each environment's card and the version card offer ---------------------------------


def available_kinds(*, version, current: list[Deployment], served_here_before: bool, traffic_split: bool) -> list[str]:
    """The actions that make sense for ``version`` in an environment given what is live there now
    (``current``: the model's current deployments in that environment) and whether its backend can
    split traffic (a canary). Offered is not allowed: the confirm page shows the gate and any
    refusal, and the service decides."""
    live = next((d for d in current if d.state == DeploymentState.LIVE), None)
    canary = next((d for d in current if d.state == DeploymentState.CANARY), None)
    mine = [d for d in current if d.version_id == version.pk]
    kinds = []
    if not mine and canary is None:
        kinds.append(ActionKind.DEPLOY)
        if live is not None and traffic_split:
            kinds.append(ActionKind.CANARY)
        if live is not None and served_here_before:
            kinds.append(ActionKind.ROLLBACK)
    if canary is not None and canary.version_id == version.pk:
        kinds.append(ActionKind.PROMOTE)
    if canary is not None and live is not None and live.version_id == version.pk:
        kinds.append(ActionKind.ROLLBACK)  # the canary next to it is rolled back: this one takes all the traffic
    if mine:
        kinds.append(ActionKind.RETIRE)
    return [k for k in BUTTON_ORDER if k in kinds]


# --- the timeline chart ------------------------------------------------------------------------

CHART_COLOURS = {DeploymentState.LIVE: "#2563eb", DeploymentState.CANARY: "#d97706"}


def iso(value: dt.datetime) -> str:
    """``YYYY-MM-DD HH:MM:SS`` in UTC, as Plotly reads dates (``isoformat`` pads the year; strftime does not)."""
    return value.astimezone(dt.UTC).replace(microsecond=0, tzinfo=None).isoformat(sep=" ")


def timeline_figure(deployments: Iterable[Deployment], *, at: dt.datetime, now: dt.datetime) -> dict[str, Any]:
    """A Plotly spec of one environment's deployments: a horizontal bar per deployment, one row per
    model version, from ``since`` to ``until`` (or now), and a line at the instant asked about.

    On a date axis a bar's ``base`` is where it starts and its length is in milliseconds."""
    traces: dict[str, dict[str, Any]] = {}
    rows: list[str] = []
    for d in deployments:
        label = f"{d.model.name} v{d.version.number}"
        if label not in rows:
            rows.append(label)
        end = d.until or now
        state = DeploymentState.CANARY if d.state == DeploymentState.CANARY else DeploymentState.LIVE
        trace = traces.setdefault(
            state,
            {
                "type": "bar", "orientation": "h", "name": "Canary" if state == DeploymentState.CANARY else "Live",
                "x": [], "base": [], "y": [], "text": [], "marker": {"color": CHART_COLOURS[state]},
                "textposition": "none", "hovertemplate": "%{y}<br>%{text}<extra></extra>",
            },
        )  # fmt: skip
        trace["x"].append(max(int((end - d.since).total_seconds() * 1000), 1))
        trace["base"].append(iso(d.since))
        trace["y"].append(label)
        until = "now" if d.until is None else iso(d.until) + " UTC"
        share = f" · {d.traffic_percent}% of traffic" if state == DeploymentState.CANARY else ""
        trace["text"].append(f"{iso(d.since)} UTC → {until}{share}")
    return {
        "data": list(traces.values()),
        "layout": {
            "barmode": "overlay",
            "height": 120 + 32 * max(len(rows), 1),
            "margin": {"t": 16, "r": 16, "b": 40, "l": 150},
            "showlegend": len(traces) > 1,
            "xaxis": {"type": "date", "gridcolor": "#eef2f6"},
            "yaxis": {"type": "category", "categoryorder": "array", "categoryarray": list(reversed(rows)),
                      "automargin": True},
            "shapes": [{
                "type": "line", "xref": "x", "yref": "paper", "x0": iso(at), "x1": iso(at), "y0": 0, "y1": 1,
                "line": {"color": "#dc2626", "width": 2, "dash": "dot"},
            }],
            "annotations": [{
                "x": iso(at), "xref": "x", "y": 1, "yref": "paper", "yanchor": "bottom", "xanchor": "right",
                "text": "asked about ",
                "showarrow": False, "font": {"color": "#dc2626", "size": 11},
            }],
        },
    }  # fmt: skip
