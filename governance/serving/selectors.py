"""Serving reads. Environments and backends are site-wide (every signed-in user sees their names);
deployments and actions only for the models the user may see."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import Q, QuerySet

from governance.accounts.capabilities import Capability
from governance.accounts.permissions import can, team_filter
from governance.approvals import selectors as approvals_selectors
from governance.approvals.gates import Verdict
from governance.core.errors import Conflict, DomainError, NotPermitted, ValidationFailed
from governance.registry.models import ModelVersion, RegisteredModel
from governance.serving.models import (
    IN_FLIGHT,
    ActionKind,
    BackendKind,
    Deployment,
    DeploymentAction,
    DeploymentState,
    Environment,
    ServingBackend,
)
from workers.serving import health


def backend_list(*, user) -> QuerySet[ServingBackend]:
    return ServingBackend.objects.all() if user.is_authenticated else ServingBackend.objects.none()


def environment_list(*, user) -> QuerySet[Environment]:
    return Environment.objects.select_related("backend") if user.is_authenticated else Environment.objects.none()


def environment_names() -> list[str]:
    return list(Environment.objects.values_list("name", flat=True))


def deployment_list(*, user) -> QuerySet[Deployment]:
    return Deployment.objects.filter(team_filter(user, "model__team_id")).select_related(
        "environment__backend",
        "model",
        "version",
        "action__requested_by",
        "approval_request",
        "policy_revision__policy",
    )


def live_now(*, user) -> QuerySet[Deployment]:
    """What is live (or a canary) now, per environment and model."""
    return deployment_list(user=user).filter(until__isnull=True)


def at(queryset: QuerySet[Deployment], instant: dt.datetime) -> QuerySet[Deployment]:
    """The deployments of ``queryset`` live at ``instant``: started by then and not yet ended."""
    return queryset.filter(since__lte=instant).filter(Q(until__isnull=True) | Q(until__gt=instant))


def deployments_at(*, user, instant: dt.datetime) -> QuerySet[Deployment]:
    """What was live at ``instant``, everywhere the user may see."""
    return at(deployment_list(user=user), instant)


def action_list(*, user) -> QuerySet[DeploymentAction]:
    return DeploymentAction.objects.filter(team_filter(user, "model__team_id")).select_related(
        "environment", "model", "version", "requested_by", "rolled_back_to"
    )


def action_in_flight(*, environment: Environment, model: RegisteredModel) -> DeploymentAction | None:
    return DeploymentAction.objects.filter(environment=environment, model=model, status__in=IN_FLIGHT).first()


def current(
    *, environment: Environment, model: RegisteredModel, state: str = DeploymentState.LIVE
) -> Deployment | None:
    """The live (or canary) deployment of ``model`` in ``environment``; not scoped to a user (services)."""
    return (
        Deployment.objects.filter(environment=environment, model=model, state=state, until__isnull=True)
        .select_related("version")
        .first()
    )


def current_pair(*, environment: Environment, model: RegisteredModel) -> tuple[Deployment | None, Deployment | None]:
    """``current`` for the live and the canary deployment together, in one read: (live, canary)."""
    found: dict[str, Deployment] = {}
    rows = Deployment.objects.filter(
        environment=environment, model=model, state__in=(DeploymentState.LIVE, DeploymentState.CANARY),
        until__isnull=True,
    ).select_related("version")  # fmt: skip
    for deployment in rows:  # in ``current``'s order: the first of each state, as its ``first()`` would pick
        found.setdefault(deployment.state, deployment)
        if deployment.version.model_id == model.pk:
            deployment.version.model = model  # the one already read, not another query for it (and its team)
    return found.get(DeploymentState.LIVE), found.get(DeploymentState.CANARY)


def live_by_model(*, model_ids) -> dict[int, list[Deployment]]:
    """Current deployments of each model, environments in page order (for the models list and home page)."""
    out: dict[int, list[Deployment]] = {}
    rows = (
        Deployment.objects.filter(model_id__in=list(model_ids), until__isnull=True)
        .select_related("environment", "version")
        .order_by("environment__position", "environment__name", "state")
    )
    for deployment in rows:
        out.setdefault(deployment.model_id, []).append(deployment)
    return out


def served_before(*, version: ModelVersion, environment_name: str) -> bool:
    """Whether ``version`` was live in the environment at some time and is not any more."""
    return Deployment.objects.filter(
        version=version, environment__name=environment_name, until__isnull=False, state=DeploymentState.LIVE
    ).exists()


def rollback_targets(*, environment: Environment, model: RegisteredModel) -> list[ModelVersion]:
    """Versions that were live in the environment before and are not now, newest first: those a
    rollback may choose (its gate must still pass: approved for the environment, nothing stale)."""
    live = set(
        Deployment.objects.filter(environment=environment, model=model, until__isnull=True).values_list(
            "version_id", flat=True
        )
    )
    ids = (
        Deployment.objects.filter(environment=environment, model=model, until__isnull=False, state=DeploymentState.LIVE)
        .exclude(version_id__in=live)
        .values_list("version_id", flat=True)
    )
    return list(ModelVersion.objects.filter(pk__in=set(ids)).order_by("-number"))


def probe_payload(*, version: ModelVersion, environment: Environment) -> dict | None:
    """The probe request a deployment of ``version`` in ``environment`` is checked with."""
    try:
        own = version.probe
    except ModelVersion.probe.RelatedObjectDoesNotExist:
        own = None
    return own.payload if own is not None else environment.probe_payload


# Backend kinds that can split traffic (a canary next to the live release). The worker asks the
# driver itself at the moment of acting; this answers the request before anything is queued.
TRAFFIC_SPLIT = {BackendKind.MLSERVER: False, BackendKind.KSERVE: True}


def action_refusal(
    user,
    *,
    environment: Environment,
    version: ModelVersion,
    kind: str,
    verdict: Verdict | None,
    acting: DeploymentAction | None = None,
    deployments: tuple[Deployment | None, Deployment | None] | None = None,
) -> DomainError | None:
    """Why ``user`` may not ask for this action now, or ``None`` when they may. The one statement of
    the rule: the service raises what this returns, and the version page shows it before anyone
    confirms, and the worker checks it again when it acts (``acting``: the action it runs, which is
    in flight itself). ``verdict`` is the gate for (version, environment), ``None`` for a retirement.
    ``deployments``: ``current_pair`` for (environment, model), when the caller read it in the same
    transaction (the worker, which plans from it too); otherwise read here."""
    model = version.model
    if not can(user, Capability.DEPLOY, model.team_id):
        return NotPermitted(
            f"You need the operator or admin role in {model.team} to deploy, roll back or retire its models.",
        )
    live, canary = deployments if deployments is not None else current_pair(environment=environment, model=model)
    name, env = f"Version {version.number} of {model.name}", environment.name
    if kind == ActionKind.DEPLOY:
        if live is not None and live.version_id == version.pk:
            return Conflict(f"{name} is already live in {env}.", code="already_live")
        if canary is not None:
            return Conflict(
                f"Version {canary.version.number} is a canary in {env}: promote it or roll it back first.",
                code="canary_in_progress",
            )
    elif kind == ActionKind.CANARY:
        if not TRAFFIC_SPLIT.get(environment.backend.kind, False):
            return Conflict(
                f"The {environment.backend.get_kind_display()} backend of {env} cannot split traffic between two "
                "versions, so it cannot run a canary; deploy the version instead, or use an environment on KServe.",
                code="capability_missing",
            )
        if live is None:
            return Conflict(f"Nothing of {model.name} is live in {env} to run a canary next to; deploy instead.",
                            code="nothing_live")  # fmt: skip
        if live.version_id == version.pk or canary is not None:
            what = "is already live" if live.version_id == version.pk else "already has a canary"
            return Conflict(f"{model.name} {what} in {env}.", code="canary_in_progress")
    elif kind == ActionKind.PROMOTE:
        if canary is None or canary.version_id != version.pk:
            return Conflict(f"{name} is not the canary in {env}; only a canary is promoted.", code="not_canary")
    elif kind == ActionKind.ROLLBACK:
        # rolling a canary back by hand: the version live next to it takes all the traffic back
        ends_canary = canary is not None and live is not None and live.version_id == version.pk
        if not ends_canary and (live is None or live.version_id == version.pk):
            what = "nothing is live" if live is None else f"{name} is the one live"
            return Conflict(f"There is nothing to roll back from in {env}: {what}.", code="rollback_target_invalid")
        if not ends_canary and version.pk not in {v.pk for v in rollback_targets(environment=environment, model=model)}:
            return Conflict(
                f"{name} was never live in {env}, so it cannot be rolled back to: a rollback goes only to a version "
                "approved for the environment and served there before.",
                code="rollback_target_invalid",
            )
    elif kind == ActionKind.RETIRE:
        if not Deployment.objects.filter(environment=environment, version=version, until__isnull=True).exists():
            return Conflict(f"{name} is not live in {env}, so there is nothing to retire there.", code="not_live")
    else:
        return ValidationFailed(
            f"'{kind}' is not a deployment action. Choose one of: {', '.join(ActionKind.values)}.", code="invalid_kind"
        )
    if verdict is not None and not verdict.passed:
        return Conflict(f"The deployment gate refuses it: {verdict.summary}", code="gate_failed")
    if kind != ActionKind.RETIRE and probe_payload(version=version, environment=environment) is None:
        return ValidationFailed(
            f"No probe request is stored for {name} or for {env}, so a deployment could not be checked with a real "
            "prediction: set one (PUT /api/v1/versions/{id}/probe/) first.".replace("{id}", str(version.pk)),
            code="probe_missing",
        )
    running = action_in_flight(environment=environment, model=model)
    if running is not None and (acting is None or running.pk != acting.pk):
        return in_progress(running)
    return None


def in_progress(running: DeploymentAction) -> Conflict:
    return Conflict(
        f"Action #{running.pk} ({running.get_kind_display().lower()} of version {running.version.number}) is "
        f"{running.get_status_display().lower()} for {running.model.name} in {running.environment.name}; "
        "one action at a time per model and environment: wait for it to finish.",
        code="action_in_progress",
    )


@dataclass(frozen=True)
class Preview:
    """What the action buttons show before anyone confirms: the gate the worker will re-check, and
    the refusal the request would meet now (if any)."""

    kind: str
    verdict: Verdict | None
    refusal: DomainError | None

    @property
    def allowed(self) -> bool:
        return self.refusal is None


def gate_for(*, version: ModelVersion, environment: Environment, kind: str) -> Verdict | None:
    if kind == ActionKind.RETIRE:
        return None
    return approvals_selectors.gate_check(version=version, environment=environment.name)


def preview(*, user, environment: Environment, version: ModelVersion, kind: str) -> Preview:
    verdict = gate_for(version=version, environment=environment, kind=kind)
    refusal = action_refusal(user, environment=environment, version=version, kind=kind, verdict=verdict)
    return Preview(kind=kind, verdict=verdict, refusal=refusal)


def open_drift(*, environment: Environment) -> dict[str, dict]:
    """The differences between ``environment``'s backend and the record that are open now, by key: what
    the latest ``serving.drift`` or ``serving.drift.resolved`` event of the environment left open (each
    carries the whole set). Not scoped to a user (the periodic reconcile)."""
    import json

    from governance.audit.actions import AuditAction
    from governance.audit.models import AuditEvent

    changes = (
        AuditEvent.objects.filter(
            object_type=Environment._meta.label_lower,
            object_id=str(environment.pk),
            action__in=[AuditAction.SERVING_DRIFT, AuditAction.SERVING_DRIFT_RESOLVED],
        )
        .order_by("-seq")
        .values_list("changes", flat=True)
        .first()
    )
    if changes is None:
        return {}
    return dict(json.loads(changes).get("after", {}).get("open") or {})


def health_policy(environment: Environment):
    return health.Policy(
        max_error_rate=environment.max_error_rate, max_latency_ms=environment.max_p95_ms,
        min_requests=environment.min_requests, observation_seconds=environment.observation_seconds,
    )  # fmt: skip


def reports_figures(backend: ServingBackend) -> bool:
    """Whether the watch can read request figures from this backend (the drivers' ``capabilities().metrics``,
    answered from the settings, without asking the backend)."""
    config = backend.config or {}
    if backend.kind == BackendKind.MLSERVER:
        return bool(config.get("local") or config.get("metrics_url"))
    return bool(config.get("prometheus_url"))


def figures(deployment: Deployment):
    """A current deployment's request figures since the watch first read them (``Window``), or ``None``
    before the first reading."""
    return health.stored_window(deployment.stats) if deployment.stats is not None else None


def canary_verdict(deployment: Deployment, *, now: dt.datetime):
    """The health policy applied to a running canary's figures (``health.Verdict``): watching, met or
    breached. The watch acts on it; the pages show it."""
    window = figures(deployment) or health.Window()
    elapsed = (now - deployment.since).total_seconds()
    return health.judge_canary(health_policy(deployment.environment), window, elapsed_seconds=elapsed)
