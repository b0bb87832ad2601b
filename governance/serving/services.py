"""Serving writes: backends and environments (site administrators), a version's probe request, and
deployment actions — requested here, executed by the worker (``workers/deploy.py``) through the steps
below.

The request checks what it can at once (role, token scope, the gate, the probe, what is live) and
refuses with a code; the worker checks all of it again when it acts, with the same
``selectors.action_refusal`` and the same ``gates.evaluate`` the API uses, so an approval that went
stale, expired or does not cover the environment stops the action there, and a hand-made task message
can do nothing a request could not. The worker takes the action's lease (``governance.core.leases``),
drives the backend with idempotent steps, and records the outcome — what is live, the version's
stage, the audit event — in one transaction at the end; a worker that died is picked up again by the
lease sweep, which re-queues the action (the backend steps are repeated harmlessly) or fails it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from governance.accounts.capabilities import Capability
from governance.accounts.permissions import can, require_scope
from governance.audit import services as audit
from governance.audit.actions import AuditAction
from governance.audit.refusals import record_refusal
from governance.celery import enqueue_on_commit
from governance.core import leases
from governance.core.errors import Conflict, DomainError, NotFound, NotPermitted, ValidationFailed
from governance.core.retry import retry_once
from governance.notifications import crypto
from governance.registry.models import ModelVersion, Stage
from governance.registry.services import version_transition_by_serving
from governance.serving import selectors
from governance.serving.models import (
    IN_FLIGHT,
    ActionKind,
    ActionStatus,
    BackendKind,
    Deployment,
    DeploymentAction,
    DeploymentState,
    Environment,
    ServingBackend,
    VersionProbe,
)
from workers.serving import health

WORKER_LOST = "worker_lost"
TASK = "workers.deploy.run_action"
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,58}[a-z0-9])?$")
PROBE_MAX_BYTES = 64 * 1024


def _site_admin(actor, what: str) -> None:
    require_scope(actor, "admin")
    if not actor.is_superuser:
        raise NotPermitted(f"Only site administrators may {what}.")


def _check_name(name: str, what: str) -> None:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValidationFailed(
            f"A {what} name is 1 to 60 lowercase letters, digits and hyphens, starting and ending with a letter "
            "or digit.",
            code="invalid_name", fields={"name": ["Lowercase letters, digits and hyphens."]},
        )  # fmt: skip


# --- backends and environments ----------------------------------------------------------------


@transaction.atomic
def backend_create(*, actor, name: str, kind: str, url: str, config: dict | None = None, credentials: str = ""):
    """Register a serving backend. ``credentials`` (a token, a kubeconfig) are stored encrypted."""
    _site_admin(actor, "register serving backends")
    _check_name(name, "backend")
    if kind not in BackendKind.values:
        raise ValidationFailed(
            f"'{kind}' is not a backend kind. Choose one of: {', '.join(BackendKind.values)}.", code="invalid_kind"
        )
    if ServingBackend.objects.filter(name=name).exists():
        raise Conflict(f"A serving backend named {name} already exists.", code="name_taken")
    backend = ServingBackend.objects.create(
        name=name, kind=kind, url=url, config=config or {}, created_by=actor,
        credentials_encrypted=crypto.encrypt(credentials) if credentials else "",
    )  # fmt: skip
    audit.record(
        action=AuditAction.SERVING_BACKEND_CREATE, obj=backend,
        after=audit.snapshot(backend) | {"credentials": bool(credentials)}, actor=actor,
    )  # fmt: skip
    return backend


ENVIRONMENT_FIELDS = (
    "description", "position", "probe_payload", "max_error_rate", "max_p95_ms", "observation_seconds", "min_requests",
    "canary_percent", "canary_auto_promote",
)  # fmt: skip


@transaction.atomic
def environment_create(*, actor, name: str, backend: ServingBackend, **settings: Any) -> Environment:
    _site_admin(actor, "create environments")
    _check_name(name, "environment")
    unknown = set(settings) - set(ENVIRONMENT_FIELDS)
    if unknown:
        raise ValidationFailed(f"Unknown environment settings: {', '.join(sorted(unknown))}.", code="invalid")
    if settings.get("probe_payload") is not None:
        check_probe(settings["probe_payload"])
    if Environment.objects.filter(name=name).exists():
        raise Conflict(f"An environment named {name} already exists.", code="name_taken")
    environment = Environment.objects.create(name=name, backend=backend, created_by=actor, **settings)
    audit.record(
        action=AuditAction.SERVING_ENVIRONMENT_CREATE, obj=environment, after=audit.snapshot(environment), actor=actor
    )
    return environment


@transaction.atomic
def environment_update(*, actor, environment: Environment, **settings: Any) -> Environment:
    """Change an environment's description, position or health policy (site administrators); its name
    and backend stay, since what is live there was deployed to that backend under that name. A change
    applies to the next action and the watch's next reading, not to actions already running."""
    _site_admin(actor, "change environments")
    unknown = set(settings) - set(ENVIRONMENT_FIELDS)
    if unknown:
        raise ValidationFailed(
            f"Unknown or unchangeable environment settings: {', '.join(sorted(unknown))}.", code="invalid"
        )
    if settings.get("probe_payload") is not None:
        check_probe(settings["probe_payload"])
    environment = Environment.objects.select_for_update().get(pk=environment.pk)
    before = audit.snapshot(environment)
    for field, value in settings.items():
        setattr(environment, field, value)
    environment.save(update_fields=list(settings) or None)
    audit.record(
        action=AuditAction.SERVING_ENVIRONMENT_UPDATE, obj=environment, before=before,
        after=audit.snapshot(environment), actor=actor,
    )  # fmt: skip
    return environment


def check_probe(payload) -> None:
    """An Open Inference Protocol v2 request body: ``{"inputs": [{"name", "shape", "datatype", "data"}]}``."""
    problem = None
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list) or not payload["inputs"]:
        problem = 'An Open Inference Protocol request: {"inputs": [{"name", "shape", "datatype", "data"}, ...]}.'
    else:
        for item in payload["inputs"]:
            if not isinstance(item, dict) or not {"name", "shape", "datatype", "data"} <= set(item):
                problem = "Each input has a name, a shape, a datatype and its data."
                break
            if not isinstance(item["name"], str) or not isinstance(item["datatype"], str):
                problem = 'An input\'s name and datatype are strings, e.g. "predict" and "FP64".'
                break
            shape = item["shape"]
            if not isinstance(shape, list) or not shape or not all(type(n) is int and n > 0 for n in shape):
                problem = "An input's shape is a list of positive integers, e.g. [1, 4]."
                break
            if not isinstance(item["data"], list):
                problem = "An input's data is a list of values, e.g. [0.5, 1.2, 3.0, 7.1]."
                break
    if problem is None and len(json.dumps(payload)) > PROBE_MAX_BYTES:
        problem = f"A probe request is at most {PROBE_MAX_BYTES // 1024} KB."
    if problem:
        raise ValidationFailed(problem, code="invalid_probe", fields={"payload": [problem]})


@transaction.atomic
def probe_set(*, actor, version: ModelVersion, payload: dict) -> VersionProbe:
    """Store the probe request a version's deployments are checked with (not evidence: any time)."""
    team_id = version.model.team_id
    if not (can(actor, Capability.DEPLOY, team_id) or can(actor, Capability.VERSION_UPDATE, team_id)):
        raise NotPermitted("You need the author, operator or admin role in the owning team to set a probe request.")
    token_scopes = getattr(getattr(actor, "_charter_token", None), "scopes", None)
    if token_scopes is not None and not ({"write", "deploy"} & set(token_scopes)):
        require_scope(actor, "deploy")
    check_probe(payload)
    before = VersionProbe.objects.filter(version=version).values_list("payload", flat=True).first()
    probe, _ = VersionProbe.objects.update_or_create(
        version=version, defaults={"payload": payload, "updated_by": actor}
    )
    audit.record(
        action=AuditAction.SERVING_PROBE_SET, obj=version, before={"probe": before} if before else None,
        after={"probe": payload}, actor=actor,
    )  # fmt: skip
    return probe


# --- requesting an action ---------------------------------------------------------------------


@dataclass(frozen=True)
class Requested:
    action: DeploymentAction
    created: bool  # False: the same Idempotency-Key was used before, and this is that action


def action_request(
    *,
    actor,
    environment: Environment,
    version: ModelVersion,
    kind: str,
    reason: str = "",
    idempotency_key: str = "",
    automatic: bool = False,
) -> Requested:
    """Queue a deploy, canary, promote, rollback or retire of ``version`` in ``environment``.

    Refused at once, with a code and an audit event, when a request could not go through now. With an
    ``idempotency_key`` a retried request (the same requester, key and action) returns the first one."""
    try:
        return _action_request(
            actor=actor, environment=environment, version=version, kind=kind, reason=reason,
            idempotency_key=idempotency_key, automatic=automatic,
        )  # fmt: skip
    except DomainError as exc:
        record_refusal(
            action=AuditAction.SERVING_ACTION_REFUSED, exc=exc, actor=actor, obj=version,
            changes={"kind": kind, "environment": environment.name, "stage": "request", "automatic": automatic},
        )  # fmt: skip
        exc.refusal_recorded = True
        raise


@retry_once
@transaction.atomic
def _action_request(*, actor, environment, version, kind, reason, idempotency_key, automatic=False) -> Requested:
    require_scope(actor, "deploy")
    if idempotency_key:
        earlier = DeploymentAction.objects.filter(requested_by=actor, idempotency_key=idempotency_key).first()
        if earlier is not None:
            if (earlier.environment_id, earlier.version_id, earlier.kind) != (environment.pk, version.pk, kind):
                raise Conflict(
                    f"This Idempotency-Key was used for action #{earlier.pk} ({earlier.kind} of version "
                    f"{earlier.version.number} in {earlier.environment.name}); use a new key for a new action.",
                    code="idempotency_key_reused",
                )
            return Requested(action=earlier, created=False)
    verdict = selectors.gate_for(version=version, environment=environment, kind=kind)
    refusal = selectors.action_refusal(actor, environment=environment, version=version, kind=kind, verdict=verdict)
    if refusal is not None:
        raise refusal
    try:
        with transaction.atomic():
            action = DeploymentAction.objects.create(
                kind=kind, environment=environment, model=version.model, version=version, reason=reason[:500],
                requested_by=actor, idempotency_key=idempotency_key, automatic=automatic,
                gate=verdict.as_dict() if verdict is not None else None,
            )  # fmt: skip
    except IntegrityError:
        running = selectors.action_in_flight(environment=environment, model=version.model)
        if running is None:
            raise
        raise selectors.in_progress(running) from None
    audit.record(
        action=AuditAction.SERVING_ACTION, obj=action, after=_summary(action) | {"reason": action.reason}, actor=actor
    )
    enqueue_on_commit(TASK, action.pk, actor=actor)
    return Requested(action=action, created=True)


def _summary(action: DeploymentAction) -> dict[str, Any]:
    return {
        "kind": action.kind, "environment": action.environment.name, "model": action.model_id,
        "version": action.version_id, "version_number": action.version.number, "status": action.status,
        "automatic": action.automatic,
    }  # fmt: skip


# --- the worker's steps -----------------------------------------------------------------------


def _locked(action_id: int) -> DeploymentAction:
    action = (
        DeploymentAction.objects.select_for_update(of=("self",))
        .select_related("environment__backend", "model__team", "version__model__team", "requested_by")
        .filter(pk=action_id)
        .first()
    )
    if action is None:
        raise NotFound("This deployment action does not exist.", code="action_not_found")
    return action


@retry_once
@transaction.atomic
def action_start(*, action_id: int, host: str) -> DeploymentAction | None:
    """Take the action's lease and mark it running; ``None`` when there is nothing to do (it ended, or
    another execution holds it). A running action whose lease ran out lost its worker: this is its
    message again, and it starts over (each backend step is idempotent; the worker first puts the backend
    back as recorded). After its last start the next one only puts the backend back and fails the action
    (``cleaning_up``); once the clean-up has had its starts too, the action fails here at once."""
    try:
        action = _locked(action_id)
    except NotFound:
        return None
    if action.status not in IN_FLIGHT:
        return None
    # A queued action's lease was released when it was queued; ``take`` below refuses a held one anyway
    # (one UPDATE decides). A running one may be held by the execution running it: leave it alone.
    if action.status == ActionStatus.RUNNING:
        if leases.is_held(action):
            return None
        if action.attempts >= start_limit():
            _append(action, "lost", "The worker was lost.", status="failed")
            _end(action, status=ActionStatus.FAILED, code=WORKER_LOST, message=_lost_message(action, restored=False))
            return None
    action.attempts += 1  # what ``take`` counts: the row is locked, nobody else counts a start in between
    if cleaning_up(action):
        _append(action, "start", f"Started on {host[:80]} (start {action.attempts}) to put the backend back as "
                "recorded: the worker of the action's last attempt was lost.")  # fmt: skip
    else:
        _append(action, "start", f"Started on {host[:80]} (attempt {action.attempts})")
    token = leases.take(
        DeploymentAction.objects.filter(status__in=IN_FLIGHT), pk=action.pk, status=ActionStatus.RUNNING,
        started_at=timezone.now(), steps=action.steps,
    )  # fmt: skip
    if token is None:
        return None
    action.refresh_from_db()
    return action


def _lost_message(action: DeploymentAction, *, restored: bool, problem: str = "") -> str:
    attempts = min(action.attempts, leases.max_attempts())
    lost = (
        f"The worker running this action was lost (stopped without finishing) {attempts} time"
        f"{'s' if attempts != 1 else ''}; it was not started again."
    )
    if restored:
        return (
            f"{lost} The backend was put back as recorded: what the deployments list shows is live; request the "
            "action again."
        )
    why = f" ({problem})" if problem else ""
    return (
        f"{lost} The backend could not be checked against the record{why}: it may still hold what this action "
        "loaded; the periodic reconcile reports any difference. What is live by the record is what the deployments "
        "list shows; request the action again."
    )


def action_renew(*, action_id: int, lease: str) -> bool:
    return leases.renew(DeploymentAction.objects.filter(status=ActionStatus.RUNNING), pk=action_id, token=lease)


def _entry(step: str, message: str, status: str = "ok") -> dict[str, str]:
    """One line of an action's step log."""
    return {"at": timezone.now().isoformat(), "step": step, "status": status, "message": message[:500]}


def _append(action: DeploymentAction, step: str, message: str, status: str = "ok") -> None:
    action.steps = [*action.steps, _entry(step, message, status)]


@retry_once
@transaction.atomic
def action_log(*, action_id: int, lease: str, step: str, message: str, status: str = "ok") -> bool:
    """Add a step to the action's log, renewing its lease, in one locked read of the steps and one
    write; False once the lease is not the caller's."""
    mine = DeploymentAction.objects.filter(status=ActionStatus.RUNNING, lease_token=lease)
    steps = mine.select_for_update(of=("self",)).filter(pk=action_id).values_list("steps", flat=True).first()
    if steps is None:
        return False
    return leases.renew(mine, pk=action_id, token=lease, steps=[*steps, _entry(step, message, status)])


@dataclass(frozen=True)
class Release:
    """A version as the worker hands it to a backend."""

    version: ModelVersion
    endpoint: str
    name: str


def endpoint_name(model) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", f"{model.team.slug}-{model.name}".lower()).strip("-")
    return base[:50].rstrip("-") or f"model-{model.pk}"


def release_of(version: ModelVersion) -> Release:
    endpoint = endpoint_name(version.model)
    return Release(version=version, endpoint=endpoint, name=f"{endpoint}-v{version.number}")


@dataclass(frozen=True)
class Plan:
    """What the worker is to do, as checked at the moment of acting."""

    action: DeploymentAction
    backend: ServingBackend
    target: Release
    live: Release | None  # what serves the endpoint now (before the action)
    canary: Release | None
    probe: dict | None
    trusted_uploader: bool  # pickle formats run code when loaded: only an author's upload is handed over


@dataclass(frozen=True)
class Refused:
    """The check at the moment of acting said no; the action is recorded as refused."""

    code: str
    message: str


@retry_once
@transaction.atomic
def action_plan(*, action_id: int, lease: str) -> Plan | Refused:
    """Check the action again, now, as the request was checked — the requester's roles, the gate for
    the environment, what is live — and say what to do; ``Refused`` (the action recorded as refused,
    with the gate it saw) when it may not go ahead."""
    from governance.accounts.capabilities import roles_for
    from governance.accounts.models import Membership

    action = _locked(action_id)
    if action.status != ActionStatus.RUNNING or action.lease_token != lease:
        return Refused("lease_lost", "Another execution took this action over.")
    environment, version, model = action.environment, action.version, action.model
    requester = action.requested_by
    verdict = selectors.gate_for(version=version, environment=environment, kind=action.kind)
    action.gate = verdict.as_dict() if verdict is not None else None
    # what is live, read once: the refusal checks judge it, and the plan acts on it
    deployments = selectors.current_pair(environment=environment, model=model)
    if requester is None:
        refusal: DomainError | None = NotPermitted("The person who asked for this action no longer exists.")
    else:
        refusal = selectors.action_refusal(
            requester, environment=environment, version=version, kind=action.kind, verdict=verdict, acting=action,
            deployments=deployments,
        )  # fmt: skip
    if refusal is not None:
        _append(action, "gate", refusal.detail, status="refused")
        _end(action, status=ActionStatus.REFUSED, code=refusal.code, message=refusal.detail)
        return Refused(refusal.code, refusal.detail)
    _append(action, "gate", verdict.summary if verdict is not None else "Retiring needs no gate.")
    action.save(update_fields=["gate", "steps"])
    live, canary = deployments
    trusted = Membership.objects.filter(
        user_id=version.created_by_id, team_id=model.team_id, role__in=roles_for(Capability.VERSION_CREATE)
    ).exists()
    return Plan(
        action=action, backend=environment.backend, target=release_of(version),
        live=release_of(live.version) if live is not None else None,
        canary=release_of(canary.version) if canary is not None else None,
        probe=selectors.probe_payload(version=version, environment=environment), trusted_uploader=trusted,
    )  # fmt: skip


@retry_once
@transaction.atomic
def action_succeed(*, action_id: int, lease: str, artifact_sha256: str = "", note: str = "") -> DeploymentAction | None:
    """Record what the backend now serves: the deployments, the versions' stages, the action's outcome
    and its audit event, together. ``None`` when the lease is no longer the caller's."""
    action = _locked(action_id)
    if action.status != ActionStatus.RUNNING or action.lease_token != lease:
        return None
    now, environment, version, model = timezone.now(), action.environment, action.version, action.model
    live, canary = selectors.current_pair(environment=environment, model=model)
    # The versions whose stage follows what is live, locked in one read, in id order and before anything here
    # takes the audit chain head (the lock order of governance/audit/services.py); with their model, which
    # the stage's audit record names.
    versions = {
        v.pk: v
        for v in ModelVersion.objects.select_for_update(of=("self",))
        .select_related("model")
        .filter(pk__in={version.pk} | {d.version_id for d in (live, canary) if d is not None})
        .order_by("pk")
    }
    touched = {version.pk: versions[version.pk]}
    gate = action.gate or {}

    def end(deployment: Deployment | None) -> None:
        if deployment is not None:
            deployment.until, deployment.ended_by_action = now, action
            deployment.save(update_fields=["until", "ended_by_action"])
            touched[deployment.version_id] = versions[deployment.version_id]

    def start(state: str, percent: int) -> None:
        Deployment.objects.create(
            environment=environment, model=model, version=version, state=state, traffic_percent=percent, since=now,
            action=action, approval_request_id=gate.get("request_id"),
            policy_revision_id=_revision_id(gate),
        )  # fmt: skip

    def carry_on(deployment: Deployment, percent: int) -> None:
        """The same release goes on serving, with another share: a new span of the history."""
        end(deployment)
        Deployment.objects.create(
            environment=environment, model=model, version=deployment.version, state=deployment.state,
            traffic_percent=percent, since=now, action=action, approval_request_id=deployment.approval_request_id,
            policy_revision_id=deployment.policy_revision_id,
        )  # fmt: skip

    if action.kind == ActionKind.DEPLOY:
        end(live)
        start(DeploymentState.LIVE, 100)
    elif action.kind == ActionKind.ROLLBACK:
        end(canary)  # a rollback ends any canary: the version rolled back to takes all the traffic
        end(live)
        start(DeploymentState.LIVE, 100)
    elif action.kind == ActionKind.CANARY:
        if live is not None:
            carry_on(live, 100 - environment.canary_percent)
        start(DeploymentState.CANARY, environment.canary_percent)
    elif action.kind == ActionKind.PROMOTE:
        end(live)
        end(canary)
        start(DeploymentState.LIVE, 100)
    elif action.kind == ActionKind.RETIRE:
        for deployment in (live, canary):
            if deployment is not None and deployment.version_id == version.pk:
                end(deployment)
    if action.kind == ActionKind.ROLLBACK:
        action.rolled_back_to = version
    action.artifact_sha256 = artifact_sha256
    _append(action, "done", note or f"{action.get_kind_display()} done.")
    _end(action, status=ActionStatus.SUCCEEDED)
    _follow_lifecycle(touched.values(), actor=action.requested_by, action=action)
    return action


def _revision_id(gate: dict) -> int | None:
    from governance.approvals.models import PolicyRevision

    policy = gate.get("policy") or {}
    if not policy.get("id"):
        return None
    return (
        PolicyRevision.objects.filter(policy_id=policy["id"], number=policy.get("revision"))
        .values_list("pk", flat=True)
        .first()
    )


def _follow_lifecycle(versions, *, actor, action: DeploymentAction) -> None:
    """A version is deployed while it is live (or a canary) somewhere, and leaves that stage when it
    is live nowhere: back to approved, or retired when this action retired it. ``versions``: locked
    by the caller (``select_for_update``) before its deployments' writes."""
    versions = list(versions)
    live_somewhere = set(
        Deployment.objects.filter(version__in=[v.pk for v in versions], until__isnull=True).values_list(
            "version_id", flat=True
        )
    )
    for version in versions:
        live = version.pk in live_somewhere
        to = None
        if live and version.stage == Stage.APPROVED:
            to = Stage.DEPLOYED
        elif not live and version.stage == Stage.DEPLOYED:
            to = (
                Stage.RETIRED
                if action.kind == ActionKind.RETIRE and version.pk == action.version_id
                else Stage.APPROVED
            )
        if to is not None:
            version_transition_by_serving(
                actor=actor, version=version, to=to, reason=f"{action.get_kind_display()} #{action.pk} in "
                f"{action.environment.name}",
            )  # fmt: skip


@retry_once
@transaction.atomic
def action_fail(
    *, action_id: int, lease: str, code: str, message: str, rolled_back: bool = False
) -> DeploymentAction | None:
    """The action did not change what is live (a failure), or a failed check rolled it back by itself
    (``rolled_back``): the previous release serves again. ``None`` when the lease is not the caller's."""
    action = _locked(action_id)
    if action.status != ActionStatus.RUNNING or action.lease_token != lease:
        return None
    _append(action, "failed" if not rolled_back else "rolled back", message, status="failed")
    if rolled_back:
        live = selectors.current(environment=action.environment, model=action.model)
        action.rolled_back_to = live.version if live is not None else None
    _end(action, status=ActionStatus.ROLLED_BACK if rolled_back else ActionStatus.FAILED, code=code, message=message)
    return action


@retry_once
@transaction.atomic
def action_refuse(*, action_id: int, lease: str, code: str, message: str) -> DeploymentAction | None:
    """The worker found, at the moment of acting, that the action may not go ahead (the artifact's bytes
    changed, a format the backend cannot serve...): refused, with nothing handed to the backend."""
    action = _locked(action_id)
    if action.status != ActionStatus.RUNNING or action.lease_token != lease:
        return None
    _append(action, "refused", message, status="refused")
    _end(action, status=ActionStatus.REFUSED, code=code, message=message)
    return action


def _end(action: DeploymentAction, *, status: str, code: str = "", message: str = "") -> None:
    before = {"status": action.status}
    action.status, action.error_code, action.error_message = status, code, message
    action.finished_at = timezone.now()
    action.save(
        update_fields=[
            "status", "error_code", "error_message", "finished_at", "steps", "gate", "artifact_sha256",
            "rolled_back_to", *leases.release(action),
        ]
    )  # fmt: skip
    audit_action = {
        ActionStatus.SUCCEEDED: AuditAction.SERVING_ACTION_SUCCEEDED,
        ActionStatus.FAILED: AuditAction.SERVING_ACTION_FAILED,
        ActionStatus.ROLLED_BACK: AuditAction.SERVING_ACTION_ROLLED_BACK,
        ActionStatus.REFUSED: AuditAction.SERVING_ACTION_REFUSED,
    }[status]
    after = _summary(action) | {"artifact_sha256": action.artifact_sha256, "gate": (action.gate or {}).get("verdict")}
    if code:
        after |= {"code": code, "detail": message}
    if action.rolled_back_to_id:
        after["rolled_back_to"] = action.rolled_back_to_id
    if status == ActionStatus.REFUSED:
        after["stage"] = "worker"
    audit.record(action=audit_action, obj=action, before=before, after=after, actor=None)


# --- after a lost worker: the backend back as recorded -----------------------------------------
#
# Every backend step runs before the one transaction that records the outcome, so a worker killed in
# between leaves the backend holding what the record does not say (a new release loaded, the one it
# replaced unloaded). Whoever picks the action up again first puts the backend back as the record has
# it (``workers.deploy.put_back``): a start after a lost one, before it acts again; the start after
# the last one, which then fails the action with ``worker_lost``; and a failure of the worker's own.


def start_limit() -> int:
    """Starts an action may have: its attempts, and as many to put the backend back after the last."""
    return 2 * leases.max_attempts()


def cleaning_up(action: DeploymentAction) -> bool:
    """This start only puts the backend back as recorded: the action's last attempt was lost."""
    return action.attempts > leases.max_attempts()


@dataclass(frozen=True)
class Recorded:
    """What the record says the backend should serve for the action's model in its environment."""

    action: DeploymentAction
    backend: ServingBackend
    target: Release  # the release the action was to make serve (or to retire)
    live: Release | None
    canary: Release | None
    canary_percent: int
    known: dict[str, Release]  # every release an action put on this environment's endpoint, by name


@retry_once
@transaction.atomic
def action_recorded(*, action_id: int, lease: str) -> Recorded | None:
    """What is live by the record for the action's (environment, model); ``None`` once the lease is not
    the caller's."""
    action = _locked(action_id)
    if action.status != ActionStatus.RUNNING or action.lease_token != lease:
        return None
    environment, model = action.environment, action.model
    live = selectors.current(environment=environment, model=model)
    canary = selectors.current(environment=environment, model=model, state=DeploymentState.CANARY)
    acted_on = ModelVersion.objects.filter(
        pk__in=DeploymentAction.objects.filter(environment=environment, model=model).values("version_id")
    ).select_related("model__team")
    known = {release.name: release for release in map(release_of, acted_on)}
    return Recorded(
        action=action, backend=environment.backend, target=release_of(action.version),
        live=release_of(live.version) if live is not None else None,
        canary=release_of(canary.version) if canary is not None else None,
        canary_percent=canary.traffic_percent if canary is not None else 0, known=known,
    )  # fmt: skip


@retry_once
@transaction.atomic
def action_put_back(*, action_id: int, lease: str, release: str, did: str, message: str) -> bool:
    """One step that put the backend back as recorded (``did``: ``load``, ``unload``, ``traffic``): in the
    action's log and the audit trail. False once the lease is not the caller's."""
    action = _locked(action_id)
    if action.status != ActionStatus.RUNNING or action.lease_token != lease:
        return False
    _append(action, "restore", message)
    action.save(update_fields=["steps"])
    audit.record(
        action=AuditAction.SERVING_ACTION_RESTORE, obj=action,
        after=_summary(action) | {"release": release, "did": did, "detail": message[:500]}, actor=None,
    )  # fmt: skip
    return leases.renew(DeploymentAction.objects.filter(status=ActionStatus.RUNNING), pk=action_id, token=lease)


@retry_once
@transaction.atomic
def action_give_up(*, action_id: int, lease: str, problem: str = "") -> DeploymentAction | None:
    """End a clean-up start: the action failed with ``worker_lost``, the backend put back as recorded
    (``problem`` empty) or not (``problem`` says why). ``None`` when the lease is not the caller's."""
    action = _locked(action_id)
    if action.status != ActionStatus.RUNNING or action.lease_token != lease:
        return None
    message = _lost_message(action, restored=not problem, problem=problem)
    _append(action, "lost", message, status="failed")
    _end(action, status=ActionStatus.FAILED, code=WORKER_LOST, message=message)
    return action


# --- the lease sweep --------------------------------------------------------------------------


def actions_recover_lost(*, limit: int = 100) -> dict:
    """Re-queue the running actions whose lease ran out (their worker died): to start over, or, after
    their last start, to put the backend back as recorded and fail with ``worker_lost``; fail at once
    those whose clean-up was lost as often. Beat runs it through ``leases.recover_expired``."""
    lost = DeploymentAction.objects.filter(status=ActionStatus.RUNNING).filter(leases.not_held()).order_by("id")
    counts = {"requeued": 0, "failed": 0}
    for action_id in lost.values_list("pk", flat=True)[:limit]:
        outcome = _recover_lost(action_id=action_id)
        if outcome is not None:
            counts[outcome] += 1
    return counts


@retry_once
@transaction.atomic
def _recover_lost(*, action_id: int) -> str | None:
    action = _locked(action_id)
    if action.status != ActionStatus.RUNNING or leases.is_held(action):
        return None
    if action.attempts >= start_limit():
        _append(action, "lost", "The worker was lost.", status="failed")
        _end(action, status=ActionStatus.FAILED, code=WORKER_LOST, message=_lost_message(action, restored=False))
        return "failed"
    before = {"status": action.status, "attempts": action.attempts}
    restore_only = action.attempts >= leases.max_attempts()
    action.status = ActionStatus.QUEUED
    _append(action, "requeued", "Queued again: the worker running it was lost." if not restore_only else
            "Queued to put the backend back as recorded, then fail: the worker of its last attempt was lost.")  # fmt: skip
    action.save(update_fields=["status", "steps", *leases.release(action)])
    audit.record(
        action=AuditAction.SERVING_ACTION_REQUEUE, obj=action, before=before,
        after={"status": action.status, "reason": WORKER_LOST, "restore_only": restore_only}, actor=None,
    )  # fmt: skip
    enqueue_on_commit(TASK, action.pk, actor=action.requested_by)
    return "requeued"


# --- drift: what a backend serves against the record (beat's periodic reconcile) ---------------------
#
# ``workers.deploy.reconcile_backends`` reads each environment's backend (``status()``) and hands what it
# saw to ``drift_record``, which compares it with the record and reports each difference once: a
# ``serving.drift`` audit event and a notification when it appears, ``serving.drift.resolved`` when it is
# gone. Each event carries the whole set still open (``open``), so the latest one for the environment is
# what the next run compares with: the same difference is never reported twice, whatever the number of
# runs, and nothing but the audit log holds the state.


@dataclass(frozen=True)
class EndpointRecord:
    """What the record says an environment's backend serves for one model."""

    endpoint: str
    model_id: int
    model_name: str
    team_id: int
    releases: frozenset[str]  # live or canary now, by the record
    busy: bool  # an action in flight: the backend may differ from the record until it ends
    last_action_id: int


def environments_to_reconcile() -> list[Environment]:
    return list(Environment.objects.select_related("backend").order_by("position", "name"))


def serving_record(*, environment: Environment) -> dict[str, EndpointRecord]:
    """Per endpoint, what the record says ``environment``'s backend serves, for every model an action
    was ever asked for there."""
    from django.db.models import Max

    from governance.registry.models import RegisteredModel

    actions = DeploymentAction.objects.filter(environment=environment)
    last = dict(actions.values("model_id").annotate(last=Max("pk")).values_list("model_id", "last"))
    busy = set(actions.filter(status__in=IN_FLIGHT).values_list("model_id", flat=True))
    numbers: dict[int, set[int]] = {}
    for model_id, number in Deployment.objects.filter(environment=environment, until__isnull=True).values_list(
        "model_id", "version__number"
    ):
        numbers.setdefault(model_id, set()).add(number)
    record = {}
    for model in RegisteredModel.objects.filter(pk__in=list(last)).select_related("team"):
        endpoint = endpoint_name(model)
        record[endpoint] = EndpointRecord(
            endpoint=endpoint, model_id=model.pk, model_name=model.name, team_id=model.team_id,
            releases=frozenset(f"{endpoint}-v{n}" for n in numbers.get(model.pk, ())), busy=model.pk in busy,
            last_action_id=last[model.pk],
        )  # fmt: skip
    return record


def drift_marks(*, environment: Environment) -> dict[str, list]:
    """What the record says, in short, before the backend is read: an endpoint whose record changed
    while it was read is judged at the next run, not now."""
    return {
        endpoint: [sorted(r.releases), r.busy, r.last_action_id]
        for endpoint, r in serving_record(environment=environment).items()
    }


_RELEASE_NAME = re.compile(r"^(?P<endpoint>.+)-v[0-9]+$")


def drift_found(*, environment_name: str, record: dict[str, EndpointRecord], observed: list[dict]) -> dict[str, dict]:
    """The differences, by key, between what a backend reports (``observed``: each release's ``name``,
    ``ready``, ``endpoint``, ``reason``) and the record. Endpoints with an action in flight are left out."""
    env = environment_name
    found: dict[str, dict] = {}
    seen = set()
    for loaded in observed:
        name = str(loaded.get("name") or "")
        seen.add(name)
        endpoint = loaded.get("endpoint") or ""
        if endpoint not in record:
            match = _RELEASE_NAME.match(name)
            endpoint = match["endpoint"] if match else ""
        rec = record.get(endpoint)
        if rec is not None and rec.busy:
            continue
        if rec is not None and name in rec.releases:
            if not loaded.get("ready"):
                reason = str(loaded.get("reason") or "not ready")[:200]
                found[f"not_ready:{name}"] = _drift_item(
                    "not_ready", name, rec, f"{name}, live in {env} by the record, is loaded but not ready ({reason})."
                )
            continue
        if rec is not None:
            found[f"unrecorded:{name}"] = _drift_item(
                "unrecorded", name, rec,
                f"{name} is loaded in {env}, but it is not live there by the record: a release of {rec.model_name} "
                "that Charter did not leave loaded.",
            )  # fmt: skip
        else:
            found[f"foreign:{name}"] = _drift_item(
                "foreign", name, None, f"{name} is loaded in {env}, but Charter did not deploy it."
            )
    for rec in record.values():
        if rec.busy:
            continue
        for name in sorted(rec.releases - seen):
            found[f"missing:{name}"] = _drift_item(
                "missing", name, rec, f"{name}, live in {env} by the record, is not loaded: it answers no prediction."
            )
    return found


def _drift_item(kind: str, release: str, rec: EndpointRecord | None, detail: str) -> dict:
    return {
        "kind": kind, "release": release[:200], "model": rec.model_id if rec else None,
        "team": rec.team_id if rec else None, "endpoint": rec.endpoint if rec else "", "detail": detail[:500],
    }  # fmt: skip


@retry_once
@transaction.atomic
def drift_record(
    *, environment_id: int, observed: list[dict] | None, unreachable: str = "", before: dict | None = None
) -> dict[str, int]:
    """Compare what the environment's backend reported (``observed``), or that it could not be read
    (``unreachable``, a sentence), with the record; audit and notify each new difference, audit each one
    gone. ``before``: ``drift_marks`` taken before the backend was read. Counts of found, resolved, open."""
    from dataclasses import replace

    environment = Environment.objects.select_for_update().select_related("backend").get(pk=environment_id)
    previous = selectors.open_drift(environment=environment)
    if unreachable:
        # nothing else can be judged while the backend does not answer: what was open stays open
        now = dict(previous)
        now["unreachable"] = {
            "kind": "unreachable", "release": "", "model": None, "team": None, "endpoint": "",
            "detail": f"The {environment.backend.get_kind_display()} backend of {environment.name} could not be read: "
            f"{unreachable}"[:500],
        }  # fmt: skip
    else:
        record = serving_record(environment=environment)
        if before is not None:
            marks = drift_marks(environment=environment)
            record = {
                endpoint: rec if before.get(endpoint) == marks[endpoint] else replace(rec, busy=True)
                for endpoint, rec in record.items()
            }
        now = drift_found(environment_name=environment.name, record=record, observed=observed or [])
        busy = {endpoint for endpoint, rec in record.items() if rec.busy}
        now |= {key: item for key, item in previous.items() if item.get("endpoint") in busy and key not in now}
    found = {key: item for key, item in now.items() if key not in previous}
    gone = {key: item for key, item in previous.items() if key not in now}
    for key, item in sorted(found.items()):
        audit.record(
            action=AuditAction.SERVING_DRIFT, obj=environment, team_id=item["team"],
            after={"key": key, **item, "open": now}, actor=None,
        )  # fmt: skip
        _notify_drift(environment, item)
    for key, item in sorted(gone.items()):
        audit.record(
            action=AuditAction.SERVING_DRIFT_RESOLVED, obj=environment, team_id=item["team"],
            after={"key": key, **item, "open": now}, actor=None,
        )  # fmt: skip
    return {"found": len(found), "resolved": len(gone), "open": len(now)}


def _deployers(team_id: int):
    """The active users who may deploy the team's models (its operators and admins)."""
    from django.contrib.auth import get_user_model

    from governance.accounts.capabilities import roles_for

    return (
        get_user_model()
        .objects.filter(
            is_active=True, memberships__team_id=team_id, memberships__role__in=roles_for(Capability.DEPLOY)
        )
        .distinct()
    )


def _notify_drift(environment: Environment, item: dict) -> None:
    """The owning team's operators and admins; site administrators for a model no team owns, and for a
    backend that does not answer (with the teams that have something live there)."""
    from django.contrib.auth import get_user_model

    from governance.notifications import services as notifications
    from governance.notifications.models import EventKind

    users = get_user_model().objects.filter(is_active=True)
    audiences: dict[int | None, Any] = {}
    if item["team"] is not None:
        teams = [item["team"]]
    else:
        audiences[None] = users.filter(is_superuser=True)
        teams = []
        if item["kind"] == "unreachable":
            teams = sorted(
                set(Deployment.objects.filter(environment=environment, until__isnull=True).values_list("model__team_id",
                                                                                                          flat=True))
            )  # fmt: skip
    for team_id in teams:
        audiences[team_id] = _deployers(team_id)
    what = item["release"] or "the backend"
    for team_id, recipients in audiences.items():
        notifications.notify(
            event=EventKind.SERVING_DRIFT, team_id=team_id, title=f"Drift in {environment.name}: {what}",
            body=f"{item['detail']} Charter records what it deploys; this was found by the periodic check of "
            "the backend against that record.",
            url=environment.get_absolute_url(), recipients=list(recipients),
            payload={"environment": environment.name, "drift": item},
        )  # fmt: skip


# --- the watch: live figures, and a canary's verdict (beat's ``serving-watch``) -----------------------
# ``workers.deploy.watch_live`` reads each environment's backend metrics every SERVING_WATCH_SECONDS and
# hands them here. The figures are kept on the current deployments (counted since the watch first read
# them). A canary that breached the environment's health policy is rolled back, and one that met it over
# the observation window is promoted where the environment says so, by an action the watch asks for on
# behalf of whoever asked for the canary: checked like any other request, then by the worker when it
# acts, so the watch can do nothing that person could not.


def environments_to_watch() -> list[Environment]:
    """Environments where something is live now."""
    return list(Environment.objects.filter(deployments__until__isnull=True).distinct().select_related("backend"))


@retry_once
@transaction.atomic
def stats_record(*, environment_id: int, readings: dict[str, Any], now=None) -> int:
    """One backend reading (release name -> ``Stats``) added to the figures of the environment's current
    deployments; the number of deployments updated."""
    now = now or timezone.now()
    updated = 0
    current = (
        Deployment.objects.select_for_update(of=("self",))
        .filter(environment_id=environment_id, until__isnull=True)
        .select_related("version__model__team")
    )
    for deployment in current:
        reading = readings.get(release_of(deployment.version).name)
        if reading is None:
            continue
        deployment.stats = {**(deployment.stats or {}), **health.accumulate(deployment.stats, reading)}
        deployment.stats_at = now
        deployment.save(update_fields=["stats", "stats_at"])
        updated += 1
    return updated


def canary_decide(*, environment_id: int, now=None) -> list[DeploymentAction]:
    """Ask for the promote or rollback each canary of the environment has earned; the actions asked for.
    Each decision is asked for once per canary (an idempotency key per canary and kind); a request the
    checks refuse is recorded once, as a refusal, and shown on the canary."""
    now = now or timezone.now()
    asked = []
    canaries = (
        Deployment.objects.filter(
            environment_id=environment_id, until__isnull=True, state=DeploymentState.CANARY, stats__isnull=False
        )
        .select_related("environment__backend", "model__team", "version__model__team", "action__requested_by")
        .order_by("pk")
    )
    for canary in canaries:
        verdict = selectors.canary_verdict(canary, now=now)
        if verdict.state == health.BREACHED:
            live = selectors.current(environment=canary.environment, model=canary.model)
            kind, version = ActionKind.ROLLBACK, live.version if live is not None else None
        elif verdict.state == health.MET and canary.environment.canary_auto_promote:
            kind, version = ActionKind.PROMOTE, canary.version
        else:
            continue
        decided = (canary.stats or {}).get("decision") or {}
        if version is None or decided.get("kind") == kind:
            continue
        action = _canary_action(canary, kind=kind, version=version, verdict=verdict, now=now)
        if action is not None:
            asked.append(action)
    return asked


def _canary_action(canary: Deployment, *, kind: str, version: ModelVersion, verdict, now) -> DeploymentAction | None:
    requester = canary.action.requested_by
    decision: dict[str, Any] = {"kind": kind, "at": now.isoformat(), "verdict": verdict.sentence}
    action = None
    if requester is None:
        decision |= {"refused": "requester_gone", "message": "The person who asked for the canary no longer exists."}
    else:
        try:
            requested = action_request(
                actor=requester, environment=canary.environment, version=version, kind=kind, automatic=True,
                reason=f"Asked for by the health policy of {canary.environment.name}: {verdict.sentence}",
                idempotency_key=f"health-policy:canary-{canary.pk}:{kind}",
            )  # fmt: skip
        except DomainError as exc:  # recorded as a refusal by action_request; the canary says why
            if exc.code == "action_in_progress":
                return None  # someone is acting on this model here now: judge again next time
            decision |= {"refused": exc.code, "message": exc.detail}
        else:
            action = requested.action
            decision["action"] = action.pk
    Deployment.objects.filter(pk=canary.pk, until__isnull=True).update(
        stats={**(canary.stats or {}), "decision": decision}
    )
    _notify_canary(canary, decision)
    return action


def _notify_canary(canary: Deployment, decision: dict[str, Any]) -> None:
    """Tell the owning team's operators and admins what the watch decided about a canary, or that the
    decision was refused (the canary then goes on serving its share until someone acts)."""
    from governance.notifications import services as notifications
    from governance.notifications.models import EventKind

    environment, what = canary.environment, f"v{canary.version.number} of {canary.model.name}"
    if decision.get("refused"):
        title = f"Canary {what} in {environment.name}: automatic {decision['kind']} refused"
        body = (
            f"{decision['verdict']} The {decision['kind']} asked for on behalf of whoever started the canary "
            f"was refused: {decision['message']} The canary goes on serving its share until someone acts."
        )
    else:
        done = "rolled back" if decision["kind"] == ActionKind.ROLLBACK else "promoted"
        title = f"Canary {what} in {environment.name} is being {done} by its health policy"
        body = f"{decision['verdict']} Action #{decision['action']} was asked for on behalf of whoever started it."
    notifications.notify(
        event=EventKind.SERVING_CANARY, team_id=canary.model.team_id, title=title, body=body,
        url=environment.get_absolute_url(), recipients=list(_deployers(canary.model.team_id)),
        payload={"environment": environment.name, "model": canary.model_id, "version": canary.version_id,
                 "decision": decision},
    )  # fmt: skip
