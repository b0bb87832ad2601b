"""What is live where, on other apps' pages: the "Serving" card of the version page, the "Live" column
of the models list and the "Live now" panel of the home page. Loaded here rather than by those views,
as the approvals and evaluations panels are, so that no registry view imports the serving app."""

from __future__ import annotations

from django import template
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from governance.accounts.capabilities import Capability
from governance.accounts.permissions import can
from governance.serving import presenters, selectors
from governance.serving.models import ActionKind, Deployment, DeploymentState, VersionProbe

register = template.Library()

HISTORY_ROWS = 20
ACTION_ROWS = 10
HOME_ROWS = 12


@register.simple_tag
def deployment_state(deployment: Deployment, as_then: bool = False) -> str:
    return format_html(
        '<span class="badge stage {}">{}</span>',
        presenters.state_class(deployment, as_then=as_then),
        presenters.state_label(deployment, as_then=as_then),
    )


@register.simple_tag
def action_status(action) -> str:
    return format_html(
        '<span class="badge stage {}">{}</span>',
        presenters.STATUS_CLASSES.get(action.status, ""),
        action.get_status_display(),
    )


@register.inclusion_tag("serving/_figures_cell.html")
def deployment_figures(deployment: Deployment) -> dict:
    """The requests a current deployment served (read by the watch), and a canary's health verdict."""
    figures = presenters.figures(deployment, now=timezone.now())
    reports = figures is not None or selectors.reports_figures(deployment.environment.backend)
    return {"figures": figures, "reports": reports}


@register.simple_tag
def live_by_model(models) -> dict[int, list[Deployment]]:
    """The current deployments of the models on a page, in one query: ``{model id: [deployments]}``."""
    return selectors.live_by_model(model_ids=[m.pk for m in models])


@register.inclusion_tag("serving/_live_now_panel.html", takes_context=True)
def live_now_panel(context):
    user = context["request"].user
    live = selectors.live_now(user=user).order_by("environment__position", "environment__name", "model__name", "state")
    rows = list(live[: HOME_ROWS + 1])
    return {"rows": rows[:HOME_ROWS], "more": len(rows) > HOME_ROWS}


@register.inclusion_tag("serving/_version_serving.html", takes_context=True)
def version_serving_panel(context, version):
    """Where this version is live now, its deployment history and recent actions, its probe request,
    and, for those who may deploy in the owning team, the actions that fit each environment (each
    opens a confirm page that shows the gate and any refusal first)."""
    request = context["request"]
    user = request.user
    team_id = version.model.team_id
    may_deploy = can(user, Capability.DEPLOY, team_id)
    environments = list(selectors.environment_list(user=user))
    current = list(selectors.live_now(user=user).filter(model_id=version.model_id).order_by("state"))
    history = list(
        selectors.deployment_list(user=user).filter(version=version).order_by("-since", "-id")[:HISTORY_ROWS]
    )
    actions = list(
        selectors.action_list(user=user).filter(version=version).order_by("-requested_at", "-id")[:ACTION_ROWS]
    )
    served_before: set[int] = set()
    if may_deploy and environments:
        served_before = set(
            Deployment.objects.filter(version=version, until__isnull=False, state=DeploymentState.LIVE).values_list(
                "environment_id", flat=True
            )
        )
    rows = []
    for environment in environments:
        here = [d for d in current if d.environment_id == environment.pk]
        kinds = []
        if may_deploy:
            kinds = [
                {
                    "kind": kind, "label": ActionKind(kind).label, "danger": kind in presenters.DANGER,
                    "url": reverse("serving-action", args=[version.pk, environment.name, kind]),
                }
                for kind in presenters.available_kinds(
                    version=version, current=here, served_here_before=environment.pk in served_before,
                    traffic_split=selectors.TRAFFIC_SPLIT.get(environment.backend.kind, False),
                )
            ]  # fmt: skip
        rows.append(
            {
                "environment": environment,
                "mine": [d for d in here if d.version_id == version.pk],
                "others": [d for d in here if d.version_id != version.pk],
                "kinds": kinds,
            }
        )
    probe = VersionProbe.objects.filter(version=version).first()
    return {
        "version": version,
        "rows": rows,
        "live_anywhere": any(r["mine"] for r in rows),
        "history": history,
        "actions": actions,
        "may_deploy": may_deploy,
        "probe": probe,
        "may_set_probe": may_deploy or can(user, Capability.VERSION_UPDATE, team_id),
        "csrf_token": context.get("csrf_token"),
        "request": request,
    }
