"""Celery tasks of the serving app (queue "deploy"): drive a serving backend for one deployment action.

The message carries the action's id only. The task takes the action's lease, has the service check
everything again at this moment (``services.action_plan``: the requester's roles, the gate for the
environment, what is live), re-reads the artifact and checks its sha256 before handing the bytes over,
then drives the backend with idempotent steps, probes the new release with a real inference request,
watches it for the environment's observation window, and rolls back by itself when a check fails.
The outcome (what is live, the versions' stages, the audit event) is recorded in one transaction at
the end; a worker that dies before that is picked up by the lease sweep and the action starts over.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import time
from contextlib import contextmanager

from governance.celery import AuditedTask, app
from governance.core.leases import Heartbeat

logger = logging.getLogger(__name__)

PICKLE_FORMATS = {"sklearn-joblib", "pickle"}
# Stops that say the action may not go ahead (recorded as refused, like a failed gate), not that it broke.
REFUSALS = {
    "artifact_digest_mismatch",
    "artifact_missing",
    "untrusted_pickle",
    "format_not_servable",
    "capability_missing",
}


class Stop(Exception):
    """The action cannot go on: a code and a sentence for the record (no data values, no secrets)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


@app.task(base=AuditedTask, name="workers.deploy.run_action", soft_time_limit=900, time_limit=960)
def run_action(action_id: int) -> str:
    from governance.serving import services

    action = services.action_start(action_id=action_id, host=socket.gethostname())
    if action is None:
        return "skipped"
    lease = action.lease_token
    with Heartbeat(lambda: services.action_renew(action_id=action_id, lease=lease)):
        if services.cleaning_up(action):  # the last attempt's worker was lost: put back, then fail
            return _clean_up(action_id, lease)
        if action.attempts > 1:  # a worker was lost mid-action: start again from what the record says
            problem = _try_put_back(action_id, lease)
            if problem is not None:
                code, message = problem
                if code == "lease_lost":
                    return "skipped"
                services.action_fail(
                    action_id=action_id, lease=lease, code=code,
                    message=f"The worker of an earlier attempt was lost, and the backend could not be put back as "
                    f"recorded before starting again: {message}",
                )  # fmt: skip
                return "failed"
        return _execute(action_id, lease)


def _execute(action_id: int, lease: str) -> str:
    from governance.serving import services

    plan = services.action_plan(action_id=action_id, lease=lease)
    if isinstance(plan, services.Refused):
        return "refused"
    log = _logger(action_id, lease)
    try:
        backend = driver(plan.backend)
        outcome = _act(plan, backend, log)
    except Stop as exc:
        if exc.code in REFUSALS:  # what was to be handed over may not be served: a refusal, not a fault
            services.action_refuse(action_id=action_id, lease=lease, code=exc.code, message=exc.message)
            return "refused"
        services.action_fail(action_id=action_id, lease=lease, code=exc.code, message=exc.message)
        return "failed"
    except Exception as exc:  # never echo the exception text: it may quote a credential or a payload
        from workers.serving.backend import ServingError

        _try_put_back(action_id, lease, quiet=True)  # what this attempt did to the backend, undone if it can be
        if isinstance(exc, ServingError) and exc.code == "artifact_digest_mismatch":
            refusal = record_digest_mismatch(plan.target.version)
            services.action_refuse(action_id=action_id, lease=lease, code=refusal.code, message=refusal.message)
            return "refused"
        if isinstance(exc, ServingError):
            services.action_fail(action_id=action_id, lease=lease, code=exc.code, message=exc.message)
            return "failed"
        logger.exception("Deployment action %s failed unexpectedly", action_id)
        services.action_fail(
            action_id=action_id, lease=lease, code="internal_error",
            message=f"The action failed unexpectedly ({type(exc).__name__}); the worker log has the details.",
        )  # fmt: skip
        return "failed"
    return outcome


# --- the backend back as recorded (after a lost worker, or a failure of the worker's own) ------------

SETTLE_SECONDS = 60.0  # how long to wait for a load a lost worker asked for to finish, before judging


def put_back(action_id: int, lease: str, *, quiet: bool = False) -> None:
    """Make the backend serve, for the action's model in its environment, exactly what the record says
    is live: the recorded live release (and canary) loaded again if missing, every other release an
    action put on that endpoint unloaded (the action's own target always asked to, so that a model
    settings file written just before a crash does not load it at the server's next start). Each change
    is in the action's log and the audit trail; with nothing to change, one line says so (unless
    ``quiet``). Raises ``Stop`` or ``ServingError`` when it cannot."""
    from governance.serving import services

    recorded = services.action_recorded(action_id=action_id, lease=lease)
    if recorded is None:
        raise Stop("lease_lost", "Another execution took this action over.")
    backend = driver(recorded.backend)
    environment = recorded.action.environment.name
    live, canary = recorded.live, recorded.canary

    def note(release: str, did: str, message: str) -> None:
        if not services.action_put_back(action_id=action_id, lease=lease, release=release, did=did, message=message):
            raise Stop("lease_lost", "Another execution took this action over.")

    serving = _settled(backend, recorded)
    keep = {r.name for r in (live, canary) if r is not None}

    def ready(release) -> bool:
        return release.name in serving and serving[release.name].ready

    changed = False
    if canary is not None and live is not None:
        if not (ready(live) and ready(canary)):
            with artifact_file(canary.version) as path:
                backend.set_traffic(
                    _release(canary, path), percent=recorded.canary_percent, stable=_release(live, None)
                )
            note(canary.name, "traffic", f"{canary.name} takes {recorded.canary_percent}% of the traffic again next "
                 f"to {live.name}, as recorded in {environment}.")  # fmt: skip
            changed = True
    elif live is not None and not ready(live):
        with artifact_file(live.version) as path:
            backend.deploy(_release(live, path))
        note(live.name, "load", f"Loaded {live.name} again: it is the release live in {environment} by the record.")
        changed = True
    for name in sorted((set(serving) | {recorded.target.name}) - keep):
        release = recorded.known.get(name)
        if release is None:  # on this endpoint, but no action here put it there: the reconcile reports it
            continue
        backend.undeploy(_release(release, None))
        if name in serving:
            note(name, "unload", f"Unloaded {name}: it is not live in {environment} by the record.")
            changed = True
    if not changed and not quiet:
        what = ", ".join(sorted(keep)) or "nothing of this model"
        if not services.action_log(action_id=action_id, lease=lease, step="restore",
                                   message=f"The backend serves what is live in {environment} by the record "
                                   f"({what}); nothing to put back."):  # fmt: skip
            raise Stop("lease_lost", "Another execution took this action over.")


def _settled(backend, recorded) -> dict:
    """The backend's releases of the endpoint by name, once none of them is still loading (a lost
    worker's load request may still be running in the server)."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        serving = {
            m.name: m for m in backend.status() if m.endpoint == recorded.target.endpoint or m.name in recorded.known
        }
        if time.monotonic() > deadline or not any(m.reason == "loading" for m in serving.values()):
            return serving
        time.sleep(0.2)


def _try_put_back(action_id: int, lease: str, *, quiet: bool = False) -> tuple[str, str] | None:
    """:func:`put_back`; the problem (a code and a sentence) when it could not, else ``None``."""
    from workers.serving.backend import ServingError

    try:
        put_back(action_id, lease, quiet=quiet)
    except (Stop, ServingError) as exc:
        return exc.code, exc.message
    except Exception as exc:
        logger.exception("Putting the backend back as recorded failed for deployment action %s", action_id)
        return "internal_error", f"an unexpected {type(exc).__name__}; the worker log has the details"
    return None


def _clean_up(action_id: int, lease: str) -> str:
    """The start after the action's last one: the backend put back as recorded, the action failed with
    ``worker_lost`` (saying whether the backend could be put back)."""
    from governance.serving import services

    problem = _try_put_back(action_id, lease)
    if problem is not None and problem[0] == "lease_lost":
        return "skipped"
    services.action_give_up(action_id=action_id, lease=lease, problem=problem[1] if problem else "")
    return "failed"


def _logger(action_id: int, lease: str):
    from governance.serving import services

    def log(step: str, message: str, status: str = "ok") -> None:
        if not services.action_log(action_id=action_id, lease=lease, step=step, message=message, status=status):
            raise Stop("lease_lost", "Another execution took this action over.")

    return log


def _act(plan, backend, log) -> str:
    from governance.serving import services
    from governance.serving.models import ActionKind

    action, kind = plan.action, plan.action.kind
    lease = action.lease_token
    caps = backend.capabilities()
    if kind in (ActionKind.CANARY, ActionKind.PROMOTE) and not caps.traffic_split:
        raise Stop("capability_missing", f"The {backend.kind} backend cannot split traffic, so it cannot run a {kind}.")
    if kind == ActionKind.RETIRE:
        backend.undeploy(_release(plan.target, None))
        log("undeploy", f"Unloaded {plan.target.name} from {action.environment.name}.")
        services.action_succeed(action_id=action.pk, lease=lease, note=f"{plan.target.name} retired.")
        return "succeeded"
    version = plan.target.version
    if version.artifact_format not in caps.formats:
        raise Stop(
            "format_not_servable",
            f"The {backend.kind} backend cannot serve {version.get_artifact_format_display()} artifacts "
            f"(it serves: {', '.join(sorted(caps.formats))}).",
        )
    if version.artifact_format in PICKLE_FORMATS and not plan.trusted_uploader:
        raise Stop(
            "untrusted_pickle",
            "The artifact is a pickle, which runs code when loaded, and it was not uploaded by an author of the "
            "owning team: it is not handed to a serving backend.",
        )
    with artifact_file(version) as path:
        target = _release(plan.target, path)
        live = _release(plan.live, None) if plan.live is not None else None
        if kind == ActionKind.DEPLOY:
            backend.deploy(target)
            log(
                "deploy",
                f"{backend.kind} checked the artifact's sha256 ({target.sha256[:12]}…) as it copied the bytes, "
                f"and loaded {target.name}.",
            )
        elif kind == ActionKind.CANARY:
            backend.set_traffic(target, percent=action.environment.canary_percent, stable=live)
            log("canary", f"{target.name} takes {action.environment.canary_percent}% of the traffic.")
        elif kind == ActionKind.PROMOTE:
            backend.promote(target)
            log("promote", f"{target.name} takes all of the traffic.")
        elif kind == ActionKind.ROLLBACK:
            # while a canary runs, the canary is what stops serving (the live release may be the target itself)
            current = _release(plan.canary, None) if plan.canary is not None else live
            backend.rollback(target, current=current)
            log("rollback", f"{target.name} serves again in place of {current.name}.")
        problem = _check_health(plan, backend, target, log)
        if problem is not None:
            return _undo(plan, backend, target, live, problem, log)
        if kind == ActionKind.DEPLOY and live is not None and live.name != target.name:
            backend.undeploy(live)
            log("unload", f"Unloaded {live.name}, which {target.name} replaced (its files stay for a rollback).")
    services.action_succeed(action_id=action.pk, lease=lease, artifact_sha256=version.artifact_sha256)
    return "succeeded"


def _check_health(plan, backend, target, log) -> tuple[str, str] | None:
    """Probe the release with a real request, then watch it for the environment's window; the
    problem found, or ``None``."""
    from workers.serving.backend import ServingError

    environment = plan.action.environment
    try:
        started = time.perf_counter()
        backend.predict(target.name, plan.probe, timeout=30)
        log("probe", f"{target.name} answered the probe request in {1000 * (time.perf_counter() - started):.0f} ms.")
    except ServingError as exc:
        return "probe_failed", f"{target.name} failed its probe request: {exc.message}"
    if environment.observation_seconds <= 0:
        return None
    before = backend.metrics().get(target.name)
    deadline = time.monotonic() + environment.observation_seconds
    while time.monotonic() < deadline:
        time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))
        log("observe", f"Watching {target.name} ({int(deadline - time.monotonic())} s left).")
    after = backend.metrics().get(target.name)
    return _breach(environment, before, after, target.name, log)


def _breach(environment, before, after, name: str, log) -> tuple[str, str] | None:
    """The environment's health policy over the window between two metrics readings (the same rule beat's
    ``serving-watch`` applies to a canary)."""
    from governance.serving import selectors
    from workers.serving import health

    if after is None:
        log("health", f"No request figures for {name}; the window judged nothing.")
        return None
    verdict = health.judge(selectors.health_policy(environment), health.between(before, after))
    log("health", verdict.sentence)
    return (verdict.code, verdict.sentence) if verdict.state == health.BREACHED else None


def _undo(plan, backend, target, live, problem: tuple[str, str], log) -> str:
    """The new release failed a check: the previous one serves again (or nothing, when there was none)."""
    from governance.serving import services
    from governance.serving.models import ActionKind

    code, message = problem
    action = plan.action
    log("health", message, status="failed")
    if action.kind == ActionKind.ROLLBACK:
        # the release rolled back to is sick too: the one that was live comes back
        backend.rollback(live, current=target)
        log("rollback", f"{live.name} serves again: {target.name} failed its checks.")
        services.action_fail(action_id=action.pk, lease=action.lease_token, code=code, message=message)
        return "failed"
    if live is not None:
        backend.rollback(live, current=target)
        log("rollback", f"Rolled back by itself: {live.name} serves again, {target.name} is unloaded.")
        services.action_fail(
            action_id=action.pk, lease=action.lease_token, code=code, message=message, rolled_back=True
        )
        return "rolled_back"
    backend.undeploy(target)
    log("undeploy", f"Unloaded {target.name}; nothing of this model was live before.")
    services.action_fail(action_id=action.pk, lease=action.lease_token, code=code, message=message)
    return "failed"


def _release(release, path):
    from workers.serving.backend import Release

    version = release.version
    return Release(
        endpoint=release.endpoint, name=release.name, artifact_path=path or "", artifact_format=version.artifact_format,
        sha256=version.artifact_sha256, framework=version.framework,
    )  # fmt: skip


@contextmanager
def artifact_file(version):
    """The stored artifact as a local file for the driver, which checks its sha256 while it copies the
    bytes into the backend's own storage (the MLServer model repository, the KServe storage URI) and
    refuses them on a mismatch (``artifact_digest_mismatch``): what is served is what was approved,
    whatever happens to the stored file afterwards. On local storage the stored file itself (one read,
    one copy); otherwise a temporary copy."""
    from governance.registry.artifacts import storage

    store = storage()
    try:
        path = store.path(version.artifact_path)
    except NotImplementedError:
        path = None
    if path is not None:
        if not os.path.isfile(path):
            raise Stop("artifact_missing", "The stored artifact is gone; nothing was handed to the backend.")
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="charter-deploy-") as tmp:
        local = os.path.join(tmp, "artifact")
        try:
            with store.open(version.artifact_path, "rb") as src, open(local, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        except FileNotFoundError:
            raise Stop("artifact_missing", "The stored artifact is gone; nothing was handed to the backend.") from None
        yield local


def record_digest_mismatch(version) -> Stop:
    """The driver found the stored bytes changed: an integrity check like the scrub's (the gate fails the
    version from now on), and the refusal to record."""
    from governance.registry import artifacts
    from governance.registry.services import artifact_integrity_record

    artifact_integrity_record(sha256=version.artifact_sha256, problem=artifacts.DIGEST_MISMATCH)
    return Stop(
        "artifact_digest_mismatch",
        "The stored artifact's bytes no longer match the sha256 the version was registered and approved with; "
        "nothing was handed to the backend.",
    )


def driver(backend_row):
    """The driver for a ``ServingBackend`` row (credentials decrypted here, in the worker, only)."""
    from governance.notifications import crypto
    from governance.serving.models import BackendKind

    config = dict(backend_row.config or {})
    if backend_row.kind == BackendKind.MLSERVER:
        from workers.serving.mlserver import MLServerBackend

        if config.get("local"):  # one of the run command's own servers (settings.SERVING_LOCAL_PORTS)
            return MLServerBackend(**local_mlserver(config["local"]))
        return MLServerBackend(
            backend_row.url, repository_dir=config.get("repository_dir", ""), metrics_url=config.get("metrics_url")
        )
    if backend_row.kind == BackendKind.KSERVE:
        from workers.serving.kserve import KServeBackend

        credentials = crypto.decrypt(backend_row.credentials_encrypted) if backend_row.credentials_encrypted else ""
        return KServeBackend.from_settings(url=backend_row.url, config=config, credentials=credentials)
    raise Stop("backend_unknown", f"No driver for backend kind {backend_row.kind}.")


def local_mlserver(environment: str) -> dict:
    """Where the run command's MLServer for ``environment`` listens and keeps its model repository."""
    from django.conf import settings

    port = settings.SERVING_LOCAL_PORTS.get(environment)
    if port is None:
        raise Stop("backend_unknown", f"No local MLServer is configured for {environment}.")
    host = settings.SERVING_LOCAL_HOSTS.get(environment, "127.0.0.1")
    return {
        "url": f"http://{host}:{port}", "repository_dir": str(settings.SERVING_DIR / environment),
        "metrics_url": f"http://{host}:{port + 200}/metrics",
    }  # fmt: skip


# --- the periodic reconcile (beat's ``serving-reconcile``, every SERVING_RECONCILE_SECONDS) -------------


@app.task(base=AuditedTask, name="workers.deploy.reconcile_backends", soft_time_limit=600, time_limit=660)
def reconcile_backends() -> dict:
    """Read each environment's backend and have ``services.drift_record`` compare it with the record; a
    backend that cannot be read is itself a difference, reported like the others, and the other
    environments are still read."""
    from dataclasses import asdict

    from governance.serving import services
    from workers.serving.backend import ServingError

    outcome: dict[str, dict] = {}
    for environment in services.environments_to_reconcile():
        before = services.drift_marks(environment=environment)
        observed, unreachable = None, ""
        try:
            observed = [asdict(loaded) for loaded in driver(environment.backend).status()]
        except (Stop, ServingError) as exc:
            unreachable = exc.message
        except Exception as exc:  # never echo the exception text: it may quote a credential
            logger.exception("Reading the serving backend of %s failed", environment.name)
            unreachable = f"reading it failed unexpectedly ({type(exc).__name__}); the worker log has the details."
        try:
            outcome[environment.name] = services.drift_record(
                environment_id=environment.pk, observed=observed, unreachable=unreachable, before=before
            )
        except Exception:
            logger.exception("Recording the drift of %s failed; the next run compares again", environment.name)
            outcome[environment.name] = {"error": 1}
    return outcome


# --- the watch (beat's ``serving-watch``, every SERVING_WATCH_SECONDS) ----------------------------------


@app.task(base=AuditedTask, name="workers.deploy.watch_live", soft_time_limit=300, time_limit=330)
def watch_live() -> dict:
    """Read the request figures of what is live in each environment whose backend reports them, store
    them on the deployments, and have ``services.canary_decide`` ask for the promote or rollback a
    canary has earned. A backend that cannot be read is skipped (the reconcile reports it)."""
    from governance.serving import services
    from workers.serving.backend import ServingError

    outcome: dict[str, dict] = {}
    for environment in services.environments_to_watch():
        try:
            backend = driver(environment.backend)
            if not backend.capabilities().metrics:
                continue
            readings = backend.metrics()
        except (Stop, ServingError) as exc:
            outcome[environment.name] = {"unread": exc.code}
            continue
        except Exception as exc:  # never echo the exception text: it may quote a credential
            logger.exception("Reading the request figures of %s failed", environment.name)
            outcome[environment.name] = {"unread": type(exc).__name__}
            continue
        try:
            updated = services.stats_record(environment_id=environment.pk, readings=readings)
            asked = services.canary_decide(environment_id=environment.pk)
        except Exception:
            logger.exception("Watching %s failed; the next run reads it again", environment.name)
            outcome[environment.name] = {"error": 1}
            continue
        outcome[environment.name] = {"updated": updated, "asked": [a.pk for a in asked]}
    return outcome
