"""Browser pages of the serving app: what is live where (now, and at any instant), each environment,
each deployment action with its live progress, and the confirm page of an action that shows the gate
and any refusal before anyone confirms. Thin views over the same selectors and services as the API.

Environments are site-wide (every signed-in user sees them); deployments and actions come through
selectors scoped to the user, so another team's action is a 404.
"""

from __future__ import annotations

import datetime as dt
from itertools import groupby

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, F, Q, Window
from django.db.models.functions import RowNumber
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from governance.accounts.capabilities import Capability
from governance.accounts.permissions import can
from governance.core.errors import DomainError
from governance.core.ui import show_domain_error
from governance.registry import selectors as registry_selectors
from governance.serving import presenters, selectors, services
from governance.serving.forms import ActionConfirmForm, ProbeForm, TimelineForm
from governance.serving.models import ActionKind, Environment, VersionProbe

PAGE_SIZE = 25
LIVE_PER_ENVIRONMENT = 25  # on the overview; the environment's page lists more
LIVE_ON_ENVIRONMENT_PAGE = 100
TIMELINE_WINDOW = dt.timedelta(days=30)  # the chart shows this much either side of the instant asked about
TIMELINE_BARS = 1000


def _by_environment(environments, deployments) -> list[dict]:
    rows = {key: list(group) for key, group in groupby(deployments, key=lambda d: d.environment_id)}
    return [{"environment": e, "deployments": rows.get(e.pk, [])} for e in environments]


def _live_order():
    return ("environment__position", "environment__name", "model__name", "state")


# --- what is live -------------------------------------------------------------------------------


@login_required
def live(request):
    """Per environment, what is live (or a canary) now: one query for the rows, one for the counts."""
    user = request.user
    environments = list(selectors.environment_list(user=user))
    ranked = (
        selectors.live_now(user=user)
        .annotate(
            rank=Window(RowNumber(), partition_by=[F("environment_id")], order_by=[F("model__name").asc(), F("state")])
        )
        .filter(rank__lte=LIVE_PER_ENVIRONMENT)
        .order_by(*_live_order())
    )
    counts = dict(
        selectors.live_now(user=user)
        .order_by()
        .values_list("environment_id")
        .annotate(n=Count("id"))
        .values_list("environment_id", "n")
    )
    sections = _by_environment(environments, ranked)
    for section in sections:
        section["count"] = counts.get(section["environment"].pk, 0)
    return render(request, "serving/live.html", {"sections": sections, "limit": LIVE_PER_ENVIRONMENT})


@login_required
def environment_detail(request, name: str):
    user = request.user
    environment = get_object_or_404(selectors.environment_list(user=user), name=name)
    current = selectors.live_now(user=user).filter(environment=environment).order_by("model__name", "state")
    live_rows = list(current[: LIVE_ON_ENVIRONMENT_PAGE + 1])
    actions = selectors.action_list(user=user).filter(environment=environment).order_by("-requested_at", "-id")
    page = Paginator(actions, PAGE_SIZE).get_page(request.GET.get("page"))
    page.object_list = list(page.object_list)
    context = {
        "environment": environment,
        "backend": environment.backend,
        "backend_url": presenters.safe_url(environment.backend.url),
        "policy": presenters.health_policy(environment),
        "live": live_rows[:LIVE_ON_ENVIRONMENT_PAGE],
        "more_live": len(live_rows) > LIVE_ON_ENVIRONMENT_PAGE,
        "page": page,
        "may_deploy_somewhere": _may_deploy_somewhere(user),
    }
    return render(request, "serving/environment_detail.html", context)


def _may_deploy_somewhere(user) -> bool:
    from governance.accounts.selectors import team_list

    return any(can(user, Capability.DEPLOY, t.pk) for t in team_list(user=user))


# --- what was live at an instant ---------------------------------------------------------------


@login_required
def timeline(request):
    """What was live in each environment at ``?at=`` (default now), and a chart per environment of
    the deployments around it. A value that is no instant is the form's error, answered 400."""
    user = request.user
    now = timezone.now()
    form = TimelineForm(request.GET if "at" in request.GET else None)
    context = {"form": form, "now": now}
    if form.is_bound and not form.is_valid():
        return render(request, "serving/timeline.html", context, status=400)
    at = (form.cleaned_data.get("at") if form.is_bound else None) or now
    environments = list(selectors.environment_list(user=user))
    live_at = selectors.deployments_at(user=user, instant=at).order_by(*_live_order())
    start, end = _shifted(at, -TIMELINE_WINDOW), min(max(now, at), _shifted(at, TIMELINE_WINDOW))
    around = list(
        selectors.deployment_list(user=user)
        .filter(since__lt=end)
        .filter(Q(until__isnull=True) | Q(until__gt=start))
        .order_by("environment__position", "environment__name", "-since", "-id")[:TIMELINE_BARS]
    )
    sections = _by_environment(environments, live_at)
    charts = {key: list(group) for key, group in groupby(around, key=lambda d: d.environment_id)}
    for section in sections:
        bars = charts.get(section["environment"].pk, [])
        section["figure"] = None
        if bars:
            spec = presenters.timeline_figure(bars, at=at, now=now)
            spec["layout"]["xaxis"]["range"] = [presenters.iso(t) for t in _fitted(bars, at, start, end, now)]
            section["figure"] = {"id": f"timeline-{section['environment'].name}", "spec": spec}
    context |= {
        "at": at,
        "show_results": True,
        "asked": form.is_bound and form.cleaned_data.get("at") is not None,
        "sections": sections,
        "figures": any(s["figure"] for s in sections),
        "window_days": TIMELINE_WINDOW.days,
        "truncated": len(around) >= TIMELINE_BARS,
    }
    return render(request, "serving/timeline.html", context)


def _fitted(bars, at, start, end, now) -> tuple[dt.datetime, dt.datetime]:
    """The chart's time range: the deployments shown and the instant asked about, within the window,
    with a margin (at least ten minutes across, so that a deployment of a few seconds is still seen)."""
    lo = max(start, min(min(d.since for d in bars), at))
    hi = min(end, max(max(d.until or now for d in bars), at))
    span = max(hi - lo, dt.timedelta(minutes=10))
    pad = span * 0.05 + (span - (hi - lo)) / 2
    return _shifted(lo, -pad), _shifted(hi, pad)


def _shifted(instant: dt.datetime, by: dt.timedelta) -> dt.datetime:
    """``instant + by``, stopping at the first or last representable instant (years 1 and 9999)."""
    try:
        return instant + by
    except OverflowError:
        edge = dt.datetime.max if by > dt.timedelta(0) else dt.datetime.min
        return edge.replace(tzinfo=dt.UTC)


# --- one action ---------------------------------------------------------------------------------


def _visible_action(request, pk: int):
    return get_object_or_404(selectors.action_list(user=request.user), pk=pk)


def _action_context(action) -> dict:
    checked_at = presenters.checked_at(action.gate)
    return {
        "action": action,
        "status_class": presenters.STATUS_CLASSES.get(action.status, ""),
        "gate": presenters.gate_panel(action.gate, environment=action.environment.name),
        "gate_checked_at": checked_at,
        # the request stores the gate it saw; the worker replaces it with its own when it acts
        "gate_by_worker": bool(checked_at and action.started_at and checked_at >= action.started_at),
        "steps": presenters.steps(action.steps),
    }


@login_required
def action_detail(request, pk: int):
    action = _visible_action(request, pk)
    return render(request, "serving/action_detail.html", _action_context(action))


@login_required
def action_progress(request, pk: int):
    """The live part of the action page (htmx polls it while the action is queued or running)."""
    action = _visible_action(request, pk)
    response = render(request, "serving/_action_progress.html", _action_context(action) | {"oob": True})
    if not action.in_flight:
        response["HX-Refresh"] = "true"  # ended: reload the whole page with its outcome and gate
    return response


# --- asking for an action: confirm first --------------------------------------------------------


def _preview(user, *, environment: Environment, version, kind: str) -> tuple[selectors.Preview, dict | None]:
    """The gate the worker will re-check and the refusal a request would meet now. A model whose risk
    tier has no policy cannot be judged: that error is the refusal, as the service would answer."""
    try:
        preview = selectors.preview(user=user, environment=environment, version=version, kind=kind)
    except DomainError as exc:
        return selectors.Preview(kind=kind, verdict=None, refusal=exc), presenters.gate_panel(
            None, environment=environment.name, error=exc.detail
        )
    gate = preview.verdict.as_dict() if preview.verdict is not None else None
    return preview, presenters.gate_panel(gate, environment=environment.name)


@login_required
@require_http_methods(["GET", "POST"])
def action_confirm(request, pk: int, environment: str, kind: str):
    user = request.user
    version = get_object_or_404(registry_selectors.version_list(user=user), pk=pk)
    env = get_object_or_404(selectors.environment_list(user=user), name=environment)
    if kind not in ActionKind.values:
        raise Http404("No such deployment action.")
    team = version.model.team
    if request.method == "GET" and not can(user, Capability.DEPLOY, team.pk):
        raise PermissionDenied(f"You need the operator or admin role in {team} to deploy, roll back or retire.")
    form = ActionConfirmForm(request.POST or None)
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            try:
                made = services.action_request(
                    actor=user, environment=env, version=version, kind=kind, reason=form.cleaned_data["reason"]
                )
            except DomainError as exc:
                show_domain_error(request, exc, form)
                status = exc.status
            else:
                messages.success(
                    request,
                    f"{made.action.get_kind_display()} of version {version.number} in {env.name} is queued: the "
                    "worker checks the gate again before it acts.",
                )
                return redirect(made.action)
    preview, gate = _preview(user, environment=env, version=version, kind=kind)
    current = list(selectors.live_now(user=user).filter(environment=env, model=version.model).order_by("state"))
    context = {
        "version": version,
        "model": version.model,
        "environment": env,
        "kind": kind,
        "kind_label": ActionKind(kind).label,
        "words": presenters.action_words(kind, env),
        "form": form,
        "preview": preview,
        "gate": gate,
        "current": current,
        "danger": kind in presenters.DANGER,
    }
    return render(request, "serving/action_confirm.html", context, status=status)


# --- a version's probe request ------------------------------------------------------------------


def _may_set_probe(user, version) -> bool:
    team_id = version.model.team_id
    return can(user, Capability.DEPLOY, team_id) or can(user, Capability.VERSION_UPDATE, team_id)


@login_required
@require_http_methods(["GET", "POST"])
def probe_edit(request, pk: int):
    user = request.user
    version = get_object_or_404(registry_selectors.version_list(user=user), pk=pk)
    if request.method == "GET" and not _may_set_probe(user, version):
        raise PermissionDenied(f"You need the author, operator or admin role in {version.model.team} to set a probe.")
    current = VersionProbe.objects.filter(version=version).first()
    form = ProbeForm(request.POST or None, initial={"payload": current.payload if current else None})
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            try:
                services.probe_set(actor=user, version=version, payload=form.cleaned_data["payload"])
            except DomainError as exc:
                show_domain_error(request, exc, form)
                status = exc.status
            else:
                messages.success(request, f"Saved the probe request of version {version.number}.")
                return redirect(reverse("version-detail", args=[version.pk]) + "#serving")
    context = {"version": version, "model": version.model, "form": form, "current": current}
    return render(request, "serving/probe_form.html", context, status=status)
