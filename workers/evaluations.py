"""Celery tasks of the evaluations app (queue "evaluations"): bind an engine to a run, nothing more.

The task marks the run running under its lease (a redelivered, cancelled or finished run does
nothing), loads the artifact after checking its sha256, reads the data, runs the engine with a
progress callback that also notices cancellation, and stores the aggregates or the error. The lease is
renewed with each progress report and by a heartbeat thread meanwhile: a worker that dies stops
renewing it, and beat's sweep re-queues the run (``governance.core.leases``). Engine failures become
the run's error (a code and a sentence without data values); anything else is logged with the run id
only.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import time
from contextlib import contextmanager

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from governance.celery import AuditedTask, app
from governance.core.leases import Heartbeat

logger = logging.getLogger(__name__)


class Cancelled(Exception):
    """The run was cancelled while the engine worked, or its lease went to another execution."""


@app.task(
    base=AuditedTask,
    name="workers.evaluations.run_evaluation",
    soft_time_limit=settings.EVALUATION_TIME_LIMIT_SECONDS,
    time_limit=settings.EVALUATION_TIME_LIMIT_SECONDS + 60,
)
def run_evaluation(run_id: int) -> str:
    from governance.evaluations import services

    run = services.run_start(run_id=run_id, host=socket.gethostname())
    if run is None:
        return "skipped"
    lease = run.lease_token
    with Heartbeat(lambda: services.run_renew(run_id=run_id, lease=lease)) as heartbeat:
        return _execute(run, lease=lease, progress=_progress(run_id, lease=lease, heartbeat=heartbeat))


def _execute(run, *, lease: str, progress) -> str:
    from governance.evaluations import services
    from workers.engines.errors import EngineError

    run_id = run.pk
    delivered, wanted = _delivered_on(), services.queue_of(run)
    if run.kind == "benchmark" and delivered != wanted:
        # its figures would be taken for that host's: only the host's own worker measures them
        services.run_fail(
            run_id=run_id, code="wrong_host", lease=lease,
            message=f"This benchmark is for {wanted}, but it reached a worker on {delivered or 'no queue'}; it was "
            "not run there.",
        )  # fmt: skip
        return "failed"
    try:
        with _artifact_file(run.version) as artifact_path:
            model = _load(run, artifact_path)
            frame = _frame(run)
            progress(2, f"Loaded the model and {len(frame):,} rows")
            from workers.engines.runner import evaluate

            result, figures = evaluate(
                run.kind, model, frame, target=run.target_column or None, sensitive=run.sensitive_features,
                parameters=run.parameters, progress=progress, training_profile=run.version.training_profile,
                min_count=settings.EVALUATION_MIN_COUNT,
            )  # fmt: skip
        finished = services.run_finish(
            run_id=run_id, result=result, figures=figures, environment=_environment(model, run),
            artifact_sha256=run.version.artifact_sha256, lease=lease,
        )  # fmt: skip
        return "succeeded" if finished is not None else "superseded"
    except Cancelled:
        return "cancelled"
    except EngineError as exc:
        services.run_fail(run_id=run_id, code=exc.code, message=exc.message, lease=lease)
        return "failed"
    except SoftTimeLimitExceeded:
        limit = settings.EVALUATION_TIME_LIMIT_SECONDS
        services.run_fail(
            run_id=run_id, code="time_limit", message=f"The evaluation ran longer than {limit} s.", lease=lease
        )
        return "failed"
    except Exception as exc:  # never echo the exception text: it may quote data
        logger.exception("Evaluation run %s failed unexpectedly", run_id)
        services.run_fail(
            run_id=run_id, code="internal_error",
            message=f"The evaluation failed unexpectedly ({type(exc).__name__}); the worker log has the details.",
            lease=lease,
        )  # fmt: skip
        return "failed"


def _delivered_on() -> str | None:
    """The queue the running task's message came from (``None`` when not delivered by a broker)."""
    from celery import current_task

    request = getattr(current_task, "request", None)
    return ((getattr(request, "delivery_info", None) or {}).get("routing_key")) or None


def _progress(run_id: int, *, lease: str, heartbeat: Heartbeat):
    """A callback for engines: throttled progress updates (each renews the lease) that raise
    ``Cancelled`` once the run was cancelled or its lease lost."""
    from governance.evaluations import services

    last = {"at": 0.0, "percent": -100.0}

    def report(percent: float, message: str = "") -> None:
        if heartbeat.lost:
            raise Cancelled
        now = time.monotonic()
        if percent < 100 and now - last["at"] < 0.5 and percent - last["percent"] < 5:
            return
        last.update(at=now, percent=percent)
        if not services.run_progress(run_id=run_id, percent=percent, message=message, lease=lease):
            raise Cancelled

    return report


@contextmanager
def _artifact_file(version):
    """A local path to the artifact: the file itself on local storage, a temporary copy otherwise."""
    from governance.registry.artifacts import storage

    store = storage()
    try:
        yield store.path(version.artifact_path)
        return
    except NotImplementedError:
        pass
    with tempfile.TemporaryDirectory(prefix="charter-artifact-") as tmp:
        local = os.path.join(tmp, "artifact")
        with store.open(version.artifact_path, "rb") as src, open(local, "wb") as dst:
            shutil.copyfileobj(src, dst)
        yield local


def _load(run, artifact_path: str):
    from governance.accounts.capabilities import Capability, roles_for
    from governance.accounts.models import Membership
    from workers.engines.loading import load_model

    version = run.version
    # pickle runs code when it loads: only for artifacts uploaded by someone who may register versions
    # in the owning team (its authors and admins)
    trusted_uploader = Membership.objects.filter(
        user_id=version.created_by_id, team_id=version.model.team_id, role__in=roles_for(Capability.VERSION_CREATE)
    ).exists()
    return load_model(
        artifact_path, artifact_format=version.artifact_format, expected_sha256=version.artifact_sha256,
        allow_pickle=trusted_uploader,
    )  # fmt: skip


def _frame(run):
    from governance.core.errors import ValidationFailed
    from governance.evaluations import datasets, services
    from workers.engines.errors import EngineError

    try:
        return datasets.read(
            run.data_path, run.data_format, storage=services.data_storage(), max_rows=settings.EVALUATION_MAX_ROWS
        )
    except FileNotFoundError:
        raise EngineError("data_missing", "The evaluation data file is gone (deleted or never stored).") from None
    except ValidationFailed as exc:
        raise EngineError(exc.code, exc.detail) from None


def _environment(model, run) -> dict:
    """Library versions, the machine, the model; for a benchmark, the registered compute host it ran on
    (its name, labels and queue as the registry has them now: what a host class in a gate matches)."""
    from workers.engines.environment import environment

    recorded = {**environment(), "host": socket.gethostname(), "model": model.describe()}
    if run.kind == "benchmark":
        from governance.hosts.models import Host, queue_for

        host = Host.objects.filter(name=(run.parameters or {}).get("host", "")).first()
        if host is not None:
            recorded["compute_host"] = {
                "name": host.name, "labels": dict(host.labels or {}), "queue": queue_for(host.name),
            }  # fmt: skip
    return recorded
